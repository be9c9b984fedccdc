//! Dense CRF loss (Tang, Perazzi, Djelouah, Ben Ayed, Schroers, Boykov, "On Regularized
//! Losses for Weakly-supervised CNN Segmentation", ECCV 2018, arXiv 1803.10464, eq. 5 and
//! the relaxation of §3.1) and the gated "energy" variant of RRM/AFA/GETAM/ToCo.
//!
//! For softmax outputs S (K class channels) and a fully connected Gaussian affinity W over
//! (x/σ_xy, y/σ_xy, R/σ_rgb, G/σ_rgb, B/σ_rgb), the relaxed Potts energy is
//! `Σ_k S_kᵀ W (1 − S_k)`; dropping the constant leaves `E = −Σ_k S_kᵀ W S_k`. The official
//! code (meng-tang/rloss `DenseCRFLoss.py`) computes `W·S` with Krähenbühl's permutohedral
//! lattice (unnormalised, about 0.5× the exact sum; its loss weights were tuned with it),
//! divides by the batch size only, masks S by a region of interest, and optionally works at
//! a reduced scale. The gradient is the closed form `−2·W·S` (W symmetric), applied as an
//! explicit backward: the N×N matrix W never exists.
//!
//! Exact semantics (rescaling, gate, normalisation, the official surrogate gradient of the
//! gated variant) follow the golden doc `loss.dense_crf.md`:
//! 1. rescale by s: image, roi, seg_label nearest; seg bilinear (align_corners = False,
//!    PyTorch `scale_factor` semantics); σ_xy ← s·σ_xy;
//! 2. S̃ = S ⊙ roi; `filtered` = W·S̃;
//! 3. gate G = 1 (`none`) or max(roi − max_k S_k, 0) with G = 1 on unlabelled pixels
//!    (`energy`);
//! 4. loss = −weight/B · Σ S̃ ⊙ G ⊙ W S̃; gradient −2·weight/B · G ⊙ W S̃ ⊙ roi at the working
//!    resolution, then through the bilinear downscale.
//!
//! # Cost
//! Per image: lattice O(N·d²) build, O((N + M)·(d+1)·K) filtering (d = 5, M ≤ 6N lattice
//! vertices), O(N·K) for the rest; memory O(N·K + M·K). With [`FilterKind::Exact`]:
//! O(N²·K) time, O(N·K) memory.
//!
//! Measured on an idle 2-core AMD EPYC VM (2026-11-23, `RAYON_NUM_THREADS=1 cargo bench -p
//! wsss-benches --bench losses`, criterion medians, K = 21, forward + backward through
//! candle, release, SSE2 only):
//!
//! | size | scale 1 | scale 0.5 | rloss's C++ lattice (issue's figures) |
//! |---|---|---|---|
//! | 128×128 | 12.3 ms | 5.5 ms | — |
//! | 320×320 | **63.0 ms** | **24.4 ms** | about 117 / 37 ms |
//!
//! Before [`wsss_core::malloc::retain_freed_memory`] (which the bench and the `wsss` binary
//! call) the same run gave 119.5 / 50.9 ms at 320×320: a third of the time went to page
//! faults on freshly mapped buffers. Time is linear in N and in K; the lattice build is
//! about half of it at scale 1.

use std::sync::{Arc, Mutex};

use candle_core::{bail, CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use wsss_core::permutohedral::{FilterKind, GaussianFilter};
use wsss_core::IGNORE;

/// Which pixels the energy counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Gate {
    /// rloss: every pixel (G = 1).
    #[default]
    None,
    /// RRM/AFA/GETAM/ToCo `DenseEnergyLoss`: G = max(roi − max_k S_k, 0), 1 on pixels whose
    /// pseudo label is [`IGNORE`]; the official surrogate gradient.
    Energy,
}

