//! The building blocks of a pre-norm ViT block, each differentiable by candle's autograd.
//!
//! candle's fused `softmax_last_dim` and `layer_norm` record no backward: gradients through
//! them come back `None` without an error. These layers use the fused kernels only when no
//! input tracks gradients, and the basic-op forms otherwise.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

/// Whether any of `ts` is a `Var` or depends on one.
pub(crate) fn tracks_grad(ts: &[&Tensor]) -> bool {
    ts.iter().any(|t| t.track_op())
}

/// Softmax over the last axis that is differentiable when it needs to be.
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    if tracks_grad(&[xs]) || xs.dtype() == DType::F64 {
        candle_nn::ops::softmax(xs, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(xs)
    }
}

/// LayerNorm over the last axis with the *biased* variance:
/// `(x − μ)/sqrt(σ² + eps) · weight + bias`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) eps: f64,
}

impl LayerNorm {
    /// Loads `weight` and `bias` of width `dim` from `vb`.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let fused_dtype = matches!(xs.dtype(), DType::F32 | DType::F16 | DType::BF16);
        if fused_dtype && !tracks_grad(&[xs, &self.weight, &self.bias]) && xs.is_contiguous() {
            return candle_nn::ops::layer_norm(xs, &self.weight, &self.bias, self.eps as f32);
        }
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centred = xs.broadcast_sub(&mean)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(variance + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// A Linear layer with timm's key names (`weight` [out, in], optional `bias`).
pub fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder<'_>) -> Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    let bias = if bias {
        Some(vb.get(out_dim, "bias")?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

/// timm's `Mlp`: `fc2(GELU(fc1(x)))` with the exact (erf) GELU.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
}

impl Mlp {
    /// Loads `fc1` (dim → hidden) and `fc2` (hidden → dim).
    pub fn new(dim: usize, hidden: usize, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(Self {
            fc1: linear(dim, hidden, true, vb.pp("fc1"))?,
            fc2: linear(hidden, dim, true, vb.pp("fc2"))?,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.fc2
            .forward(&crate::fused::gelu_erf(&self.fc1.forward(xs)?)?)
    }
}
