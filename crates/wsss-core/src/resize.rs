//! Separable bilinear and bicubic resizing with PyTorch's `F.interpolate` semantics.
//!
//! Each axis is resampled by an interpolation matrix `M` (out × in): the output is
//! `y[.., o, q] = Σ_{i,j} Mh[o, i] · Mw[q, j] · x[.., i, j]`. The matrices follow
//! `torch.nn.functional.interpolate(x, size=(ho, wo), mode, align_corners)` exactly (no
//! `scale_factor`, no antialias, also when shrinking):
//!
//! - scale `s = (n−1)/(m−1)` (or 0 when m = 1) with aligned corners, `s = n/m` without;
//! - source coordinate `src = o·s` with aligned corners, `src = (o + ½)·s − ½` without;
//! - bilinear clamps `src` at 0 and mixes taps `⌊src⌋` and `min(⌊src⌋+1, n−1)`;
//! - bicubic uses the Keys kernel with A = −0.75 on the taps `⌊src⌋−1 … ⌊src⌋+2`, each
//!   clamped into `[0, n−1]` (clamped taps accumulate), and does not clamp `src`.
//!
//! # Cost
//! [`resize`] is two matrix products: O(B·C·(Ho·H·W + Ho·W·Wo)) time on any device and
//! O(B·C·Ho·W) extra memory, differentiable through candle's autograd. [`resize_planes`]
//! is the sparse CPU form on plain slices: O(P·(Ho·W + Ho·Wo)) time with at most 4 taps per
//! output, O(P·Ho·W) extra memory, for P planes.

use candle_core::{bail, DType, Result, Tensor};

/// Interpolation kernel, as PyTorch's `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResizeMode {
    /// Two taps per axis (`mode="bilinear"`).
    Bilinear,
    /// Four taps per axis, Keys kernel A = −0.75 (`mode="bicubic"`).
    Bicubic,
}

/// PyTorch's `align_corners` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlignCorners {
    /// Corner pixel centres of input and output coincide (`align_corners=True`).
    Yes,
    /// Pixel areas are aligned (`align_corners=False`, PyTorch's default).
    No,
}

impl AlignCorners {
    /// `true` for [`AlignCorners::Yes`].
    pub fn is_yes(self) -> bool {
        matches!(self, AlignCorners::Yes)
    }
}

impl From<bool> for AlignCorners {
    fn from(align: bool) -> Self {
        if align {
            AlignCorners::Yes
        } else {
            AlignCorners::No
        }
    }
}

impl std::str::FromStr for ResizeMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "bilinear" => Ok(ResizeMode::Bilinear),
            "bicubic" => Ok(ResizeMode::Bicubic),
            other => Err(format!(
                "unknown resize mode `{other}`: expected `bilinear` or `bicubic`"
            )),
        }
    }
}

