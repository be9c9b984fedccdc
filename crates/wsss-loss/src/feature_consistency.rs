//! DFR's feature-consistency loss (Zhang et al., "Dynamic Feature Regularized Loss for
//! Weakly Supervised Semantic Segmentation", arXiv 2108.01296): the deep features F of the
//! feature consistency head are trained on pairwise relations of labelled pixels, so that
//! pixels of one class have similar F (the regulariser's deep kernel then links them) and
//! pixels of different classes dissimilar F (the kernel cuts them).
//!
//! With `ĉ_ij = cos(F_i, F_j)` over the sampled labelled pixels,
//! `L = w₊ · (1 − mean_{pos} ĉ_ij) + w₋ · mean_{neg} max(ĉ_ij − m, 0)`,
//! positives being pairs i ≠ j with the same label, negatives pairs with different labels
//! (w₊ = w₋ = ½, m = 0 by default). A term with no pair is 0.
//!
//! The paper leaves open, and [`FeatureConsistencyConfig`] makes explicit: which pixels
//! (scribbled pixels; optionally confident predictions via [`confident_labels`]), how many
//! (all pairs among at most `max_points` pixels per image, sampled uniformly without
//! replacement by a seeded generator when there are more: P² pairs cost O(P²·C)), whether
//! pairs cross images of a batch ([`PairScope`]), the weights and the negative margin.
//! Gradients come from candle's autograd (all ops differentiable; F is the variable).

use candle_core::{bail, DType, Device, Result, Tensor, D};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use wsss_core::IGNORE;

/// Which pixel pairs count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairScope {
    /// Pairs within one image only.
    #[default]
    WithinImage,
    /// Pairs across the whole batch (same class in two images is a positive).
    AcrossBatch,
}

fn default_points() -> usize {
    256
}
fn default_half() -> f32 {
    0.5
}

/// Feature-consistency settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConsistencyConfig {
    /// At most this many labelled pixels per image (all pairs among them); 256.
    #[serde(default = "default_points")]
    pub max_points: usize,
    /// w₊ (0.5).
    #[serde(default = "default_half")]
    pub positive_weight: f32,
    /// w₋ (0.5).
    #[serde(default = "default_half")]
    pub negative_weight: f32,
    /// m: negatives are penalised above this cosine (0).
    #[serde(default)]
    pub negative_margin: f32,
    /// Pairs within images or across the batch.
    #[serde(default)]
    pub pairs: PairScope,
}

impl Default for FeatureConsistencyConfig {
    fn default() -> Self {
        Self {
            max_points: default_points(),
            positive_weight: 0.5,
            negative_weight: 0.5,
            negative_margin: 0.0,
            pairs: PairScope::WithinImage,
        }
    }
}

