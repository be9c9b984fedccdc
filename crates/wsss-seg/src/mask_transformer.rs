//! Segmenter's mask-transformer decoder (Strudel, Garcia, Laptev, Schmid, "Segmenter:
//! Transformer for Semantic Segmentation", arXiv 2105.05633, Sec. 3.2), as WeakTr's stage 2
//! uses it (Zhu et al., arXiv 2304.01184, Sec. 3.3; `OnlineRetraining/segm/model/decoder.py:
//! MaskTransformer`).
//!
//! Patch tokens are projected to the decoder width (`proj_dec`), K learned class embeddings
//! (`cls_emb`) are appended, both go through `layers` transformer blocks and `decoder_norm`;
//! patches and classes are projected (`proj_patch`, `proj_classes`, plain matrices),
//! L2-normalised, and the masks are their scalar products `m = p̂ · ĉᵀ` ∈ [−1, 1], followed
//! by a LayerNorm over the K classes (`mask_norm`). Keys, init (Linear trunc-normal 0.02,
//! `cls_emb` trunc-normal 0.02, the projections `d^−½·randn`) and the WeakTr defaults (2
//! layers, width = encoder width, heads = width/64, feed-forward 4·width, dropout 0.1, no
//! drop path, LayerNorm eps 1e-5) follow the official code.

