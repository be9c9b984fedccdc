//! Element-wise comparison with the FORMAT.md rules.

use std::fmt;

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use serde::Deserialize;

/// Tolerance of one output, as written in a case's JSON.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Tolerance {
    /// Absolute tolerance (floats).
    #[serde(default)]
    pub atol: f64,
    /// Relative tolerance (floats).
    #[serde(default)]
    pub rtol: f64,
    /// Least fraction of exactly equal elements (integer outputs); exact when absent.
    #[serde(default)]
    pub min_agreement: Option<f64>,
}

/// Result of comparing one output.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Largest `|got − want|` over elements (floats).
    pub worst_abs: f64,
    /// Largest `|got − want| / |want|` over elements with `want ≠ 0` (floats).
    pub worst_rel: f64,
    /// Fraction of exactly equal elements (integers).
    pub agreement: Option<f64>,
    /// Whether the output is within tolerance.
    pub pass: bool,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.agreement {
            Some(a) => write!(f, "agree {:.4}", a),
            None => write!(f, "abs {:.2e} rel {:.2e}", self.worst_abs, self.worst_rel),
        }
    }
}

fn is_integer(dtype: DType) -> bool {
    matches!(dtype, DType::U8 | DType::U32 | DType::I64)
}

/// Compares `got` with `want` under `tolerance` (shapes must match; values compared in f64).
pub fn compare(got: &Tensor, want: &Tensor, tolerance: &Tolerance) -> Result<Comparison> {
    let (got_n, want_n) = (got.elem_count(), want.elem_count());
    let scalar_pair = got_n == 1 && want_n == 1;
    if got.dims() != want.dims() && !scalar_pair {
        bail!("shape {:?}, expected {:?}", got.dims(), want.dims());
    }
    let g = got.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let w = want.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    if is_integer(want.dtype()) {
        let equal = g.iter().zip(&w).filter(|(a, b)| a == b).count();
        let agreement = if w.is_empty() {
            1.0
        } else {
            equal as f64 / w.len() as f64
        };
        let pass = match tolerance.min_agreement {
            Some(min) => agreement >= min,
            None => equal == w.len(),
        };
        return Ok(Comparison {
            worst_abs: 0.0,
            worst_rel: 0.0,
            agreement: Some(agreement),
            pass,
        });
    }
    let (mut worst_abs, mut worst_rel, mut pass) = (0f64, 0f64, true);
    for (&a, &b) in g.iter().zip(&w) {
        if b.is_nan() || a.is_nan() {
            pass &= a.is_nan() && b.is_nan();
            continue;
        }
        let diff = (a - b).abs();
        worst_abs = worst_abs.max(diff);
        if b != 0.0 {
            worst_rel = worst_rel.max(diff / b.abs());
        }
        pass &= diff <= tolerance.atol + tolerance.rtol * b.abs();
    }
    Ok(Comparison {
        worst_abs,
        worst_rel,
        agreement: None,
        pass,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn tolerance_and_nan_rules() {
        let tol = Tolerance {
            atol: 1e-3,
            rtol: 0.0,
            min_agreement: None,
        };
        assert!(
            compare(&t(&[1.0, f32::NAN]), &t(&[1.0005, f32::NAN]), &tol)
                .unwrap()
                .pass
        );
        assert!(
            !compare(&t(&[1.0, 0.0]), &t(&[1.0, f32::NAN]), &tol)
                .unwrap()
                .pass
        );
        assert!(!compare(&t(&[1.0]), &t(&[1.01]), &tol).unwrap().pass);
        assert!(compare(&t(&[1.0, 2.0]), &t(&[1.0]), &tol).is_err());
    }

    #[test]
    fn integer_agreement() {
        let a = Tensor::new(&[1u8, 2, 3, 4], &Device::Cpu).unwrap();
        let b = Tensor::new(&[1u8, 2, 3, 5], &Device::Cpu).unwrap();
        let exact = Tolerance::default();
        assert!(!compare(&a, &b, &exact).unwrap().pass);
        let loose = Tolerance {
            min_agreement: Some(0.75),
            ..Tolerance::default()
        };
        let c = compare(&a, &b, &loose).unwrap();
        assert!(c.pass && c.agreement == Some(0.75));
    }
}
