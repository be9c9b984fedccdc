//! Affinity random walk (AffinityNet/PSA: Ahn & Kwak, "Learning Pixel-level Semantic
//! Affinity with Image-level Supervision", CVPR 2018, arXiv 1803.10464, Sec. 3.3, Eqs. 5–6).
//!
//! A non-negative affinity `A` between the N positions of a map (learned by AffinityNet, or
//! taken from transformer attention, e.g. the symmetrised `(A + Aᵀ)/2` of the last layers)
//! is sharpened by a power `β` and normalised into a transition matrix
//!
//! ```text
//! T = A^∘β · D⁻¹,   D = diag(column sums of A^∘β)     (PSA: aff / aff.sum(0))
//! ```
//!
//! and the CAMs diffuse along it for `t` steps: `vec(M_k) ← vec(M_k) · T`, i.e.
//! `M'_k(j) = Σ_i M_k(i) T(i, j)`. PSA runs `t = 2^logt` steps by squaring `T` `logt = 8`
//! times with `β = 8`; here the `t` steps are applied to the maps (O(t·K·N²), cheaper than
//! squaring's O(log t·N³) whenever `t·K < N·log t`, which holds for PSA's sizes).
//! Columns of `A^∘β` that are all zero are left zero (their mass is dropped) instead of
//! dividing by zero.

use candle_core::{bail, DType, Result, Tensor};
use serde::{Deserialize, Serialize};

/// Random-walk hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RandomWalkConfig {
    /// Power `β` applied element-wise to the affinity before normalising.
    pub beta: f32,
    /// Number of steps `t`.
    pub iterations: usize,
}

impl RandomWalkConfig {
    /// PSA on VOC: `β = 8`, `logt = 8`, i.e. 256 steps.
    pub fn psa() -> Self {
        Self {
            beta: 8.0,
            iterations: 256,
        }
    }
}

impl Default for RandomWalkConfig {
    fn default() -> Self {
        Self::psa()
    }
}

/// The column-stochastic transition matrix `T = A^∘β / colsum(A^∘β)`.
///
/// # Shapes
/// - `affinity`: `[N, N]` float, non-negative.
/// - returns `[N, N]`, every non-zero column summing to 1.
///
/// Cost: O(N²) time and memory.
pub fn transition_matrix(affinity: &Tensor, beta: f32) -> Result<Tensor> {
    let Ok((n, n2)) = affinity.dims2() else {
        bail!("affinity must be [N, N], got {:?}", affinity.dims())
    };
    if n != n2 {
        bail!("affinity must be square, got {n}x{n2}");
    }
    if !(beta.is_finite() && beta > 0.0) {
        bail!("random walk beta must be positive, got {beta}");
    }
    let min = affinity
        .min_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    if min < 0.0 || min.is_nan() {
        bail!("affinity must be non-negative, found {min}");
    }
    let powered = affinity.powf(beta as f64)?;
    let sums = powered.sum_keepdim(0)?;
    // A zero column stays zero: divide by 1 there.
    let safe = sums.eq(0.0)?.where_cond(&sums.ones_like()?, &sums)?;
    powered.broadcast_div(&safe)
}

