//! Light decoders over ViT tokens, for GETAM end-to-end training and DFR's scribble
//! training (GETAM's paper uses DPT; on the CPU scenes set a light head is enough).
//!
//! - [`LinearDecoder`]: Segmenter's `DecoderLinear` (arXiv 2105.05633, Sec. 3.2, "linear
//!   baseline"): one Linear from the final patch tokens to K logits per patch (key `head`).
//! - [`MlpFusionDecoder`]: a multi-level all-MLP head in the manner of SegFormer (Xie et
//!   al., arXiv 2105.15203, Sec. 3.2), adapted to a plain ViT whose levels share one
//!   stride: the tokens after `levels` blocks are each LayerNorm-ed and projected to
//!   `embed_dim` (`linear_c.{i}`), concatenated, fused by a Linear + GELU (`linear_fuse`),
//!   and classified per patch (`linear_pred`). Shallow levels carry the detail that the
//!   last block's tokens (tuned for classification) lose.

use candle_core::{bail, Module, Result, Tensor};
use candle_nn::VarBuilder;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use wsss_vit::layers::{linear, LayerNorm, Linear};

use crate::block::dropout;
use crate::params::{linear_params, norm_params, Param};
use crate::HeadDims;

/// [`LinearDecoder`] settings (none besides the dims; kept for the config enum).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearDecoderConfig {}

impl LinearDecoderConfig {
    /// `head.weight` [K, D], `head.bias` [K].
    pub fn params(&self, dims: HeadDims) -> Vec<Param> {
        let mut out = Vec::new();
        linear_params(&mut out, "head", dims.encoder_dim, dims.num_classes);
        out
    }
}

/// Segmenter's linear decoder.
#[derive(Debug, Clone)]
pub struct LinearDecoder {
    head: Linear,
}

impl LinearDecoder {
    /// Builds the decoder from `vb`.
    pub fn new(_cfg: &LinearDecoderConfig, dims: HeadDims, vb: VarBuilder<'_>) -> Result<Self> {
        if dims.num_classes == 0 || dims.encoder_dim == 0 {
            bail!("linear decoder: empty dims {dims:?}");
        }
        Ok(Self {
            head: linear(dims.encoder_dim, dims.num_classes, true, vb.pp("head"))?,
        })
    }

    /// # Shapes
    /// - `patches`: [B, gh·gw, D]; returns [B, K, gh, gw] logits.
    ///
    /// Cost: O(B·gh·gw·D·K).
    pub fn forward(&self, patches: &Tensor, (gh, gw): (usize, usize)) -> Result<Tensor> {
        let (b, n, _) = patches.dims3()?;
        if n != gh * gw {
            bail!("linear decoder: {n} patch tokens for a {gh}x{gw} grid");
        }
        let k = self.head.weight().dim(0)?;
        self.head
            .forward(patches)?
            .transpose(1, 2)?
            .reshape((b, k, gh, gw))
    }
}

fn default_embed() -> usize {
    128
}
fn default_dropout() -> f32 {
    0.1
}

/// [`MlpFusionDecoder`] settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpFusionConfig {
    /// Blocks whose output tokens are fused (0-based); `None`: four evenly spaced levels
    /// ending with the last block, as DPT's hooks (`[2, 5, 8, 11]` for depth 12).
    #[serde(default)]
    pub levels: Option<Vec<usize>>,
    /// Width of every projected level and of the fused features (128).
    #[serde(default = "default_embed")]
    pub embed_dim: usize,
    /// Dropout before the classifier (0.1, as SegFormer).
    #[serde(default = "default_dropout")]
    pub dropout: f32,
}

impl Default for MlpFusionConfig {
    fn default() -> Self {
        Self {
            levels: None,
            embed_dim: default_embed(),
            dropout: default_dropout(),
        }
    }
}

impl MlpFusionConfig {
    /// The fused blocks for a backbone of `depth` blocks.
    pub fn resolved_levels(&self, depth: usize) -> Vec<usize> {
        match &self.levels {
            Some(l) => l.clone(),
            None => {
                let mut l: Vec<usize> = (1..=4).map(|i| (i * depth / 4).max(1) - 1).collect();
                l.dedup();
                l
            }
        }
    }

