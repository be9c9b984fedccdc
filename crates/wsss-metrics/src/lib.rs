//! Segmentation metrics for weakly supervised semantic segmentation: a streaming
//! [`ConfusionMatrix`] over u8 label maps, the scores reduced from it once ([`Scores`]:
//! per-class IoU, mIoU, pixel and mean accuracy, precision/recall, and for pseudo labels
//! the coverage and the precision on covered pixels), a printed per-class table,
//! `metrics.json` ([`MetricsReport`]), and a one-pass background-threshold sweep over CAMs
//! ([`ThresholdSweep`]) with a ground-truth-free threshold (Otsu 1979 on the pooled CAM
//! histogram) beside the GT-tuned best.
//!
//! Conventions follow the PASCAL VOC protocol (Everingham et al., IJCV 2010) as coded in
//! ToCo (arXiv:2303.02506, `utils/evaluate.py: scores, pseudo_scores`) and AFA
//! (arXiv:2203.02664): ground truth 255 is ignored, one matrix is summed over the split, and
//! mIoU averages the classes present in ground truth. No candle dependency.
//!
//! ```
//! use wsss_metrics::ConfusionMatrix;
//! let mut m = ConfusionMatrix::new(3);
//! m.update(&[0, 1, 1, 2, 255], &[0, 1, 2, 2, 1]).unwrap();
//! let s = m.scores();
//! assert_eq!(s.iou[0], 1.0);
//! assert!((s.miou - (1.0 + 0.5 + 0.5) / 3.0).abs() < 1e-12);
//! assert_eq!(s.coverage, 0.8);
//! ```

mod confusion;
mod error;
mod report;
mod scores;
mod sweep;

pub use confusion::{ConfusionMatrix, IGNORE};
pub use error::{MetricsError, Result};
pub use report::MetricsReport;
pub use scores::{Scores, Unlabelled};
pub use sweep::{SweepReport, ThresholdScore, ThresholdSweep};