use candle_core::{bail, Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use wsss_vit::layers::{linear, LayerNorm, Linear};

use crate::block::{block_params, reborrow, Block, BlockDims};
use crate::params::{linear_params, norm_params, Init, Param};
use crate::HeadDims;

fn default_layers() -> usize {
    2
}
fn default_dropout() -> f32 {
    0.1
}
fn default_eps() -> f64 {
    1e-5
}

/// Decoder hyperparameters (the encoder width and the class count come from [`HeadDims`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskTransformerConfig {
    /// Transformer blocks (2).
    #[serde(default = "default_layers")]
    pub layers: usize,
    /// Decoder width; `None`: the encoder width (WeakTr).
    #[serde(default)]
    pub model_dim: Option<usize>,
    /// Attention heads; `None`: width / 64 (at least 1; WeakTr).
    #[serde(default)]
    pub heads: Option<usize>,
    /// Feed-forward width; `None`: 4 · width.
    #[serde(default)]
    pub ff_dim: Option<usize>,
    /// Dropout on attention, projections and feed-forward (0.1).
    #[serde(default = "default_dropout")]
    pub dropout: f32,
    /// Largest stochastic-depth rate, linear over the blocks (0).
    #[serde(default)]
    pub drop_path_rate: f32,
    /// LayerNorm eps (PyTorch's 1e-5).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

impl Default for MaskTransformerConfig {
    fn default() -> Self {
        Self::weaktr()
    }
}

impl MaskTransformerConfig {
    /// WeakTr stage 2 (`config.yml: decoder.mask_transformer`): 2 layers, dropout 0.1.
    pub fn weaktr() -> Self {
        Self {
            layers: default_layers(),
            model_dim: None,
            heads: None,
            ff_dim: None,
            dropout: default_dropout(),
            drop_path_rate: 0.0,
            layer_norm_eps: default_eps(),
        }
    }

    /// (width, heads, feed-forward width) for an encoder of width `encoder_dim`.
    pub fn resolved(&self, encoder_dim: usize) -> (usize, usize, usize) {
        let d = self.model_dim.unwrap_or(encoder_dim);
        let h = self.heads.unwrap_or((d / 64).max(1));
        (d, h, self.ff_dim.unwrap_or(4 * d))
    }

    fn validate(&self, dims: HeadDims) -> Result<()> {
        let (d, h, f) = self.resolved(dims.encoder_dim);
        if self.layers == 0 || d == 0 || f == 0 || h == 0 || d % h != 0 {
            bail!(
                "mask transformer: need layers ≥ 1 and a width divisible by the heads, got \
                 {} layers, width {d}, {h} heads, feed-forward {f}",
                self.layers
            );
        }
        if !(0.0..1.0).contains(&self.dropout) || !(0.0..1.0).contains(&self.drop_path_rate) {
            bail!(
                "mask transformer: dropout and drop_path_rate must be in [0, 1), got {} and {}",
                self.dropout,
                self.drop_path_rate
            );
        }
        if dims.num_classes == 0 || dims.encoder_dim == 0 {
            bail!("mask transformer: empty dims {dims:?}");
        }
        Ok(())
    }

    fn block_dims(&self, dims: HeadDims, i: usize) -> BlockDims {
        let (d, h, f) = self.resolved(dims.encoder_dim);
        let dp = if self.layers > 1 {
            self.drop_path_rate * i as f32 / (self.layers - 1) as f32
        } else {
            0.0
        };
        BlockDims {
            dim: d,
            heads: h,
            ff: f,
            eps: self.layer_norm_eps,
            dropout: self.dropout,
            drop_path: dp,
        }
    }

    /// The parameters with official key names (without the `decoder.` prefix).
    pub fn params(&self, dims: HeadDims) -> Vec<Param> {
        let (d, _, _) = self.resolved(dims.encoder_dim);
        let k = dims.num_classes;
        let mut out = Vec::new();
        for i in 0..self.layers {
            block_params(&mut out, &format!("blocks.{i}"), &self.block_dims(dims, i));
        }
        out.push(Param::new("cls_emb", &[1, k, d], Init::TruncNormal(0.02)));
        linear_params(&mut out, "proj_dec", dims.encoder_dim, d);
        let scale = (d as f32).powf(-0.5);
        out.push(Param::new("proj_patch", &[d, d], Init::Normal(scale)));
        out.push(Param::new("proj_classes", &[d, d], Init::Normal(scale)));
        norm_params(&mut out, "decoder_norm", d);
        norm_params(&mut out, "mask_norm", k);
        out
    }
}

/// The mask-transformer decoder. See the module docs.
#[derive(Debug, Clone)]
pub struct MaskTransformer {
    blocks: Vec<Block>,
    cls_emb: Tensor,
    proj_dec: Linear,
    proj_patch: Tensor,
    proj_classes: Tensor,
    decoder_norm: LayerNorm,
    mask_norm: LayerNorm,
    num_classes: usize,
}

impl MaskTransformer {
    /// Builds the decoder from `vb` (keys of [`MaskTransformerConfig::params`]).
    pub fn new(cfg: &MaskTransformerConfig, dims: HeadDims, vb: VarBuilder<'_>) -> Result<Self> {
        cfg.validate(dims)?;
        let (d, _, _) = cfg.resolved(dims.encoder_dim);
        let k = dims.num_classes;
        let blocks = (0..cfg.layers)
            .map(|i| Block::new(cfg.block_dims(dims, i), vb.pp(format!("blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            blocks,
            cls_emb: vb.get((1, k, d), "cls_emb")?,
            proj_dec: linear(dims.encoder_dim, d, true, vb.pp("proj_dec"))?,
            proj_patch: vb.get((d, d), "proj_patch")?,
            proj_classes: vb.get((d, d), "proj_classes")?,
            decoder_norm: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("decoder_norm"))?,
            mask_norm: LayerNorm::new(k, cfg.layer_norm_eps, vb.pp("mask_norm"))?,
            num_classes: k,
        })
    }

    /// Masks on the token grid from the encoder's patch tokens (class tokens removed).
    /// Dropout and drop path are active only when `rng` is given (training).
    ///
    /// # Shapes
    /// - `patches`: [B, gh·gw, D_enc]; `grid` = (gh, gw).
    /// - returns [B, K, gh, gw] mask logits (after `mask_norm`).
    ///
    /// Cost: O(L·B·(N·d² + N²·d)) with N = gh·gw + K, plus O(B·gh·gw·K·d); memory
    /// O(B·h·N²) per block for the attention.
    pub fn forward(
        &self,
        patches: &Tensor,
        grid: (usize, usize),
        mut rng: Option<&mut dyn RngCore>,
    ) -> Result<Tensor> {
        let (b, n, _) = patches.dims3()?;
        let (gh, gw) = grid;
        if n != gh * gw {
            bail!("mask transformer: {n} patch tokens for a {gh}x{gw} grid");
        }
        let k = self.num_classes;
        let xs = self.proj_dec.forward(patches)?;
        let d = xs.dim(2)?;
        let cls = self.cls_emb.broadcast_as((b, k, d))?;
        let mut xs = Tensor::cat(&[&xs, &cls], 1)?;
        for block in &self.blocks {
            xs = block.forward(&xs, reborrow(&mut rng))?;
        }
        let xs = self.decoder_norm.forward(&xs)?;
        let p = xs.narrow(1, 0, n)?.broadcast_matmul(&self.proj_patch)?;
        let c = xs.narrow(1, n, k)?.broadcast_matmul(&self.proj_classes)?;
        let p = l2_normalise(&p)?;
        let c = l2_normalise(&c)?;
        let masks = p.matmul(&c.t()?)?; // [B, n, K]
        let masks = self.mask_norm.forward(&masks)?;
        masks.transpose(1, 2)?.reshape((b, k, gh, gw))
    }
}

/// `x / ‖x‖₂` over the last axis (no epsilon, as the official code).
pub(crate) fn l2_normalise(xs: &Tensor) -> Result<Tensor> {
    xs.broadcast_div(&xs.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}
