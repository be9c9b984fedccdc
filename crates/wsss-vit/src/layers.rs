//! The building blocks of a pre-norm ViT block, each differentiable by candle's autograd.
//!
//! candle's fused `softmax_last_dim` and `layer_norm` record no backward: gradients through
//! them come back `None` without an error. These layers use the fused kernels only when no
//! input tracks gradients, and the basic-op forms otherwise.
//!
//! When gradients are tracked, a per-channel parameter (bias, LayerNorm scale) enters as
//! the product `1_R·vᵀ` with a ones column instead of a broadcast. candle's backward of a
//! broadcast sums the gradient over the broadcast (leading) axes, and its CPU reduction
//! over leading axes takes two integer divisions per element; the product's backward is a
//! [1, R] × [R, D] GEMM instead. On the scenes DFR training (1 thread) those reductions
//! were 23% of all `perf` samples.

use candle_core::{bail, DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

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
        let dims = xs.dims().to_vec();
        let rows = as_rows(xs)?;
        let mean = rows.mean_keepdim(D::Minus1)?;
        let centred = rows.broadcast_sub(&mean)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        add_to_rows(&mul_rows(&normed, &self.weight)?, &self.bias)?.reshape(dims)
    }
}

/// `xs` [..., D] as rows [R, D] (R the product of the leading axes).
fn as_rows(xs: &Tensor) -> Result<Tensor> {
    let Some((&d, lead)) = xs.dims().split_last() else {
        bail!("expected a tensor with a channel axis, got a scalar");
    };
    xs.reshape((lead.iter().product::<usize>(), d))
}

/// The ones column [R, 1] times `row` as [1, D]: `row` repeated on R rows, differentiable
/// by one GEMM.
fn repeated_rows(row: &Tensor, rows: usize) -> Result<Tensor> {
    let ones = Tensor::ones((rows, 1), row.dtype(), row.device())?;
    ones.matmul(&row.reshape((1, ()))?)
}

/// `xs + row` on every row: xs [R, D], row [D]. O(R·D).
///
/// A broadcast when nothing tracks gradients; `xs + 1·rowᵀ` otherwise (module docs).
pub fn add_to_rows(xs: &Tensor, row: &Tensor) -> Result<Tensor> {
    if tracks_grad(&[xs, row]) {
        xs + repeated_rows(row, xs.dim(0)?)?
    } else {
        xs.broadcast_add(row)
    }
}

/// `xs ⊙ row` on every row: xs [R, D], row [D]. O(R·D).
///
/// A broadcast when nothing tracks gradients; `xs ⊙ 1·rowᵀ` otherwise (module docs).
pub fn mul_rows(xs: &Tensor, row: &Tensor) -> Result<Tensor> {
    if tracks_grad(&[xs, row]) {
        xs * repeated_rows(row, xs.dim(0)?)?
    } else {
        xs.broadcast_mul(row)
    }
}

/// A fully connected layer `x·Wᵀ + b`, `weight` [out, in] and optional `bias` [out], on
/// inputs of any rank [..., in] → [..., out].
///
/// The maths of `candle_nn::Linear`, shaped for candle's backward: the input is flattened
/// to rows for one 2-D product (`candle_nn::Linear` broadcasts the weight over the batch
/// axis, so the weight's gradient became a reduction over that axis), and the bias is added
/// with [`add_to_rows`]. O(R·in·out) for R rows.
///
/// ```
/// use candle_core::{Device, Module, Tensor};
/// let weight = Tensor::new(&[[1f32, 2.0], [0.0, -1.0], [3.0, 0.0]], &Device::Cpu)?;
/// let bias = Tensor::new(&[0.5f32, 0.0, -1.0], &Device::Cpu)?;
/// let layer = wsss_vit::layers::Linear::new(weight, Some(bias));
/// let xs = Tensor::new(&[[[1f32, 1.0]], [[2.0, 0.0]]], &Device::Cpu)?; // [2, 1, 2]
/// let ys = layer.forward(&xs)?;
/// assert_eq!(ys.dims(), &[2, 1, 3]);
/// assert_eq!(ys.flatten_all()?.to_vec1::<f32>()?, [3.5, -1.0, 2.0, 2.5, 0.0, 5.0]);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A layer from its weight [out, in] and optional bias [out].
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The weight [out, in].
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias [out], if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut dims = xs.dims().to_vec();
        let ys = as_rows(xs)?.matmul(&self.weight.t()?)?;
        let ys = match &self.bias {
            Some(bias) => add_to_rows(&ys, bias)?,
            None => ys,
        };
        if let Some(last) = dims.last_mut() {
            *last = self.weight.dim(0)?;
        }
        ys.reshape(dims)
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Gradients of `sum(w ⊙ f(x, row))` with respect to x and row.
    fn gradients(
        f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
        x: &Var,
        row: &Var,
        w: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let grads = (f(x.as_tensor(), row.as_tensor())? * w)?
            .sum_all()?
            .backward()?;
        let gx = grads.get(x.as_tensor()).cloned();
        let grow = grads.get(row.as_tensor()).cloned();
        match (gx, grow) {
            (Some(gx), Some(grow)) => Ok((gx, grow)),
            _ => bail!("a gradient is missing"),
        }
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f64>()
    }

    #[test]
    fn row_forms_have_the_broadcasts_values_and_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (5, 3), &dev)?)?;
        let row = Var::from_tensor(&Tensor::randn(0f64, 1.0, 3, &dev)?)?;
        let w = Tensor::randn(0f64, 1.0, (5, 3), &dev)?;
        let add = |x: &Tensor, r: &Tensor| x.broadcast_add(r);
        let mul = |x: &Tensor, r: &Tensor| x.broadcast_mul(r);
        for (rows, broadcast) in [
            (
                gradients(add_to_rows, &x, &row, &w)?,
                gradients(add, &x, &row, &w)?,
            ),
            (
                gradients(mul_rows, &x, &row, &w)?,
                gradients(mul, &x, &row, &w)?,
            ),
        ] {
            assert!(max_diff(&rows.0, &broadcast.0)? < 1e-12);
            assert!(max_diff(&rows.1, &broadcast.1)? < 1e-12);
        }
        // The row gradient is not trivially zero: for the sum, it is w's column sums.
        let (_, grow) = gradients(add_to_rows, &x, &row, &w)?;
        assert!(max_diff(&grow, &w.sum(0)?)? < 1e-12);
        let value = max_diff(&mul_rows(x.as_tensor(), row.as_tensor())?, &mul(&x, &row)?)?;
        assert!(value < 1e-12);
        Ok(())
    }

    #[test]
    fn linear_keeps_leading_axes_and_matches_a_plain_product() -> Result<()> {
        let dev = Device::Cpu;
        let weight = Tensor::randn(0f64, 1.0, (4, 3), &dev)?;
        let bias = Tensor::randn(0f64, 1.0, 4, &dev)?;
        let xs = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 5, 3), &dev)?)?;
        let layer = Linear::new(weight.clone(), Some(bias.clone()));
        let ys = layer.forward(xs.as_tensor())?;
        assert_eq!(ys.dims(), &[2, 5, 4]);
        let want = xs
            .as_tensor()
            .broadcast_matmul(&weight.t()?)?
            .broadcast_add(&bias)?;
        assert!(max_diff(&ys, &want)? < 1e-12);
        assert!(Linear::new(weight, None)
            .forward(&Tensor::new(1f64, &dev)?)
            .is_err());
        Ok(())
    }
}
