//! Adapters of the `loss.*` and `aream.*` ops (wsss-loss).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};
use wsss_loss::aream::{
    affinity_target as target_of, reactivation_loss, LayerWeighting, ReactivationConfig,
};
use wsss_loss::gradient_clipping::{gradient_clipping as clip, GradientClippingConfig};

use super::{Case, Outputs};

pub fn gradient_clipping(case: &Case) -> Result<Outputs> {
    let defaults = GradientClippingConfig::weaktr();
    let cfg = GradientClippingConfig {
        start_value: case.param_or("start_value", defaults.start_value)?,
        patch_size: case.param_or("patch_size", defaults.patch_size)?,
    };
    let var = Var::from_tensor(&case.tensor("loss_map")?.to_dtype(DType::F32)?)?;
    let out = clip(var.as_tensor(), &cfg)?;
    let loss = out.mean()?;
    let grads = loss.backward()?;
    let grad = grads
        .get(var.as_tensor())
        .context("autograd produced no gradient for the loss map")?
        .clone();
    let mut outputs: Outputs = [
        ("clipped".to_string(), out.loss_map.detach()),
        ("loss".to_string(), loss.reshape(1)?),
        ("zero_grad_mask".to_string(), out.clipped),
        ("grad".to_string(), grad),
    ]
    .into();
    if let Some(cap) = out.cap {
        outputs.insert("cap".to_string(), cap);
    }
    Ok(outputs)
}

fn ignore_index(case: &Case) -> Result<u8> {
    let v: u64 = case.param_or("ignore_index", 255)?;
    u8::try_from(v).context("ignore_index must fit in a u8")
}

pub fn affinity_target(case: &Case) -> Result<Outputs> {
    let grid: Option<[usize; 2]> = case.param_or("downsample_to", None)?;
    let target = target_of(
        case.tensor("label")?,
        grid.map(|[h, w]| (h, w)),
        ignore_index(case)?,
    )?;
    Ok([("target".to_string(), target)].into())
}

pub fn aream_loss(case: &Case) -> Result<Outputs> {
    let mode: String = case.param("mode")?;
    let weighting = match mode.as_str() {
        "U" => LayerWeighting::Uniform,
        "E" => LayerWeighting::Entropy(
            case.tensor("weights")?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        ),
        other => bail!("unknown AReAM mode `{other}` (expected E or U)"),
    };
    let cfg = ReactivationConfig {
        num_prefix: case.param("num_prefix")?,
        weighting,
    };
    let target = target_of(case.tensor("label")?, None, ignore_index(case)?)?;
    let var = Var::from_tensor(&case.tensor("attn_logits")?.to_dtype(DType::F32)?)?;
    let layers = (0..var.dim(0)?)
        .map(|l| var.as_tensor().get(l))
        .collect::<candle_core::Result<Vec<Tensor>>>()?;
    let out = reactivation_loss(&layers, &target, &cfg)?;
    let grads = out.loss.backward()?;
    let grad = grads
        .get(var.as_tensor())
        .context("autograd produced no gradient for the attention logits")?
        .clone();
    Ok([
        ("target".to_string(), target),
        ("per_layer_loss".to_string(), out.per_layer.detach()),
        ("loss".to_string(), out.loss.reshape(1)?),
        ("grad_attn_logits".to_string(), grad),
    ]
    .into())
}
