//! The training programs, one file each, and [`build`], which makes the one a config
//! names.
//!
//! Model classes are the C − 1 foreground classes (index k scores label k + 1), as in the
//! official WeakTr, MCTformer and ToCo checkpoints.

pub mod aream;
pub mod classic;
pub mod dfr;
pub mod getam;
pub mod segnet;
pub mod weaktr;
pub mod weaktr_stage2;

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use wsss_core::resize::{resize, AlignCorners, ResizeMode};

use super::config::{ProgramKind, TrainConfig};
use super::data::EvalData;
use super::metrics::{CamMeter, MapMeter};
use super::runner::{Metrics, Program};

/// What every program gets to build itself.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Classes C including background.
    pub num_classes: usize,
    /// Compute device.
    pub device: Device,
}

/// The program named by `cfg.program`.
pub fn build(cfg: &TrainConfig, ctx: &BuildContext) -> Result<Box<dyn Program>> {
    Ok(match cfg.program {
        ProgramKind::Aream => Box::new(aream::Aream::new(cfg, ctx)?),
        ProgramKind::GetamE2e => Box::new(getam::GetamE2e::new(cfg, ctx)?),
        ProgramKind::Classic => Box::new(classic::Classic::new(cfg, ctx)?),
        ProgramKind::WeaktrStage1 => Box::new(weaktr::WeakTrStage1::new(cfg, ctx)?),
        ProgramKind::WeaktrStage2 => Box::new(weaktr_stage2::WeakTrStage2::new(cfg, ctx)?),
        ProgramKind::Dfr => Box::new(dfr::DfrProgram::new(cfg, ctx)?),
    })
}

/// PyTorch's default init of a Linear/Conv weight and bias: `U(±1/sqrt(fan_in))`.
pub fn torch_default_init(
    shape: &[usize],
    fan_in: usize,
    rng: &mut impl rand::Rng,
) -> Result<Tensor> {
    let bound = (fan_in as f32).sqrt().recip();
    Ok(wsss_core::random::uniform(
        shape.to_vec(),
        -bound,
        bound,
        rng,
        &Device::Cpu,
    )?)
}

/// Moves a state dict to `device`.
pub fn to_device(
    weights: HashMap<String, Tensor>,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    weights
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_device(device)?)))
        .collect()
}

/// The backbone's initial weights: the `[model] init` file (a timm state dict; keys the
/// model lacks are dropped, missing keys come from the seeded init) or a seeded timm
/// initialisation.
pub fn initial_vit_weights(
    cfg: &TrainConfig,
    vit: &wsss_vit::Config,
) -> Result<HashMap<String, Tensor>> {
    let mut weights = wsss_vit::init_weights(vit, cfg.run.seed)?;
    if let Some(path) = &cfg.model.init {
        let loaded = wsss_vit::read_state_dict(path)
            .with_context(|| format!("reading [model] init {}", path.display()))?;
        let mut used = 0;
        for (k, t) in loaded {
            if let Some(slot) = weights.get_mut(&k) {
                if k == "pos_embed" && t.dims() != slot.dims() {
                    *slot = adapt_pos_embed(&t, vit)?;
                    used += 1;
                } else if k == "cls_token" && t.dims() != slot.dims() {
                    // One ImageNet class token copied to every class token (MCTformer).
                    *slot = t
                        .to_dtype(DType::F32)?
                        .broadcast_as(slot.dims())?
                        .contiguous()?;
                    used += 1;
                } else if t.dims() == slot.dims() {
                    *slot = t.to_dtype(DType::F32)?;
                    used += 1;
                }
            }
        }
        if used == 0 {
            bail!("{} shares no weight with the model", path.display());
        }
    }
    Ok(weights)
}