/// Diffuses `cams` along the affinity for `cfg.iterations` steps (PSA, arXiv 1803.10464,
/// Eq. 6).
///
/// # Shapes
/// - `cams`: `[K, ...]` float whose trailing dims flatten to N (e.g. `[K, H, W]` with
///   N = H·W, or `[K, N]`).
/// - `affinity`: `[N, N]` non-negative, same dtype, positions in the row-major order of the
///   trailing dims.
/// - returns the shape of `cams`. Mass is conserved per class when no column is zero.
///
/// Cost: O(N²) for the transition matrix plus O(t·K·N²) time; O(N² + K·N) memory.
pub fn random_walk(cams: &Tensor, affinity: &Tensor, cfg: &RandomWalkConfig) -> Result<Tensor> {
    if cams.rank() < 2 {
        bail!(
            "cams must be [K, ...] with at least 2 dims, got {:?}",
            cams.dims()
        );
    }
    let k = cams.dim(0)?;
    let n = cams.elem_count() / k.max(1);
    if affinity.dims() != [n, n] {
        bail!(
            "affinity must be [{n}, {n}] for cams {:?}, got {:?}",
            cams.dims(),
            affinity.dims()
        );
    }
    let transition = transition_matrix(affinity, cfg.beta)?.to_dtype(cams.dtype())?;
    let mut xs = cams.reshape((k, n))?;
    for _ in 0..cfg.iterations {
        xs = xs.matmul(&transition)?;
    }
    xs.reshape(cams.dims())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn close(got: &Tensor, want: &[f64]) -> Result<()> {
        let got = got.flatten_all()?.to_vec1::<f64>()?;
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
        Ok(())
    }

    #[test]
    fn two_positions_by_hand() -> Result<()> {
        let a = Tensor::new(&[[1.0f64, 0.5], [0.5, 1.0]], &Device::Cpu)?;
        let cams = Tensor::new(&[[1.0f64, 0.0], [0.0, 3.0]], &Device::Cpu)?;
        // beta 1: T = [[2/3, 1/3], [1/3, 2/3]].
        let cfg = RandomWalkConfig {
            beta: 1.0,
            iterations: 1,
        };
        close(
            &random_walk(&cams, &a, &cfg)?,
            &[2.0 / 3.0, 1.0 / 3.0, 1.0, 2.0],
        )?;
        let two = RandomWalkConfig {
            iterations: 2,
            ..cfg
        };
        close(
            &random_walk(&cams, &a, &two)?,
            &[5.0 / 9.0, 4.0 / 9.0, 4.0 / 3.0, 5.0 / 3.0],
        )?;
        // beta 2: A^2 = [[1, 1/4], [1/4, 1]], T = [[0.8, 0.2], [0.2, 0.8]].
        let sharp = RandomWalkConfig {
            beta: 2.0,
            iterations: 1,
        };
        close(&random_walk(&cams, &a, &sharp)?, &[0.8, 0.2, 0.6, 2.4])?;
        Ok(())
    }

    #[test]
    fn asymmetric_affinity_uses_column_sums() -> Result<()> {
        // A = [[1, 0], [1, 1]]: column sums 2 and 1 -> T = [[0.5, 0], [0.5, 1]].
        let a = Tensor::new(&[[1.0f64, 0.0], [1.0, 1.0]], &Device::Cpu)?;
        close(&transition_matrix(&a, 1.0)?, &[0.5, 0.0, 0.5, 1.0])?;
        // A zero column stays zero.
        let z = Tensor::new(&[[1.0f64, 0.0], [1.0, 0.0]], &Device::Cpu)?;
        close(&transition_matrix(&z, 1.0)?, &[0.5, 0.0, 0.5, 0.0])?;
        Ok(())
    }

    #[test]
    fn maps_keep_their_shape_and_bad_input_is_an_error() -> Result<()> {
        let cams = Tensor::ones((2, 2, 3), DType::F32, &Device::Cpu)?;
        let a = Tensor::ones((6, 6), DType::F32, &Device::Cpu)?;
        let out = random_walk(&cams, &a, &RandomWalkConfig::psa())?;
        assert_eq!(out.dims(), &[2, 2, 3]);
        let bad = Tensor::ones((5, 5), DType::F32, &Device::Cpu)?;
        assert!(random_walk(&cams, &bad, &RandomWalkConfig::psa()).is_err());
        let negative = (Tensor::ones((6, 6), DType::F32, &Device::Cpu)? * -1.0)?;
        assert!(random_walk(&cams, &negative, &RandomWalkConfig::psa()).is_err());
        let cfg = RandomWalkConfig {
            beta: 0.0,
            iterations: 1,
        };
        assert!(random_walk(&cams, &a, &cfg).is_err());
        Ok(())
    }
}
