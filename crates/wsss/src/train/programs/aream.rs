//! `program = "aream"`: AReAM (He et al., arXiv 2305.03112, Sec. 3.3, Eqs. 6-9;
//! Jessie459/AReAM `main_voc_mctformer.py`) on an MCTformer-V2 base (Xu et al., arXiv
//! 2204.02874): C class tokens, no final norm, a 3×3 patch head.
//!
//! Every step: loss = MLSM(class-token logits) + MLSM(GAP of the patch head). After
//! `warmup_epochs`, add `reactivation_weight ·` the re-activation loss:
//! 1. the AReAM CAM of the batch from the *same* forward, detached: the ReLU'd patch head
//!    gated by the class-to-patch attention of all layers and propagated by the shallow
//!    layers' (l < `layer_index`) patch affinity, uniform (U) or weighted by `1 − ẽ_l`
//!    (E) ([`wsss_cam::aream::aream_cam`]); one view (the official code adds a flipped view
//!    and scales);
//! 2. upsampled to the image (bilinear), ReLU, per-class min–max, absent classes zero;
//! 3. AFA's two-threshold PAR refinement (`refine_cams_with_bkg_v2`: background constants
//!    `low`/`high`, softmax over [background, present classes] at half resolution, PAR,
//!    argmax; pixels labelled foreground by the `high` map and background by neither become
//!    ignore);
//! 4. the token-grid affinity target ([`wsss_loss::aream::affinity_target`]) supervising
//!    sigmoid(head-mean pre-softmax logits) of the deep layers l ≥ `layer_index`
//!    ([`wsss_loss::aream::reactivation_loss`], mode U or E with weights ẽ_l).
//!
//! The entropies ẽ (E mode) come from `wsss aream entropy --weights WARMUP --data ROOT`
//! (min–max normalised over layers), given as `[method] entropies = [...]`.
//! The weights carry MCTformer's keys and load into `wsss_cam::AreamCam`.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};
use wsss_cam::aream::{aream_cam, AffinityMode, AreamConfig};
use wsss_core::resize::{resize, AlignCorners, ResizeMode};
use wsss_core::IGNORE;
use wsss_data::batch::{Batch, IMAGENET_MEAN, IMAGENET_STD};
use wsss_loss::aream::{affinity_target, reactivation_loss, LayerWeighting, ReactivationConfig};
use wsss_loss::classification::multilabel_soft_margin;
use wsss_refine::par::ParConfig;
use wsss_vit::{Strictness, Taps, Vit};

use super::weaktr::weaktr_vit;
use super::{
    evaluate_classifier, initial_vit_weights, to_device, torch_default_init, BuildContext,
};
use crate::train::config::{BestMode, TrainConfig};
use crate::train::data::{mix_seed, EvalData};
use crate::train::params::Params;
use crate::train::runner::{EvalContext, Metrics, Program, StepContext, StepOutput};

fn default_warmup() -> usize {
    1
}
fn default_weight() -> f64 {
    0.1
}
fn default_low() -> f32 {
    0.35
}
fn default_high() -> f32 {
    0.55
}

/// `[method]` of AReAM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreamTrainConfig {
    /// Classification-only epochs before the re-activation loss starts.
    #[serde(default = "default_warmup")]
    pub warmup_epochs: usize,
    /// s: shallow layers l < s build the CAM affinity, deep layers l ≥ s are re-activated
    /// (MCTformer-V2 with 12 blocks: 7). Default: ⌈7/12 · L⌉.
    #[serde(default)]
    pub layer_index: Option<usize>,
    /// Loss weight of the re-activation term.
    #[serde(default = "default_weight")]
    pub reactivation_weight: f64,
    /// Background constant of the ignore band's lower end.
    #[serde(default = "default_low")]
    pub low: f32,
    /// Background constant of the upper end.
    #[serde(default = "default_high")]
    pub high: f32,
    /// Layer entropies ẽ_l (min–max normalised, one per layer) for mode E; mode U when
    /// absent.
    #[serde(default)]
    pub entropies: Option<Vec<f64>>,
    /// PAR settings (AFA's by default).
    #[serde(default)]
    pub par: ParConfig,
    /// PAR works at the image size divided by this (AFA: 2).
    #[serde(default)]
    pub par_down_scale: Option<usize>,
}

