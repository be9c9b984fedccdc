//! `metrics.json`: scores, class names and the raw confusion matrix (so shards merge).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::confusion::ConfusionMatrix;
use crate::error::{MetricsError, Result};
use crate::scores::Scores;

/// What `metrics.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsReport {
    /// Class names, index = label value.
    pub class_names: Vec<String>,
    /// Number of images evaluated.
    pub images: usize,
    /// The scores.
    pub scores: Scores,
    /// The matrix they came from (merge shards by summing these).
    pub confusion: ConfusionMatrix,
}

impl MetricsReport {
    /// Scores `confusion` (unlabelled skipped) and bundles it with the names.
    pub fn new(confusion: ConfusionMatrix, class_names: Vec<String>, images: usize) -> Self {
        Self {
            class_names,
            images,
            scores: confusion.scores(),
            confusion,
        }
    }

    /// The printed table (see [`Scores::table`]).
    pub fn table(&self) -> String {
        let names: Vec<&str> = self.class_names.iter().map(String::as_str).collect();
        self.scores.table(&names)
    }

    /// Writes the report as pretty JSON (temporary file, then rename).
    pub fn write_json(&self, path: &Path) -> Result<()> {
        write_json_atomic(path, self)
    }
}

/// Serialises `value` to `path` via `path.tmp` and a rename, so a reader never sees half a file.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(|source| MetricsError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    let io = |source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(&tmp, json).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