impl std::str::FromStr for Gate {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Gate::None),
            "energy" => Ok(Gate::Energy),
            other => Err(format!(
                "unknown gate `{other}`: expected `none` or `energy`"
            )),
        }
    }
}

/// Dense CRF loss settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DenseCrfLossConfig {
    /// Loss weight, included in the loss and the gradient.
    pub weight: f32,
    /// σ_rgb on 0–255 values.
    pub sigma_rgb: f32,
    /// σ_xy in pixels of the input resolution.
    pub sigma_xy: f32,
    /// Working scale s in (0, 1]: inputs are rescaled by s before the kernel.
    pub scale_factor: f32,
    /// Which pixels the energy counts.
    pub gate: Gate,
    /// Lattice (as the official code) or exact Gaussian.
    pub filter: FilterKind,
}

impl DenseCrfLossConfig {
    /// rloss (Tang et al.) on VOC scribbles: weight 2e-9, σ_rgb 15, σ_xy 80, full scale.
    pub fn rloss() -> Self {
        Self {
            weight: 2e-9,
            sigma_rgb: 15.0,
            sigma_xy: 80.0,
            scale_factor: 1.0,
            gate: Gate::None,
            filter: FilterKind::Permutohedral,
        }
    }

    /// RRM/AFA/GETAM/ToCo `DenseEnergyLoss`: weight 1e-7, σ_rgb 15, σ_xy 100, scale 0.5,
    /// energy gate.
    pub fn energy() -> Self {
        Self {
            weight: 1e-7,
            sigma_rgb: 15.0,
            sigma_xy: 100.0,
            scale_factor: 0.5,
            gate: Gate::Energy,
            filter: FilterKind::Permutohedral,
        }
    }
}

/// Loss and the filtered maps.
#[derive(Debug, Clone)]
pub struct DenseCrfLossOutput {
    /// [1] f32: weight · E, differentiable w.r.t. `seg` (explicit backward).
    pub loss: Tensor,
    /// [B, K, h, w] f32: W·S̃ at the working resolution, before the gate (no gradient).
    pub filtered: Tensor,
}

/// Output size and source taps of PyTorch's `F.interpolate(scale_factor = s)`.
fn scaled_len(n: usize, s: f32) -> usize {
    ((n as f64) * (s as f64)).floor() as usize
}

/// Nearest source index `min(floor(o / s), n − 1)` (PyTorch's `nearest`, in f32).
fn nearest_taps(n: usize, s: f32) -> Vec<usize> {
    let inv = 1.0f32 / s;
    (0..scaled_len(n, s))
        .map(|o| ((o as f32 * inv).floor() as usize).min(n - 1))
        .collect()
}

