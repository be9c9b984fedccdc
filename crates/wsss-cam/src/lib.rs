//! Class activation maps (CAMs) from a Vision Transformer, one file per method, each
//! faithful to its authors' code as the golden cases pin it down.
//!
//! - [`classic`]: ToCo-style CAM, a bias-free 1×1 classifier on the final patch tokens
//!   with global max pooling (Ru et al., ToCo, arXiv 2303.02506; Zhou et al., CAM,
//!   arXiv 1512.04150).
//! - [`getam`]: gradient-weighted element-wise transformer attention maps (Sun et al.,
//!   GETAM, arXiv 2112.02841, Eq. 3-5), all K classes from one shared trunk and one
//!   backward.
//! - [`weaktr`]: WeakTr's C-class-token network with a 3×3 patch head and adaptive
//!   attention fusion (Zhu et al., arXiv 2304.01184, Sec. 3.2).
//! - [`aream`]: AReAM's CAM propagated by the entropy-weighted shallow-layer affinity (He et
//!   al., arXiv 2305.03112, Sec. 3.3) on an MCTformer-V2 base (Xu et al., arXiv 2204.02874).
//! - [`rollout`]: attention rollout (Abnar & Zuidema, arXiv 2005.00928), a baseline.
//! - [`config`]: [`CamConfig`], the serde (TOML) description of a generator and its
//!   builder from an official state dict.
//! - [`multiscale`]: [`MultiScale`], a decorator over any [`CamGenerator`] (scales,
//!   horizontal flip, resize, sum, per-class min–max).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use wsss_cam::{CamGenerator, Getam};
//! use wsss_vit::{Config, Vit};
//!
//! let cfg = Config::tiny_test(); // p 8, D 32, 2 blocks, 2 heads, 3 classes
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let getam = Getam::new(Vit::new(&cfg, vb)?, 1);
//! let image = Tensor::randn(0f32, 1.0, (1, 3, 32, 40), &Device::Cpu)?;
//! let cam = getam.generate(&image, &[2, 0])?;
//! assert_eq!(cam.scores.dims(), &[2, 32, 40]);
//! assert_eq!(cam.classes, vec![2, 0]);
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod aream;
pub mod classic;
pub mod config;
pub mod getam;
pub mod multiscale;
pub mod rollout;
pub mod weaktr;

use candle_core::{bail, Device, Result, Tensor, D};

pub use aream::{AffinityMode, AreamCam, AreamConfig, LayerEntropy};
pub use classic::ClassicCam;
pub use config::{CamConfig, CamMethod, ModelSpec, MultiScaleSpec, WeakTrMapKind};
pub use getam::{Getam, GetamStrategy};
pub use multiscale::{FlipMerge, MultiScale, MultiScaleConfig};
pub use rollout::Rollout;
pub use weaktr::{AafConfig, TokenPool, WeakTr, WeakTrMap, WeakTrOutput};

/// The CAMs of one image for K requested classes.
#[derive(Debug, Clone)]
pub struct Cam {
    /// Scores [K, h, w] f32, one map per entry of `classes`, in that order. A generator
    /// returns them at its native resolution (token grid or image) and before any
    /// normalisation; they may be negative where the method applies its ReLU after
    /// upsampling (classic CAM). [`MultiScale`] brings them to the image and to [0, 1].
    pub scores: Tensor,
    /// Class ids (indices into the model's C classes), K entries.
    pub classes: Vec<usize>,
}

impl Cam {
    /// The dense [C, h, w] map with zeros for the classes that were not asked for
    /// ("absent classes zero").
    ///
    /// # Shapes
    /// - returns [C, h, w]; errors when a class id is ≥ `num_classes`.
    pub fn to_dense(&self, num_classes: usize) -> Result<Tensor> {
        let (_, h, w) = self.scores.dims3()?;
        let mut rows = vec![None; num_classes];
        for (k, &c) in self.classes.iter().enumerate() {
            if c >= num_classes {
                bail!("class {c} is out of range for {num_classes} classes");
            }
            rows[c] = Some(self.scores.get(k)?);
        }
        let zeros = Tensor::zeros((h, w), self.scores.dtype(), self.scores.device())?;
        let rows: Vec<Tensor> = rows
            .into_iter()
            .map(|r| r.unwrap_or(zeros.clone()))
            .collect();
        Tensor::stack(&rows, 0)
    }
}

