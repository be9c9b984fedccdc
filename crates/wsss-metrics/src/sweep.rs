//! Background-threshold sweep over class activation maps, in one pass.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::confusion::ConfusionMatrix;
use crate::error::{MetricsError, Result};
use crate::scores::nan;

/// Accumulates, in one pass over the images, the confusion matrix that every background
/// threshold of a sorted list would give, plus the pooled histogram of the per-pixel CAM
/// maximum for the GT-free Otsu rule.
///
/// The rule is ToCo's `cam_to_label`: at a pixel with CAM scores `s_k` of the image's
/// classes `l_k`, the label is `l_argmax` if `max_k s_k > t` and 0 (background) otherwise.
/// Instead of T label maps per image, each pixel is binned by how many thresholds lie
/// strictly below its maximum; counts per (gt, argmax class, bin) give all T matrices by
/// prefix sums. Time O(N log T) per image plus O(C² T) at the end; memory O(C² T),
/// independent of the number of images.
#[derive(Debug, Clone)]
pub struct ThresholdSweep {
    num_classes: usize,
    thresholds: Vec<f32>,
    /// `counts[(g * C + l) * (T + 1) + k]`.
    counts: Vec<u64>,
    /// Pooled histogram over all pixels of images with ≥ 1 class, same bins.
    histogram: Vec<u64>,
    ignored: u64,
}

/// One threshold's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdScore {
    /// Background threshold.
    pub threshold: f32,
    /// mIoU at that threshold.
    #[serde(with = "nan")]
    pub miou: f64,
}

/// The sweep's results: every threshold, the GT-tuned best and the GT-free Otsu choice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepReport {
    /// mIoU per threshold, in order.
    pub thresholds: Vec<ThresholdScore>,
    /// The threshold with the highest mIoU (tuned on ground truth).
    pub best: ThresholdScore,
    /// Otsu's threshold on the pooled histogram of per-pixel CAM maxima (no ground truth
    /// used to choose it), with its mIoU.
    pub otsu: ThresholdScore,
}

