//! The dilated 8-neighbour rings shared by PAR and PAMR, and the streamed propagation
//! `M_k(p) <- sum_j w_j(p) M_k(nb_j(p))` over them.
//!
//! The weights are kept pixel-major (`[H·W, J]`, J = 8·|D|) and the masks pixel-major with
//! the classes padded to a multiple of [`LANES`], so one pixel's update reads J contiguous
//! runs of K floats and accumulates them in fixed-size arrays the compiler vectorises.
//! Nothing of size `K·J·H·W` is ever built.

use candle_core::{bail, Result};
use rayon::prelude::*;

/// Width of the fixed-size accumulators.
const LANES: usize = 8;

/// The ring offsets `(dy, dx)` of every dilation, in the order
/// (−d,−d), (−d,0), (−d,d), (0,−d), (0,d), (d,−d), (d,0), (d,d).
pub(crate) fn ring_offsets(dilations: &[usize]) -> Vec<(isize, isize)> {
    dilations
        .iter()
        .flat_map(|&d| {
            let d = d as isize;
            [
                (-d, -d),
                (-d, 0),
                (-d, d),
                (0, -d),
                (0, d),
                (d, -d),
                (d, 0),
                (d, d),
            ]
        })
        .collect()
}

/// Checks the dilations: at least one, all positive.
pub(crate) fn check_dilations(dilations: &[usize]) -> Result<()> {
    if dilations.is_empty() {
        bail!("at least one dilation is needed");
    }
    if dilations.contains(&0) {
        bail!("dilations must be positive, got {dilations:?}");
    }
    Ok(())
}

/// Row-clamped index of `v + d` in `[0, n)`.
#[inline]
pub(crate) fn clamp(v: usize, d: isize, n: usize) -> usize {
    (v as isize + d).clamp(0, n as isize - 1) as usize
}

/// Fills `out[j]` with the flat pixel index of neighbour `j` of `(y, x)` (replicate padding).
#[inline]
pub(crate) fn neighbour_indices(
    offsets: &[(isize, isize)],
    (y, x): (usize, usize),
    (h, w): (usize, usize),
    out: &mut [usize],
) {
    for (o, &(dy, dx)) in out.iter_mut().zip(offsets) {
        *o = clamp(y, dy, h) * w + clamp(x, dx, w);
    }
}

/// Runs `iterations` propagation steps on `masks` (`k` planes of `h·w`, in place) with the
/// pixel-major weights `weights` (`h·w·J`).
///
/// Cost: O(T·K·H·W·J) time, O(K·H·W) extra memory (two pixel-major copies of the masks).
pub(crate) fn propagate(
    weights: &[f32],
    offsets: &[(isize, isize)],
    masks: &mut [f32],
    k: usize,
    (h, w): (usize, usize),
    iterations: usize,
) {
    let j_count = offsets.len();
    let pixels = h * w;
    debug_assert_eq!(weights.len(), pixels * j_count);
    debug_assert_eq!(masks.len(), k * pixels);
    if k == 0 || pixels == 0 || iterations == 0 {
        return;
    }
    let kp = k.div_ceil(LANES) * LANES;
    let chunks = kp / LANES;
    let mut cur = vec![0f32; pixels * kp];
    for (c, plane) in masks.chunks_exact(pixels).enumerate() {
        for (p, &v) in plane.iter().enumerate() {
            cur[p * kp + c] = v;
        }
    }
    let mut next = vec![0f32; pixels * kp];
    for _ in 0..iterations {
        next.par_chunks_mut(w * kp)
            .enumerate()
            .for_each(|(y, row)| {
                let mut idx = vec![0usize; j_count];
                for (x, out) in row.chunks_exact_mut(kp).enumerate() {
                    neighbour_indices(offsets, (y, x), (h, w), &mut idx);
                    let wts = &weights[(y * w + x) * j_count..(y * w + x + 1) * j_count];
                    for c in 0..chunks {
                        let mut acc = [0f32; LANES];
                        for (&n, &wj) in idx.iter().zip(wts) {
                            let base = n * kp + c * LANES;
                            let src: &[f32; LANES] =
                                cur[base..base + LANES].try_into().expect("lane slice");
                            for l in 0..LANES {
                                acc[l] += wj * src[l];
                            }
                        }
                        out[c * LANES..(c + 1) * LANES].copy_from_slice(&acc);
                    }
                }
            });
        std::mem::swap(&mut cur, &mut next);
    }
    for (c, plane) in masks.chunks_exact_mut(pixels).enumerate() {
        for (p, v) in plane.iter_mut().enumerate() {
            *v = cur[p * kp + c];
        }
    }
}

/// In-place softmax of `xs` (f64, max-subtracted).
pub(crate) fn softmax_in_place(xs: &mut [f64]) {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in xs.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in xs.iter_mut() {
        *v /= sum;
    }
}

/// Unbiased standard deviation (divide by n − 1) of `xs`, two-pass.
pub(crate) fn unbiased_std(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let (n, sum) = xs.clone().fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
    if n < 2 {
        return 0.0;
    }
    let mean = sum / n as f64;
    let ss: f64 = xs.map(|v| (v - mean) * (v - mean)).sum();
    (ss / (n - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_matches_a_direct_sum() {
        // 3x4 image, one dilation, K = 3, random-ish weights.
        let (h, w, k) = (3usize, 4usize, 3usize);
        let offsets = ring_offsets(&[1]);
        let j = offsets.len();
        let weights: Vec<f32> = (0..h * w * j)
            .map(|i| ((i * 37 % 11) as f32) / 50.0)
            .collect();
        let masks: Vec<f32> = (0..k * h * w)
            .map(|i| ((i * 13 % 7) as f32) / 7.0)
            .collect();
        let mut got = masks.clone();
        propagate(&weights, &offsets, &mut got, k, (h, w), 2);
        let mut want = masks;
        for _ in 0..2 {
            let prev = want.clone();
            for c in 0..k {
                for y in 0..h {
                    for x in 0..w {
                        let p = y * w + x;
                        let mut s = 0.0;
                        for (jj, &(dy, dx)) in offsets.iter().enumerate() {
                            let n = clamp(y, dy, h) * w + clamp(x, dx, w);
                            s += weights[p * j + jj] * prev[c * h * w + n];
                        }
                        want[c * h * w + p] = s;
                    }
                }
            }
        }
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