/// The AReAM program.
pub struct Aream {
    params: Params,
    vit_model: Vit,
    vit: wsss_vit::Config,
    cfg: AreamTrainConfig,
    layer_index: usize,
    reactivate: bool,
}

impl Aream {
    /// MCTformer-V2 from `[model]` (ImageNet file or seeded init) with a PyTorch-default
    /// patch head.
    pub fn new(cfg: &TrainConfig, ctx: &BuildContext) -> Result<Self> {
        let m: AreamTrainConfig = cfg.method()?;
        let k = ctx.num_classes - 1;
        let vit = weaktr_vit(cfg.model.vit_config(cfg.data.crop_size)?, k);
        let l = vit.depth;
        let s = m.layer_index.unwrap_or((7 * l).div_ceil(12));
        if s == 0 || s >= l {
            bail!("[method] layer_index must be in 1..{l} (shallow l < s, deep l >= s), got {s}");
        }
        if let Some(e) = &m.entropies {
            if e.len() != l {
                bail!(
                    "[method] entropies has {} values, the ViT has {l} layers",
                    e.len()
                );
            }
        }
        if !(m.low.is_finite() && m.high.is_finite() && m.low < m.high) {
            bail!("[method] needs low < high, got {} and {}", m.low, m.high);
        }
        let mut w = initial_vit_weights(cfg, &vit)?;
        let mut rng = wsss_core::random::rng(mix_seed(&[cfg.run.seed, 0xA3EA]));
        let d = vit.embed_dim;
        w.insert(
            "head.weight".into(),
            torch_default_init(&[k, d, 3, 3], d * 9, &mut rng)?,
        );
        w.insert(
            "head.bias".into(),
            torch_default_init(&[k], d * 9, &mut rng)?,
        );
        let params = Params::from_tensors(to_device(w, &ctx.device)?)?;
        let vit_model = Vit::from_state_dict(
            &vit,
            params.tensors(),
            Strictness::AllowUnexpected,
            DType::F32,
            &ctx.device,
        )?;
        Ok(Self {
            params,
            vit_model,
            vit,
            cfg: m,
            layer_index: s,
            reactivate: false,
        })
    }

    fn head_map(&self, patches: &Tensor, grid: (usize, usize)) -> Result<Tensor> {
        let (b, p, d) = patches.dims3()?;
        let k = self.vit.num_classes;
        let features = patches.transpose(1, 2)?.reshape((b, d, grid.0, grid.1))?;
        let _ = p;
        let w = self
            .params
            .get("head.weight")
            .expect("head.weight")
            .as_tensor();
        let bias = self.params.get("head.bias").expect("head.bias").as_tensor();
        Ok(features
            .conv2d(w, 1, 1, 1, 1)?
            .broadcast_add(&bias.reshape((1, k, 1, 1))?)?)
    }

    fn shallow_mode(&self) -> AffinityMode {
        match &self.cfg.entropies {
            Some(e) => AffinityMode::Entropy {
                entropies: e.clone(),
            },
            None => AffinityMode::Uniform,
        }
    }
}

