//! Transformer-based weakly supervised semantic segmentation on candle.
//!
//! This facade re-exports the `wsss-*` crates under short names; depend on a single crate
//! (`wsss-vit`, `wsss-metrics`, …) when you need only one stage. The `wsss` binary drives
//! every stage from the command line.
//!
//! ```
//! use wsss::vit::Config;
//! assert_eq!(Config::deit_small_patch16_224().embed_dim, 384);
//! ```

pub use wsss_cam as cam;
pub use wsss_core as core;
pub use wsss_data as data;
pub use wsss_metrics as metrics;
pub use wsss_refine as refine;
pub use wsss_vit as vit;

pub mod report;
pub mod shard;
pub mod train;
pub mod weights;
