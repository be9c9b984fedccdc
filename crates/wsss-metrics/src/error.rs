//! Errors of the metrics crate.

use std::path::PathBuf;

/// What can go wrong while accumulating or reading metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Prediction and ground truth have different pixel counts.
    #[error("prediction has {pred} pixels but ground truth has {gt}")]
    SizeMismatch {
        /// Pixels in the prediction.
        pred: usize,
        /// Pixels in the ground truth.
        gt: usize,
    },
    /// A prediction value is neither a class index `< C` nor 255 (unlabelled).
    #[error("prediction value {value} at pixel {index} is out of range for {num_classes} classes (expected 0..{num_classes} or 255)")]
    PredictionOutOfRange {
        /// The offending value.
        value: u8,
        /// Flat pixel index.
        index: usize,
        /// Number of classes C.
        num_classes: usize,
    },
    /// Two matrices with different class counts cannot merge.
    #[error("cannot merge confusion matrices with {0} and {1} classes")]
    ClassCountMismatch(usize, usize),
    /// A confusion matrix read from JSON is inconsistent.
    #[error("invalid confusion matrix: {0}")]
    Invalid(String),
    /// Bad sweep configuration (thresholds unsorted, empty, …).
    #[error("invalid threshold sweep: {0}")]
    Sweep(String),
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// JSON (de)serialisation.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, MetricsError>;
