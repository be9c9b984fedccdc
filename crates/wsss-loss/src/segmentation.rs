//! Pixel-level cross-entropy losses with [`IGNORE`] (255) pixels skipped.

use candle_core::{bail, DType, Device, Result, Tensor};
use wsss_core::IGNORE;

use crate::ops::log_softmax;

/// The labels of a `[B, H, W]` u8 tensor, checked against `C` classes.
fn labels(labels: &Tensor, (b, c, h, w): (usize, usize, usize, usize)) -> Result<Vec<u8>> {
    if labels.dims() != [b, h, w] {
        bail!(
            "labels must have shape [{b}, {h}, {w}] to match the logits, got {:?}",
            labels.dims()
        );
    }
    let values = labels
        .to_device(&Device::Cpu)?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    if let Some(&bad) = values.iter().find(|&&v| v != IGNORE && v as usize >= c) {
        bail!("label value {bad} is out of range for {c} classes (255 = ignore)");
    }
    Ok(values)
}

/// Sum of `−log p(label)` over the pixels that `keep` accepts, and their number.
fn masked_nll(
    logits: &Tensor,
    labels: &[u8],
    keep: impl Fn(u8) -> bool,
) -> Result<(Tensor, usize)> {
    let (b, c, h, w) = logits.dims4()?;
    let mut one_hot = vec![0f32; b * c * h * w];
    let mut count = 0;
    for (i, &l) in labels.iter().enumerate() {
        if l != IGNORE && keep(l) {
            let (bi, p) = (i / (h * w), i % (h * w));
            one_hot[(bi * c + l as usize) * h * w + p] = 1.0;
            count += 1;
        }
    }
    let one_hot =
        Tensor::from_vec(one_hot, (b, c, h, w), logits.device())?.to_dtype(logits.dtype())?;
    let nll = (log_softmax(logits, 1)? * one_hot)?.sum_all()?.neg()?;
    Ok((nll, count))
}

fn mean_or_zero(sum: Tensor, count: usize) -> Result<Tensor> {
    // No labelled pixel: a zero that still carries the graph (PyTorch would give NaN).
    sum / count.max(1) as f64
}

/// Cross-entropy averaged over the labelled pixels (PyTorch `CrossEntropyLoss(
/// ignore_index=255)`), 0 when no pixel is labelled.
///
/// # Shapes
/// - `logits`: `[B, C, H, W]` float; `labels`: `[B, H, W]` u8 in `0..C` or 255.
/// - returns a scalar tensor.
///
/// Cost: O(B·C·H·W).
pub fn cross_entropy(logits: &Tensor, labels_: &Tensor) -> Result<Tensor> {
    let dims = logits.dims4()?;
    let values = labels(labels_, dims)?;
    let (sum, count) = masked_nll(logits, &values, |_| true)?;
    mean_or_zero(sum, count)
}

/// Per-pixel cross-entropy `−log p(label)` (PyTorch `CrossEntropyLoss(ignore_index=255,
/// reduction="none")`): 0 on ignored pixels. WeakTr's stage 2 clips this map
/// ([`crate::gradient_clipping`]) and takes its plain mean over all pixels.
///
/// # Shapes
/// - `logits`: `[B, C, H, W]` float; `labels`: `[B, H, W]` u8 in `0..C` or 255.
/// - returns `[B, H, W]`, the dtype of `logits`.
///
/// Cost: O(B·C·H·W).
pub fn cross_entropy_map(logits: &Tensor, labels_: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = logits.dims4()?;
    let values = labels(labels_, (b, c, h, w))?;
    let mut one_hot = vec![0f32; b * c * h * w];
    for (i, &l) in values.iter().enumerate() {
        if l != IGNORE {
            let (bi, p) = (i / (h * w), i % (h * w));
            one_hot[(bi * c + l as usize) * h * w + p] = 1.0;
        }
    }
    let one_hot =
        Tensor::from_vec(one_hot, (b, c, h, w), logits.device())?.to_dtype(logits.dtype())?;
    (log_softmax(logits, 1)? * one_hot)?.sum(1)?.neg()
}

/// Background/foreground balanced cross-entropy (ToCo `get_seg_loss`, arXiv 2303.02506,
/// Sec. 3.4; AFA): `0.5 · CE(background pixels) + 0.5 · CE(foreground pixels)`, each term
/// averaged over its own pixels, 255 ignored. Label 0 is the background.
///
/// # Shapes
/// - `logits`: `[B, C, H, W]` float (C includes the background); `labels`: `[B, H, W]` u8.
/// - returns a scalar tensor.
///
/// Cost: O(B·C·H·W).
pub fn balanced_cross_entropy(logits: &Tensor, labels_: &Tensor) -> Result<Tensor> {
    let dims = logits.dims4()?;
    let values = labels(labels_, dims)?;
    let (bg, nb) = masked_nll(logits, &values, |l| l == 0)?;
    let (fg, nf) = masked_nll(logits, &values, |l| l != 0)?;
    (mean_or_zero(bg, nb)? + mean_or_zero(fg, nf)?)? * 0.5
}

