//! Vocabulary shared by two or more `wsss` crates.
//!
//! - [`resize`]: bilinear and bicubic resizing with exactly PyTorch's
//!   `F.interpolate(..., size=..., align_corners=...)` semantics (no antialias), built as two
//!   separable interpolation matrices so that it runs on any candle device and is
//!   differentiable by candle's autograd.
//! - [`IGNORE`]: the label value that means "no label" in masks, scribbles and pseudo labels.
//! - [`device`]: choosing a candle device from a user string.
//! - [`fastmath`]: a vectorisable `exp` for pixel kernels.
//! - [`malloc`] and [`threads`]: process settings that keep CPU kernels fast (freed memory
//!   kept for reuse; candle's idle worker threads asleep instead of spinning).
//! - [`permutohedral`]: the permutohedral lattice (Adams et al. 2010) for fast
//!   high-dimensional Gaussian filtering, shared by dense CRF inference and the dense CRF loss.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use wsss_core::resize::{resize, AlignCorners, ResizeMode};
//! let x = Tensor::arange(0f32, 4.0, &Device::Cpu)?.reshape((1, 1, 2, 2))?;
//! let y = resize(&x, (3, 3), ResizeMode::Bilinear, AlignCorners::Yes)?;
//! assert_eq!(y.dims(), &[1, 1, 3, 3]);
//! assert_eq!(y.flatten_all()?.to_vec1::<f32>()?[4], 1.5);
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod device;
pub mod fastmath;
pub mod malloc;
pub mod permutohedral;
pub mod random;
pub mod resize;
pub mod threads;

/// Label value for pixels without a label (VOC borders, unscribbled pixels, unreliable
/// pseudo labels). Losses and metrics skip it.
pub const IGNORE: u8 = 255;
