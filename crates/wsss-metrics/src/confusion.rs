//! The confusion matrix: one streaming accumulator over u8 label maps.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::scores::{Scores, Unlabelled};

/// Label value of pixels without a label: ignored in ground truth, "unlabelled" in
/// predictions (the ignore band of pseudo labels). Same as `wsss_core::IGNORE`.
pub const IGNORE: u8 = 255;

/// Confusion matrix of `C` classes, rows ground truth, columns prediction, accumulated
/// over every pixel of every image (the VOC protocol: one matrix per split, reduced once).
///
/// A pixel is counted iff its ground truth is `< C` (255 and any other value `≥ C` are
/// ignored). Predictions equal to 255 are *unlabelled*: they are kept apart, per ground
/// truth class, so that pseudo labels with an ignore band can be scored both ways (see
/// [`Unlabelled`]) and their coverage reported.
///
/// Memory O(C²), independent of the number of images; [`ConfusionMatrix::merge`] is exact
/// (integer sums), so sharded runs combine to the same matrix as one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawConfusion", into = "RawConfusion")]
pub struct ConfusionMatrix {
    num_classes: usize,
    /// `counts[g * C + p]`.
    counts: Vec<u64>,
    /// Per ground-truth class: pixels predicted 255.
    unlabelled: Vec<u64>,
    /// Pixels whose ground truth is `≥ C`.
    ignored: u64,
}

/// The JSON form: `confusion` as rows (gt) of columns (pred).
#[derive(Serialize, Deserialize)]
struct RawConfusion {
    num_classes: usize,
    confusion: Vec<Vec<u64>>,
    unlabelled: Vec<u64>,
    #[serde(default)]
    ignored: u64,
}

impl TryFrom<RawConfusion> for ConfusionMatrix {
    type Error = MetricsError;
    fn try_from(raw: RawConfusion) -> Result<Self> {
        let c = raw.num_classes;
        if raw.confusion.len() != c || raw.confusion.iter().any(|r| r.len() != c) {
            return Err(MetricsError::Invalid(format!(
                "`confusion` must be {c} rows of {c} counts"
            )));
        }
        if raw.unlabelled.len() != c {
            return Err(MetricsError::Invalid(format!(
                "`unlabelled` must have {c} counts, has {}",
                raw.unlabelled.len()
            )));
        }
        Ok(Self {
            num_classes: c,
            counts: raw.confusion.concat(),
            unlabelled: raw.unlabelled,
            ignored: raw.ignored,
        })
    }
}

impl From<ConfusionMatrix> for RawConfusion {
    fn from(m: ConfusionMatrix) -> Self {
        let c = m.num_classes.max(1);
        Self {
            num_classes: m.num_classes,
            confusion: m.counts.chunks(c).map(<[u64]>::to_vec).collect(),
            unlabelled: m.unlabelled,
            ignored: m.ignored,
        }
    }
}

