//! Fully connected CRF mean-field inference (Krähenbühl & Koltun, "Efficient Inference in
//! Fully Connected CRFs with Gaussian Edge Potentials", NIPS 2011, arXiv 1210.5644), as
//! `pydensecrf` runs it — the post-processing of WeakTr, GETAM, AFA, ToCo, MCTformer.
//!
//! Energy `E(x) = Σ_i ψ_u(x_i) + Σ_{i<j} μ(x_i, x_j) Σ_m w_m k_m(f_i, f_j)` with Potts
//! compatibility μ = [x_i ≠ x_j] and two Gaussian kernels (eq. 3 of the paper):
//! - *Gaussian* (smoothness): features (x/σ_xy, y/σ_xy);
//! - *bilateral* (appearance): features (x/σ_xy, y/σ_xy, R/σ_rgb, G/σ_rgb, B/σ_rgb).
//!
//! Mean field (Algorithm 1 of the paper) with pydensecrf's symmetric normalisation
//! `K̃ = D^−½ K D^−½`, `D = diag(K·1)` (self pair included):
//! `Q⁰ = softmax(−U)`, `Qᵗ = softmax(−U + Σ_m w_m K̃_m Qᵗ⁻¹)`. The kernel products use the
//! permutohedral lattice of [`wsss_core::permutohedral`] (or, for references, the exact
//! Gaussian). Unaries: [`unary_from_softmax`] (−log of clipped probabilities) and
//! [`unary_from_labels`] (WeakTr's hard-label unary with `gt_prob`).
//!
//! # Cost
//! With the lattice: O(N·K·(d+1)·T) time for T iterations (d = 2 and 5 for the two
//! kernels) plus O(N·d²) to build the lattices; memory O(N·K + M·K), M ≤ N·(d+1) lattice
//! vertices. Every step runs in parallel with rayon (`RAYON_NUM_THREADS` sets the threads).
//! With [`FilterKind::Exact`]: O(N²·K·T) time, for small references only.
//!
//! Implementation: Q, the logits and −U are point-major with the labels padded to a
//! multiple of 8 (21 → 24; the padded labels keep Q = 0), so every per-label loop
//! vectorises without a scalar tail. The normalisation D^−½ and the Potts weight are folded
//! into each lattice's splat and slice weights ([`Permutohedral::scaled`]) and each message
//! is sliced straight into the logits, so an iteration is two splat/blur/slice passes and a
//! softmax, with no other pass over the N·K values.
//!
//! Measured on an idle machine (2-core AMD EPYC VM, load average < 1.5, 2026-11-23,
//! `RAYON_NUM_THREADS=1|2 cargo bench -p wsss-benches --bench crf`, release, SSE2 only,
//! freed memory kept as the `wsss` binary does, [`wsss_core::malloc`]), criterion medians,
//! K = 21, WeakTr config, 10 iterations:
//!
//! | size | 1 thread | 2 threads | lattice build d = 5 (1 / 2 threads) | one filter, K = 21 (1 / 2) |
//! |---|---|---|---|---|
//! | 256×256 | 267 ms | 138 ms | 30 / 22 ms | 12.2 / 5.8 ms |
//! | 500×375 | **701 ms** | **427 ms** | 79 / 52 ms | 29.2 / 15.6 ms |
//! | 512×512 | 900 ms | 539 ms | 102 / 82 ms | 39.2 / 23.6 ms |
//!
//! pydensecrf single-threaded takes about 0.94 s on this machine class (the issue's
//! figure; pydensecrf does not build here): at 500×375 we take 0.75× its time on one
//! thread and 0.45× on two. With glibc's default (freed memory returned to the kernel) the
//! same run gave 754 / 418 ms. Time and memory are linear in N (256² → 512²: 3.4× for 4×
//! the pixels) and in K (padded to a multiple of 8).

use candle_core::{bail, DType, Result, Tensor};
use rayon::prelude::*;
use wsss_core::fastmath;
use wsss_core::permutohedral::{FilterKind, FilterScratch, GaussianFilter, Permutohedral};

/// Rows per rayon task in the per-pixel loops.
const CHUNK: usize = 1024;