/// AFA's `refine_cams_with_bkg_v2` for one image.
///
/// # Shapes
/// - `image`: [3, H, W] RGB in [0, 1]; `cams`: [K, H, W] in [0, 1] (all classes);
///   `present`: 0-based present classes. Returns H·W labels (0, c + 1, 255).
fn reliable_par_label(
    image: &Tensor,
    cams: &Tensor,
    present: &[usize],
    cfg: &AreamTrainConfig,
) -> Result<Vec<u8>> {
    let (_, h, w) = image.dims3()?;
    let down = cfg.par_down_scale.unwrap_or(2).max(1);
    let (hs, ws) = ((h / down).max(1), (w / down).max(1));
    let small_image = resize(
        &image.unsqueeze(0)?,
        (hs, ws),
        ResizeMode::Bilinear,
        AlignCorners::No,
    )?;
    let label_with = |background: f32| -> Result<Vec<u8>> {
        let dev = cams.device();
        let bkg = Tensor::full(background, (1, h, w), dev)?;
        let mut planes = vec![bkg];
        for &c in present {
            planes.push(cams.get(c)?.unsqueeze(0)?);
        }
        let stack = Tensor::cat(&planes, 0)?.unsqueeze(0)?; // [1, 1 + K', H, W]
        let small = resize(&stack, (hs, ws), ResizeMode::Bilinear, AlignCorners::No)?;
        let soft = candle_nn::ops::softmax(&small, 1)?;
        let refined = wsss_refine::par::refine(&small_image, &soft, &cfg.par)?;
        let full = resize(&refined, (h, w), ResizeMode::Bilinear, AlignCorners::No)?;
        let arg = full
            .squeeze(0)?
            .argmax(0)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        Ok(arg
            .into_iter()
            .map(|i| {
                if i == 0 {
                    0
                } else {
                    present[i as usize - 1] as u8 + 1
                }
            })
            .collect())
    };
    let high = label_with(cfg.high)?;
    let low = label_with(cfg.low)?;
    Ok(high
        .iter()
        .zip(&low)
        .map(|(&hl, &ll)| {
            if hl != 0 {
                hl
            } else if ll == 0 {
                0
            } else {
                IGNORE
            }
        })
        .collect())
}

/// Bilinear upsampling, ReLU, per-class min–max (`(x − min) / (max + 1e-6)` after the
/// shift), absent classes zeroed.
///
/// # Shapes
/// `cams` [B, K, h, w] → [B, K, H, W]; `labels` [B, K].
fn normalise_cams(cams: &Tensor, labels: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
    let up = resize(cams, (h, w), ResizeMode::Bilinear, AlignCorners::No)?.relu()?;
    let min = up.min_keepdim(D::Minus1)?.min_keepdim(D::Minus2)?;
    let shifted = up.broadcast_sub(&min)?;
    let max = shifted.max_keepdim(D::Minus1)?.max_keepdim(D::Minus2)?;
    let norm = shifted.broadcast_div(&(max + 1e-6)?)?;
    let (b, k) = labels.dims2()?;
    Ok(norm.broadcast_mul(&labels.reshape((b, k, 1, 1))?)?)
}

impl Program for Aream {
    fn params(&self) -> &Params {
        &self.params
    }

    fn on_epoch_start(&mut self, epoch: usize) -> Result<()> {
        self.reactivate = epoch >= self.cfg.warmup_epochs;
        Ok(())
    }