impl ConfusionMatrix {
    /// An empty matrix of `num_classes` classes (C ≤ 255, background included).
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            counts: vec![0; num_classes * num_classes],
            unlabelled: vec![0; num_classes],
            ignored: 0,
        }
    }

    /// Number of classes C.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Pixels with ground truth `g` predicted as `p` (both `< C`).
    pub fn get(&self, gt: usize, pred: usize) -> u64 {
        self.counts[gt * self.num_classes + pred]
    }

    /// The C×C counts, row-major (rows ground truth).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Per ground-truth class, the pixels predicted 255 (unlabelled).
    pub fn unlabelled(&self) -> &[u64] {
        &self.unlabelled
    }

    /// Pixels skipped because their ground truth is `≥ C` (255 = ignore).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Adds one image (or any set of pixels): `pred` and `gt` are label maps of the same
    /// length.
    ///
    /// # Shapes
    /// `pred`, `gt`: (N,) u8, any layout as long as both agree. Cost O(N) time, O(1) memory.
    ///
    /// # Errors
    /// Lengths differ, or a counted pixel has a prediction that is neither `< C` nor 255.
    /// On error the matrix is unchanged.
    pub fn update(&mut self, pred: &[u8], gt: &[u8]) -> Result<()> {
        if pred.len() != gt.len() {
            return Err(MetricsError::SizeMismatch {
                pred: pred.len(),
                gt: gt.len(),
            });
        }
        let c = self.num_classes;
        if let Some(index) = pred
            .iter()
            .zip(gt)
            .position(|(&p, &g)| (g as usize) < c && p != IGNORE && p as usize >= c)
        {
            return Err(MetricsError::PredictionOutOfRange {
                value: pred[index],
                index,
                num_classes: c,
            });
        }
        for (&p, &g) in pred.iter().zip(gt) {
            let (p, g) = (p as usize, g as usize);
            if g >= c {
                self.ignored += 1;
            } else if p == IGNORE as usize {
                self.unlabelled[g] += 1;
            } else {
                self.counts[g * c + p] += 1;
            }
        }
        Ok(())
    }

    /// Adds another matrix (exact: integer sums). Associative and commutative.
    pub fn merge(&mut self, other: &ConfusionMatrix) -> Result<()> {
        if self.num_classes != other.num_classes {
            return Err(MetricsError::ClassCountMismatch(
                self.num_classes,
                other.num_classes,
            ));
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        for (a, b) in self.unlabelled.iter_mut().zip(&other.unlabelled) {
            *a += b;
        }
        self.ignored += other.ignored;
        Ok(())
    }

    /// Accumulates many images in parallel (rayon): `load(item)` yields one image's
    /// `(pred, gt)` maps, which are dropped after counting, so memory is O(C² · threads)
    /// whatever the number of images.
    pub fn par_accumulate<T, F, E>(
        num_classes: usize,
        items: &[T],
        load: F,
    ) -> std::result::Result<Self, E>
    where
        T: Sync,
        F: Fn(&T) -> std::result::Result<(Vec<u8>, Vec<u8>), E> + Sync,
        E: From<MetricsError> + Send,
    {
        items
            .par_iter()
            .try_fold(
                || ConfusionMatrix::new(num_classes),
                |mut m, item| -> std::result::Result<ConfusionMatrix, E> {
                    let (pred, gt) = load(item)?;
                    m.update(&pred, &gt)?;
                    Ok(m)
                },
            )
            .try_reduce(
                || ConfusionMatrix::new(num_classes),
                |mut a, b| -> std::result::Result<ConfusionMatrix, E> {
                    a.merge(&b)?;
                    Ok(a)
                },
            )
    }

    /// Adds raw C×C counts and ignored pixels (used by the threshold sweep).
    pub(crate) fn add_counts(&mut self, counts: &[u64], ignored: u64) {
        for (a, b) in self.counts.iter_mut().zip(counts) {
            *a += b;
        }
        self.ignored += ignored;
    }

    /// Scores with unlabelled predictions skipped (ToCo's `pseudo_scores`; for maps
    /// without 255 the same as its `scores`).
    pub fn scores(&self) -> Scores {
        Scores::from_confusion(self, Unlabelled::Skip)
    }

    /// Scores under an explicit policy for unlabelled predictions.
    pub fn scores_with(&self, unlabelled: Unlabelled) -> Scores {
        Scores::from_confusion(self, unlabelled)
    }

    /// Reads a matrix written by [`ConfusionMatrix::write_json`] (or the `confusion` field
    /// of a `metrics.json`).
    pub fn read_json(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| MetricsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| MetricsError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        // Accept both a bare matrix and a metrics.json holding one under `confusion`.
        let value = match value.get("confusion") {
            Some(inner) if inner.is_object() => inner.clone(),
            _ => value,
        };
        serde_json::from_value(value).map_err(|source| MetricsError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the matrix as JSON (to a temporary file renamed into place).
    pub fn write_json(&self, path: &std::path::Path) -> Result<()> {
        crate::report::write_json_atomic(path, self)
    }
}