impl ThresholdSweep {
    /// A sweep over `thresholds` (sorted ascending, finite, non-empty) for `num_classes`
    /// classes (background 0 included).
    pub fn new(num_classes: usize, thresholds: Vec<f32>) -> Result<Self> {
        if thresholds.is_empty() {
            return Err(MetricsError::Sweep("no thresholds".into()));
        }
        if thresholds.iter().any(|t| !t.is_finite()) || thresholds.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(MetricsError::Sweep(
                "thresholds must be finite and strictly increasing".into(),
            ));
        }
        if num_classes == 0 {
            return Err(MetricsError::Sweep("no classes".into()));
        }
        let bins = thresholds.len() + 1;
        Ok(Self {
            num_classes,
            counts: vec![0; num_classes * num_classes * bins],
            histogram: vec![0; bins],
            thresholds,
            ignored: 0,
        })
    }

    /// `0.00, 0.01, …, 1.00`: the usual grid for CAMs normalised to [0, 1].
    pub fn default_thresholds() -> Vec<f32> {
        (0..=100).map(|i| i as f32 / 100.0).collect()
    }

    /// The thresholds.
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }

    /// Adds one image.
    ///
    /// # Shapes
    /// `cams`: (K, N) f32, plane k scores class `labels[k]`; `labels`: (K,) u8 label values
    /// (`1..C` for foreground classes); `gt`: (N,) u8, 255 ignored. K may be 0 (every pixel
    /// background). Cost O(N K + N log T) time, O(1) extra memory.
    pub fn update(&mut self, cams: &[f32], labels: &[u8], gt: &[u8]) -> Result<()> {
        let n = gt.len();
        let k = labels.len();
        if cams.len() != k * n {
            return Err(MetricsError::Sweep(format!(
                "cams have {} values, expected {k} classes × {n} pixels",
                cams.len()
            )));
        }
        let c = self.num_classes;
        if let Some(&l) = labels.iter().find(|&&l| l as usize >= c) {
            return Err(MetricsError::Sweep(format!(
                "class label {l} out of range for {c} classes"
            )));
        }
        let bins = self.thresholds.len() + 1;
        for (i, &g) in gt.iter().enumerate() {
            let (mut best, mut label) = (f32::NEG_INFINITY, 0u8);
            for (j, &l) in labels.iter().enumerate() {
                let v = cams[j * n + i];
                if v > best {
                    best = v;
                    label = l;
                }
            }
            // Number of thresholds t with t < best (NaN and -inf give 0: background).
            let bin = self.thresholds.partition_point(|&t| t < best);
            if k > 0 {
                self.histogram[bin] += 1;
            }
            if g as usize >= c {
                self.ignored += 1;
                continue;
            }
            self.counts[(g as usize * c + label as usize) * bins + bin] += 1;
        }
        Ok(())
    }

    /// Adds another sweep over the same thresholds and classes (exact).
    pub fn merge(&mut self, other: &ThresholdSweep) -> Result<()> {
        if self.num_classes != other.num_classes || self.thresholds != other.thresholds {
            return Err(MetricsError::Sweep(
                "cannot merge sweeps with different classes or thresholds".into(),
            ));
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        for (a, b) in self.histogram.iter_mut().zip(&other.histogram) {
            *a += b;
        }
        self.ignored += other.ignored;
        Ok(())
    }

    /// Accumulates many images in parallel (rayon); `load(item)` yields `(cams, labels, gt)`
    /// of one image, dropped after counting.
    pub fn par_accumulate<T, F, E>(&mut self, items: &[T], load: F) -> std::result::Result<(), E>
    where
        T: Sync,
        F: Fn(&T) -> std::result::Result<(Vec<f32>, Vec<u8>, Vec<u8>), E> + Sync,
        E: From<MetricsError> + Send,
    {
        let empty = || {
            let mut s = self.clone();
            s.counts.iter_mut().for_each(|v| *v = 0);
            s.histogram.iter_mut().for_each(|v| *v = 0);
            s.ignored = 0;
            s
        };
        let total = items
            .par_iter()
            .try_fold(
                empty,
                |mut s, item| -> std::result::Result<ThresholdSweep, E> {
                    let (cams, labels, gt) = load(item)?;
                    s.update(&cams, &labels, &gt)?;
                    Ok(s)
                },
            )
            .try_reduce(
                empty,
                |mut a, b| -> std::result::Result<ThresholdSweep, E> {
                    a.merge(&b)?;
                    Ok(a)
                },
            )?;
        self.merge(&total)?;
        Ok(())
    }

    /// The confusion matrix at threshold index `j`. Cost O(C² T).
    pub fn confusion_at(&self, j: usize) -> ConfusionMatrix {
        let c = self.num_classes;
        let bins = self.thresholds.len() + 1;
        let mut m = ConfusionMatrix::new(c);
        let mut counts = vec![0u64; c * c];
        for g in 0..c {
            for l in 0..c {
                let row = &self.counts[(g * c + l) * bins..(g * c + l + 1) * bins];
                let bg: u64 = row[..=j].iter().sum();
                let fg: u64 = row[j + 1..].iter().sum();
                counts[g * c + l] += fg;
                counts[g * c] += bg;
            }
        }
        m.add_counts(&counts, self.ignored);
        m
    }

    /// Otsu's threshold on the pooled histogram of per-pixel CAM maxima: the split that
    /// maximises the between-class variance (Otsu 1979). Bin `k` holds maxima in
    /// `(t_{k-1}, t_k]`, represented by its midpoint, so the split is one of the thresholds.
    /// Returns the threshold index, or `None` when the histogram is empty.
    pub fn otsu_index(&self) -> Option<usize> {
        let t = &self.thresholds;
        let bins = t.len() + 1;
        let value = |k: usize| -> f64 {
            if k == 0 {
                t[0] as f64
            } else if k == bins - 1 {
                t[k - 1] as f64
            } else {
                0.5 * (t[k - 1] as f64 + t[k] as f64)
            }
        };
        let total: u64 = self.histogram.iter().sum();
        if total == 0 {
            return None;
        }
        let sum_all: f64 = (0..bins).map(|k| self.histogram[k] as f64 * value(k)).sum();
        let (mut w0, mut sum0) = (0f64, 0f64);
        let mut best = (f64::NEG_INFINITY, 0usize);
        // Split after bin j (bins 0..=j background) is threshold index j.
        for j in 0..t.len() {
            w0 += self.histogram[j] as f64;
            sum0 += self.histogram[j] as f64 * value(j);
            let w1 = total as f64 - w0;
            if w0 == 0.0 || w1 == 0.0 {
                continue;
            }
            let m0 = sum0 / w0;
            let m1 = (sum_all - sum0) / w1;
            let between = w0 * w1 * (m0 - m1) * (m0 - m1);
            if between > best.0 {
                best = (between, j);
            }
        }
        Some(if best.0.is_finite() { best.1 } else { 0 })
    }

    /// mIoU at every threshold, the best one and Otsu's.
    pub fn report(&self) -> SweepReport {
        let thresholds: Vec<ThresholdScore> = (0..self.thresholds.len())
            .map(|j| ThresholdScore {
                threshold: self.thresholds[j],
                miou: self.confusion_at(j).scores().miou,
            })
            .collect();
        let best = thresholds
            .iter()
            .filter(|s| !s.miou.is_nan())
            .max_by(|a, b| a.miou.total_cmp(&b.miou))
            .unwrap_or(&thresholds[0])
            .clone();
        let otsu = match self.otsu_index() {
            Some(j) => thresholds[j].clone(),
            None => ThresholdScore {
                threshold: f32::NAN,
                miou: f64::NAN,
            },
        };
        SweepReport {
            thresholds,
            best,
            otsu,
        }
    }
}