    fn step(&mut self, batch: &Batch, _ctx: &StepContext) -> Result<StepOutput> {
        let k = self.vit.num_classes;
        let taps = Taps {
            attention: self.reactivate,
            pre_softmax: self.reactivate,
            ..Taps::default()
        };
        let out = self.vit_model.forward_tapped(&batch.images, taps)?;
        let Some(cls_logits) = out.logits.clone() else {
            bail!("the MCTformer ViT must produce class-token logits");
        };
        let head = self.head_map(&out.patch_tokens(k)?, out.grid)?;
        let patch_logits = head.mean(D::Minus1)?.mean(D::Minus1)?;
        let y = &batch.labels;
        let cls = multilabel_soft_margin(&cls_logits, y)?;
        let patch = multilabel_soft_margin(&patch_logits, y)?;
        let scalar =
            |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        let mut scalars = vec![
            ("cls".to_string(), scalar(&cls)?),
            ("patch".to_string(), scalar(&patch)?),
        ];
        let mut loss = (cls + patch)?;
        if self.reactivate {
            let s = self.layer_index;
            let attention: Vec<Tensor> = out.attention.iter().map(|a| a.detach()).collect();
            let cam_cfg = AreamConfig {
                num_prefix: k,
                layer_index: s,
                mode: self.shallow_mode(),
                class_gating: true,
            };
            let cams = aream_cam(&head.detach().relu()?, &attention, &cam_cfg)?.cam;
            let (b, _, h, w) = batch.images.dims4()?;
            let cams = normalise_cams(&cams, y, (h, w))?;
            // Denormalised RGB in [0, 1] for PAR.
            let dev = batch.images.device();
            let mean = Tensor::new(&IMAGENET_MEAN, dev)?.reshape((1, 3, 1, 1))?;
            let std = Tensor::new(&IMAGENET_STD, dev)?.reshape((1, 3, 1, 1))?;
            let rgb = batch.images.broadcast_mul(&std)?.broadcast_add(&mean)?;
            let label_rows = y.to_vec2::<f32>()?;
            let mut labels = Vec::with_capacity(b * h * w);
            for (i, row) in label_rows.iter().enumerate() {
                let present: Vec<usize> = (0..k).filter(|&c| row[c] > 0.5).collect();
                labels.extend(reliable_par_label(
                    &rgb.get(i)?,
                    &cams.get(i)?,
                    &present,
                    &self.cfg,
                )?);
            }
            let labels = Tensor::from_vec(labels, (b, h, w), &Device::Cpu)?;
            let target = affinity_target(&labels, Some(out.grid), IGNORE)?.to_device(dev)?;
            let weighting = match &self.cfg.entropies {
                Some(e) => LayerWeighting::Entropy(e[s..].iter().map(|&v| v as f32).collect()),
                None => LayerWeighting::Uniform,
            };
            let rcfg = ReactivationConfig {
                num_prefix: k,
                weighting,
            };
            let reac = reactivation_loss(&out.pre_softmax[s..], &target, &rcfg)?.loss;
            scalars.push(("reactivation".to_string(), scalar(&reac)?));
            loss = (loss + (reac * self.cfg.reactivation_weight)?)?;
        } else {
            scalars.push(("reactivation".to_string(), 0.0));
        }
        Ok(StepOutput { loss, scalars })
    }

    fn evaluate(&mut self, data: &EvalData, ctx: &EvalContext) -> Result<Metrics> {
        let k = self.vit.num_classes;
        let l = self.vit.depth;
        let infer = AreamConfig::inference(k, l);
        evaluate_classifier(data, &ctx.device, |images: &Tensor, _labels: &Tensor| {
            let out = self
                .vit_model
                .forward_tapped(&images.detach(), Taps::attention())?;
            let logits = out.logits.clone().expect("class-token logits");
            let head = self.head_map(&out.patch_tokens(k)?, out.grid)?.relu()?;
            let cam = aream_cam(&head, &out.attention, &infer)?;
            Ok((logits, vec![("aream", cam.cam), ("gated", cam.cam_gated)]))
        })
    }

    fn best_by(&self) -> (String, BestMode) {
        ("val_map".into(), BestMode::Max)
    }

    fn vit_config(&self) -> Option<wsss_vit::Config> {
        Some(self.vit.clone())
    }

    fn method_info(&self) -> serde_json::Value {
        serde_json::json!({
            "cam": "aream",
            "layer_index": self.layer_index,
            "entropies": self.cfg.entropies,
        })
    }
}

/// Mean per-layer attention entropy of `vit` over `data` (AReAM's E mode input; see
/// [`wsss_cam::LayerEntropy`]).
///
/// Cost: one forward per batch, O(L·B·h·N²) extra.
pub fn layer_entropy(
    vit: &Vit,
    data: &EvalData,
    device: &Device,
) -> Result<wsss_cam::LayerEntropy> {
    let mut entropy = wsss_cam::LayerEntropy::default();
    for batch in data.batches() {
        let images = batch?.images.to_device(device)?;
        let out = vit.forward_tapped(&images, Taps::attention())?;
        entropy.update(&out.attention)?;
    }
    Ok(entropy)
}
