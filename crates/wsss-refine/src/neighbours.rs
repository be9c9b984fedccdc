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

/// Flat-index lookup of the ring neighbours on an `h × w` grid, with a fast path for
/// pixels whose whole neighbourhood lies inside the image.
pub(crate) struct Neighbourhood<'a> {
    offsets: &'a [(isize, isize)],
    relative: Vec<isize>,
    reach: usize,
    h: usize,
    w: usize,
}

impl<'a> Neighbourhood<'a> {
    pub(crate) fn new(offsets: &'a [(isize, isize)], (h, w): (usize, usize)) -> Self {
        let reach = offsets
            .iter()
            .map(|&(dy, dx)| dy.unsigned_abs().max(dx.unsigned_abs()))
            .max()
            .unwrap_or(0);
        let relative = offsets
            .iter()
            .map(|&(dy, dx)| dy * w as isize + dx)
            .collect();
        Self {
            offsets,
            relative,
            reach,
            h,
            w,
        }
    }

    /// Fills `out[j]` with the flat index of neighbour `j` of `(y, x)` (replicate padding).
    #[inline]
    pub(crate) fn indices(&self, (y, x): (usize, usize), out: &mut [usize]) {
        let (h, w, r) = (self.h, self.w, self.reach);
        if y >= r && y + r < h && x >= r && x + r < w {
            let p = (y * w + x) as isize;
            for (o, &rel) in out.iter_mut().zip(&self.relative) {
                *o = (p + rel) as usize;
            }
        } else {
            for (o, &(dy, dx)) in out.iter_mut().zip(self.offsets) {
                *o = clamp(y, dy, h) * w + clamp(x, dx, w);
            }
        }
    }
}

/// Output rows per parallel task.
const BAND_ROWS: usize = 8;
/// Output columns per tile: the tile's source rows stay in L2 while its rows are swept.
const TILE_COLS: usize = 64;

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
    let pixels = h * w;
    debug_assert_eq!(weights.len(), pixels * offsets.len());
    debug_assert_eq!(masks.len(), k * pixels);
    if k == 0 || pixels == 0 || iterations == 0 {
        return;
    }
    let kp = k.div_ceil(LANES) * LANES;
    let mut cur = vec![0f32; pixels * kp];
    for (c, plane) in masks.chunks_exact(pixels).enumerate() {
        for (p, &v) in plane.iter().enumerate() {
            cur[p * kp + c] = v;
        }
    }
    let mut next = vec![0f32; pixels * kp];
    let step = Step {
        weights,
        offsets,
        h,
        w,
        kp,
        reach: offsets
            .iter()
            .map(|&(_, dx)| dx.unsigned_abs())
            .max()
            .unwrap_or(0),
    };
    for _ in 0..iterations {
        next.par_chunks_mut(BAND_ROWS * w * kp)
            .enumerate()
            .for_each(|(band, out)| step.band(&cur, out, band * BAND_ROWS));
        std::mem::swap(&mut cur, &mut next);
    }
    for (c, plane) in masks.chunks_exact_mut(pixels).enumerate() {
        for (p, v) in plane.iter_mut().enumerate() {
            *v = cur[p * kp + c];
        }
    }
}

/// One propagation step's fixed data.
struct Step<'a> {
    weights: &'a [f32],
    offsets: &'a [(isize, isize)],
    h: usize,
    w: usize,
    kp: usize,
    /// Largest column offset `max |dx|`.
    reach: usize,
}

impl Step<'_> {
    /// Computes the output rows `y0..` held in `out` (pixel-major, `kp` per pixel).
    fn band(&self, cur: &[f32], out: &mut [f32], y0: usize) {
        let (w, kp) = (self.w, self.kp);
        let rows = out.len() / (w * kp);
        let j_count = self.offsets.len();
        let mut row_base = vec![0usize; j_count];
        let mut row_shift = vec![0isize; j_count];
        for x0 in (0..w).step_by(TILE_COLS) {
            let x1 = (x0 + TILE_COLS).min(w);
            for r in 0..rows {
                let y = y0 + r;
                for ((b, sh), &(dy, dx)) in row_base
                    .iter_mut()
                    .zip(row_shift.iter_mut())
                    .zip(self.offsets)
                {
                    *b = clamp(y, dy, self.h) * w;
                    // Start of neighbour j's values relative to x·kp, for interior x.
                    *sh = (*b as isize + dx) * kp as isize;
                }
                let neighbour_rows = (&row_base[..], &row_shift[..]);
                let out_row = &mut out[r * w * kp..(r + 1) * w * kp];
                // Groups of up to 4 lanes of 8 classes, accumulated in registers.
                let mut c0 = 0;
                while c0 < kp / LANES {
                    let left = kp / LANES - c0;
                    match left {
                        1 => self.tile::<1>(cur, out_row, y, (x0, x1), neighbour_rows, c0),
                        2 => self.tile::<2>(cur, out_row, y, (x0, x1), neighbour_rows, c0),
                        3 => self.tile::<3>(cur, out_row, y, (x0, x1), neighbour_rows, c0),
                        _ => self.tile::<4>(cur, out_row, y, (x0, x1), neighbour_rows, c0),
                    }
                    c0 += left.min(4);
                }
            }
        }
    }

    /// Lanes `c0·8 .. (c0 + C)·8` of the pixels `x0..x1` of row `y`.
    #[inline(always)]
    fn tile<const C: usize>(
        &self,
        cur: &[f32],
        out_row: &mut [f32],
        y: usize,
        (x0, x1): (usize, usize),
        (row_base, row_shift): (&[usize], &[isize]),
        c0: usize,
    ) {
        let (w, kp) = (self.w, self.kp);
        let j_count = self.offsets.len();
        let lane0 = c0 * LANES;
        for x in x0..x1 {
            let wts = &self.weights[(y * w + x) * j_count..(y * w + x + 1) * j_count];
            let acc = if x >= self.reach && x + self.reach < w {
                // Interior: no clamping of the columns.
                let at = (x * kp + lane0) as isize;
                accumulate::<C>(cur, wts, row_shift.iter().map(|&s| (s + at) as usize))
            } else {
                let starts = self
                    .offsets
                    .iter()
                    .zip(row_base)
                    .map(|(&(_, dx), &base)| (base + clamp(x, dx, w)) * kp + lane0);
                accumulate::<C>(cur, wts, starts)
            };
            let dst = &mut out_row[x * kp + lane0..x * kp + lane0 + C * LANES];
            for (d, a) in dst.chunks_exact_mut(LANES).zip(&acc) {
                d.copy_from_slice(a);
            }
        }
    }
}

