//! DFR: the dynamic feature regularized loss (Zhang, Zhang, Xu, Chen, Wang, "Dynamic Feature
//! Regularized Loss for Weakly Supervised Semantic Segmentation", arXiv 2108.01296).
//!
//! A CRF-style regulariser on the predicted probabilities whose pairwise kernel compares
//! shallow features (RGB, xy) **and** deep features F taken from the network being trained
//! (so the kernel changes every iteration: "dynamic"). F enters the kernel as a constant
//! (detached): the regulariser moves the prediction, not the features. The features are
//! shaped by the feature-consistency loss
//! ([`crate::feature_consistency::feature_consistency_loss`]).
//!
//! The paper has no public code. Its abstract fixes the idea, not the details; every
//! choice is a field here, with our defaults:
//!
//! | open choice | field | default |
//! |---|---|---|
//! | kernel support: local window (gated CRF form) or fully connected (dense CRF form) | [`DfrForm`] | `gated` |
//! | shallow and deep terms in one Gaussian (product) or two kernels summed | [`KernelMix`] | `product` |
//! | σ of xy / rgb / F | `sigma_*` | gated: 6 px, 0.1 (ImageNet-normalised), 0.5 (unit-norm F); dense: 80 px, 15 (0–255), 0.5 |
//! | window radius | `gated.radius` | 5 |
//! | deep features in the dense lattice: projection and its size | [`Projection`], `dense.projection_dims` | per-image PCA to 3 dims |
//! | working scale of the dense form | `dense.scale_factor` | 0.5 |
//!
//! Which pixels, which feature source (a projection head or the backbone tokens), the
//! loss weights and the warm-up are the training program's fields.

use candle_core::{bail, DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::dense_crf::{dense_crf_loss_with_features, DenseCrfLossConfig, Gate};
use crate::gated_crf::{gated_crf_loss, GatedCrfConfig, GatedCrfKernel};
use wsss_core::permutohedral::FilterKind;

/// ImageNet mean and std (RGB), to recover 0–255 colours for the dense form from the
/// normalised images the gated form reads.
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Kernel support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DfrForm {
    /// Gated CRF loss (Obukhov et al., arXiv 1906.04651) with a deep-feature modality:
    /// local window, exact Gaussians, any feature width.
    #[default]
    Gated,
    /// Dense CRF loss (Tang et al., arXiv 1803.10464) on the permutohedral lattice with a
    /// low-dimensional projection of F appended to (x, y, R, G, B).
    Dense,
}

/// How the shallow and deep terms combine (gated form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelMix {
    /// One Gaussian over (xy, rgb, F): pixels must agree in colour *and* features.
    #[default]
    Product,
    /// `w_s·exp(shallow) + w_d·exp(xy, F)`: either agreement links pixels.
    Sum,
}

/// How F is reduced for the dense lattice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    /// The leading principal components of each image's features (adaptive, no
    /// parameters; centred, unscaled, so distances shrink only by the dropped variance).
    #[default]
    Pca,
    /// Only the first channels (for heads trained with a small `feature_dim` already).
    Truncate,
}

fn d_radius() -> usize {
    5
}
fn d_gxy() -> f32 {
    6.0
}
fn d_grgb() -> f32 {
    0.1
}
fn d_feat() -> f32 {
    0.5
}
fn d_one() -> f32 {
    1.0
}

/// Gated-form settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DfrGatedConfig {
    /// Window radius (5).
    #[serde(default = "d_radius")]
    pub radius: usize,
    /// σ_xy in prediction pixels (6).
    #[serde(default = "d_gxy")]
    pub sigma_xy: f32,
    /// σ_rgb on ImageNet-normalised RGB (0.1, Obukhov's default).
    #[serde(default = "d_grgb")]
    pub sigma_rgb: f32,
    /// σ_F (0.5; for unit-norm F, ‖ΔF‖² = 2 − 2 cos).
    #[serde(default = "d_feat")]
    pub sigma_feat: f32,
    /// Product or sum of the shallow and deep terms.
    #[serde(default)]
    pub mix: KernelMix,
    /// w_s for [`KernelMix::Sum`] (1).
    #[serde(default = "d_one")]
    pub shallow_weight: f32,
    /// w_d for [`KernelMix::Sum`] (1).
    #[serde(default = "d_one")]
    pub deep_weight: f32,
}

