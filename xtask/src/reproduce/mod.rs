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
    /// Use the debug `wsss` binary (`cargo build`, as `cargo test --workspace` leaves it)
    /// instead of a release build: for CI smoke runs.
    pub dev: bool,
}

/// Builds the `wsss` binary (release, or the debug profile with `dev`) and returns its
/// path.
pub fn wsss_binary(root: &Path, dev: bool) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build"];
    if !dev {
        args.push("--release");
    }
    args.extend(["--quiet", "-p", "wsss", "--bin", "wsss"]);
    let status = Command::new(cargo)
        .current_dir(root)
        .args(&args)
        .status()
        .context("building the wsss binary")?;
    if !status.success() {
        bail!("building the wsss binary failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join(if dev { "debug/wsss" } else { "release/wsss" }))
}