/// Bilinear (align_corners = False) taps with the `scale_factor` source coordinate
/// max((o + ½)/s − ½, 0): for each output index, (i0, i1, weight of i1).
fn bilinear_taps(n: usize, s: f32) -> Vec<(usize, usize, f32)> {
    let inv = 1.0f32 / s;
    (0..scaled_len(n, s))
        .map(|o| {
            let src = ((o as f32 + 0.5) * inv - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n - 1);
            let i1 = (i0 + 1).min(n - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// Separable bilinear downscale of [P, H, W] planes with 2 taps per axis, as a custom op
/// with its adjoint as backward: O(P·H·W) time instead of two dense matrix products.
struct BilinearDown {
    planes: usize,
    size_in: (usize, usize),
    ty: Vec<(usize, usize, f32)>,
    tx: Vec<(usize, usize, f32)>,
}

impl BilinearDown {
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let (hh, ww) = self.size_in;
        let (h, w) = (self.ty.len(), self.tx.len());
        let mut out = vec![0f32; self.planes * h * w];
        out.par_chunks_mut(h * w).enumerate().for_each(|(p, o)| {
            let plane = &x[p * hh * ww..(p + 1) * hh * ww];
            for (y, &(y0, y1, ly)) in self.ty.iter().enumerate() {
                let (r0, r1) = (
                    &plane[y0 * ww..(y0 + 1) * ww],
                    &plane[y1 * ww..(y1 + 1) * ww],
                );
                for (xo, &(x0, x1, lx)) in self.tx.iter().enumerate() {
                    let a = r0[x0] * (1.0 - lx) + r0[x1] * lx;
                    let b = r1[x0] * (1.0 - lx) + r1[x1] * lx;
                    o[y * w + xo] = a * (1.0 - ly) + b * ly;
                }
            }
        });
        out
    }

    fn adjoint(&self, g: &[f32]) -> Vec<f32> {
        let (hh, ww) = self.size_in;
        let (h, w) = (self.ty.len(), self.tx.len());
        let mut out = vec![0f32; self.planes * hh * ww];
        out.par_chunks_mut(hh * ww).enumerate().for_each(|(p, o)| {
            let gp = &g[p * h * w..(p + 1) * h * w];
            for (y, &(y0, y1, ly)) in self.ty.iter().enumerate() {
                for (xo, &(x0, x1, lx)) in self.tx.iter().enumerate() {
                    let v = gp[y * w + xo];
                    o[y0 * ww + x0] += v * (1.0 - ly) * (1.0 - lx);
                    o[y0 * ww + x1] += v * (1.0 - ly) * lx;
                    o[y1 * ww + x0] += v * ly * (1.0 - lx);
                    o[y1 * ww + x1] += v * ly * lx;
                }
            }
        });
        out
    }
}

impl CustomOp1 for BilinearDown {
    fn name(&self) -> &'static str {
        "bilinear-down"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("bilinear downscale: input must be contiguous");
        };
        let x = &storage.as_slice::<f32>()?[start..end];
        let mut dims = layout.dims().to_vec();
        let r = dims.len();
        dims[r - 2] = self.ty.len();
        dims[r - 1] = self.tx.len();
        Ok((CpuStorage::F32(self.forward(x)), Shape::from_dims(&dims)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Some(Tensor::from_vec(
            self.adjoint(&g),
            arg.shape(),
            arg.device(),
        )?))
    }
}

/// (gradient, filtered) of the last forward, both [B, K, N].
type Cache = Arc<Mutex<Option<(Vec<f32>, Vec<f32>)>>>;

/// The explicit-backward op: forward computes the loss from S at the working resolution,
/// caching `−2·weight/B · G ⊙ W S̃ ⊙ roi` (the gradient) and `W S̃` for the caller.
struct DenseCrfLossOp {
    b: usize,
    k: usize,
    n: usize,
    weight: f32,
    gate: Gate,
    filters: Vec<GaussianFilter>,
    /// [B, N] region of interest.
    roi: Vec<f32>,
    /// [B, N] pseudo labels (gate `energy`).
    labels: Option<Vec<u8>>,
    /// (gradient, filtered), both [B, K, N].
    cache: Cache,
}

impl DenseCrfLossOp {
    fn compute(&self, seg: &[f32]) -> Result<f64> {
        let (b, k, n) = (self.b, self.k, self.n);
        let mut grad = vec![0f32; b * k * n];
        let mut filtered = vec![0f32; b * k * n];
        let mut energy = 0f64;
        for bi in 0..b {
            let s = &seg[bi * k * n..(bi + 1) * k * n];
            let roi = &self.roi[bi * n..(bi + 1) * n];
            // Point-major S̃ = S ⊙ roi.
            let mut masked = vec![0f32; n * k];
            masked.par_chunks_mut(k).enumerate().for_each(|(i, row)| {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = s[c * n + i] * roi[i];
                }
            });
            let mut ws = vec![0f32; n * k];
            self.filters[bi].filter(&masked, k, &mut ws)?;
            // Gate (None: no buffer).
            let gate: Option<Vec<f32>> = match self.gate {
                Gate::None => None,
                Gate::Energy => {
                    let labels = self.labels.as_deref().map(|l| &l[bi * n..(bi + 1) * n]);
                    Some(
                        (0..n)
                            .map(|i| {
                                if labels.is_some_and(|l| l[i] == IGNORE) {
                                    return 1.0;
                                }
                                let max = (0..k).map(|c| s[c * n + i]).fold(f32::MIN, f32::max);
                                (roi[i] - max).max(0.0)
                            })
                            .collect(),
                    )
                }
            };
            let scale = -2.0 * self.weight / b as f32;
            let g = &mut grad[bi * k * n..(bi + 1) * k * n];
            let f = &mut filtered[bi * k * n..(bi + 1) * k * n];
            // Point-major W·S̃ back to class planes, in tiles of TILE points so that the
            // reads stay in cache and every plane gets contiguous runs; the tiles are
            // independent (one `&mut` run per plane each), hence parallel.
            const TILE: usize = 256;
            let mut tiles: Vec<Vec<(&mut [f32], &mut [f32])>> = (0..n.div_ceil(TILE))
                .map(|_| Vec::with_capacity(k))
                .collect();
            for (gp, fp) in g.chunks_mut(n).zip(f.chunks_mut(n)) {
                for (t, run) in gp.chunks_mut(TILE).zip(fp.chunks_mut(TILE)).enumerate() {
                    tiles[t].push(run);
                }
            }
            let gate = gate.as_deref();
            energy += tiles
                .into_par_iter()
                .enumerate()
                .map(|(t, mut planes)| {
                    let i0 = t * TILE;
                    let mut e = 0f64;
                    for (c, (gp, fp)) in planes.iter_mut().enumerate() {
                        let mut ec = 0f32;
                        for (j, (gv, fv)) in gp.iter_mut().zip(fp.iter_mut()).enumerate() {
                            let i = i0 + j;
                            let w = ws[i * k + c];
                            let a = gate.map_or(w, |gt| gt[i] * w);
                            *fv = w;
                            *gv = scale * a * roi[i];
                            ec += masked[i * k + c] * a;
                        }
                        e += ec as f64;
                    }
                    e
                })
                .sum::<f64>();
        }
        let loss = -(self.weight as f64) * energy / b as f64;
        *self
            .cache
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned cache".into()))? =
            Some((grad, filtered));
        Ok(loss)
    }
}

impl CustomOp1 for DenseCrfLossOp {
    fn name(&self) -> &'static str {
        "dense-crf-loss"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("dense_crf_loss: seg must be contiguous");
        };
        let seg = &storage.as_slice::<f32>()?[start..end];
        if seg.len() != self.b * self.k * self.n {
            bail!(
                "dense_crf_loss: seg has {} values, expected {}",
                seg.len(),
                self.b * self.k * self.n
            );
        }
        let loss = self.compute(seg)?;
        Ok((CpuStorage::F32(vec![loss as f32]), Shape::from_dims(&[1])))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let cache = self
            .cache
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned cache".into()))?;
        let Some((grad, _)) = cache.as_ref() else {
            bail!("dense_crf_loss: backward before forward");
        };
        let grad = Tensor::from_slice(grad, arg.shape(), arg.device())?;
        // The usual case, d(loss)/d(loss) = 1, needs no extra pass over B·K·N values.
        if grad_res.elem_count() == 1
            && grad_res
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?[0]
                == 1.0
        {
            return Ok(Some(grad));
        }
        Ok(Some(grad.broadcast_mul(
            &grad_res.reshape(&[1usize; 4][..arg.rank()])?,
        )?))
    }
}

