//! Grad-safe building blocks.

use candle_core::{Result, Tensor};

/// `softplus(x) = log(1 + exp(x))`, computed as `relu(x) + log(1 + exp(−|x|))` (stable).
pub(crate) fn softplus(xs: &Tensor) -> Result<Tensor> {
    let tail = (xs.abs()?.neg()?.exp()? + 1.0)?.log()?;
    xs.relu()? + tail
}

/// `sigmoid(x) = (tanh(x/2) + 1)/2`: stable in both directions and with a backward.
pub(crate) fn sigmoid(xs: &Tensor) -> Result<Tensor> {
    ((xs * 0.5)?.tanh()? + 1.0)? * 0.5
}

/// Log-softmax over `dim` (the max is subtracted as a constant).
pub(crate) fn log_softmax(xs: &Tensor, dim: usize) -> Result<Tensor> {
    let max = xs.max_keepdim(dim)?.detach();
    let shifted = xs.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(dim)?.log()?;
    shifted.broadcast_sub(&lse)
}