/// The smoothness kernel `w · exp(−|p_i − p_j|² / 2σ_xy²)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianKernel {
    /// σ_xy in pixels (`sxy`).
    pub sxy: f32,
    /// Potts weight w (`compat`).
    pub compat: f32,
}

/// The appearance kernel `w · exp(−|p_i − p_j|² / 2σ_xy² − |I_i − I_j|² / 2σ_rgb²)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BilateralKernel {
    /// σ_xy in pixels (`sxy`).
    pub sxy: f32,
    /// σ_rgb on 0–255 values (`srgb`).
    pub srgb: f32,
    /// Potts weight w (`compat`).
    pub compat: f32,
}

/// Dense CRF settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DenseCrfConfig {
    /// Mean-field iterations (0 returns `softmax(−U)`).
    pub iterations: usize,
    /// Smoothness kernel, if any.
    pub gaussian: Option<GaussianKernel>,
    /// Appearance kernel, if any.
    pub bilateral: Option<BilateralKernel>,
    /// How the kernel sums are computed (the lattice, as pydensecrf, by default).
    pub filter: FilterKind,
}

impl DenseCrfConfig {
    /// WeakTr stage-2 post-processing (`eval/densecrf.py`): Gaussian 3/3, bilateral 83/5/3,
    /// 10 iterations.
    pub fn weaktr() -> Self {
        Self {
            iterations: 10,
            gaussian: Some(GaussianKernel {
                sxy: 3.0,
                compat: 3.0,
            }),
            bilateral: Some(BilateralKernel {
                sxy: 83.0,
                srgb: 5.0,
                compat: 3.0,
            }),
            filter: FilterKind::Permutohedral,
        }
    }

    /// WeakTr's pseudo-mask CRF on VOC (`crf_inference_label`): Gaussian 4/3, bilateral
    /// 83/5/3, 10 iterations (use with [`unary_from_labels`], gt_prob 0.7).
    pub fn weaktr_labels_voc() -> Self {
        Self {
            gaussian: Some(GaussianKernel {
                sxy: 4.0,
                compat: 3.0,
            }),
            ..Self::weaktr()
        }
    }

    /// AFA `utils/dcrf.py::crf_inference`: Gaussian 3/3, bilateral 80/13/10, 10 iterations.
    pub fn afa() -> Self {
        Self {
            bilateral: Some(BilateralKernel {
                sxy: 80.0,
                srgb: 13.0,
                compat: 10.0,
            }),
            ..Self::weaktr()
        }
    }

    /// WeakTr's pseudo-mask CRF on COCO (and AFA's label CRF): Gaussian 3/3, bilateral
    /// 50/5/10, 10 iterations.
    pub fn weaktr_labels_coco() -> Self {
        Self {
            bilateral: Some(BilateralKernel {
                sxy: 50.0,
                srgb: 5.0,
                compat: 10.0,
            }),
            ..Self::weaktr()
        }
    }
}

/// `U = −log(clip(prob, clip, 1))`, pydensecrf's `unary_from_softmax`.
///
/// # Shapes
/// - `prob`: [K, N] f32 probabilities (class planes); returns [K, N].
///
/// # Cost
/// O(N·K).
pub fn unary_from_softmax(prob: &[f32], clip: f32) -> Vec<f32> {
    prob.iter().map(|p| -p.clamp(clip, 1.0).ln()).collect()
}

/// WeakTr's label unary (pydensecrf `unary_from_labels(labels, n_labels, gt_prob,
/// zero_unsure=False)`): `U[k, n] = −log(gt_prob)` where `labels[n] == k`, else
/// `−log((1 − gt_prob)/(n_labels − 1))`. Every value is a label (0 is not "unsure").
///
/// # Shapes
/// - `labels`: [N] u8 in `0..n_labels`; returns [n_labels, N].
///
/// # Cost
/// O(N·K).
pub fn unary_from_labels(labels: &[u8], n_labels: usize, gt_prob: f32) -> Result<Vec<f32>> {
    if !(gt_prob > 0.0 && gt_prob < 1.0) {
        bail!("unary_from_labels: gt_prob must be in (0, 1), got {gt_prob}");
    }
    if n_labels < 2 {
        bail!("unary_from_labels: need at least 2 labels, got {n_labels}");
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= n_labels) {
        bail!("unary_from_labels: label {bad} is not below n_labels = {n_labels}");
    }
    let n = labels.len();
    let n_energy = (-((1.0 - gt_prob as f64) / (n_labels - 1) as f64).ln()) as f32;
    let p_energy = (-(gt_prob as f64).ln()) as f32;
    let mut u = vec![n_energy; n_labels * n];
    for (i, &l) in labels.iter().enumerate() {
        u[l as usize * n + i] = p_energy;
    }
    Ok(u)
}

