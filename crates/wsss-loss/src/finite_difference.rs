//! Finite-difference check of candle's autograd for the losses (tests only).

use candle_core::{DType, Device, Result, Tensor, Var};

/// Compares `∂f/∂x` from `backward` with central differences at `x` (f64); returns the
/// largest absolute difference. Fails when autograd gives no gradient.
pub(crate) fn check(
    x: &[f64],
    shape: &[usize],
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<f64> {
    let var = Var::from_tensor(&Tensor::from_vec(x.to_vec(), shape, &Device::Cpu)?)?;
    let loss = f(var.as_tensor())?;
    let grads = loss.backward()?;
    let Some(grad) = grads.get(var.as_tensor()) else {
        candle_core::bail!("autograd produced no gradient")
    };
    let grad = grad.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let eps = 1e-6;
    let mut worst = 0f64;
    for i in 0..x.len() {
        let mut plus = x.to_vec();
        plus[i] += eps;
        let mut minus = x.to_vec();
        minus[i] -= eps;
        let fp = f(&Tensor::from_vec(plus, shape, &Device::Cpu)?)?.to_scalar::<f64>()?;
        let fm = f(&Tensor::from_vec(minus, shape, &Device::Cpu)?)?.to_scalar::<f64>()?;
        worst = worst.max(((fp - fm) / (2.0 * eps) - grad[i]).abs());
    }
    Ok(worst)
}

/// Deterministic pseudo-random values in `[lo, hi)`.
pub(crate) fn values(n: usize, seed: u64, (lo, hi): (f64, f64)) -> Vec<f64> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            lo + (hi - lo) * ((state >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}
