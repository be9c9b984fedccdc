//! `wsss cam`: CAMs of every image of a split (one safetensors file per image, resumable,
//! sharded) or of one image (saved as safetensors and drawn as a heat-map overlay).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use wsss::cam::config::BoxedGenerator;
use wsss::cam::{
    AafConfig, CamConfig, CamGenerator, CamMethod, ModelSpec, MultiScaleConfig, MultiScaleSpec,
    WeakTrMapKind,
};
use wsss::data::batch::normalise;
use wsss::data::VocDataset;
use wsss::report::picture::heat_overlay;
use wsss::vit::{read_state_dict, Config};

use super::stage::{create_out_dir, run_images, write_atomic, Shard};

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

/// `wsss cam`: either every image of a split (`--config --weights --data --split --out
/// DIR`, one `<name>.safetensors` per image, resumable, `--shard k/n`), or one image
/// (`--image --classes`, with `--config` or `--method --model`; `--out FILE`, `--overlay`).
#[derive(Args)]
pub struct CamArgs {
    /// Generator description (TOML: `[model]`, `[method]`, `multiscale`; see configs/cam/).
    #[arg(long, conflicts_with_all = ["method", "model"])]
    config: Option<PathBuf>,
    /// The method (single-image mode without --config).
    #[arg(long, value_enum, requires = "model")]
    method: Option<Method>,
    /// Model description: a JSON file (timm field names) or a preset name.
    #[arg(long)]
    model: Option<String>,
    /// Weight file (`.safetensors` or `.pth`), official key names.
    #[arg(long)]
    weights: PathBuf,
    /// Dataset root in the VOC layout (batch mode).
    #[arg(long, requires_all = ["config", "split", "out"], conflicts_with = "image")]
    data: Option<PathBuf>,
    /// Split name: `ImageSets/Segmentation/<split>.txt` (batch mode).
    #[arg(long, requires = "data")]
    split: Option<String>,
    /// This run's share of the sorted image list: k/n, 0 <= k < n (batch mode).
    #[arg(long, default_value = "0/1", requires = "data")]
    shard: Shard,
    /// The image (PNG or JPEG; single-image mode).
    #[arg(long, required_unless_present = "data", requires = "classes")]
    image: Option<PathBuf>,
    /// Class ids, comma separated (single-image mode).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<usize>,
    /// GETAM's first aggregated block (with --method).
    #[arg(long, default_value_t = 6)]
    start_layer: usize,
    /// Scales and flips (with --method).
    #[arg(long, value_enum, default_value = "single")]
    scales: Scales,
    /// Batch mode: the output folder. Single image: write `scores` (K, H, W) and
    /// `classes` (K) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw the maximum over the classes as a heat map over the image (single image).
    #[arg(long, conflicts_with = "data")]
    overlay: Option<PathBuf>,
}

fn load_config(model: &str) -> Result<Config> {
    if model.ends_with(".json") {
        let text = std::fs::read_to_string(model).with_context(|| format!("reading {model}"))?;
        return serde_json::from_str(&text).with_context(|| format!("parsing {model}"));
    }
    Ok(Config::preset(model)?)
}

/// The [`CamConfig`] the legacy `--method`/`--model` flags describe.
fn legacy_config(
    method: Method,
    model: &str,
    start_layer: usize,
    scales: Scales,
) -> Result<CamConfig> {
    let cfg = load_config(model)?;
    let method = match method {
        Method::Classic => CamMethod::Classic {},
        Method::Getam => CamMethod::Getam { start_layer },
        Method::Weaktr => CamMethod::Weaktr {
            map: WeakTrMapKind::Fine,
            aaf: AafConfig::weaktr(),
        },
        Method::Aream => CamMethod::Aream {
            layer_index: None,
            mode: Default::default(),
            class_gating: true,
        },
        Method::Rollout => CamMethod::Rollout {},
    };
    let scales = match scales {
        Scales::Single => MultiScaleConfig::single(),
        Scales::Weaktr => MultiScaleConfig::weaktr(),
        Scales::Toco => MultiScaleConfig::toco(),
    };
    Ok(CamConfig {
        multiscale: MultiScaleSpec::Custom(scales),
        model: ModelSpec {
            config: Some(cfg),
            ..ModelSpec::default()
        },
        method,
    })
}

