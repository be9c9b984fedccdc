//! AReAM's re-activation loss (He et al., "Mitigating Undisciplined Over-Smoothing in
//! Transformer for Weakly Supervised Semantic Segmentation", arXiv 2305.03112, Sec. 3.3,
//! Eqs. 7–9; code Jessie459/AReAM `main_voc_mctformer.py`, `losses.py::get_aff_loss`).
//!
//! The deep layers' head-averaged **pre-softmax** attention logits, through a sigmoid, are
//! pushed towards the pairwise affinity of a reliable pseudo label ([`affinity_target`]),
//! with AFA's balanced affinity loss ([`crate::affinity::affinity_loss`]) per layer; the
//! layer losses are averaged, optionally weighted by the layers' attention entropy.

use candle_core::{bail, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::affinity::affinity_loss;
pub use crate::affinity::affinity_target;
use crate::ops::sigmoid;

/// How the per-layer losses are combined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerWeighting {
    /// Mode `U`: `mean_l L_l`.
    Uniform,
    /// Mode `E`: `mean_l ẽ_l · L_l` with the entropy weights `ẽ_l` of the deep layers
    /// (min–max normalised over all layers, from `wsss aream entropy`). Not renormalised.
    Entropy(Vec<f32>),
}

/// AReAM re-activation hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReactivationConfig {
    /// Number of prefix (class) tokens dropped before the patch–patch block: C for
    /// MCTformer, 1 for a single class token.
    pub num_prefix: usize,
    /// Combination of the layer losses.
    pub weighting: LayerWeighting,
}

impl ReactivationConfig {
    /// AReAM on MCTformer-V2 with `classes` class tokens, uniform (U) weighting.
    pub fn aream_mctformer(classes: usize) -> Self {
        Self {
            num_prefix: classes,
            weighting: LayerWeighting::Uniform,
        }
    }
}

/// The re-activation loss and its per-layer terms.
#[derive(Debug, Clone)]
pub struct Reactivation {
    /// The aggregated loss (before AReAM's loss weight 0.1), a scalar.
    pub loss: Tensor,
    /// `L_l` of every deep layer, `[Ld]`.
    pub per_layer: Tensor,
}

/// AReAM re-activation loss (arXiv 2305.03112, Eqs. 7–9).
///
/// For every deep layer: `Ŝ_l = sigmoid(mean_heads Z_l)[:, T:, T:]`, `L_l` = AFA's affinity
/// loss of `Ŝ_l` against `target` (counts over the whole batch, +1 each); the loss is
/// `mean_l w_l L_l` (entropy weights) or `mean_l L_l` (uniform).
///
/// # Shapes
/// - `attn_logits`: `Ld` tensors `[B, h, N, N]` of pre-softmax logits `q·kᵀ/√d`,
///   N = T + P.
/// - `target`: `[B, P, P]` u8 from [`affinity_target`] (0, 1, 255).
/// - returns scalars in [`Reactivation`], differentiable w.r.t. the logits.
///
/// Cost: O(Ld·B·h·N²) time, O(Ld·B·P²) memory for the graph.
pub fn reactivation_loss(
    attn_logits: &[Tensor],
    target: &Tensor,
    cfg: &ReactivationConfig,
) -> Result<Reactivation> {
    if attn_logits.is_empty() {
        bail!("the re-activation loss needs at least one deep layer");
    }
    if let LayerWeighting::Entropy(w) = &cfg.weighting {
        if w.len() != attn_logits.len() {
            bail!(
                "{} entropy weights for {} deep layers",
                w.len(),
                attn_logits.len()
            );
        }
    }
    let Ok((_, p, p2)) = target.dims3() else {
        bail!("affinity target must be [B, P, P], got {:?}", target.dims())
    };
    let t = cfg.num_prefix;
    let mut per_layer = Vec::with_capacity(attn_logits.len());
    for (l, z) in attn_logits.iter().enumerate() {
        let Ok((b, _, n, n2)) = z.dims4() else {
            bail!(
                "attention logits of deep layer {l} must be [B, h, N, N], got {:?}",
                z.dims()
            )
        };
        if n != n2 || n != t + p || p != p2 || b != target.dims()[0] {
            bail!(
                "deep layer {l}: logits {:?} do not match {t} prefix tokens and the target {:?}",
                z.dims(),
                target.dims()
            );
        }
        let mean = z.mean(1)?;
        let s = sigmoid(&mean.narrow(1, t, p)?.narrow(2, t, p)?)?;
        per_layer.push(affinity_loss(&s, target)?);
    }
    let per_layer = Tensor::stack(&per_layer, 0)?;
    let weighted = match &cfg.weighting {
        LayerWeighting::Uniform => per_layer.clone(),
        LayerWeighting::Entropy(w) => {
            let w = Tensor::new(w.as_slice(), per_layer.device())?.to_dtype(per_layer.dtype())?;
            (&per_layer * w)?
        }
    };
    Ok(Reactivation {
        loss: weighted.mean_all()?,
        per_layer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finite_difference::{check, values};
    use candle_core::Device;

    #[test]
    fn gradient_matches_finite_differences() -> Result<()> {
        // 2 layers, B = 1, 2 heads, 1 prefix token, 2x2 grid -> N = 5.
        let label = Tensor::new(&[[[1u8, 0], [1, 255]]], &Device::Cpu)?;
        let target = affinity_target(&label, None, 255)?;
        let x = values(2 * 2 * 25, 17, (-3.0, 3.0));
        let cfg = ReactivationConfig {
            num_prefix: 1,
            weighting: LayerWeighting::Entropy(vec![0.3, 1.0]),
        };
        let worst = check(&x, &[2, 1, 2, 5, 5], |z| {
            let layers = [z.get(0)?, z.get(1)?];
            Ok(reactivation_loss(&layers, &target, &cfg)?.loss)
        })?;
        assert!(worst < 1e-8, "{worst}");
        Ok(())
    }

    #[test]
    fn all_ignored_is_zero() -> Result<()> {
        let label = Tensor::new(&[[[255u8, 255]]], &Device::Cpu)?;
        let target = affinity_target(&label, None, 255)?;
        let z = Tensor::ones((1, 1, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
        let out = reactivation_loss(&[z], &target, &ReactivationConfig::aream_mctformer(1))?;
        assert_eq!(out.loss.to_scalar::<f32>()?, 0.0);
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error() -> Result<()> {
        let label = Tensor::new(&[[[1u8, 0]]], &Device::Cpu)?;
        let target = affinity_target(&label, None, 255)?;
        let z = Tensor::ones((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu)?;
        let cfg = ReactivationConfig::aream_mctformer(1);
        assert!(reactivation_loss(std::slice::from_ref(&z), &target, &cfg).is_err());
        assert!(reactivation_loss(&[], &target, &cfg).is_err());
        let cfg = ReactivationConfig {
            num_prefix: 2,
            weighting: LayerWeighting::Entropy(vec![1.0, 1.0]),
        };
        assert!(reactivation_loss(&[z], &target, &cfg).is_err());
        Ok(())
    }
}