/// Keys' cubic convolution kernel with A = −0.75 (PyTorch's bicubic).
fn keys_cubic(x: f32) -> f32 {
    const A: f32 = -0.75;
    let x = x.abs();
    if x <= 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// The taps of one output index: up to four `(input index, weight)` pairs.
#[derive(Debug, Clone, Copy)]
struct Taps {
    index: [usize; 4],
    weight: [f32; 4],
    len: usize,
}

/// Per-output taps along one axis of input length `n_in` resampled to `n_out`.
fn axis_taps(n_in: usize, n_out: usize, mode: ResizeMode, align: AlignCorners) -> Vec<Taps> {
    axis_taps_scaled(n_in, n_out, mode, align, None)
}

/// [`axis_taps`] with PyTorch's `scale_factor` semantics when `scale_factor` is given:
/// without aligned corners the coordinate scale is `1/scale_factor` instead of `n_in/n_out`.
fn axis_taps_scaled(
    n_in: usize,
    n_out: usize,
    mode: ResizeMode,
    align: AlignCorners,
    scale_factor: Option<f64>,
) -> Vec<Taps> {
    let scale = match (align, scale_factor) {
        (AlignCorners::Yes, _) if n_out > 1 => (n_in as f32 - 1.0) / (n_out as f32 - 1.0),
        (AlignCorners::Yes, _) => 0.0,
        (AlignCorners::No, Some(factor)) if factor > 0.0 => (1.0 / factor) as f32,
        (AlignCorners::No, _) => n_in as f32 / n_out as f32,
    };
    let last = n_in as isize - 1;
    let clamp = |i: isize| i.clamp(0, last) as usize;
    (0..n_out)
        .map(|o| {
            let src = match align {
                AlignCorners::Yes => scale * o as f32,
                AlignCorners::No => scale * (o as f32 + 0.5) - 0.5,
            };
            match mode {
                ResizeMode::Bilinear => {
                    let src = src.max(0.0);
                    let i0 = src.floor() as isize;
                    let lambda = src - i0 as f32;
                    Taps {
                        index: [clamp(i0), clamp(i0 + 1), 0, 0],
                        weight: [1.0 - lambda, lambda, 0.0, 0.0],
                        len: 2,
                    }
                }
                ResizeMode::Bicubic => {
                    let i0 = src.floor() as isize;
                    let t = src - i0 as f32;
                    Taps {
                        index: [clamp(i0 - 1), clamp(i0), clamp(i0 + 1), clamp(i0 + 2)],
                        weight: [
                            keys_cubic(t + 1.0),
                            keys_cubic(t),
                            keys_cubic(1.0 - t),
                            keys_cubic(2.0 - t),
                        ],
                        len: 4,
                    }
                }
            }
        })
        .collect()
}

/// The dense interpolation matrix (row-major, `n_out × n_in`) of one axis.
///
/// # Example
/// ```
/// use wsss_core::resize::{interpolation_matrix, AlignCorners, ResizeMode};
/// let m = interpolation_matrix(2, 3, ResizeMode::Bilinear, AlignCorners::Yes);
/// assert_eq!(m, vec![1.0, 0.0, 0.5, 0.5, 0.0, 1.0]);
/// ```
pub fn interpolation_matrix(
    n_in: usize,
    n_out: usize,
    mode: ResizeMode,
    align: AlignCorners,
) -> Vec<f32> {
    taps_to_matrix(&axis_taps(n_in, n_out, mode, align), n_in)
}

fn taps_to_matrix(taps: &[Taps], n_in: usize) -> Vec<f32> {
    let mut m = vec![0f32; taps.len() * n_in];
    for (o, taps) in taps.iter().enumerate() {
        for k in 0..taps.len {
            m[o * n_in + taps.index[k]] += taps.weight[k];
        }
    }
    m
}

/// Applies per-axis matrices `mh` (ho × h) and `mw` (wo × w) to the last two axes.
fn apply_axis_matrices(
    xs: &Tensor,
    mh: Vec<f32>,
    mw: Vec<f32>,
    (ho, wo): (usize, usize),
) -> Result<Tensor> {
    let rank = xs.rank();
    let (h, w) = (xs.dims()[rank - 2], xs.dims()[rank - 1]);
    let in_dtype = xs.dtype();
    let work_dtype = if in_dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let xs = xs.to_dtype(work_dtype)?;
    let device = xs.device();
    let mh = Tensor::from_vec(mh, (ho, h), device)?.to_dtype(work_dtype)?;
    let mw_t = Tensor::from_vec(mw, (wo, w), device)?
        .to_dtype(work_dtype)?
        .t()?;
    let rows = mh.broadcast_matmul(&xs.contiguous()?)?;
    rows.broadcast_matmul(&mw_t)?.to_dtype(in_dtype)
}

/// Resizes the last two axes of `xs` by PyTorch's `scale_factor = (sh, sw)` with
/// `align_corners=False` (`recompute_scale_factor` unset): the output size is
/// `floor(n · s)` and the source coordinate of output `o` is `(o + ½)/s − ½`. This is the
/// DINO/MCTformer/WeakTr position-embedding rule, which differs from [`resize`] to the
/// same size.
///
/// # Shapes
/// - `xs`: `[.., H, W]`; returns `[.., floor(H·sh), floor(W·sw)]`.
pub fn resize_scale_factor(xs: &Tensor, (sh, sw): (f64, f64), mode: ResizeMode) -> Result<Tensor> {
    let rank = xs.rank();
    if rank < 2 {
        bail!(
            "resize needs a tensor with at least 2 dims, got shape {:?}",
            xs.dims()
        );
    }
    let (h, w) = (xs.dims()[rank - 2], xs.dims()[rank - 1]);
    if !(sh > 0.0 && sw > 0.0) {
        bail!("scale factors must be positive, got ({sh}, {sw})");
    }
    let (ho, wo) = (
        (h as f64 * sh).floor() as usize,
        (w as f64 * sw).floor() as usize,
    );
    if h == 0 || w == 0 || ho == 0 || wo == 0 {
        bail!("scale factor ({sh}, {sw}) maps {h}x{w} to an empty {ho}x{wo} map");
    }
    let mh = taps_to_matrix(
        &axis_taps_scaled(h, ho, mode, AlignCorners::No, Some(sh)),
        h,
    );
    let mw = taps_to_matrix(
        &axis_taps_scaled(w, wo, mode, AlignCorners::No, Some(sw)),
        w,
    );
    apply_axis_matrices(xs, mh, mw, (ho, wo))
}

/// Resizes the last two axes of `xs` to `size = (ho, wo)`.
///
/// # Shapes
/// - `xs`: `[.., H, W]` (at least 2-D), f32 or f64 (other float dtypes are computed in f32).
/// - returns `[.., Ho, Wo]`, the dtype of `xs`.
///
/// Differentiable: it is built from two matrix products.
pub fn resize(
    xs: &Tensor,
    size: (usize, usize),
    mode: ResizeMode,
    align: AlignCorners,
) -> Result<Tensor> {
    let (ho, wo) = size;
    let rank = xs.rank();
    if rank < 2 {
        bail!(
            "resize needs a tensor with at least 2 dims, got shape {:?}",
            xs.dims()
        );
    }
    if ho == 0 || wo == 0 {
        bail!("resize target size must be at least 1x1, got {ho}x{wo}");
    }
    let (h, w) = (xs.dims()[rank - 2], xs.dims()[rank - 1]);
    if h == 0 || w == 0 {
        bail!("cannot resize an empty {h}x{w} map");
    }
    if (h, w) == (ho, wo) {
        return Ok(xs.clone());
    }
    let mh = interpolation_matrix(h, ho, mode, align);
    let mw = interpolation_matrix(w, wo, mode, align);
    apply_axis_matrices(xs, mh, mw, (ho, wo))
}

/// Resizes `planes` row-major `h × w` planes stored back to back in `src` to `ho × wo`.
///
/// The CPU fast path of [`resize`] for plain buffers (CAMs, label scores): same numbers,
/// sparse taps. Returns an error when `src.len() != planes·h·w` or a size is zero.
///
/// ```
/// use wsss_core::resize::{resize_planes, AlignCorners, ResizeMode};
/// let up = resize_planes(&[0.0, 1.0], 1, (1, 2), (1, 3), ResizeMode::Bilinear, AlignCorners::Yes)?;
/// assert_eq!(up, vec![0.0, 0.5, 1.0]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn resize_planes(
    src: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (ho, wo): (usize, usize),
    mode: ResizeMode,
    align: AlignCorners,
) -> Result<Vec<f32>> {
    if h == 0 || w == 0 || ho == 0 || wo == 0 {
        bail!("resize sizes must be at least 1x1, got {h}x{w} -> {ho}x{wo}");
    }
    if src.len() != planes * h * w {
        bail!(
            "resize_planes: buffer holds {} values, expected {planes} planes of {h}x{w}",
            src.len()
        );
    }
    let rows = axis_taps(h, ho, mode, align);
    let cols = axis_taps(w, wo, mode, align);
    let mut out = vec![0f32; planes * ho * wo];
    let mut tmp = vec![0f32; ho * w];
    for (plane, dst) in src.chunks_exact(h * w).zip(out.chunks_exact_mut(ho * wo)) {
        for (o, taps) in rows.iter().enumerate() {
            let row = &mut tmp[o * w..(o + 1) * w];
            row.fill(0.0);
            for k in 0..taps.len {
                let weight = taps.weight[k];
                let input = &plane[taps.index[k] * w..(taps.index[k] + 1) * w];
                row.iter_mut()
                    .zip(input)
                    .for_each(|(r, &x)| *r += weight * x);
            }
        }
        for (o, dst_row) in dst.chunks_exact_mut(wo).enumerate() {
            let row = &tmp[o * w..(o + 1) * w];
            for (value, taps) in dst_row.iter_mut().zip(&cols) {
                *value = (0..taps.len)
                    .map(|k| taps.weight[k] * row[taps.index[k]])
                    .sum();
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use proptest::prelude::*;

    #[test]
    fn align_corners_output_one_samples_first_index() {
        let m = interpolation_matrix(5, 1, ResizeMode::Bicubic, AlignCorners::Yes);
        assert_eq!(m, vec![1.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn half_pixel_bilinear_upsample_matches_torch() {
        // torch: F.interpolate(arange(2).view(1,1,1,2), size=(1,4), mode="bilinear")
        //        -> [0, 0.25, 0.75, 1]
        let m = interpolation_matrix(2, 4, ResizeMode::Bilinear, AlignCorners::No);
        let y: Vec<f32> = (0..4).map(|o| m[o * 2 + 1]).collect();
        assert_eq!(y, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn rejects_bad_sizes() {
        let x = Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(resize(&x, (0, 3), ResizeMode::Bilinear, AlignCorners::No).is_err());
        assert!(resize_planes(
            &[0.0; 3],
            1,
            (2, 2),
            (1, 1),
            ResizeMode::Bilinear,
            AlignCorners::No
        )
        .is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Every row of an interpolation matrix sums to one (both kernels are partitions of
        /// unity), so constants are preserved.
        #[test]
        fn rows_sum_to_one(n_in in 1usize..20, n_out in 1usize..20, bicubic: bool, align: bool) {
            let mode = if bicubic { ResizeMode::Bicubic } else { ResizeMode::Bilinear };
            let m = interpolation_matrix(n_in, n_out, mode, align.into());
            for row in m.chunks(n_in) {
                let sum: f32 = row.iter().sum();
                prop_assert!((sum - 1.0).abs() < 1e-5, "row sums to {sum}");
            }
        }

        /// The tensor and slice forms give the same numbers.
        #[test]
        fn tensor_and_slice_forms_agree(h in 1usize..9, w in 1usize..9, ho in 1usize..12,
                                        wo in 1usize..12, bicubic: bool, align: bool,
                                        seed in 0u64..1000) {
            let mode = if bicubic { ResizeMode::Bicubic } else { ResizeMode::Bilinear };
            let data: Vec<f32> = (0..2 * h * w)
                .map(|i| ((i as u64 * 2654435761 + seed) % 1000) as f32 / 100.0)
                .collect();
            let x = Tensor::from_vec(data.clone(), (2, h, w), &Device::Cpu).unwrap();
            let y = resize(&x, (ho, wo), mode, align.into()).unwrap()
                .flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let z = resize_planes(&data, 2, (h, w), (ho, wo), mode, align.into()).unwrap();
            for (a, b) in y.iter().zip(&z) {
                prop_assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }
}
