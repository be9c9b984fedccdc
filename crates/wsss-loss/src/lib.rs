//! Losses for weakly supervised semantic segmentation, all differentiable through candle's
//! autograd (built from ops that record a backward: no `softmax_last_dim`, no fused
//! sigmoid).
//!
//! - [`classification`]: the multilabel soft margin loss of image-level training.
//! - [`segmentation`]: cross-entropy with 255 ignored, the background/foreground balanced
//!   form of ToCo (arXiv 2303.02506, Sec. 3.4) and the partial CE on scribbled pixels
//!   (ScribbleSup/Tang et al., arXiv 1804.01346, Eq. 1).
//! - [`affinity`]: the pairwise affinity target of a label map and AFA's affinity loss
//!   (Ru et al., arXiv 2203.02664, Eq. 6).
//! - [`gradient_clipping`]: WeakTr's gradient-clipping decoder loss (Zhu et al.,
//!   arXiv 2304.01184, Sec. 3.3).
//! - [`aream`]: AReAM's re-activation loss on deep-layer attention (He et al.,
//!   arXiv 2305.03112, Eqs. 7–9).
//! - [`dense_crf`]: the dense CRF loss of Tang et al. (ECCV 2018, arXiv 1803.10464) and the
//!   gated "energy" variant of RRM/AFA, on the permutohedral lattice with an explicit
//!   backward.
//! - [`gated_crf`]: the gated CRF loss of Obukhov et al. (arXiv 1906.04651), including the
//!   deep-feature kernel of DFR (arXiv 2108.01296), with an explicit backward.
//! - [`dfr`]: DFR's dynamic regulariser (shallow RGB/xy + detached deep features), in the
//!   gated form or the dense lattice form with a low-dimensional projection of F.
//! - [`feature_consistency`]: DFR's feature-consistency loss on scribbled pixel pairs.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use wsss_loss::classification::multilabel_soft_margin;
//! let logits = Tensor::new(&[[0f32, 0.0]], &Device::Cpu)?;
//! let targets = Tensor::new(&[[1f32, 0.0]], &Device::Cpu)?;
//! let loss = multilabel_soft_margin(&logits, &targets)?.to_scalar::<f32>()?;
//! assert!((loss - std::f32::consts::LN_2).abs() < 1e-6);
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod affinity;
pub mod aream;
pub mod classification;
pub mod dense_crf;
pub mod dfr;
pub mod feature_consistency;
pub mod gated_crf;
pub mod gradient_clipping;
pub mod segmentation;
#[cfg(test)]
mod test_support;

pub(crate) mod ops;

#[cfg(test)]
pub(crate) mod finite_difference;
