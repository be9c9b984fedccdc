//! Segmenter's transformer block (`segm/model/blocks.py`: pre-norm, `qkv`/`proj` attention,
//! `fc1`/GELU/`fc2` feed-forward), with seeded dropout and drop path for training.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use rand::{Rng, RngCore};
use wsss_vit::layers::{linear, softmax_last_dim, LayerNorm, Linear};

use crate::params::{linear_params, norm_params, Param};

/// Inverted dropout with a mask drawn from `rng` (identity without one or with `p = 0`).
///
/// # Shapes
/// `xs` any shape; returns the same. O(numel).
pub fn dropout(xs: &Tensor, p: f32, rng: Option<&mut dyn RngCore>) -> Result<Tensor> {
    let Some(rng) = rng else {
        return Ok(xs.clone());
    };
    if p <= 0.0 {
        return Ok(xs.clone());
    }
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..xs.elem_count())
        .map(|_| {
            if rng.random::<f32>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
    xs * mask
}

/// Stochastic depth: zeroes whole samples of a residual branch `[B, …]` with probability
/// `p`, scaling the others by 1/(1 − p) (timm `DropPath`).
fn drop_path(xs: &Tensor, p: f32, rng: Option<&mut dyn RngCore>) -> Result<Tensor> {
    let Some(rng) = rng else {
        return Ok(xs.clone());
    };
    if p <= 0.0 {
        return Ok(xs.clone());
    }
    let b = xs.dim(0)?;
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..b)
        .map(|_| {
            if rng.random::<f32>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect();
    let mut shape = vec![1usize; xs.rank()];
    shape[0] = b;
    let mask = Tensor::from_vec(mask, shape, xs.device())?.to_dtype(xs.dtype())?;
    xs.broadcast_mul(&mask)
}

/// Hyperparameters of one block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BlockDims {
    pub dim: usize,
    pub heads: usize,
    pub ff: usize,
    pub eps: f64,
    pub dropout: f32,
    pub drop_path: f32,
}

/// Keys of one block under `prefix`.
pub(crate) fn block_params(out: &mut Vec<Param>, prefix: &str, d: &BlockDims) {
    norm_params(out, &format!("{prefix}.norm1"), d.dim);
    linear_params(out, &format!("{prefix}.attn.qkv"), d.dim, 3 * d.dim);
    linear_params(out, &format!("{prefix}.attn.proj"), d.dim, d.dim);
    norm_params(out, &format!("{prefix}.norm2"), d.dim);
    linear_params(out, &format!("{prefix}.mlp.fc1"), d.dim, d.ff);
    linear_params(out, &format!("{prefix}.mlp.fc2"), d.ff, d.dim);
}

/// `x + attn(norm1(x))`, `x + mlp(norm2(x))`, Segmenter's key names.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    dims: BlockDims,
}

impl Block {
    pub(crate) fn new(d: BlockDims, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::new(d.dim, d.eps, vb.pp("norm1"))?,
            qkv: linear(d.dim, 3 * d.dim, true, vb.pp("attn.qkv"))?,
            proj: linear(d.dim, d.dim, true, vb.pp("attn.proj"))?,
            norm2: LayerNorm::new(d.dim, d.eps, vb.pp("norm2"))?,
            fc1: linear(d.dim, d.ff, true, vb.pp("mlp.fc1"))?,
            fc2: linear(d.ff, d.dim, true, vb.pp("mlp.fc2"))?,
            dims: d,
        })
    }

    /// `xs` [B, N, D] → [B, N, D]. Cost O(B·(N·D·(4D + 2F) + N²·D)).
    pub(crate) fn forward(&self, xs: &Tensor, mut rng: Option<&mut dyn RngCore>) -> Result<Tensor> {
        let (b, n, c) = xs.dims3()?;
        let h = self.dims.heads;
        let p = self.dims.dropout;
        let scale = ((c / h) as f64).powf(-0.5);
        let normed = self.norm1.forward(xs)?;
        let qkv = self
            .qkv
            .forward(&normed)?
            .reshape((b, n, 3, h, c / h))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)?.contiguous()? * scale)?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let attn = softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let attn = dropout(&attn, p, reborrow(&mut rng))?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        let y = dropout(&self.proj.forward(&y)?, p, reborrow(&mut rng))?;
        let xs = (xs + drop_path(&y, self.dims.drop_path, reborrow(&mut rng))?)?;
        let m = self.fc1.forward(&self.norm2.forward(&xs)?)?.gelu_erf()?;
        let m = dropout(&m, p, reborrow(&mut rng))?;
        let m = dropout(&self.fc2.forward(&m)?, p, reborrow(&mut rng))?;
        xs + drop_path(&m, self.dims.drop_path, reborrow(&mut rng))?
    }
}

/// Reborrows an optional generator for one call (shortening the trait object's lifetime,
/// which `Option::as_deref_mut` cannot).
pub(crate) fn reborrow<'b>(rng: &'b mut Option<&mut dyn RngCore>) -> Option<&'b mut dyn RngCore> {
    match rng {
        Some(r) => Some(&mut **r),
        None => None,
    }
}