/// Dense CRF loss of Tang et al. (or the gated energy variant), with the explicit backward.
///
/// # Shapes
/// - `image`: [B, 3, H, W] f32 RGB in 0–255.
/// - `seg`: [B, K, H, W] f32 softmax probabilities (the variable).
/// - `roi`: [B, H, W] f32 in {0, 1}.
/// - `seg_label`: [B, H, W] u8 pseudo labels, 255 = unlabelled (gate `energy` only;
///   optional).
/// - returns `loss` [1] and `filtered` [B, K, h, w], (h, w) = (⌊s·H⌋, ⌊s·W⌋).
///
/// # Cost
/// O(B·(N·d² + (N + M)·(d+1)·K)) time with the lattice (N = h·w working pixels, d = 5),
/// O(B·K·(N + M)) memory; never an N×N matrix. Runs on the CPU (other devices are copied).
pub fn dense_crf_loss(
    image: &Tensor,
    seg: &Tensor,
    roi: &Tensor,
    seg_label: Option<&Tensor>,
    config: &DenseCrfLossConfig,
) -> Result<DenseCrfLossOutput> {
    dense_crf_loss_with_features(image, seg, roi, seg_label, None, config)
}

/// [`dense_crf_loss`] with extra kernel features appended to (x, y, R, G, B): DFR's dense
/// form, whose Gaussian also compares (low-dimensional projections of) deep features,
/// `exp(−½|Δxy/σ_xy|² − ½|Δrgb/σ_rgb|² − ½|ΔF/σ_F|²)`. The features are constants
/// (detached), sampled nearest at the working resolution like the image.
///
/// # Shapes
/// - as [`dense_crf_loss`]; `extra` = (F [B, C, H, W] f32, σ_F > 0), C small (the lattice
///   works in d = 5 + C dimensions: keep C ≤ 3–4).
///
/// # Cost
/// O(B·(N·d² + (N + M)·(d+1)·K)) with d = 5 + C; memory O(B·K·(N + M)).
pub fn dense_crf_loss_with_features(
    image: &Tensor,
    seg: &Tensor,
    roi: &Tensor,
    seg_label: Option<&Tensor>,
    extra: Option<(&Tensor, f32)>,
    config: &DenseCrfLossConfig,
) -> Result<DenseCrfLossOutput> {
    let (b, k, h0, w0) = seg.dims4()?;
    let (ib, ic, ih, iw) = image.dims4()?;
    if (ib, ic, ih, iw) != (b, 3, h0, w0) {
        bail!(
            "dense_crf_loss: image must be [{b}, 3, {h0}, {w0}] to match seg, got {:?}",
            image.dims()
        );
    }
    if roi.dims() != [b, h0, w0] {
        bail!(
            "dense_crf_loss: roi must be [{b}, {h0}, {w0}], got {:?}",
            roi.dims()
        );
    }
    if let Some(l) = seg_label {
        if l.dims() != [b, h0, w0] {
            bail!(
                "dense_crf_loss: seg_label must be [{b}, {h0}, {w0}], got {:?}",
                l.dims()
            );
        }
    }
    let extra = match extra {
        None => None,
        Some((f, sigma)) => {
            let (fb, fc, fh, fw) = f.dims4()?;
            if (fb, fh, fw) != (b, h0, w0) || fc == 0 {
                bail!(
                    "dense_crf_loss: extra features must be [{b}, C ≥ 1, {h0}, {w0}], got {:?}",
                    f.dims()
                );
            }
            if sigma.is_nan() || sigma <= 0.0 {
                bail!("dense_crf_loss: the extra features' sigma must be positive, got {sigma}");
            }
            let v = f
                .detach()
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            Some((v, fc, sigma))
        }
    };
    let s = config.scale_factor;
    if !(s > 0.0 && s <= 1.0) {
        bail!("dense_crf_loss: scale_factor must be in (0, 1], got {s}");
    }
    if !(config.sigma_rgb > 0.0 && config.sigma_xy > 0.0) {
        bail!(
            "dense_crf_loss: sigmas must be positive, got rgb {} and xy {}",
            config.sigma_rgb,
            config.sigma_xy
        );
    }
    let (h, w) = (scaled_len(h0, s), scaled_len(w0, s));
    if h == 0 || w == 0 || k == 0 || b == 0 {
        bail!("dense_crf_loss: empty working resolution {h}x{w} (K = {k}, B = {b})");
    }
    let device = seg.device().clone();
    let cpu = Device::Cpu;

    // 1. Rescale.
    let seg_cpu = seg.to_device(&cpu)?.to_dtype(DType::F32)?;
    let seg_small = if s == 1.0 {
        seg_cpu
    } else {
        seg_cpu.contiguous()?.apply_op1(BilinearDown {
            planes: b * k,
            size_in: (h0, w0),
            ty: bilinear_taps(h0, s),
            tx: bilinear_taps(w0, s),
        })?
    }
    .contiguous()?;
    let (ty, tx) = (nearest_taps(h0, s), nearest_taps(w0, s));
    let pick = |plane: &[f32], out: &mut Vec<f32>| {
        for &y in &ty {
            for &x in &tx {
                out.push(plane[y * w0 + x]);
            }
        }
    };
    let image_v = image
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let roi_v = roi.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let n0 = h0 * w0;
    let n = h * w;
    let mut roi_small = Vec::with_capacity(b * n);
    for bi in 0..b {
        pick(&roi_v[bi * n0..(bi + 1) * n0], &mut roi_small);
    }
    let labels = match (config.gate, seg_label) {
        (Gate::Energy, Some(l)) => {
            let l = l.to_dtype(DType::U8)?.flatten_all()?.to_vec1::<u8>()?;
            let mut out = Vec::with_capacity(b * n);
            for bi in 0..b {
                for &y in &ty {
                    for &x in &tx {
                        out.push(l[bi * n0 + y * w0 + x]);
                    }
                }
            }
            Some(out)
        }
        _ => None,
    };

    // 2. Kernel features per image at the working resolution.
    let sigma_xy = config.sigma_xy * s;
    let mut filters = Vec::with_capacity(b);
    for bi in 0..b {
        let mut planes = Vec::with_capacity(3 * n);
        for c in 0..3 {
            pick(
                &image_v[(bi * 3 + c) * n0..(bi * 3 + c + 1) * n0],
                &mut planes,
            );
        }
        let fc = extra.as_ref().map_or(0, |e| e.1);
        let mut extra_planes = Vec::with_capacity(fc * n);
        if let Some((v, fc, _)) = &extra {
            for c in 0..*fc {
                pick(
                    &v[(bi * fc + c) * n0..(bi * fc + c + 1) * n0],
                    &mut extra_planes,
                );
            }
        }
        let inv_f = extra.as_ref().map_or(1.0, |e| 1.0 / e.2);
        let d = 5 + fc;
        let mut f = Vec::with_capacity(n * d);
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                f.extend_from_slice(&[
                    x as f32 / sigma_xy,
                    y as f32 / sigma_xy,
                    planes[i] / config.sigma_rgb,
                    planes[n + i] / config.sigma_rgb,
                    planes[2 * n + i] / config.sigma_rgb,
                ]);
                for c in 0..fc {
                    f.push(extra_planes[c * n + i] * inv_f);
                }
            }
        }
        filters.push(GaussianFilter::new(&f, d, config.filter)?);
    }

    let cache = Arc::new(Mutex::new(None));
    let op = DenseCrfLossOp {
        b,
        k,
        n,
        weight: config.weight,
        gate: config.gate,
        filters,
        roi: roi_small,
        labels,
        cache: cache.clone(),
    };
    let loss = seg_small.apply_op1(op)?;
    let filtered = {
        let mut cache = cache
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned cache".into()))?;
        let Some((_, filtered)) = cache.as_mut() else {
            bail!("dense_crf_loss: the forward did not run");
        };
        // Moved out (the backward needs only the gradient): no copy.
        Tensor::from_vec(std::mem::take(filtered), (b, k, h, w), &device)?
    };
    Ok(DenseCrfLossOutput {
        loss: loss.to_device(&device)?,
        filtered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::lcg;
    use candle_core::Var;

    /// A random image, softmax seg and a ROI with a zero border band.
    fn inputs(b: usize, k: usize, h: usize, w: usize, seed: u64) -> (Tensor, Tensor, Tensor) {
        let mut s = seed;
        let image: Vec<f32> = (0..b * 3 * h * w)
            .map(|i| {
                let x = (i % w) as f32;
                128.0 + 100.0 * (x / w as f32 - 0.5) + 20.0 * lcg(&mut s)
            })
            .collect();
        let logits: Vec<f32> = (0..b * k * h * w).map(|_| 3.0 * lcg(&mut s)).collect();
        let dev = Device::Cpu;
        let image = Tensor::from_vec(image, (b, 3, h, w), &dev).unwrap();
        let logits = Tensor::from_vec(logits, (b, k, h, w), &dev).unwrap();
        let seg = candle_core::Tensor::exp(&logits).unwrap();
        let seg = seg.broadcast_div(&seg.sum_keepdim(1).unwrap()).unwrap();
        let roi: Vec<f32> = (0..b * h * w)
            .map(|i| f32::from(!(i % w == 0 || (i / w).is_multiple_of(h))))
            .collect();
        let roi = Tensor::from_vec(roi, (b, h, w), &dev).unwrap();
        (image, seg, roi)
    }

    fn loss_value(
        image: &Tensor,
        seg: &Tensor,
        roi: &Tensor,
        labels: Option<&Tensor>,
        cfg: &DenseCrfLossConfig,
    ) -> f64 {
        dense_crf_loss(image, seg, roi, labels, cfg)
            .unwrap()
            .loss
            .to_vec1::<f32>()
            .unwrap()[0] as f64
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (scale, filter) in [
            (1.0, FilterKind::Exact),
            (0.5, FilterKind::Exact),
            (1.0, FilterKind::Permutohedral),
        ] {
            let (b, k, h, w) = (2, 3, 6, 8);
            let (image, seg, roi) = inputs(b, k, h, w, 11);
            let cfg = DenseCrfLossConfig {
                weight: 1.0,
                sigma_rgb: 30.0,
                sigma_xy: 4.0,
                scale_factor: scale,
                gate: Gate::None,
                filter,
            };
            let var = Var::from_tensor(&seg).unwrap();
            let out = dense_crf_loss(&image, var.as_tensor(), &roi, None, &cfg).unwrap();
            let grads = out.loss.backward().unwrap();
            let g = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let base = seg.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let eps = 1e-2f32;
            for idx in [0usize, 7, 29, 50, 95, 140, 200, 287] {
                let mut plus = base.clone();
                plus[idx] += eps;
                let mut minus = base.clone();
                minus[idx] -= eps;
                let lp = loss_value(
                    &image,
                    &Tensor::from_vec(plus, (b, k, h, w), &Device::Cpu).unwrap(),
                    &roi,
                    None,
                    &cfg,
                );
                let lm = loss_value(
                    &image,
                    &Tensor::from_vec(minus, (b, k, h, w), &Device::Cpu).unwrap(),
                    &roi,
                    None,
                    &cfg,
                );
                let fd = (lp - lm) / (2.0 * eps as f64);
                // The lattice W is symmetric only up to its blur order: looser there.
                let tol = if filter == FilterKind::Exact {
                    2e-3
                } else {
                    3e-2
                };
                assert!(
                    (fd - g[idx] as f64).abs() <= tol * (1.0 + fd.abs()),
                    "scale {scale} {filter:?} idx {idx}: fd {fd} vs analytic {}",
                    g[idx]
                );
            }
        }
    }

    #[test]
    fn upstream_gradient_scales_the_result() {
        let (image, seg, roi) = inputs(1, 3, 5, 6, 2);
        let cfg = DenseCrfLossConfig {
            weight: 1.0,
            sigma_rgb: 30.0,
            sigma_xy: 3.0,
            ..DenseCrfLossConfig::rloss()
        };
        let var = Var::from_tensor(&seg).unwrap();
        let grad = |factor: f64| {
            let out = dense_crf_loss(&image, var.as_tensor(), &roi, None, &cfg).unwrap();
            let g = (out.loss * factor).unwrap().backward().unwrap();
            g.get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (one, three) = (grad(1.0), grad(3.0));
        assert!(one.iter().any(|v| *v != 0.0));
        for (a, b) in one.iter().zip(&three) {
            assert!((3.0 * a - b).abs() <= 1e-6 * (1.0 + b.abs()));
        }
    }

    #[test]
    fn energy_gate_ignores_confident_pixels() {
        // A one-hot seg has max_k S = 1, so with roi = 1 the gate closes everywhere except
        // on unlabelled pixels.
        let (b, k, h, w) = (1, 2, 4, 4);
        let (image, _, roi) = inputs(b, k, h, w, 5);
        let roi = roi.ones_like().unwrap();
        let onehot: Vec<f32> = (0..k * h * w).map(|i| f32::from(i < h * w)).collect();
        let seg = Tensor::from_vec(onehot, (b, k, h, w), &Device::Cpu).unwrap();
        let cfg = DenseCrfLossConfig {
            scale_factor: 1.0,
            ..DenseCrfLossConfig::energy()
        };
        let labels = Tensor::zeros((b, h, w), DType::U8, &Device::Cpu).unwrap();
        assert_eq!(loss_value(&image, &seg, &roi, Some(&labels), &cfg), 0.0);
        let labels = Tensor::full(IGNORE, (b, h, w), &Device::Cpu).unwrap();
        assert!(loss_value(&image, &seg, &roi, Some(&labels), &cfg) < 0.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        let (image, seg, roi) = inputs(1, 2, 4, 4, 1);
        let cfg = DenseCrfLossConfig::rloss();
        assert!(dense_crf_loss(&image, &seg, &roi.unsqueeze(0).unwrap(), None, &cfg).is_err());
        assert!(dense_crf_loss(&seg, &seg, &roi, None, &cfg).is_err());
        let bad = DenseCrfLossConfig {
            scale_factor: 0.0,
            ..cfg
        };
        assert!(dense_crf_loss(&image, &seg, &roi, None, &bad).is_err());
        let bad = DenseCrfLossConfig {
            sigma_xy: -1.0,
            ..cfg
        };
        assert!(dense_crf_loss(&image, &seg, &roi, None, &bad).is_err());
        assert!("gated".parse::<Gate>().is_err());
    }

    /// Peak resident memory of the process in kB (Linux), if readable.
    fn peak_rss_kb() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    #[test]
    fn memory_is_linear_at_512x512() {
        // N = 262 144 pixels: a dense N x N f32 matrix would need 275 GB.
        let (b, k, h, w) = (1, 4, 512, 512);
        let (image, seg, roi) = inputs(b, k, h, w, 3);
        let before = peak_rss_kb();
        let var = Var::from_tensor(&seg).unwrap();
        let out = dense_crf_loss(
            &image,
            var.as_tensor(),
            &roi,
            None,
            &DenseCrfLossConfig::rloss(),
        )
        .unwrap();
        let grads = out.loss.backward().unwrap();
        let g = grads.get(var.as_tensor()).unwrap();
        assert_eq!(g.dims(), &[b, k, h, w]);
        let loss = out.loss.to_vec1::<f32>().unwrap()[0];
        assert!(loss.is_finite() && loss < 0.0);
        assert!(g
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .all(|v| v.is_finite()));
        if let (Some(a), Some(z)) = (before, peak_rss_kb()) {
            // O(N·K + M·K): well under 1 GB (other tests share the process).
            assert!(z.saturating_sub(a) < 1_000_000, "peak grew by {} kB", z - a);
        }
    }
}