impl Default for DfrGatedConfig {
    fn default() -> Self {
        Self {
            radius: d_radius(),
            sigma_xy: d_gxy(),
            sigma_rgb: d_grgb(),
            sigma_feat: d_feat(),
            mix: KernelMix::Product,
            shallow_weight: 1.0,
            deep_weight: 1.0,
        }
    }
}

impl DfrGatedConfig {
    /// The gated CRF kernels (modalities `rgb` and `feat`).
    pub fn gated_crf(&self) -> GatedCrfConfig {
        match self.mix {
            KernelMix::Product => {
                GatedCrfConfig::dfr(self.sigma_xy, self.sigma_rgb, self.sigma_feat, self.radius)
            }
            KernelMix::Sum => GatedCrfConfig {
                kernels: vec![
                    GatedCrfKernel {
                        weight: self.shallow_weight,
                        sigma_xy: Some(self.sigma_xy),
                        modalities: vec![("rgb".into(), self.sigma_rgb)],
                    },
                    GatedCrfKernel {
                        weight: self.deep_weight,
                        sigma_xy: Some(self.sigma_xy),
                        modalities: vec![("feat".into(), self.sigma_feat)],
                    },
                ],
                radius: self.radius,
            },
        }
    }
}

fn d_dxy() -> f32 {
    80.0
}
fn d_drgb() -> f32 {
    15.0
}
fn d_dims() -> usize {
    3
}
fn d_scale() -> f32 {
    0.5
}

/// Dense-form settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DfrDenseConfig {
    /// σ_xy in input pixels (80, rloss).
    #[serde(default = "d_dxy")]
    pub sigma_xy: f32,
    /// σ_rgb on 0–255 colours (15, rloss).
    #[serde(default = "d_drgb")]
    pub sigma_rgb: f32,
    /// σ_F on the projected features (0.5).
    #[serde(default = "d_feat")]
    pub sigma_feat: f32,
    /// Projected dimensions of F (3: the lattice then works in 8 dimensions).
    #[serde(default = "d_dims")]
    pub projection_dims: usize,
    /// PCA or truncation.
    #[serde(default)]
    pub projection: Projection,
    /// Working scale in (0, 1] (0.5).
    #[serde(default = "d_scale")]
    pub scale_factor: f32,
}

impl Default for DfrDenseConfig {
    fn default() -> Self {
        Self {
            sigma_xy: d_dxy(),
            sigma_rgb: d_drgb(),
            sigma_feat: d_feat(),
            projection_dims: d_dims(),
            projection: Projection::Pca,
            scale_factor: d_scale(),
        }
    }
}

/// DFR regulariser settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DfrConfig {
    /// Gated (local) or dense (lattice) form.
    #[serde(default)]
    pub form: DfrForm,
    /// Settings of the gated form.
    #[serde(default)]
    pub gated: DfrGatedConfig,
    /// Settings of the dense form.
    #[serde(default)]
    pub dense: DfrDenseConfig,
}

