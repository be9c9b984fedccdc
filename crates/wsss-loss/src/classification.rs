//! Image-level classification loss.

use candle_core::{bail, Result, Tensor};

use crate::ops::softplus;

/// Multilabel soft margin loss, PyTorch's `MultiLabelSoftMarginLoss` (mean reduction):
/// `mean_{b,c} −[y log σ(x) + (1 − y) log σ(−x)] = mean_{b,c} softplus(x) − y·x`.
/// The image-level loss of every CAM method here (MCTformer, WeakTr, AReAM, GETAM).
///
/// # Shapes
/// - `logits`: `[B, C]` float; `targets`: `[B, C]` same dtype, in [0, 1] (multi-hot).
/// - returns a scalar (0-d) tensor.
///
/// Cost: O(B·C).
pub fn multilabel_soft_margin(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.rank() != 2 || logits.dims() != targets.dims() {
        bail!(
            "multilabel soft margin needs logits and targets of the same [B, C] shape, got {:?} and {:?}",
            logits.dims(),
            targets.dims()
        );
    }
    let targets = targets.to_dtype(logits.dtype())?;
    (softplus(logits)? - (logits * targets)?)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finite_difference::{check, values};
    use candle_core::Device;

    #[test]
    fn matches_the_definition() -> Result<()> {
        let x = [2.0f64, -1.0, 0.5, 30.0];
        let y = [1.0f64, 0.0, 0.0, 1.0];
        let want: f64 = x
            .iter()
            .zip(&y)
            .map(|(&x, &y)| {
                let s = 1.0 / (1.0 + (-x).exp());
                -(y * s.ln() + (1.0 - y) * (1.0 - s).ln())
            })
            .sum::<f64>()
            / 4.0;
        let got = multilabel_soft_margin(
            &Tensor::from_vec(x.to_vec(), (2, 2), &Device::Cpu)?,
            &Tensor::from_vec(y.to_vec(), (2, 2), &Device::Cpu)?,
        )?
        .to_scalar::<f64>()?;
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        Ok(())
    }

    #[test]
    fn gradient_matches_finite_differences() -> Result<()> {
        let x = values(12, 3, (-4.0, 4.0));
        let y = Tensor::from_vec(values(12, 5, (0.0, 1.0)), (3, 4), &Device::Cpu)?.round()?;
        let worst = check(&x, &[3, 4], |x| multilabel_soft_margin(x, &y))?;
        assert!(worst < 1e-7, "worst {worst}");
        Ok(())
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let a = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(multilabel_soft_margin(&a, &b).is_err());
    }
}
