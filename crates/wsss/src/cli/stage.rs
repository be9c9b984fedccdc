//! What every per-image stage (`wsss cam`, `wsss refine`) shares: `--shard k/n` selection
//! over the sorted image list, skipping images whose output exists (resumable runs), atomic
//! writes (a temporary sibling, then a rename: a killed run never leaves a half-written
//! output that a resumed run would skip), and a progress bar with the throughput.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

pub use wsss::shard::Shard;

/// `dir/.name.<pid>.tmp`: the sibling a file is written to before its rename.
fn tmp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `path` atomically: `write` fills a temporary sibling, which is then renamed over
/// `path`. On error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = tmp_sibling(path);
    let result = write(&tmp).and_then(|()| {
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What a stage run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Images processed now.
    pub done: usize,
    /// Images skipped because their output existed.
    pub skipped: usize,
}

/// Runs `process(name, output_path)` for every name of `names` whose output
/// (`output(name)`) does not exist yet, with a progress bar, on `threads` rayon workers
/// (1: in order on this thread, for stages that parallelise inside). Stops at the first
/// error, which names the image.
pub fn run_images(
    stage: &str,
    names: &[String],
    output: impl Fn(&str) -> PathBuf + Sync,
    parallel: bool,
    process: impl Fn(&str, &Path) -> Result<()> + Sync,
) -> Result<Summary> {
    let todo: Vec<&String> = names.iter().filter(|n| !output(n).exists()).collect();
    let skipped = names.len() - todo.len();
    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} eta {eta}",
        )
        .context("progress bar template")?,
    );
    bar.set_prefix(stage.to_string());
    let start = Instant::now();
    let done = AtomicUsize::new(0);
    let one = |name: &&String| -> Result<()> {
        let out = output(name);
        process(name, &out).with_context(|| format!("{stage}: image `{name}`"))?;
        done.fetch_add(1, Ordering::Relaxed);
        bar.inc(1);
        Ok(())
    };
    let result = if parallel {
        todo.par_iter().try_for_each(one)
    } else {
        todo.iter().try_for_each(one)
    };
    bar.finish_and_clear();
    result?;
    let done = done.into_inner();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{stage}: {done} images in {secs:.1} s ({:.2} images/s), {skipped} already done",
        if secs > 0.0 { done as f64 / secs } else { 0.0 }
    );
    Ok(Summary { done, skipped })
}

/// Creates the output folder, with a clear error.
pub fn create_out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_sorted_list() {
        let names: Vec<String> = ["c", "a", "e", "b", "d", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s0 = "0/2".parse::<Shard>().unwrap().select(&names);
        let s1 = "1/2".parse::<Shard>().unwrap().select(&names);
        assert_eq!(s0, ["a", "c", "e"]);
        assert_eq!(s1, ["b", "d"]);
        assert_eq!(Shard::default().select(&names).len(), 5);
    }

    #[test]
    fn bad_shards_are_rejected() {
        for s in ["2/2", "1", "a/b", "0/0", "-1/3", ""] {
            let err = s.parse::<Shard>().unwrap_err();
            assert!(err.contains("k/n"), "{s}: {err}");
        }
    }

    #[test]
    fn failed_writes_leave_nothing() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.bin");
        let err = write_atomic(&path, |tmp| {
            std::fs::write(tmp, b"half")?;
            bail!("killed")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
        write_atomic(&path, |tmp| Ok(std::fs::write(tmp, b"whole")?))?;
        assert_eq!(std::fs::read(&path)?, b"whole");
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }
}
