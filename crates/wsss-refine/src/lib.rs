//! Turning CAMs into pseudo labels.
//!
//! - [`dense_crf`]: fully connected CRF mean-field inference (Krähenbühl & Koltun, NIPS 2011,
//!   arXiv 1210.5644) with Gaussian and bilateral kernels on the permutohedral lattice,
//!   softmax and label unaries, pure Rust.
//!
//! ```
//! use wsss_refine::dense_crf::{dense_crf, unary_from_softmax, DenseCrfConfig};
//! // A 2x2 RGB image and two-class probabilities (class planes, K x H x W).
//! let image = [0u8, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255];
//! let prob = [0.9f32, 0.6, 0.2, 0.1, 0.1, 0.4, 0.8, 0.9];
//! let unary = unary_from_softmax(&prob, 1e-5);
//! let q = dense_crf(&image, 2, 2, &unary, 2, &DenseCrfConfig::weaktr())?;
//! assert!((q[0] + q[4] - 1.0).abs() < 1e-5);
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod dense_crf;
