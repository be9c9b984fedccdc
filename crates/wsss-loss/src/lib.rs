//! Losses for weakly supervised segmentation training.
//!
//! - [`dense_crf`]: the dense CRF loss of Tang et al. (ECCV 2018, arXiv 1803.10464) and the
//!   gated "energy" variant of RRM/AFA, on the permutohedral lattice with an explicit
//!   backward.
//! - [`gated_crf`]: the gated CRF loss of Obukhov et al. (arXiv 1906.04651), including the
//!   deep-feature kernel of DFR (arXiv 2108.01296), with an explicit backward.

pub mod dense_crf;
pub mod gated_crf;
