//! timm-compatible Vision Transformer (ViT/DeiT) in candle, built for weakly supervised
//! semantic segmentation: every method of `wsss` reads the backbone's attention.
//!
//! - [`Config`]: timm's architecture fields and presets (`deit_small_patch16_224`, …),
//!   multiple class tokens (MCTformer/WeakTr), token or average pooling, optional final
//!   norm, two position-embedding resampling rules ([`PosEmbedInterp`]) and a policy for
//!   sides that are not multiples of the patch ([`PatchPolicy`]).
//! - [`Vit::forward_tapped`]: tokens, logits and, on request ([`Taps`]), per-layer
//!   pre-softmax logits, post-softmax attention, attention-branch outputs, tokens after
//!   each block, and [`GradientProbes`] that give `∂score/∂A_l` from one `backward`
//!   (GETAM, arXiv 2112.02841, Eq. 3-4).
//! - [`Vit::class_row_attention_gradients`]: the same attention gradients for K
//!   cotangents at once from a hand-written, activation-only backward ([`backward`]).
//! - [`read_state_dict`] / [`Vit::from_file`]: timm key names from `.safetensors` or
//!   PyTorch `.pth`, with a [`KeyReport`] of missing, unexpected and mis-shaped keys.
//!
//! The ViT itself is Dosovitskiy et al., arXiv 2010.11929; DeiT is Touvron et al., arXiv
//! 2012.12877. LayerNorm uses the biased variance and timm's eps 1e-6; GELU is exact (erf).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use wsss_vit::{init_weights, Config, Strictness, Taps, Vit};
//!
//! let cfg = Config::tiny_test(); // p 8, D 32, 2 blocks, 2 heads, 3 classes
//! let weights = init_weights(&cfg, 0)?; // or wsss_vit::read_state_dict("deit_s.safetensors")
//! let vit = Vit::from_state_dict(&cfg, weights, Strictness::Strict, DType::F32, &Device::Cpu)?;
//! let images = Tensor::randn(0f32, 1.0, (1, 3, 32, 48), &Device::Cpu)?;
//! let out = vit.forward_tapped(&images, Taps::attention())?;
//! assert_eq!(out.grid, (4, 6));
//! assert_eq!(out.attention[1].dims(), &[1, 2, 25, 25]);
//! assert_eq!(out.logits.unwrap().dims(), &[1, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backward;
mod config;
mod error;
pub mod fused;
mod init;
pub mod layers;
mod model;
pub mod pos_embed;
mod probes;
mod weights;

pub use backward::{one_hot, ClassRowGradients};
pub use config::{Config, GlobalPool, PatchPolicy, PosEmbedInterp};
pub use error::{KeyReport, VitError};
pub use init::init_weights;
pub use model::{Taps, Vit, VitOutput};
pub use probes::GradientProbes;
pub use weights::{check_keys, expected_keys, read_state_dict, Strictness, NESTED_STATE_DICT_KEYS};
