//! CAM → pseudo labels: the refinement stage of weakly supervised semantic segmentation.
//!
//! One file per method, each a free function with a `…Config` struct and presets named
//! after the paper that uses them:
//!
//! - [`threshold`]: background as a constant score ([`threshold::cam_to_label`]) and the
//!   two-threshold reliable label with an ignore band ([`threshold::reliable_label`]), as in
//!   AFA (Ru et al., CVPR 2022, arXiv 2203.02664) and ToCo (Ru et al., CVPR 2023,
//!   arXiv 2303.02506).
//! - [`par`]: PAR, the pixel-adaptive refinement of AFA/ToCo/DuPL/AReAM, streamed over the
//!   48 neighbours without materialising the `(K, 48, H, W)` unfold.
//! - [`pamr`]: PAMR (Araslanov & Roth, CVPR 2020, arXiv 2005.08104) as GETAM uses it.
//! - [`completion`]: GETAM's activation-aware label completion (Sun et al., arXiv
//!   2112.02841) with an external saliency map or saliency-free, plus the opening.
//! - [`random_walk`]: the affinity random walk of AffinityNet/PSA (Ahn & Kwak, CVPR 2018,
//!   arXiv 1803.10464).
//! - [`pipeline`]: [`pipeline::RefineConfig`], a TOML-described chain of the above (PAR then
//!   reliable thresholds, PAMR then completion, CRF after a threshold, …).
//! - [`dense_crf`]: fully connected CRF mean-field inference (Krähenbühl & Koltun, NIPS 2011,
//!   arXiv 1210.5644) with Gaussian and bilateral kernels on the permutohedral lattice,
//!   softmax and label unaries, pure Rust.
//!
//! Label maps are `u8`: 0 background, `c + 1` for foreground class `c`, and
//! [`wsss_core::IGNORE`] (255) for "no label". Pixel kernels run on plain `&[f32]` slices
//! (with rayon over rows); the `Tensor` functions are thin wrappers that run them on the CPU.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use wsss_refine::threshold::{cam_to_label, reliable_label, ReliableConfig, ThresholdConfig};
//! // Two classes (3 and 7) on a 1x4 image.
//! let cams = Tensor::new(&[[[0.9f32, 0.1, 0.5, 0.0]], [[0.2, 0.8, 0.6, 0.0]]], &Device::Cpu)?;
//! let label = cam_to_label(&cams, &[3, 7], &ThresholdConfig::afa())?;
//! assert_eq!(label.flatten_all()?.to_vec1::<u8>()?, vec![4, 8, 8, 0]);
//! let reliable = reliable_label(&cams, &[3, 7], &ReliableConfig::toco())?;
//! assert_eq!(reliable.flatten_all()?.to_vec1::<u8>()?, vec![4, 8, 255, 0]);
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod completion;
pub mod dense_crf;
pub mod pamr;
pub mod par;
pub mod pipeline;
pub mod random_walk;
pub mod threshold;

mod neighbours;
mod util;

pub use threshold::{cam_to_label, reliable_label};