/// An ImageNet `pos_embed` [1, 1 + g0², D] resized to the model's grid and class tokens:
/// the class position is copied to every class token, the patch grid resized bicubically.
fn adapt_pos_embed(pe: &Tensor, vit: &wsss_vit::Config) -> Result<Tensor> {
    let pe = pe.to_dtype(DType::F32)?;
    let (_, n, d) = pe.dims3()?;
    let g0 = ((n - 1) as f64).sqrt().round() as usize;
    if g0 * g0 + 1 != n {
        bail!("pos_embed with {n} tokens is not 1 + a square grid");
    }
    let (gh, gw) = vit.stored_grid();
    let t = vit.class_tokens;
    let cls = pe.narrow(1, 0, 1)?.broadcast_as((1, t, d))?;
    let grid = pe
        .narrow(1, 1, g0 * g0)?
        .reshape((1, g0, g0, d))?
        .permute((0, 3, 1, 2))?;
    let grid = resize(&grid, (gh, gw), ResizeMode::Bicubic, AlignCorners::No)?
        .permute((0, 2, 3, 1))?
        .reshape((1, gh * gw, d))?;
    Ok(Tensor::cat(&[&cls.contiguous()?, &grid], 1)?)
}

/// Classification mAP and CAM quality on an evaluation set.
///
/// `forward(images, labels)` returns (B, K) logits and named (B, K, h, w) CAMs of all K
/// foreground classes at any resolution (the first is the method's CAM). Each is ReLU'd,
/// resized to the image bilinearly, max-normalised per map, and scored on the
/// ground-truth masks with the image labels: `val_cam_miou_gt` (best background
/// threshold), `val_cam_threshold_gt`, `val_cam_miou_otsu_gt` (Otsu's GT-free threshold;
/// the GT only scores it) for the first, `val_<name>_cam_miou_gt`… for the others.
/// `val_uniform_baseline_miou_gt` scores the trivial baseline that paints every present
/// class uniformly (best threshold). `val_map` and `val_cls_loss` use only image labels.
pub fn evaluate_classifier(
    data: &EvalData,
    device: &Device,
    mut forward: impl FnMut(&Tensor, &Tensor) -> Result<(Tensor, Vec<(&'static str, Tensor)>)>,
) -> Result<Metrics> {
    let c = data.dataset.num_classes();
    let mut map = MapMeter::default();
    let mut meters: Vec<(&'static str, CamMeter)> = Vec::new();
    let mut uniform = CamMeter::new(c)?;
    let mut loss_sum = 0.0;
    let mut n = 0usize;
    for batch in data.batches() {
        let batch = batch?;
        let images = batch.images.to_device(device)?;
        let labels = batch.labels.to_device(device)?;
        let (logits, cams) = forward(&images, &labels)?;
        let b = logits.dim(0)?;
        loss_sum += wsss_loss::classification::multilabel_soft_margin(&logits, &labels)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?
            * b as f64;
        n += b;
        map.update(&logits, &batch.labels)?;
        let any_mask = batch
            .masks
            .flatten_all()?
            .ne(255u8)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?
            > 0.0;
        if !any_mask {
            continue;
        }
        let (b, _, h, w) = batch.images.dims4()?;
        // The trivial baseline: every present class painted uniformly.
        let flat = Tensor::ones((b, c - 1, h, w), DType::F32, &Device::Cpu)?;
        uniform.update(&flat, &batch.labels, &batch.masks)?;
        for (i, (name, cams)) in cams.into_iter().enumerate() {
            if meters.len() <= i {
                meters.push((name, CamMeter::new(c)?));
            }
            let cams = resize(
                &cams.to_dtype(DType::F32)?.relu()?,
                (h, w),
                ResizeMode::Bilinear,
                AlignCorners::No,
            )?
            .relu()?;
            let max = cams.max_keepdim(3)?.max_keepdim(2)?;
            let cams = cams.broadcast_div(&(max + 1e-5)?)?;
            meters[i].1.update(&cams, &batch.labels, &batch.masks)?;
        }
    }
    let mut m = Metrics::new();
    m.insert("val_map".into(), map.map());
    m.insert("val_cls_loss".into(), loss_sum / n.max(1) as f64);
    if !meters.is_empty() {
        m.insert("val_uniform_baseline_miou_gt".into(), uniform.scores().0);
    }
    for (i, (name, meter)) in meters.iter().enumerate() {
        let prefix = if i == 0 {
            "val_cam".to_string()
        } else {
            format!("val_{name}_cam")
        };
        let (best, thr, otsu) = meter.scores();
        m.insert(format!("{prefix}_miou_gt"), best);
        m.insert(format!("{prefix}_threshold_gt"), thr);
        m.insert(format!("{prefix}_miou_otsu_gt"), otsu);
    }
    Ok(m)
}