/// Partial cross-entropy on scribbled pixels (Tang et al., "On Regularized Losses for
/// Weakly-supervised CNN Segmentation", arXiv 1804.01346, Eq. 1): the CE over the pixels
/// with a scribble label, 255 meaning unlabelled, averaged over the labelled pixels.
///
/// # Shapes
/// - `logits`: `[B, C, H, W]` float; `scribbles`: `[B, H, W]` u8 in `0..C` or 255.
/// - returns a scalar tensor (0 when nothing is scribbled).
///
/// Cost: O(B·C·H·W).
pub fn partial_cross_entropy(logits: &Tensor, scribbles: &Tensor) -> Result<Tensor> {
    cross_entropy(logits, scribbles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finite_difference::{check, values};

    fn setup() -> Result<(Vec<f64>, Tensor)> {
        let logits = values(2 * 3 * 2 * 3, 7, (-3.0, 3.0));
        let labels = Tensor::new(
            &[[[0u8, 1, 2], [255, 0, 2]], [[1, 1, 255], [0, 255, 255]]],
            &Device::Cpu,
        )?;
        Ok((logits, labels))
    }

    #[test]
    fn balanced_is_the_mean_of_the_two_halves() -> Result<()> {
        let (x, labels) = setup()?;
        let logits = Tensor::from_vec(x, (2, 3, 2, 3), &Device::Cpu)?;
        let lp = log_softmax(&logits, 1)?.flatten_all()?.to_vec1::<f64>()?;
        let l = labels.flatten_all()?.to_vec1::<u8>()?;
        let (mut bg, mut nb, mut fg, mut nf) = (0.0, 0, 0.0, 0);
        for (i, &v) in l.iter().enumerate() {
            if v == 255 {
                continue;
            }
            let (b, p) = (i / 6, i % 6);
            let nll = -lp[(b * 3 + v as usize) * 6 + p];
            if v == 0 {
                bg += nll;
                nb += 1;
            } else {
                fg += nll;
                nf += 1;
            }
        }
        let want = 0.5 * (bg / nb as f64 + fg / nf as f64);
        let got = balanced_cross_entropy(&logits, &labels)?.to_scalar::<f64>()?;
        assert!((got - want).abs() < 1e-12);
        let all = partial_cross_entropy(&logits, &labels)?.to_scalar::<f64>()?;
        assert!((all - (bg + fg) / (nb + nf) as f64).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let (x, labels) = setup()?;
        let worst = check(&x, &[2, 3, 2, 3], |l| balanced_cross_entropy(l, &labels))?;
        assert!(worst < 1e-7, "balanced: {worst}");
        let worst = check(&x, &[2, 3, 2, 3], |l| partial_cross_entropy(l, &labels))?;
        assert!(worst < 1e-7, "partial: {worst}");
        let worst = check(&x, &[2, 3, 2, 3], |l| {
            let w = Tensor::new(&[[[1f64, 2., 3.], [4., 5., 6.]]; 2], &Device::Cpu)?;
            (cross_entropy_map(l, &labels)? * w)?.sum_all()
        })?;
        assert!(worst < 1e-7, "map: {worst}");
        // The map's mean over labelled pixels is the ignore-index CE.
        let t = Tensor::from_vec(x.clone(), (2, 3, 2, 3), &Device::Cpu)?;
        let map = cross_entropy_map(&t, &labels)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let l = labels.flatten_all()?.to_vec1::<u8>()?;
        assert!(l.iter().zip(&map).all(|(&l, &m)| l != 255 || m == 0.0));
        let mean = map.iter().sum::<f64>() / l.iter().filter(|&&v| v != 255).count() as f64;
        assert!((mean - cross_entropy(&t, &labels)?.to_scalar::<f64>()?).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn all_ignored_is_zero_and_bad_labels_are_errors() -> Result<()> {
        let logits = Tensor::zeros((1, 2, 1, 2), DType::F32, &Device::Cpu)?;
        let none = Tensor::new(&[[[255u8, 255]]], &Device::Cpu)?;
        assert_eq!(
            partial_cross_entropy(&logits, &none)?.to_scalar::<f32>()?,
            0.0
        );
        let bad = Tensor::new(&[[[2u8, 0]]], &Device::Cpu)?;
        assert!(cross_entropy(&logits, &bad).is_err());
        let wrong_shape = Tensor::new(&[[0u8, 0]], &Device::Cpu)?;
        assert!(balanced_cross_entropy(&logits, &wrong_shape).is_err());
        Ok(())
    }
}