/// A method that turns one image and a list of classes into CAMs.
pub trait CamGenerator {
    /// The CAMs of `classes` for one image.
    ///
    /// # Shapes
    /// - `image`: [1, 3, H, W] f32, normalised as the backbone expects.
    /// - returns a [`Cam`] with scores [K, h, w], K = `classes.len()`.
    fn generate(&self, image: &Tensor, classes: &[usize]) -> Result<Cam>;

    /// Number of classes C the model scores (class ids must be below it).
    fn num_classes(&self) -> usize;
}

/// Checks that `image` is one [1, 3, H, W] image and that every class is in range.
pub(crate) fn check_request(image: &Tensor, classes: &[usize], num_classes: usize) -> Result<()> {
    let dims = image.dims();
    if dims.len() != 4 || dims[0] != 1 || dims[1] != 3 {
        bail!("expected one image [1, 3, H, W], got shape {dims:?}");
    }
    if let Some(c) = classes.iter().find(|&&c| c >= num_classes) {
        bail!("class {c} is out of range: the model has {num_classes} classes");
    }
    Ok(())
}

/// An i64 index tensor of `classes` on `device`.
pub(crate) fn class_index(classes: &[usize], device: &Device) -> Result<Tensor> {
    let ids: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
    Tensor::from_vec(ids, classes.len(), device)
}

/// Divides each map by its maximum plus `eps`: `x / (max x + eps)`.
///
/// # Shapes
/// - `maps`: [K, H, W]; returns [K, H, W]. O(K·H·W) time.
pub fn max_normalise(maps: &Tensor, eps: f64) -> Result<Tensor> {
    let max = maps.max_keepdim(D::Minus1)?.max_keepdim(D::Minus2)?;
    maps.broadcast_div(&(max + eps)?)
}

/// Per-map min–max: `(x − min x) / (max(x − min x) + eps)`.
///
/// # Shapes
/// - `maps`: [K, H, W]; returns [K, H, W] in [0, 1). O(K·H·W) time.
pub fn min_max_normalise(maps: &Tensor, eps: f64) -> Result<Tensor> {
    let min = maps.min_keepdim(D::Minus1)?.min_keepdim(D::Minus2)?;
    let shifted = maps.broadcast_sub(&min)?;
    max_normalise(&shifted, eps)
}

/// The patch tokens [B, P, D] of a ViT output viewed as a feature map [B, D, gh, gw].
pub(crate) fn tokens_to_map(patches: &Tensor, (gh, gw): (usize, usize)) -> Result<Tensor> {
    let (b, p, d) = patches.dims3()?;
    if p != gh * gw {
        bail!("{p} patch tokens do not fill a {gh}x{gw} grid");
    }
    patches.transpose(1, 2)?.reshape((b, d, gh, gw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_fills_absent_classes_with_zeros() -> Result<()> {
        let scores = Tensor::new(&[[[1f32, 2.]], [[3., 4.]]], &Device::Cpu)?;
        let cam = Cam {
            scores,
            classes: vec![2, 0],
        };
        let dense = cam.to_dense(4)?;
        assert_eq!(
            dense.flatten_all()?.to_vec1::<f32>()?,
            vec![3., 4., 0., 0., 1., 2., 0., 0.]
        );
        assert!(cam.to_dense(2).is_err());
        Ok(())
    }

    #[test]
    fn min_max_maps_to_unit_range() -> Result<()> {
        let maps = Tensor::new(&[[[1f32, 3.], [2., 5.]]], &Device::Cpu)?;
        let out = min_max_normalise(&maps, 0.0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(out, vec![0.0, 0.5, 0.25, 1.0]);
        Ok(())
    }
}
