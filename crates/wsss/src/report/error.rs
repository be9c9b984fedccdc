//! Errors of report building: each names the file it concerns.

use std::path::PathBuf;

/// What can go wrong while building a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file did not parse as expected.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A plot could not be drawn.
    #[error("plot: {0}")]
    Plot(String),
    /// A picture could not be composed.
    #[error("picture: {0}")]
    Picture(String),
}

/// Result of report building.
pub type Result<T> = std::result::Result<T, ReportError>;

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ReportError {
    let path = path.into();
    move |source| ReportError::Io { path, source }
}

pub(crate) fn parse_error(
    path: impl Into<PathBuf>,
    message: impl std::fmt::Display,
) -> ReportError {
    ReportError::Parse {
        path: path.into(),
        message: message.to_string(),
    }
}