/// Reads a [`CamConfig`] TOML file.
pub fn read_cam_config(path: &Path) -> Result<CamConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// ImageNet-normalised [1, 3, H, W] tensor of an RGB image.
fn image_tensor(rgb: &image::RgbImage, device: &Device) -> Result<Tensor> {
    let (w, h) = rgb.dimensions();
    let planes = normalise(rgb);
    Ok(Tensor::from_vec(
        planes,
        (1, 3, h as usize, w as usize),
        device,
    )?)
}

/// Writes a CAM file: `scores` (K, H, W) f32 and `classes` (K) i64, atomically.
pub fn save_cam(path: &Path, scores: &Tensor, classes: &[usize]) -> Result<()> {
    let ids: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
    let classes = Tensor::from_vec(ids, classes.len(), &Device::Cpu)?;
    let scores = scores.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    write_atomic(path, |tmp| {
        candle_core::safetensors::save(
            &[
                ("scores".to_string(), scores),
                ("classes".to_string(), classes),
            ]
            .into_iter()
            .collect(),
            tmp,
        )
        .with_context(|| format!("writing {}", tmp.display()))
    })
}

impl CamArgs {
    pub fn run(self) -> Result<()> {
        let device = Device::Cpu;
        let config = match (&self.config, self.method, &self.model) {
            (Some(path), _, _) => read_cam_config(path)?,
            (None, Some(method), Some(model)) => {
                legacy_config(method, model, self.start_layer, self.scales)?
            }
            _ => bail!("give --config FILE, or --method and --model"),
        };
        let tensors = read_state_dict(&self.weights)
            .with_context(|| format!("reading {}", self.weights.display()))?;
        let generator = config
            .build(tensors, DType::F32, &device)
            .with_context(|| {
                format!("building the CAM generator from {}", self.weights.display())
            })?;
        match &self.data {
            Some(data) => self.run_split(data, &generator, &device),
            None => self.run_image(&generator, &device),
        }
    }

    fn run_split(&self, data: &Path, generator: &BoxedGenerator, device: &Device) -> Result<()> {
        let split = self
            .split
            .as_deref()
            .context("--split is required with --data")?;
        let out = self
            .out
            .as_deref()
            .context("--out DIR is required with --data")?;
        let dataset = VocDataset::open(data, split)
            .with_context(|| format!("opening split `{split}` of {}", data.display()))?;
        create_out_dir(out)?;
        let index: HashMap<&str, usize> = dataset
            .names()
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let names = self.shard.select(dataset.names());
        let num_classes = generator.num_classes();
        run_images(
            "cam",
            &names,
            |name| out.join(format!("{name}.safetensors")),
            false,
            |name, path| {
                let sample = dataset.load(index[name])?;
                let mut classes = Vec::new();
                for &l in sample.classes.labels() {
                    let c = l as usize - 1;
                    if c >= num_classes {
                        bail!("label {l} is beyond the model's {num_classes} foreground classes");
                    }
                    classes.push(c);
                }
                let (w, h) = sample.image.dimensions();
                let scores = if classes.is_empty() {
                    Tensor::zeros((0, h as usize, w as usize), DType::F32, device)?
                } else {
                    let image = image_tensor(&sample.image, device)?;
                    generator.generate(&image, &classes)?.scores
                };
                save_cam(path, &scores, &classes)
            },
        )?;
        Ok(())
    }

    fn run_image(&self, generator: &BoxedGenerator, device: &Device) -> Result<()> {
        let path = self.image.as_deref().context("--image is required")?;
        let rgb = image::open(path)
            .with_context(|| format!("reading {}", path.display()))?
            .to_rgb8();
        let image = image_tensor(&rgb, device)?;
        let cam = generator.generate(&image, &self.classes)?;
        if let Some(out) = &self.out {
            save_cam(out, &cam.scores, &cam.classes)?;
        }
        if let Some(path) = &self.overlay {
            let heat = cam.scores.max(0)?.flatten_all()?.to_vec1::<f32>()?;
            let out = heat_overlay(&rgb, &heat, 0.5)?;
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