/// Point-major features of the Gaussian kernel: (x/σ, y/σ), x = column.
fn gaussian_features(h: usize, w: usize, sxy: f32) -> Vec<f32> {
    let mut f = Vec::with_capacity(h * w * 2);
    for y in 0..h {
        for x in 0..w {
            f.push(x as f32 / sxy);
            f.push(y as f32 / sxy);
        }
    }
    f
}

/// Point-major features of the bilateral kernel: (x/σ_xy, y/σ_xy, R/σ_rgb, G/σ_rgb, B/σ_rgb).
fn bilateral_features(image: &[u8], h: usize, w: usize, sxy: f32, srgb: f32) -> Vec<f32> {
    let mut f = Vec::with_capacity(h * w * 5);
    for y in 0..h {
        for x in 0..w {
            let p = &image[(y * w + x) * 3..(y * w + x) * 3 + 3];
            f.extend_from_slice(&[
                x as f32 / sxy,
                y as f32 / sxy,
                p[0] as f32 / srgb,
                p[1] as f32 / srgb,
                p[2] as f32 / srgb,
            ]);
        }
    }
    f
}

/// Row-wise softmax in place, max subtracted first (densecrf's `expAndNormalize`).
///
/// The exponentials, the sum (8 independent partial sums) and the scaling are separate
/// loops so that each vectorises (a float reduction fused into the `exp` loop does not).
/// Rows are `kp` long; the softmax runs over the first `k` entries, the rest are set to 0.
fn softmax_rows(xs: &mut [f32], k: usize, kp: usize) {
    xs.par_chunks_mut(CHUNK * kp).for_each(|rows| {
        for row in rows.chunks_exact_mut(kp) {
            let (row, pad) = row.split_at_mut(k);
            pad.fill(0.0);
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for v in row.iter_mut() {
                *v = fastmath::exp(*v - max);
            }
            let mut partial = [0f32; 8];
            let chunks = row.chunks_exact(8);
            let tail: f32 = chunks.remainder().iter().sum();
            for c in chunks {
                for (p, v) in partial.iter_mut().zip(c) {
                    *p += v;
                }
            }
            let inv = 1.0 / (partial.iter().sum::<f32>() + tail);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    });
}

/// One prepared kernel: filter, symmetric normalisation D^−½ and Potts weight.
///
/// On the lattice the normalisation and the weight are folded into the splat and slice
/// weights ([`Permutohedral::scaled`]) and the message is sliced straight into the logits,
/// so a message costs one splat, blur and slice and no extra pass over the N·K values.
enum Pairwise {
    Lattice {
        lattice: Permutohedral,
        scratch: FilterScratch,
    },
    Exact {
        filter: GaussianFilter,
        norm: Vec<f32>,
        compat: f32,
    },
}

impl Pairwise {
    fn new(features: &[f32], d: usize, compat: f32, kind: FilterKind) -> Result<Self> {
        let filter = GaussianFilter::new(features, d, kind)?;
        let n = filter.num_points();
        let mut norm = vec![0f32; n];
        filter.filter(&vec![1f32; n], 1, &mut norm)?;
        for v in norm.iter_mut() {
            *v = 1.0 / (*v + 1e-20).sqrt();
        }
        Ok(match filter {
            GaussianFilter::Permutohedral(lattice) => {
                let out_scale: Vec<f32> = norm.iter().map(|s| s * compat).collect();
                Self::Lattice {
                    lattice: lattice.scaled(&norm, &out_scale)?,
                    scratch: FilterScratch::default(),
                }
            }
            filter => Self::Exact {
                filter,
                norm,
                compat,
            },
        })
    }

    /// `logits += compat · D^−½ K D^−½ q`.
    fn add_message(&mut self, q: &[f32], k: usize, logits: &mut [f32]) -> Result<()> {
        match self {
            Self::Lattice { lattice, scratch } => {
                lattice.filter_accumulate_with(q, k, logits, scratch)
            }
            Self::Exact {
                filter,
                norm,
                compat,
            } => {
                let mut tmp = q.to_vec();
                for (t, s) in tmp.chunks_exact_mut(k).zip(norm.iter()) {
                    t.iter_mut().for_each(|t| *t *= s);
                }
                let mut filtered = vec![0f32; q.len()];
                filter.filter(&tmp, k, &mut filtered)?;
                for ((l, f), s) in logits
                    .chunks_exact_mut(k)
                    .zip(filtered.chunks_exact(k))
                    .zip(norm.iter())
                {
                    for (l, f) in l.iter_mut().zip(f) {
                        *l += *compat * (f * s);
                    }
                }
                Ok(())
            }
        }
    }
}

/// Mean-field inference of the dense CRF; returns the marginals Q.
///
/// # Shapes
/// - `image`: [H, W, 3] u8 RGB (HWC, pydensecrf's `rgbim`).
/// - `unary`: [K, H·W] f32 energies (class planes), e.g. from [`unary_from_softmax`].
/// - returns [K, H·W] f32 marginals in [0, 1], summing to 1 over K.
///
/// # Cost
/// O(N·K·T) time with the lattice (module docs), O(N·K + M·K) memory.
pub fn dense_crf(
    image: &[u8],
    h: usize,
    w: usize,
    unary: &[f32],
    k: usize,
    config: &DenseCrfConfig,
) -> Result<Vec<f32>> {
    let n = h * w;
    if n == 0 || k == 0 {
        bail!("dense_crf: empty input ({h}x{w} pixels, {k} labels)");
    }
    if image.len() != n * 3 {
        bail!(
            "dense_crf: image has {} values, expected {h}x{w}x3",
            image.len()
        );
    }
    if unary.len() != k * n {
        bail!(
            "dense_crf: unary has {} values, expected {k}x{h}x{w}",
            unary.len()
        );
    }
    if unary.iter().any(|u| !u.is_finite()) {
        bail!("dense_crf: the unary must be finite");
    }
    let mut pairwise = Vec::new();
    if let Some(g) = config.gaussian {
        if !(g.sxy > 0.0 && g.sxy.is_finite() && g.compat.is_finite()) {
            bail!("dense_crf: Gaussian kernel needs sxy > 0 and a finite compat, got {g:?}");
        }
        pairwise.push(Pairwise::new(
            &gaussian_features(h, w, g.sxy),
            2,
            g.compat,
            config.filter,
        )?);
    }
    if let Some(b) = config.bilateral {
        if !(b.sxy > 0.0
            && b.srgb > 0.0
            && b.sxy.is_finite()
            && b.srgb.is_finite()
            && b.compat.is_finite())
        {
            bail!("dense_crf: bilateral kernel needs sxy, srgb > 0 and a finite compat, got {b:?}");
        }
        pairwise.push(Pairwise::new(
            &bilateral_features(image, h, w, b.sxy, b.srgb),
            5,
            b.compat,
            config.filter,
        )?);
    }

    // Point-major −U, each row padded to `kp` labels (a multiple of 8 from K = 8 on) so
    // the per-label loops of the filter have no scalar remainder; padded labels keep
    // Q = 0, so they never contribute to a message.
    let kp = if k >= 8 { k.next_multiple_of(8) } else { k };
    let mut neg_unary = vec![0f32; n * kp];
    neg_unary
        .par_chunks_mut(CHUNK * kp)
        .enumerate()
        .for_each(|(c, rows)| {
            for (r, row) in rows.chunks_exact_mut(kp).enumerate() {
                let i = c * CHUNK + r;
                for (l, v) in row[..k].iter_mut().enumerate() {
                    *v = -unary[l * n + i];
                }
            }
        });
    let mut q = neg_unary.clone();
    softmax_rows(&mut q, k, kp);
    if !pairwise.is_empty() {
        let mut logits = vec![0f32; n * kp];
        for _ in 0..config.iterations {
            logits.copy_from_slice(&neg_unary);
            for p in &mut pairwise {
                p.add_message(&q, kp, &mut logits)?;
            }
            softmax_rows(&mut logits, k, kp);
            std::mem::swap(&mut q, &mut logits);
        }
    }

    // Back to class planes.
    let mut out = vec![0f32; k * n];
    out.par_chunks_mut(n).enumerate().for_each(|(l, plane)| {
        for (i, v) in plane.iter_mut().enumerate() {
            *v = q[i * kp + l];
        }
    });
    Ok(out)
}

/// Argmax over classes (first maximum on ties).
///
/// # Shapes
/// - `q`: [K, N] f32; returns [N] u8 (K ≤ 256).
///
/// # Cost
/// O(N·K).
pub fn argmax_labels(q: &[f32], k: usize) -> Result<Vec<u8>> {
    if k == 0 || k > 256 || !q.len().is_multiple_of(k) {
        bail!(
            "argmax_labels: {} values do not form 1..=256 planes of {k}",
            q.len()
        );
    }
    let n = q.len() / k;
    Ok((0..n)
        .map(|i| {
            let mut best = 0;
            for l in 1..k {
                if q[l * n + i] > q[best * n + i] {
                    best = l;
                }
            }
            best as u8
        })
        .collect())
}

/// Checks a [H, W, 3] u8 image tensor and returns its pixels and size.
fn image_pixels(image: &Tensor) -> Result<(Vec<u8>, usize, usize)> {
    let (h, w, c) = image.dims3()?;
    if c != 3 {
        bail!(
            "dense_crf: image must be [H, W, 3] RGB, got {:?}",
            image.dims()
        );
    }
    let pixels = image.to_dtype(DType::U8)?.flatten_all()?.to_vec1::<u8>()?;
    Ok((pixels, h, w))
}

/// Dense CRF with the softmax unary (`crf.dense_inference`).
///
/// # Shapes
/// - `image`: [H, W, 3] u8 (or any dtype holding 0–255 integers).
/// - `prob`: [K, H, W] f32 class probabilities.
/// - returns [K, H, W] f32 marginals.
///
/// # Cost
/// As [`dense_crf`].
pub fn dense_crf_softmax(
    image: &Tensor,
    prob: &Tensor,
    clip: f32,
    config: &DenseCrfConfig,
) -> Result<Tensor> {
    let (pixels, h, w) = image_pixels(image)?;
    let (k, ph, pw) = prob.dims3()?;
    if (ph, pw) != (h, w) {
        bail!("dense_crf: prob is {ph}x{pw}, image is {h}x{w}");
    }
    let prob = prob.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let q = dense_crf(&pixels, h, w, &unary_from_softmax(&prob, clip), k, config)?;
    Tensor::from_vec(q, (k, h, w), image.device())
}

/// Dense CRF with WeakTr's label unary (`crf.dense_labels`).
///
/// # Shapes
/// - `image`: [H, W, 3] u8; `labels`: [H, W] u8 in `0..n_labels`.
/// - returns [n_labels, H, W] f32 marginals.
///
/// # Cost
/// As [`dense_crf`].
pub fn dense_crf_labels(
    image: &Tensor,
    labels: &Tensor,
    n_labels: usize,
    gt_prob: f32,
    config: &DenseCrfConfig,
) -> Result<Tensor> {
    let (pixels, h, w) = image_pixels(image)?;
    let (lh, lw) = labels.dims2()?;
    if (lh, lw) != (h, w) {
        bail!("dense_crf: labels are {lh}x{lw}, image is {h}x{w}");
    }
    let labels = labels.to_dtype(DType::U8)?.flatten_all()?.to_vec1::<u8>()?;
    let unary = unary_from_labels(&labels, n_labels, gt_prob)?;
    let q = dense_crf(&pixels, h, w, &unary, n_labels, config)?;
    Tensor::from_vec(q, (n_labels, h, w), image.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn checkerboard(h: usize, w: usize) -> Vec<u8> {
        let mut img = Vec::with_capacity(h * w * 3);
        for y in 0..h {
            for x in 0..w {
                let v = if x < w / 2 { 20 } else { 230 };
                img.extend_from_slice(&[v, v / 2 + (y as u8 % 3), 255 - v]);
            }
        }
        img
    }

    #[test]
    fn zero_iterations_is_the_softmax_of_the_unary() {
        let prob = [0.7f32, 0.2, 0.3, 0.8];
        let cfg = DenseCrfConfig {
            iterations: 0,
            ..DenseCrfConfig::weaktr()
        };
        let q = dense_crf(&[0; 6], 1, 2, &unary_from_softmax(&prob, 1e-5), 2, &cfg).unwrap();
        for (a, b) in q.iter().zip(&prob) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn crf_cleans_a_noisy_label_map_along_the_edge() {
        // Two colour halves; the label unary has noise on a few pixels; the CRF should
        // restore the halves.
        let (h, w) = (16, 16);
        let img = checkerboard(h, w);
        let mut labels: Vec<u8> = (0..h * w).map(|i| u8::from(i % w >= w / 2)).collect();
        for i in [17usize, 40, 100, 200, 230] {
            labels[i] = 1 - labels[i];
        }
        let unary = unary_from_labels(&labels, 2, 0.7).unwrap();
        let q = dense_crf(&img, h, w, &unary, 2, &DenseCrfConfig::weaktr()).unwrap();
        let out = argmax_labels(&q, 2).unwrap();
        let want: Vec<u8> = (0..h * w).map(|i| u8::from(i % w >= w / 2)).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn bad_input_is_an_error() {
        let cfg = DenseCrfConfig::weaktr();
        assert!(dense_crf(&[0; 5], 1, 2, &[0.0; 4], 2, &cfg).is_err());
        assert!(dense_crf(&[0; 6], 1, 2, &[0.0; 3], 2, &cfg).is_err());
        assert!(dense_crf(&[0; 6], 1, 2, &[f32::NAN; 4], 2, &cfg).is_err());
        let bad = DenseCrfConfig {
            gaussian: Some(GaussianKernel {
                sxy: 0.0,
                compat: 3.0,
            }),
            ..cfg
        };
        assert!(dense_crf(&[0; 6], 1, 2, &[0.0; 4], 2, &bad).is_err());
        assert!(unary_from_labels(&[0, 3], 3, 0.7).is_err());
        assert!(unary_from_labels(&[0, 1], 2, 1.0).is_err());
        assert!(argmax_labels(&[0.0; 5], 2).is_err());
    }

    #[test]
    fn lattice_and_exact_agree_on_labels() {
        let (h, w) = (12, 14);
        let img = checkerboard(h, w);
        let prob: Vec<f32> = (0..2 * h * w)
            .map(|i| {
                let p = i % (h * w);
                let right = (p % w) >= w / 2;
                let first = i < h * w;
                if right != first {
                    0.65
                } else {
                    0.35
                }
            })
            .collect();
        let unary = unary_from_softmax(&prob, 1e-5);
        let lattice = dense_crf(&img, h, w, &unary, 2, &DenseCrfConfig::afa()).unwrap();
        let exact = dense_crf(
            &img,
            h,
            w,
            &unary,
            2,
            &DenseCrfConfig {
                filter: FilterKind::Exact,
                ..DenseCrfConfig::afa()
            },
        )
        .unwrap();
        assert_eq!(
            argmax_labels(&lattice, 2).unwrap(),
            argmax_labels(&exact, 2).unwrap()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Marginals are finite, in [0, 1] and sum to 1 for random images and unaries.
        #[test]
        fn marginals_are_distributions(
            h in 1usize..9,
            w in 1usize..9,
            k in 1usize..5,
            seed in any::<u64>(),
            iterations in 0usize..6,
        ) {
            let mut s = seed;
            let mut next = || {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (s >> 33) as u32
            };
            let img: Vec<u8> = (0..h * w * 3).map(|_| next() as u8).collect();
            let unary: Vec<f32> = (0..k * h * w).map(|_| (next() % 1000) as f32 / 50.0).collect();
            let cfg = DenseCrfConfig { iterations, ..DenseCrfConfig::afa() };
            let q = dense_crf(&img, h, w, &unary, k, &cfg).unwrap();
            let n = h * w;
            for i in 0..n {
                let mut sum = 0f32;
                for l in 0..k {
                    let v = q[l * n + i];
                    prop_assert!(v.is_finite() && (0.0..=1.0).contains(&v));
                    sum += v;
                }
                prop_assert!((sum - 1.0).abs() < 1e-4);
            }
            let labels = argmax_labels(&q, k).unwrap();
            prop_assert!(labels.iter().all(|&l| (l as usize) < k));
        }
    }
}