/// The DFR regulariser (no loss weight; the gated form is normalised per valid pixel as
/// the gated CRF loss, the dense form is rloss's `−Σ_k S_kᵀ W S_k / B`).
///
/// # Shapes
/// - `prob`: [B, K, h, w] f32 softmax probabilities (the variable).
/// - `images`: [B, 3, f·h, f·w] ImageNet-normalised RGB (integer f ≥ 1; the dense form
///   needs f = 1).
/// - `features`: [B, C, h', w'] deep features; the gated form block-means them to (h, w)
///   (h' = f'·h), the dense form needs (h', w') = (h, w). Detached here.
/// - `valid`: optional [B, h, w] f32 in {0, 1} (e.g. inside the image after padding).
/// - returns the loss [1] f32.
///
/// # Cost
/// Gated: O(B·N·r²·(3 + C + K)) time, O(N·(K + C)) memory. Dense: O(B·N·C²) for the PCA
/// plus the lattice O(B·(N·d² + (N + M)·(d+1)·K)), d = 5 + projection_dims.
pub fn dfr_loss(
    prob: &Tensor,
    images: &Tensor,
    features: &Tensor,
    valid: Option<&Tensor>,
    cfg: &DfrConfig,
) -> Result<Tensor> {
    let (b, _, h, w) = prob.dims4()?;
    let features = features.detach();
    match cfg.form {
        DfrForm::Gated => {
            let mask = valid.map(|v| v.unsqueeze(1)).transpose()?;
            gated_crf_loss(
                prob,
                &[("rgb", images), ("feat", &features)],
                mask.as_ref(),
                None,
                &cfg.gated.gated_crf(),
            )
        }
        DfrForm::Dense => {
            let d = &cfg.dense;
            if images.dims() != [b, 3, h, w]
                || features.dim(0)? != b
                || features.dims()[2..] != [h, w]
            {
                bail!(
                    "dfr_loss (dense): images {:?} and features {:?} must be at the prediction size {h}x{w}",
                    images.dims(),
                    features.dims()
                );
            }
            let projected = project(&features, d.projection_dims, d.projection)?;
            let mean = Tensor::new(&MEAN, images.device())?.reshape((1, 3, 1, 1))?;
            let std = Tensor::new(&STD, images.device())?.reshape((1, 3, 1, 1))?;
            let rgb = (images.broadcast_mul(&std)?.broadcast_add(&mean)? * 255.0)?;
            let roi = match valid {
                Some(v) => v.clone(),
                None => Tensor::ones((b, h, w), DType::F32, prob.device())?,
            };
            let lc = DenseCrfLossConfig {
                weight: 1.0,
                sigma_rgb: d.sigma_rgb,
                sigma_xy: d.sigma_xy,
                scale_factor: d.scale_factor,
                gate: Gate::None,
                filter: FilterKind::Permutohedral,
            };
            Ok(dense_crf_loss_with_features(
                &rgb,
                prob,
                &roi,
                None,
                Some((&projected, d.sigma_feat)),
                &lc,
            )?
            .loss)
        }
    }
}

/// Reduces F to `dims` channels per image (the leading principal components, or the first
/// channels).
///
/// # Shapes
/// - `features`: [B, C, h, w]; returns [B, min(dims, C), h, w] f32 (CPU computation).
///
/// Cost: PCA O(B·(N·C² + C²·dims·iterations)); memory O(N·C + C²).
pub fn project(features: &Tensor, dims: usize, how: Projection) -> Result<Tensor> {
    let (b, c, h, w) = features.dims4()?;
    if dims == 0 {
        bail!("dfr projection: projection_dims must be positive");
    }
    let dims = dims.min(c);
    let device = features.device();
    if how == Projection::Truncate {
        return features.narrow(1, 0, dims)?.to_dtype(DType::F32);
    }
    let n = h * w;
    let v = features
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut out = vec![0f32; b * dims * n];
    for bi in 0..b {
        let f = &v[bi * c * n..(bi + 1) * c * n];
        let mean: Vec<f64> = (0..c)
            .map(|ch| {
                f[ch * n..(ch + 1) * n]
                    .iter()
                    .map(|&x| x as f64)
                    .sum::<f64>()
                    / n as f64
            })
            .collect();
        let mut cov = vec![0f64; c * c];
        for a in 0..c {
            for bb in a..c {
                let (fa, fb) = (&f[a * n..(a + 1) * n], &f[bb * n..(bb + 1) * n]);
                let s: f64 = fa
                    .iter()
                    .zip(fb)
                    .map(|(&x, &y)| (x as f64 - mean[a]) * (y as f64 - mean[bb]))
                    .sum();
                cov[a * c + bb] = s / n as f64;
                cov[bb * c + a] = s / n as f64;
            }
        }
        for (k, axis) in principal_axes(&mut cov, c, dims).iter().enumerate() {
            let o = &mut out[(bi * dims + k) * n..(bi * dims + k + 1) * n];
            for (i, oi) in o.iter_mut().enumerate() {
                let mut s = 0f64;
                for ch in 0..c {
                    s += (f[ch * n + i] as f64 - mean[ch]) * axis[ch];
                }
                *oi = s as f32;
            }
        }
    }
    Tensor::from_vec(out, (b, dims, h, w), &Device::Cpu)?.to_device(device)
}

