//! `wsss cam`: CAMs of one image, saved as safetensors and drawn as a heat-map overlay.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use wsss::cam::aream::AreamConfig;
use wsss::cam::{
    AafConfig, AreamCam, CamGenerator, ClassicCam, Getam, MultiScale, MultiScaleConfig, Rollout,
    WeakTr,
};
use wsss::vit::{read_state_dict, Config, Strictness, Vit};

/// CAM methods.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Method {
    /// ToCo-style classic CAM (`classifier.weight` in the weights).
    Classic,
    /// GETAM (a ViT with a classification head).
    Getam,
    /// WeakTr (official checkpoint keys).
    Weaktr,
    /// AReAM on an MCTformer-V2 base (inference CAM).
    Aream,
    /// Attention rollout.
    Rollout,
}

/// Multi-scale presets.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Scales {
    /// One scale, no flip.
    Single,
    /// 1.0, 1.2 + flip (WeakTr).
    Weaktr,
    /// 1.0, 0.5, 1.5 + flip (ToCo).
    Toco,
}

#[derive(Args)]
pub struct CamArgs {
    /// The method.
    #[arg(long, value_enum)]
    method: Method,
    /// Model description: a JSON file (timm field names) or a preset name.
    #[arg(long)]
    model: String,
    /// Weight file (`.safetensors` or `.pth`).
    #[arg(long)]
    weights: PathBuf,
    /// The image (PNG or JPEG).
    #[arg(long)]
    image: PathBuf,
    /// Class ids, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    classes: Vec<usize>,
    /// GETAM's first aggregated block.
    #[arg(long, default_value_t = 6)]
    start_layer: usize,
    /// Scales and flips.
    #[arg(long, value_enum, default_value = "single")]
    scales: Scales,
    /// Write `scores` (K, H, W) and `classes` (K) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw the maximum over the classes as a heat map over the image.
    #[arg(long)]
    overlay: Option<PathBuf>,
}

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

fn load_config(model: &str) -> Result<Config> {
    if model.ends_with(".json") {
        let text = std::fs::read_to_string(model).with_context(|| format!("reading {model}"))?;
        return serde_json::from_str(&text).with_context(|| format!("parsing {model}"));
    }
    Ok(Config::preset(model)?)
}

/// A heat-map colour (blue → cyan → yellow → red) for v in [0, 1].
fn jet(v: f32) -> [f32; 3] {
    let v = v.clamp(0.0, 1.0);
    let r = (1.5 - (4.0 * v - 3.0).abs()).clamp(0.0, 1.0);
    let g = (1.5 - (4.0 * v - 2.0).abs()).clamp(0.0, 1.0);
    let b = (1.5 - (4.0 * v - 1.0).abs()).clamp(0.0, 1.0);
    [r, g, b]
}

impl CamArgs {
    pub fn run(self) -> Result<()> {
        let device = Device::Cpu;
        let cfg = load_config(&self.model)?;
        let rgb = image::open(&self.image)
            .with_context(|| format!("reading {}", self.image.display()))?
            .to_rgb8();
        let (w, h) = rgb.dimensions();
        let (w, h) = (w as usize, h as usize);
        let mut planes = vec![0f32; 3 * h * w];
        for (x, y, px) in rgb.enumerate_pixels() {
            for c in 0..3 {
                planes[c * h * w + y as usize * w + x as usize] =
                    (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
            }
        }
        let image = Tensor::from_vec(planes, (1, 3, h, w), &device)?;
        let tensors = read_state_dict(&self.weights)
            .with_context(|| format!("reading {}", self.weights.display()))?;
        let scales = match self.scales {
            Scales::Single => MultiScaleConfig::single(),
            Scales::Weaktr => MultiScaleConfig::weaktr(),
            Scales::Toco => MultiScaleConfig::toco(),
        };
        let vit = || {
            Vit::from_state_dict(
                &cfg,
                tensors.clone(),
                Strictness::AllowUnexpected,
                DType::F32,
                &device,
            )
        };
        let cam = match self.method {
            Method::Classic => MultiScale::new(
                ClassicCam::from_state_dict(&cfg, tensors.clone(), DType::F32, &device)?,
                scales,
            )?
            .generate(&image, &self.classes)?,
            Method::Getam => MultiScale::new(Getam::new(vit()?, self.start_layer), scales)?
                .generate(&image, &self.classes)?,
            Method::Weaktr => MultiScale::new(
                WeakTr::from_state_dict(
                    &cfg,
                    AafConfig::weaktr(),
                    tensors.clone(),
                    DType::F32,
                    &device,
                )?,
                scales,
            )?
            .generate(&image, &self.classes)?,
            Method::Aream => MultiScale::new(
                AreamCam::from_state_dict(
                    &cfg,
                    AreamConfig::inference(cfg.num_classes, cfg.depth),
                    tensors.clone(),
                    DType::F32,
                    &device,
                )?,
                scales,
            )?
            .generate(&image, &self.classes)?,
            Method::Rollout => {
                MultiScale::new(Rollout::new(vit()?), scales)?.generate(&image, &self.classes)?
            }
        };
        if let Some(out) = &self.out {
            let ids: Vec<i64> = cam.classes.iter().map(|&c| c as i64).collect();
            let classes = Tensor::from_vec(ids, cam.classes.len(), &device)?;
            candle_core::safetensors::save(
                &[
                    ("scores".to_string(), cam.scores.clone()),
                    ("classes".to_string(), classes),
                ]
                .into_iter()
                .collect(),
                out,
            )
            .with_context(|| format!("writing {}", out.display()))?;
        }
        if let Some(path) = &self.overlay {
            let heat = cam.scores.max(0)?.flatten_all()?.to_vec1::<f32>()?;
            if heat.len() != h * w {
                bail!("CAM has {} pixels, the image {h}x{w}", heat.len());
            }
            let mut out = rgb.clone();
            for (x, y, px) in out.enumerate_pixels_mut() {
                let colour = jet(heat[y as usize * w + x as usize]);
                for c in 0..3 {
                    px[c] = (0.5 * px[c] as f32 + 0.5 * 255.0 * colour[c]).round() as u8;
                }
            }
            out.save(path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        println!(
            "{} classes, maps {:?}",
            cam.classes.len(),
            cam.scores.dims()
        );
        Ok(())
    }
}
