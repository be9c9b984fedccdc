//! Converters from the public datasets' own formats to the VOC layout read by
//! [`crate::VocDataset`]: PASCAL VOC 2012 + SBD ([`voc`]), COCO 2014 ([`coco`]) and
//! ScribbleSup scribbles ([`scribble`]). Every file is written atomically (a temporary
//! sibling, then a rename), so an interrupted run leaves no half-written file, and a rerun
//! redoes only what is missing.

pub mod coco;
pub mod sbd;
pub mod scribble;
pub mod voc;

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The first of `candidates` that holds `marker` (a file or folder).
pub(crate) fn find_root(candidates: &[PathBuf], marker: &str) -> Option<PathBuf> {
    candidates.iter().find(|c| c.join(marker).exists()).cloned()
}

/// Fails with every problem found (each names its file), or succeeds when there is none.
pub(crate) fn check_problems(root: &Path, mut problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    Err(DataError::Layout {
        root: root.to_path_buf(),
        problems,
    })
}

/// Creates `dir` and its parents.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(crate::error::io_err(dir))
}
