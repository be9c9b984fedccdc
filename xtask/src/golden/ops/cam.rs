//! `cam.classic`, `cam.getam`, `cam.weaktr`, `aream.cam`: the CAM generators of wsss-cam.

use anyhow::Result;
use candle_core::{DType, Device};
use wsss_cam::aream::{aream_cam, AffinityMode, AreamConfig};
use wsss_cam::{AafConfig, ClassicCam, Getam, GetamStrategy, WeakTr};
use wsss_vit::Config;

use super::{Case, Outputs};

pub fn classic(case: &Case) -> Result<Outputs> {
    let cfg: Config = case.param("model")?;
    let cam = ClassicCam::from_state_dict(&cfg, case.weights(), DType::F32, &Device::Cpu)?;
    let out = cam.forward(case.input(0)?)?;
    Ok([
        ("cam".to_string(), out.cam),
        ("logits".to_string(), out.logits),
    ]
    .into())
}

pub fn getam(case: &Case) -> Result<Outputs> {
    let vit = case.vit()?;
    let start: usize = case.param("start_layer")?;
    let classes: Vec<usize> = case
        .input(1)?
        .to_vec1::<i64>()?
        .into_iter()
        .map(|c| usize::try_from(c).map_err(|_| anyhow::anyhow!("negative class id {c}")))
        .collect::<Result<_>>()?;
    let image = case.input(0)?;
    // The maps from the batched form; the first class's gradients of every block from the
    // per-class oracle probed from layer 0.
    let out = Getam::new(vit.clone(), start).compute(image, &classes, None)?;
    let oracle = Getam::new(vit, start)
        .with_strategy(GetamStrategy::PerClass)
        .compute(image, &classes, Some(0))?;
    let mut outputs: Outputs = [
        ("getam".to_string(), out.getam),
        ("getam_up".to_string(), out.getam_up),
        ("logits".to_string(), out.logits),
    ]
    .into();
    for (layer, grad) in oracle.first_class_gradients {
        outputs.insert(format!("grad.{layer}"), grad);
    }
    Ok(outputs)
}

pub fn weaktr(case: &Case) -> Result<Outputs> {
    let cfg: Config = case.param("model")?;
    let aaf: AafConfig = case.param("aaf")?;
    let net = WeakTr::from_state_dict(&cfg, aaf, case.weights(), DType::F32, &Device::Cpu)?;
    let out = net.forward(case.input(0)?)?;
    Ok([
        ("cls_logits".to_string(), out.cls_logits),
        ("coarse_logits".to_string(), out.coarse_logits),
        ("fine_logits".to_string(), out.fine_logits),
        ("head_weights".to_string(), out.head_weights),
        ("coarse_cam".to_string(), out.coarse_cam),
        ("fused_cam".to_string(), out.fused_cam),
        ("fine_cam".to_string(), out.fine_cam),
        ("patch_affinity".to_string(), out.patch_affinity),
    ]
    .into())
}

pub fn aream(case: &Case) -> Result<Outputs> {
    let mode: String = case.param("mode")?;
    let mode = match mode.as_str() {
        "U" => AffinityMode::Uniform,
        "E" => AffinityMode::Entropy {
            entropies: case.tensor("ent")?.to_dtype(DType::F64)?.to_vec1::<f64>()?,
        },
        other => anyhow::bail!("unknown AReAM mode `{other}` (expected E or U)"),
    };
    let cfg = AreamConfig {
        num_prefix: case.param("num_prefix")?,
        layer_index: case.param("layer_index")?,
        mode,
        class_gating: case.param("class_gating")?,
    };
    let attn = case.tensor("attn")?;
    let layers = (0..attn.dim(0)?)
        .map(|l| attn.get(l))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let out = aream_cam(case.tensor("feature_map")?, &layers, &cfg)?;
    Ok([
        ("cam_gated".to_string(), out.cam_gated),
        ("cam".to_string(), out.cam),
    ]
    .into())
}
