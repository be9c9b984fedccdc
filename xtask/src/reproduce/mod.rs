//! `cargo xtask reproduce`: the main job, stage by stage, each through the `wsss` binary,
//! each cached by a hash of its command, configs and upstream runs (see [`stage`]).

pub mod methods;
pub mod report;
pub mod scenes;
pub mod stage;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    /// Run folder (stage outputs go below it).
    pub out: PathBuf,
    /// The smallest meaningful run (CI smoke).
    pub quick: bool,
    /// Seed of the generated data.
    pub seed: u64,
    /// Copy the results table and overlay grid into the README (default runs only).
    pub update_readme: bool,
    /// Train the scenes backbone here instead of using the shipped one
    /// ([`scenes::PRETRAINED`]).
    pub pretrain: bool,
}

/// Builds the `wsss` binary in release mode and returns its path.
pub fn wsss_binary(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "wsss",
            "--bin",
            "wsss",
        ])
        .status()
        .context("building the wsss binary")?;
    if !status.success() {
        bail!("building the wsss binary failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/wsss"))
}
