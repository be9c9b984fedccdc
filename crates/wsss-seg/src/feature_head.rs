//! DFR's feature consistency head (Zhang et al., "Dynamic Feature Regularized Loss for
//! Weakly Supervised Semantic Segmentation", arXiv 2108.01296): a small projection head on
//! the backbone's patch tokens that produces the deep features F used (detached) by the
//! regulariser's kernel and trained by the feature-consistency loss on scribbled pixels.
//!
//! The paper gives no code; ours is a two-layer MLP `fc2(GELU(fc1(LN(x))))` per patch
//! (a SimCLR-style projection head), optionally L2-normalised so that the kernel's
//! `‖ΔF‖² = 2 − 2·cos` lives on a fixed scale and σ_F means the same for every backbone.

use candle_core::{bail, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use wsss_vit::layers::{linear, LayerNorm, Linear};

use crate::mask_transformer::l2_normalise;
use crate::params::{linear_params, norm_params, Param};

fn default_hidden() -> usize {
    128
}
fn default_dims() -> usize {
    32
}
fn default_true() -> bool {
    true
}

/// Head settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureHeadConfig {
    /// Hidden width (128).
    #[serde(default = "default_hidden")]
    pub hidden_dim: usize,
    /// Output channels of F (32).
    #[serde(default = "default_dims")]
    pub feature_dim: usize,
    /// L2-normalise F per pixel (true).
    #[serde(default = "default_true")]
    pub normalize: bool,
}

impl Default for FeatureHeadConfig {
    fn default() -> Self {
        Self {
            hidden_dim: default_hidden(),
            feature_dim: default_dims(),
            normalize: true,
        }
    }
}

impl FeatureHeadConfig {
    /// `norm`, `fc1`, `fc2` for an encoder of width `encoder_dim`.
    pub fn params(&self, encoder_dim: usize) -> Vec<Param> {
        let mut out = Vec::new();
        norm_params(&mut out, "norm", encoder_dim);
        linear_params(&mut out, "fc1", encoder_dim, self.hidden_dim);
        linear_params(&mut out, "fc2", self.hidden_dim, self.feature_dim);
        out
    }
}

/// The feature consistency head.
#[derive(Debug, Clone)]
pub struct FeatureHead {
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    cfg: FeatureHeadConfig,
}

impl FeatureHead {
    /// Builds the head from `vb`.
    pub fn new(cfg: &FeatureHeadConfig, encoder_dim: usize, vb: VarBuilder<'_>) -> Result<Self> {
        if cfg.hidden_dim == 0 || cfg.feature_dim == 0 || encoder_dim == 0 {
            bail!("feature head: widths must be positive, got {cfg:?} on width {encoder_dim}");
        }
        Ok(Self {
            norm: LayerNorm::new(encoder_dim, 1e-6, vb.pp("norm"))?,
            fc1: linear(encoder_dim, cfg.hidden_dim, true, vb.pp("fc1"))?,
            fc2: linear(cfg.hidden_dim, cfg.feature_dim, true, vb.pp("fc2"))?,
            cfg: cfg.clone(),
        })
    }

    /// Deep features on the token grid.
    ///
    /// # Shapes
    /// - `patches`: [B, gh·gw, D]; returns F [B, C_F, gh, gw] (unit norm per pixel when
    ///   `normalize`).
    ///
    /// Cost: O(B·gh·gw·(D·H + H·C_F)).
    pub fn forward(&self, patches: &Tensor, (gh, gw): (usize, usize)) -> Result<Tensor> {
        let (b, n, _) = patches.dims3()?;
        if n != gh * gw {
            bail!("feature head: {n} patch tokens for a {gh}x{gw} grid");
        }
        let x = self.fc1.forward(&self.norm.forward(patches)?)?.gelu_erf()?;
        let mut f = self.fc2.forward(&x)?;
        if self.cfg.normalize {
            f = l2_normalise(&f)?;
        }
        f.transpose(1, 2)?
            .reshape((b, self.cfg.feature_dim, gh, gw))
    }
}