/// `Σ_j w_j · cur[start_j .. start_j + 8·C]`, in registers.
#[inline(always)]
fn accumulate<const C: usize>(
    cur: &[f32],
    wts: &[f32],
    starts: impl Iterator<Item = usize>,
) -> [[f32; LANES]; C] {
    let mut acc = [[0f32; LANES]; C];
    for (start, &wj) in starts.zip(wts) {
        let src = &cur[start..start + C * LANES];
        for (a, s) in acc.iter_mut().zip(src.chunks_exact(LANES)) {
            for l in 0..LANES {
                a[l] += wj * s[l];
            }
        }
    }
    acc
}

/// `exp(x)` for `x <= 0` (Cephes' `expf` polynomial, relative error ~1e-7), written
/// branch-free so that loops over it vectorise. Inputs below −87 give 0-ish (≤ 1.7e-38).
#[inline(always)]
fn exp_non_positive(x: f32) -> f32 {
    let x = x.max(-87.0);
    // Round to nearest with the 1.5·2^23 trick (no libm `floorf` call, vectorises).
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * z
        + r
        + 1.0;
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Sum with 8 independent accumulators (vectorisable, no long dependency chain).
#[inline(always)]
pub(crate) fn sum8(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Max with 8 independent accumulators.
#[inline(always)]
fn max8(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for l in 0..8 {
            acc[l] = acc[l].max(c[l]);
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}

/// In-place softmax of `xs` (max-subtracted).
#[inline]
pub(crate) fn softmax_in_place(xs: &mut [f32]) {
    let max = max8(xs);
    for v in xs.iter_mut() {
        *v = exp_non_positive(*v - max);
    }
    let inv = 1.0 / sum8(xs);
    for v in xs.iter_mut() {
        *v *= inv;
    }
}

/// Unbiased standard deviation (divide by n − 1) of `xs` plus `extra_count` copies of
/// `extra`, two-pass.
#[inline]
pub(crate) fn unbiased_std(xs: &[f32], extra: f32, extra_count: usize) -> f32 {
    let n = xs.len() + extra_count;
    if n < 2 {
        return 0.0;
    }
    let mean = (sum8(xs) + extra * extra_count as f32) / n as f32;
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for c in chunks {
        for l in 0..8 {
            acc[l] += (c[l] - mean) * (c[l] - mean);
        }
    }
    let ss = acc.iter().sum::<f32>() + tail + (extra - mean) * (extra - mean) * extra_count as f32;
    (ss / (n - 1) as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -(i as f32) * 86.0 / 200_000.0;
            let want = (x as f64).exp();
            let got = exp_non_positive(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp_non_positive(0.0), 1.0);
        assert!(exp_non_positive(-1e30) < 1e-37);
    }

    fn direct(
        weights: &[f32],
        offsets: &[(isize, isize)],
        masks: &[f32],
        k: usize,
        (h, w): (usize, usize),
        iterations: usize,
    ) -> Vec<f32> {
        let j = offsets.len();
        let mut want = masks.to_vec();
        for _ in 0..iterations {
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
        want
    }

    #[test]
    fn interior_fast_path_matches_clamping() {
        let offsets = ring_offsets(&[1, 2, 4, 8, 12, 24]);
        let (h, w) = (60, 55);
        let hood = Neighbourhood::new(&offsets, (h, w));
        let mut got = vec![0; offsets.len()];
        for y in 0..h {
            for x in 0..w {
                hood.indices((y, x), &mut got);
                for (g, &(dy, dx)) in got.iter().zip(&offsets) {
                    assert_eq!(*g, clamp(y, dy, h) * w + clamp(x, dx, w));
                }
            }
        }
    }

    #[test]
    fn propagation_matches_a_direct_sum() {
        // Small (border only) and wide (interior fast path, several column tiles) maps; K
        // covering 1, 3 and 4 + 1 register groups.
        for (h, w, k, dilations) in [
            (3usize, 4usize, 3usize, vec![1usize]),
            (30, 150, 21, vec![1, 2, 4, 8, 12, 24]),
            (11, 70, 40, vec![1, 3]),
        ] {
            let offsets = ring_offsets(&dilations);
            let j = offsets.len();
            let weights: Vec<f32> = (0..h * w * j)
                .map(|i| ((i * 37 % 11) as f32) / (11.0 * j as f32))
                .collect();
            let masks: Vec<f32> = (0..k * h * w)
                .map(|i| ((i * 13 % 7) as f32) / 7.0)
                .collect();
            let mut got = masks.clone();
            propagate(&weights, &offsets, &mut got, k, (h, w), 2);
            let want = direct(&weights, &offsets, &masks, k, (h, w), 2);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{h}x{w} K={k}: {a} vs {b}");
            }
        }
    }
}