    /// Per level `linear_c.{i}.norm`, `linear_c.{i}.proj`; `linear_fuse`, `linear_pred`.
    pub fn params(&self, dims: HeadDims, depth: usize) -> Vec<Param> {
        let e = self.embed_dim;
        let levels = self.resolved_levels(depth);
        let mut out = Vec::new();
        for i in 0..levels.len() {
            norm_params(&mut out, &format!("linear_c.{i}.norm"), dims.encoder_dim);
            linear_params(&mut out, &format!("linear_c.{i}.proj"), dims.encoder_dim, e);
        }
        linear_params(&mut out, "linear_fuse", levels.len() * e, e);
        linear_params(&mut out, "linear_pred", e, dims.num_classes);
        out
    }
}

/// Multi-level all-MLP decoder. See the module docs.
#[derive(Debug, Clone)]
pub struct MlpFusionDecoder {
    levels: Vec<usize>,
    norms: Vec<LayerNorm>,
    projs: Vec<Linear>,
    fuse: Linear,
    pred: Linear,
    dropout: f32,
    num_classes: usize,
}

impl MlpFusionDecoder {
    /// Builds the decoder for a backbone of `depth` blocks.
    pub fn new(
        cfg: &MlpFusionConfig,
        dims: HeadDims,
        depth: usize,
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        let levels = cfg.resolved_levels(depth);
        if levels.is_empty() || levels.iter().any(|&l| l >= depth) {
            bail!("mlp fusion decoder: levels {levels:?} must be non-empty blocks of 0..{depth}");
        }
        if cfg.embed_dim == 0 || dims.num_classes == 0 || !(0.0..1.0).contains(&cfg.dropout) {
            bail!(
                "mlp fusion decoder: embed_dim {} must be positive and dropout {} in [0, 1)",
                cfg.embed_dim,
                cfg.dropout
            );
        }
        let (d, e) = (dims.encoder_dim, cfg.embed_dim);
        let mut norms = Vec::new();
        let mut projs = Vec::new();
        for i in 0..levels.len() {
            norms.push(LayerNorm::new(
                d,
                1e-6,
                vb.pp(format!("linear_c.{i}.norm")),
            )?);
            projs.push(linear(d, e, true, vb.pp(format!("linear_c.{i}.proj")))?);
        }
        Ok(Self {
            fuse: linear(levels.len() * e, e, true, vb.pp("linear_fuse"))?,
            pred: linear(e, dims.num_classes, true, vb.pp("linear_pred"))?,
            levels,
            norms,
            projs,
            dropout: cfg.dropout,
            num_classes: dims.num_classes,
        })
    }

    /// The blocks whose tokens [`MlpFusionDecoder::forward`] needs.
    pub fn levels(&self) -> &[usize] {
        &self.levels
    }

    /// # Shapes
    /// - `block_tokens`: the ViT's tokens after every block, [B, T + gh·gw, D] each
    ///   (`Taps { block_tokens: true, .. }`); `prefix` = T class tokens to drop.
    /// - returns [B, K, gh, gw] logits.
    ///
    /// Cost: O(B·gh·gw·(L_f·D·E + L_f·E² + E·K)) for L_f levels of width E.
    pub fn forward(
        &self,
        block_tokens: &[Tensor],
        prefix: usize,
        (gh, gw): (usize, usize),
        rng: Option<&mut dyn RngCore>,
    ) -> Result<Tensor> {
        let mut parts = Vec::with_capacity(self.levels.len());
        for (i, &l) in self.levels.iter().enumerate() {
            let Some(t) = block_tokens.get(l) else {
                bail!(
                    "mlp fusion decoder: level {l} asked, {} block outputs given",
                    block_tokens.len()
                );
            };
            let n = t.dim(1)?;
            if n != prefix + gh * gw {
                bail!("mlp fusion decoder: {n} tokens for {prefix} + {gh}x{gw}");
            }
            let x = t.narrow(1, prefix, gh * gw)?;
            parts.push(self.projs[i].forward(&self.norms[i].forward(&x)?)?);
        }
        let b = parts[0].dim(0)?;
        let x = self.fuse.forward(&Tensor::cat(&parts, 2)?)?.gelu_erf()?;
        let x = dropout(&x, self.dropout, rng)?;
        self.pred
            .forward(&x)?
            .transpose(1, 2)?
            .reshape((b, self.num_classes, gh, gw))
    }
}
