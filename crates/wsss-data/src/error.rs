//! Errors of the data crate: every variant that concerns a file names it.

use std::path::PathBuf;

/// What can go wrong while reading, writing or checking data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An image file could not be decoded (corrupt or unsupported).
    #[error("{path}: cannot decode image: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// A mask or scribble does not have the size of its image.
    #[error("{path}: label map is {got_width}x{got_height} but the image is {width}x{height}")]
    SizeMismatch {
        /// The label file.
        path: PathBuf,
        /// Its width.
        got_width: u32,
        /// Its height.
        got_height: u32,
        /// The image width.
        width: u32,
        /// The image height.
        height: u32,
    },
    /// A label value is neither a class index `< C` nor 255.
    #[error("{path}: class index {value} out of range (expected 0..{num_classes} or 255)")]
    ClassOutOfRange {
        /// The file holding the value.
        path: PathBuf,
        /// The value.
        value: u32,
        /// Number of classes C.
        num_classes: usize,
    },
    /// An image list (`ImageSets/Segmentation/<split>.txt`) is missing.
    #[error("{path}: missing image list (expected one image name per line)")]
    MissingList {
        /// The expected list file.
        path: PathBuf,
    },
    /// A text or JSON file has unexpected content.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was expected.
        message: String,
    },
    /// A dataset tree has missing or corrupt files (each problem names its file).
    #[error("{root}: {} problem(s) in the dataset:\n  {}{}", problems.len(), problems.iter().take(20).cloned().collect::<Vec<_>>().join("\n  "), if problems.len() > 20 { format!("\n  … and {} more", problems.len() - 20) } else { String::new() })]
    Layout {
        /// The dataset root.
        root: PathBuf,
        /// One line per problem, each naming its file.
        problems: Vec<String>,
    },
    /// Bad arguments or inconsistent in-memory data.
    #[error("{0}")]
    Invalid(String),
    /// A tensor operation failed (batcher).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DataError>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}
