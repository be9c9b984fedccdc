//! Scores derived from a confusion matrix, and their printed table.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::confusion::ConfusionMatrix;

/// What to do with pixels predicted 255 (unlabelled) whose ground truth is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unlabelled {
    /// Leave them out of every score (ToCo's `pseudo_scores`); [`Scores::coverage`] says
    /// how many there were.
    #[default]
    Skip,
    /// Count them as misses: they add to the ground-truth pixels of their class, never to
    /// a true positive.
    Miss,
}

/// Scores of one confusion matrix. Undefined ratios (0/0) are NaN, written `null` in JSON.
///
/// With `TP_c = M[c,c]`, `G_c = Σ_p M[c,p]`, `P_c = Σ_g M[g,c]`:
/// `iou_c = TP_c / (G_c + P_c − TP_c)`; `miou` = mean of `iou_c` over classes with
/// `G_c > 0` (a class only predicted is not averaged in, as in ToCo/AFA);
/// `pixel_acc = Σ TP / Σ M`; `mean_acc` = mean of `TP_c / G_c` over `G_c > 0`;
/// `precision_c = TP_c / P_c`, `recall_c = TP_c / G_c`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scores {
    /// Number of classes C.
    pub num_classes: usize,
    /// Policy used for unlabelled predictions.
    pub unlabelled_policy: Unlabelled,
    /// Per-class IoU (NaN when the class is neither in ground truth nor predicted).
    #[serde(with = "nan_vec")]
    pub iou: Vec<f64>,
    /// Per-class precision `TP/P` (NaN when never predicted).
    #[serde(with = "nan_vec")]
    pub precision: Vec<f64>,
    /// Per-class recall `TP/G` (NaN when absent from ground truth).
    #[serde(with = "nan_vec")]
    pub recall: Vec<f64>,
    /// Per-class ground-truth pixels `G_c` (with unlabelled added under [`Unlabelled::Miss`]).
    pub gt_pixels: Vec<u64>,
    /// Per-class predicted pixels `P_c`.
    pub pred_pixels: Vec<u64>,
    /// Mean IoU over classes present in ground truth.
    #[serde(with = "nan")]
    pub miou: f64,
    /// Pixel accuracy.
    #[serde(with = "nan")]
    pub pixel_acc: f64,
    /// Mean per-class accuracy (recall) over classes present in ground truth.
    #[serde(with = "nan")]
    pub mean_acc: f64,
    /// Fraction of valid-ground-truth pixels that the prediction labels (not 255).
    #[serde(with = "nan")]
    pub coverage: f64,
    /// Pixel accuracy on the covered (labelled) pixels only: the precision of pseudo labels.
    #[serde(with = "nan")]
    pub precision_on_covered: f64,
    /// Pixels counted in the matrix (valid ground truth, labelled prediction).
    pub counted_pixels: u64,
    /// Valid-ground-truth pixels predicted 255.
    pub unlabelled_pixels: u64,
    /// Pixels whose ground truth is ignored (255 or `≥ C`).
    pub ignored_pixels: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

fn nan_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .filter(|v| !v.is_nan())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

impl Scores {
    /// Reduces `m` once. Cost O(C²).
    pub fn from_confusion(m: &ConfusionMatrix, policy: Unlabelled) -> Self {
        let c = m.num_classes();
        let counts = m.counts();
        let tp: Vec<u64> = (0..c).map(|i| counts[i * c + i]).collect();
        let mut gt_pixels: Vec<u64> = (0..c)
            .map(|g| counts[g * c..(g + 1) * c].iter().sum())
            .collect();
        let pred_pixels: Vec<u64> = (0..c)
            .map(|p| (0..c).map(|g| counts[g * c + p]).sum())
            .collect();
        let counted: u64 = counts.iter().sum();
        let unlabelled: u64 = m.unlabelled().iter().sum();
        let total_tp: u64 = tp.iter().sum();
        if policy == Unlabelled::Miss {
            for (g, u) in gt_pixels.iter_mut().zip(m.unlabelled()) {
                *g += u;
            }
        }
        let iou: Vec<f64> = (0..c)
            .map(|i| ratio(tp[i], gt_pixels[i] + pred_pixels[i] - tp[i]))
            .collect();
        let precision: Vec<f64> = (0..c).map(|i| ratio(tp[i], pred_pixels[i])).collect();
        let recall: Vec<f64> = (0..c).map(|i| ratio(tp[i], gt_pixels[i])).collect();
        let present = |i: &usize| gt_pixels[*i] > 0;
        let miou = nan_mean((0..c).filter(present).map(|i| iou[i]));
        let mean_acc = nan_mean((0..c).filter(present).map(|i| recall[i]));
        let pixel_acc = match policy {
            Unlabelled::Skip => ratio(total_tp, counted),
            Unlabelled::Miss => ratio(total_tp, counted + unlabelled),
        };
        Self {
            num_classes: c,
            unlabelled_policy: policy,
            iou,
            precision,
            recall,
            gt_pixels,
            pred_pixels,
            miou,
            pixel_acc,
            mean_acc,
            coverage: ratio(counted, counted + unlabelled),
            precision_on_covered: ratio(total_tp, counted),
            counted_pixels: counted,
            unlabelled_pixels: unlabelled,
            ignored_pixels: m.ignored(),
        }
    }

    /// A per-class table (IoU, precision, recall, ground-truth share) with class names,
    /// then the summary lines. Missing names print as `class<i>`; NaN prints as `-`.
    pub fn table(&self, class_names: &[&str]) -> String {
        let name = |i: usize| -> String {
            class_names
                .get(i)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("class{i}"))
        };
        let width = (0..self.num_classes)
            .map(|i| name(i).len())
            .max()
            .unwrap_or(5)
            .max(5);
        let pct = |v: f64| {
            if v.is_nan() {
                "-".to_string()
            } else {
                format!("{:.2}", 100.0 * v)
            }
        };
        let total_gt: u64 = self.gt_pixels.iter().sum();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>3}  {:<width$}  {:>7}  {:>7}  {:>7}  {:>7}",
            "id", "class", "IoU", "prec", "recall", "gt%"
        );
        for i in 0..self.num_classes {
            let _ = writeln!(
                out,
                "{:>3}  {:<width$}  {:>7}  {:>7}  {:>7}  {:>7}",
                i,
                name(i),
                pct(self.iou[i]),
                pct(self.precision[i]),
                pct(self.recall[i]),
                pct(ratio(self.gt_pixels[i], total_gt)),
            );
        }
        let _ = writeln!(out, "mIoU       {}", pct(self.miou));
        let _ = writeln!(out, "pixel acc  {}", pct(self.pixel_acc));
        let _ = writeln!(out, "mean acc   {}", pct(self.mean_acc));
        if self.unlabelled_pixels > 0 {
            let _ = writeln!(
                out,
                "coverage   {}  (precision on covered {})",
                pct(self.coverage),
                pct(self.precision_on_covered)
            );
        }
        out
    }
}

/// Serde for an `f64` that may be NaN: NaN and infinities as `null`.
pub(crate) mod nan {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Serde for `Vec<f64>` with NaN as `null`.
pub(crate) mod nan_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|x| x.unwrap_or(f64::NAN))
            .collect())
    }
}