/// The `k` leading eigenvectors of a symmetric PSD matrix by power iteration with
/// deflation (deterministic start; sign fixed so the largest entry is positive).
fn principal_axes(cov: &mut [f64], c: usize, k: usize) -> Vec<Vec<f64>> {
    let mut axes = Vec::with_capacity(k);
    for a in 0..k {
        let mut v: Vec<f64> = (0..c).map(|i| 1.0 + ((i + a) % 7) as f64 * 0.1).collect();
        let mut lambda = 0.0;
        for _ in 0..200 {
            let mut nv = vec![0f64; c];
            for i in 0..c {
                nv[i] = (0..c).map(|j| cov[i * c + j] * v[j]).sum();
            }
            let norm = nv.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm < 1e-30 {
                break;
            }
            nv.iter_mut().for_each(|x| *x /= norm);
            let delta: f64 = nv.iter().zip(&v).map(|(x, y)| (x - y).abs()).sum();
            v = nv;
            lambda = norm;
            if delta < 1e-10 {
                break;
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-30);
        v.iter_mut().for_each(|x| *x /= norm);
        let big = v
            .iter()
            .cloned()
            .fold(0f64, |m, x| if x.abs() > m.abs() { x } else { m });
        if big < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        for i in 0..c {
            for j in 0..c {
                cov[i * c + j] -= lambda * v[i] * v[j];
            }
        }
        axes.push(v);
    }
    axes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{random, softmax};
    use candle_core::Var;

    /// Two regions (left/right halves) with different colours and features.
    fn scene(b: usize, h: usize, w: usize) -> (Tensor, Tensor) {
        let mut img = vec![0f32; b * 3 * h * w];
        let mut feat = vec![0f32; b * 4 * h * w];
        for bi in 0..b {
            for y in 0..h {
                for x in 0..w {
                    let left = x < w / 2;
                    for c in 0..3 {
                        img[((bi * 3 + c) * h + y) * w + x] = if left { -1.0 } else { 1.0 };
                    }
                    feat[((bi * 4 + usize::from(!left)) * h + y) * w + x] = 1.0;
                }
            }
        }
        (
            Tensor::from_vec(img, (b, 3, h, w), &Device::Cpu).unwrap(),
            Tensor::from_vec(feat, (b, 4, h, w), &Device::Cpu).unwrap(),
        )
    }

    #[test]
    fn gated_gradient_matches_finite_differences_and_ignores_feature_grads() {
        let (b, k, h, w) = (1, 3, 6, 8);
        let prob = softmax(&random((b, k, h, w), 1, 3.0));
        let (img, _) = scene(b, h, w);
        let fvar = Var::from_tensor(&random((b, 4, h, w), 2, 2.0)).unwrap();
        for mix in [KernelMix::Product, KernelMix::Sum] {
            let cfg = DfrConfig {
                gated: DfrGatedConfig {
                    radius: 2,
                    sigma_xy: 2.0,
                    sigma_rgb: 1.0,
                    sigma_feat: 1.0,
                    mix,
                    shallow_weight: 0.6,
                    deep_weight: 0.4,
                },
                ..DfrConfig::default()
            };
            let var = Var::from_tensor(&prob).unwrap();
            let loss = dfr_loss(var.as_tensor(), &img, fvar.as_tensor(), None, &cfg).unwrap();
            let grads = loss.backward().unwrap();
            assert!(grads.get(fvar.as_tensor()).is_none(), "F must be detached");
            let g = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap();
            let g = g.to_vec1::<f32>().unwrap();
            let base = prob.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let eval = |v: Vec<f32>| {
                let t = Tensor::from_vec(v, (b, k, h, w), &Device::Cpu).unwrap();
                dfr_loss(&t, &img, fvar.as_tensor(), None, &cfg)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()[0] as f64
            };
            for idx in [0usize, 17, 50, 99, 143] {
                let eps = 1e-2f32;
                let mut p = base.clone();
                p[idx] += eps;
                let mut m = base.clone();
                m[idx] -= eps;
                let fd = (eval(p) - eval(m)) / (2.0 * eps as f64);
                assert!(
                    (fd - g[idx] as f64).abs() <= 2e-3 * (1.0 + fd.abs()),
                    "{mix:?} idx {idx}: fd {fd} vs {}",
                    g[idx]
                );
            }
        }
    }

    #[test]
    fn deep_features_cut_the_kernel_across_regions() {
        // Same colour everywhere, features differ by half: a prediction that splits the
        // halves costs less under DFR than under the colour-only kernel would suggest.
        let (b, k, h, w) = (1, 2, 6, 8);
        let (_, feat) = scene(b, h, w);
        let img = Tensor::zeros((b, 3, h, w), DType::F32, &Device::Cpu).unwrap();
        let split: Vec<f32> = (0..k * h * w)
            .map(|i| {
                let (c, x) = (i / (h * w), i % w);
                f32::from((x < w / 2) == (c == 0))
            })
            .collect();
        let split = Tensor::from_vec(split, (b, k, h, w), &Device::Cpu).unwrap();
        let loss = |sigma_feat: f32| {
            let cfg = DfrConfig {
                gated: DfrGatedConfig {
                    radius: 2,
                    sigma_xy: 2.0,
                    sigma_feat,
                    ..DfrGatedConfig::default()
                },
                ..DfrConfig::default()
            };
            dfr_loss(&split, &img, &feat, None, &cfg)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0]
        };
        // Large σ_F: features ignored, the cut is paid; small σ_F: the cut is free.
        assert!(loss(1e3) > 0.1);
        assert!(loss(0.1) < 1e-6);
    }

    #[test]
    fn dense_form_runs_and_its_gradient_matches_finite_differences() {
        let (b, k, h, w) = (1, 3, 6, 8);
        let prob = softmax(&random((b, k, h, w), 4, 3.0));
        let (img, feat) = scene(b, h, w);
        let cfg = DfrConfig {
            form: DfrForm::Dense,
            dense: DfrDenseConfig {
                sigma_xy: 3.0,
                sigma_rgb: 30.0,
                sigma_feat: 0.5,
                projection_dims: 2,
                projection: Projection::Pca,
                scale_factor: 1.0,
            },
            ..DfrConfig::default()
        };
        let var = Var::from_tensor(&prob).unwrap();
        let loss = dfr_loss(var.as_tensor(), &img, &feat, None, &cfg).unwrap();
        let grads = loss.backward().unwrap();
        let g = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap();
        let g = g.to_vec1::<f32>().unwrap();
        let base = prob.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let eval = |v: Vec<f32>| {
            let t = Tensor::from_vec(v, (b, k, h, w), &Device::Cpu).unwrap();
            dfr_loss(&t, &img, &feat, None, &cfg)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0] as f64
        };
        for idx in [0usize, 17, 50, 99, 143] {
            let eps = 1e-2f32;
            let mut p = base.clone();
            p[idx] += eps;
            let mut m = base.clone();
            m[idx] -= eps;
            let fd = (eval(p) - eval(m)) / (2.0 * eps as f64);
            // The lattice is symmetric only up to its blur order.
            assert!(
                (fd - g[idx] as f64).abs() <= 3e-2 * (1.0 + fd.abs()),
                "idx {idx}: fd {fd} vs {}",
                g[idx]
            );
        }
        // Wrong sizes are errors.
        let small = random((b, 4, 3, 4), 1, 1.0);
        assert!(dfr_loss(&prob, &img, &small, None, &cfg).is_err());
    }

    #[test]
    fn pca_finds_the_leading_axis() {
        // Features vary along (1, 1, 0)/√2 strongly and along (0, 0, 1) weakly.
        let n = 64;
        let mut v = vec![0f32; 3 * n];
        for i in 0..n {
            let t = (i as f32 / n as f32) - 0.5;
            // Mirror-symmetric, so uncorrelated with the (antisymmetric) ramp.
            let s = if !(n / 4..3 * n / 4).contains(&i) {
                0.05
            } else {
                -0.05
            };
            v[i] = 4.0 * t;
            v[n + i] = 4.0 * t;
            v[2 * n + i] = s;
        }
        let f = Tensor::from_vec(v, (1, 3, 8, 8), &Device::Cpu).unwrap();
        let p = project(&f, 2, Projection::Pca).unwrap();
        assert_eq!(p.dims(), &[1, 2, 8, 8]);
        let p = p.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for i in 0..n {
            let t = (i as f32 / n as f32) - 0.5 - (-0.5 / n as f32);
            let want = 4.0 * t * std::f32::consts::SQRT_2;
            assert!(
                (p[i].abs() - want.abs()).abs() < 1e-3,
                "{i}: {} vs {want}",
                p[i]
            );
            assert!((p[n + i].abs() - 0.05).abs() < 1e-3);
        }
        assert!(project(&f, 0, Projection::Pca).is_err());
        let t = project(&f, 9, Projection::Truncate).unwrap();
        assert_eq!(t.dims(), &[1, 3, 8, 8]);
    }
}
