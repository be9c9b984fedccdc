//! A vectorisable `exp` for the pixel kernels (softmax of the dense CRF, Gaussian kernel
//! values of the gated CRF loss): the Cephes `expf` polynomial with round-to-nearest range
//! reduction written with plain float operations, so that LLVM vectorises loops over it
//! (`f32::exp` is a scalar libm call).

/// `exp(x)` within about 2 ulp for x in [−87.3, 88.0]; inputs below clamp to
/// exp(−87.3) ≈ 1.2e−38, above to exp(88.0); NaN stays NaN only by accident (do not rely
/// on it).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * C1 - n * C2;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r2 + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn matches_std_exp(x in -87.0f32..88.0) {
            let (got, want) = (super::exp(x), x.exp());
            prop_assert!((got - want).abs() <= 4.0 * f32::EPSILON * want, "{x}: {got} vs {want}");
        }
    }

    #[test]
    fn clamps_extremes() {
        assert!(super::exp(-1000.0) < 1e-37 && super::exp(-1000.0) >= 0.0);
        assert!(super::exp(0.0) == 1.0);
        assert!(super::exp(100.0).is_finite());
    }
}