/// Feature-consistency loss over labelled pixels (module docs).
///
/// # Shapes
/// - `features`: [B, C, h, w] float, the variable (any scale; cosines are taken).
/// - `labels`: [B, h, w] u8 at the same resolution, [`IGNORE`] = unlabelled.
/// - `seed`: picks the sampled pixels when an image has more than `max_points` (pass the
///   step for a different draw every step, reproducibly).
/// - returns a scalar tensor.
///
/// # Cost
/// O(B·h·w) to scan labels, O(P²·C) time and O(P²) memory for P sampled pixels
/// (P ≤ `max_points` per image, or B·`max_points` with [`PairScope::AcrossBatch`]).
pub fn feature_consistency_loss(
    features: &Tensor,
    labels: &Tensor,
    cfg: &FeatureConsistencyConfig,
    seed: u64,
) -> Result<Tensor> {
    let (b, c, h, w) = features.dims4()?;
    if labels.dims() != [b, h, w] {
        bail!(
            "feature_consistency_loss: labels must be [{b}, {h}, {w}] to match the features, got {:?}",
            labels.dims()
        );
    }
    if cfg.max_points < 2 {
        bail!(
            "feature_consistency_loss: max_points must be at least 2, got {}",
            cfg.max_points
        );
    }
    let n = h * w;
    let lab = labels
        .to_device(&Device::Cpu)?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // (image, global index into [B·N], label) of the chosen pixels.
    let mut chosen: Vec<(usize, u32, u8)> = Vec::new();
    for bi in 0..b {
        let idx: Vec<usize> = (0..n).filter(|&i| lab[bi * n + i] != IGNORE).collect();
        let pick: Vec<usize> = if idx.len() > cfg.max_points {
            let mut s: Vec<usize> = sample(&mut rng, idx.len(), cfg.max_points)
                .into_iter()
                .map(|k| idx[k])
                .collect();
            s.sort_unstable();
            s
        } else {
            idx
        };
        chosen.extend(
            pick.into_iter()
                .map(|i| (bi, (bi * n + i) as u32, lab[bi * n + i])),
        );
    }
    let p = chosen.len();
    let zero = (features.sum_all()? * 0.0)?; // keeps the graph when nothing counts
    if p < 2 {
        return Ok(zero);
    }
    let mut pos = vec![0f32; p * p];
    let mut neg = vec![0f32; p * p];
    let (mut npos, mut nneg) = (0usize, 0usize);
    for (i, a) in chosen.iter().enumerate() {
        for (j, bq) in chosen.iter().enumerate() {
            if i == j || (cfg.pairs == PairScope::WithinImage && a.0 != bq.0) {
                continue;
            }
            if a.2 == bq.2 {
                pos[i * p + j] = 1.0;
                npos += 1;
            } else {
                neg[i * p + j] = 1.0;
                nneg += 1;
            }
        }
    }
    let device = features.device();
    let index = Tensor::from_vec(chosen.iter().map(|t| t.1).collect::<Vec<u32>>(), p, device)?;
    // [B, C, N] → [B·N, C] → the chosen rows, unit norm.
    let rows = features
        .reshape((b, c, n))?
        .transpose(1, 2)?
        .reshape((b * n, c))?
        .index_select(&index, 0)?;
    let norm = (rows.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    let unit = rows.broadcast_div(&norm)?;
    let cos = unit.matmul(&unit.t()?)?;
    let dtype = features.dtype();
    let mut loss = zero;
    if npos > 0 {
        let m = Tensor::from_vec(pos, (p, p), device)?.to_dtype(dtype)?;
        let mean = ((&cos * m)?.sum_all()? / npos as f64)?;
        loss = (loss + ((mean.neg()? + 1.0)? * cfg.positive_weight as f64)?)?;
    }
    if nneg > 0 {
        let m = Tensor::from_vec(neg, (p, p), device)?.to_dtype(dtype)?;
        let hinge = (&cos - cfg.negative_margin as f64)?.relu()?;
        let mean = ((hinge * m)?.sum_all()? / nneg as f64)?;
        loss = (loss + (mean * cfg.negative_weight as f64)?)?;
    }
    Ok(loss)
}

/// Scribbles completed with confident predictions: unlabelled pixels whose largest
/// probability reaches `threshold` take their arg-max class; scribbled pixels keep their
/// label. (The "optionally confident predictions" of DFR's consistency training.)
///
/// # Shapes
/// - `scribbles`: [B, h, w] u8 (255 = unlabelled); `probs`: [B, K, h, w] float.
/// - returns [B, h, w] u8.
///
/// Cost: O(B·K·h·w).
pub fn confident_labels(scribbles: &Tensor, probs: &Tensor, threshold: f32) -> Result<Tensor> {
    let (b, k, h, w) = probs.dims4()?;
    if scribbles.dims() != [b, h, w] {
        bail!(
            "confident_labels: scribbles must be [{b}, {h}, {w}], got {:?}",
            scribbles.dims()
        );
    }
    if k > IGNORE as usize {
        bail!("confident_labels: at most 255 classes, got {k}");
    }
    let s = scribbles
        .to_device(&Device::Cpu)?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    let pr = probs
        .detach()
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let n = h * w;
    let mut out = s.clone();
    for bi in 0..b {
        for i in 0..n {
            let o = bi * n + i;
            if s[o] != IGNORE {
                continue;
            }
            let (mut best, mut arg) = (f32::MIN, 0usize);
            for c in 0..k {
                let v = pr[(bi * k + c) * n + i];
                if v > best {
                    best = v;
                    arg = c;
                }
            }
            if best >= threshold {
                out[o] = arg as u8;
            }
        }
    }
    Tensor::from_vec(out, (b, h, w), scribbles.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finite_difference::{check, values};

    fn labels() -> Tensor {
        // 2 images of 3x4: classes 0, 1, 2 and unlabelled pixels.
        Tensor::new(
            &[
                [[0u8, 0, 255, 1], [255, 1, 1, 255], [2, 255, 0, 255]],
                [[255u8, 2, 2, 255], [0, 255, 255, 1], [255, 255, 0, 0]],
            ],
            &Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn gradient_matches_finite_differences() -> Result<()> {
        let x = values(2 * 5 * 3 * 4, 3, (-1.0, 1.0));
        let l = labels();
        for (pairs, points) in [
            (PairScope::WithinImage, 64),
            (PairScope::AcrossBatch, 64),
            (PairScope::WithinImage, 4), // sampled subset, fixed by the seed
        ] {
            let cfg = FeatureConsistencyConfig {
                max_points: points,
                negative_margin: -0.2,
                pairs,
                ..FeatureConsistencyConfig::default()
            };
            let worst = check(&x, &[2, 5, 3, 4], |f| {
                feature_consistency_loss(f, &l, &cfg, 9)
            })?;
            assert!(worst < 1e-6, "{pairs:?} {points}: {worst}");
        }
        Ok(())
    }

    #[test]
    fn matches_the_definition_by_hand() -> Result<()> {
        // One image, three labelled pixels with 2-D features: a, b of class 0, c of class 1.
        let f = Tensor::new(&[[[[1f64, 0.0, 1.0]], [[0.0, 1.0, -1.0]]]], &Device::Cpu)?;
        let l = Tensor::new(&[[[0u8, 0, 1]]], &Device::Cpu)?;
        let cfg = FeatureConsistencyConfig::default();
        let got = feature_consistency_loss(&f, &l, &cfg, 0)?.to_scalar::<f64>()?;
        // cos(a,b) = 0; cos(a,c) = 1/√2; cos(b,c) = −1/√2 → hinge 1/√2 and 0.
        let s = std::f64::consts::FRAC_1_SQRT_2;
        let want = 0.5 * (1.0 - 0.0) + 0.5 * (2.0 * s) / 4.0;
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        Ok(())
    }

    #[test]
    fn nothing_labelled_is_zero_and_bad_input_is_an_error() -> Result<()> {
        let f = Tensor::ones((1, 2, 2, 2), DType::F32, &Device::Cpu)?;
        let none = Tensor::full(IGNORE, (1, 2, 2), &Device::Cpu)?;
        let cfg = FeatureConsistencyConfig::default();
        assert_eq!(
            feature_consistency_loss(&f, &none, &cfg, 0)?.to_scalar::<f32>()?,
            0.0
        );
        let wrong = Tensor::zeros((1, 3, 2), DType::U8, &Device::Cpu)?;
        assert!(feature_consistency_loss(&f, &wrong, &cfg, 0).is_err());
        let tiny = FeatureConsistencyConfig {
            max_points: 1,
            ..cfg
        };
        assert!(feature_consistency_loss(&f, &none, &tiny, 0).is_err());
        Ok(())
    }

    #[test]
    fn confident_predictions_fill_unlabelled_pixels() -> Result<()> {
        let s = Tensor::new(&[[[1u8, 255, 255]]], &Device::Cpu)?;
        let p = Tensor::new(&[[[[0.9f32, 0.95, 0.6]], [[0.1, 0.05, 0.4]]]], &Device::Cpu)?;
        let out = confident_labels(&s, &p, 0.9)?
            .flatten_all()?
            .to_vec1::<u8>()?;
        assert_eq!(out, vec![1, 0, 255]);
        assert!(confident_labels(&s.squeeze(0)?, &p, 0.9).is_err());
        Ok(())
    }
}
