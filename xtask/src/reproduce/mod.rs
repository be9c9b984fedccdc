//! `cargo xtask reproduce`: the main job, stage by stage, each through the `wsss` binary,
//! each cached by a hash of its command, configs and upstream runs (see [`stage`]).

pub mod chains;
pub mod methods;
pub mod paper;
pub mod report;
pub mod scenes;
pub mod segmentation;
pub mod stage;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use wsss::report::MethodSpec;

use chains::Chain;
use methods::{run_cam_method, CamMethod, Mode, RunPaths, CAM_METHODS};
use stage::Pipeline;

/// A method of `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodName {
    /// Classic CAM (the baseline).
    Classic,
    /// WeakTr stage 1 (CAM → pseudo labels) and stage 2 (segmentation).
    Weaktr,
    /// AReAM.
    Aream,
    /// GETAM end to end (GETAM CAMs and its decoder's segmentation).
    Getam,
    /// DFR on the scribbles.
    Dfr,
    /// Every method above.
    All,
}

impl MethodName {
    /// The folder and stage-name prefix of a method.
    pub fn name(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Weaktr => "weaktr",
            Self::Aream => "aream",
            Self::Getam => "getam",
            Self::Dfr => "dfr",
            Self::All => "all",
        }
    }

    /// Relative cost of the method's chain on scenes (stage wall seconds of the default
    /// run, rounded): the costliest start first when chains run side by side.
    pub fn cost(self) -> u32 {
        match self {
            Self::Classic => 70,
            Self::Weaktr => 190,
            Self::Aream => 130,
            Self::Getam => 120,
            Self::Dfr => 150,
            Self::All => 0,
        }
    }
}

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
    /// Cargo features of the `wsss` build (`cuda`, `metal`).
    pub features: Option<String>,
    /// Methods to run (`All` or empty: every one).
    pub methods: Vec<MethodName>,
    /// Which part of the pipeline runs (`--train-only`, `--shard k/n`).
    pub mode: Mode,
    /// Use the debug `wsss` binary (`cargo build`, as `cargo test --workspace` leaves it)
    /// instead of a release build: for CI smoke runs.
    pub dev: bool,
    /// How many method chains run at once (0: one per core; see [`chains::plan`]).
    pub jobs: usize,
}

/// Builds the `wsss` binary (release, or the debug profile with `dev`; with cargo
/// `features` such as `cuda`) and returns its path.
pub fn wsss_binary(root: &Path, dev: bool, features: Option<&str>) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build"];
    if !dev {
        args.push("--release");
    }
    args.extend(["--quiet", "-p", "wsss", "--bin", "wsss"]);
    if let Some(features) = features {
        args.extend(["--features", features]);
    }
    let mut command = Command::new(cargo);
    command.current_dir(root).args(&args);
    // `cargo xtask` runs us with the xtask package's variables set; a build script that
    // tracks one (ring tracks CARGO_MANIFEST_DIR) would otherwise see it change between
    // this build and the next `cargo xtask`, and each would rebuild ring, rustls, ureq,
    // hf-hub and wsss for the other (about 70 s on every run).
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_package_variable) {
            command.env_remove(&name);
        }
    }
    let status = command.status().context("building the wsss binary")?;
    if !status.success() {
        bail!("building the wsss binary failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join(if dev { "debug/wsss" } else { "release/wsss" }))
}

/// True for the variables cargo sets for the package it runs (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME`, …), as opposed to configuration (`CARGO_TARGET_DIR`, `CARGO_HOME`).
fn is_package_variable(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || matches!(
            name,
            "CARGO_PRIMARY_PACKAGE"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}

impl ReproduceOptions {
    /// True when `method` is selected.
    pub fn wants(&self, method: MethodName) -> bool {
        self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| *m == method || *m == MethodName::All)
    }

    /// True when every method is selected.
    pub fn all_methods(&self) -> bool {
        self.methods.is_empty() || self.methods.contains(&MethodName::All)
    }
}

/// The configs of one data set's reproduction.
#[derive(Debug, Clone, Copy)]
pub struct Recipe {
    /// The CAM methods trained from image labels (classic, weaktr, aream).
    pub cam_methods: &'static [CamMethod],
    /// GETAM end to end.
    pub getam: CamMethod,
    /// WeakTr stage 2's training config.
    pub weaktr_stage2: &'static str,
    /// DFR's training config (none: no scribbles for this data set).
    pub dfr: Option<&'static str>,
}

/// The embedded scenes set.
pub const SCENES: Recipe = Recipe {
    cam_methods: &CAM_METHODS,
    getam: segmentation::GETAM,
    weaktr_stage2: segmentation::WEAKTR_STAGE2_CONFIG,
    dfr: Some(segmentation::DFR_CONFIG),
};

/// Runs the stages of the selected methods (classic, weaktr with its stage 2, aream,
/// getam, dfr), each method's chain beside the others on `options.jobs` threads
/// ([`chains::run_chains`]); returns their report rows in that order.
pub fn run_methods(
    ctx: &RunPaths<'_>,
    pipeline: &mut Pipeline,
    options: &ReproduceOptions,
    recipe: &Recipe,
) -> Result<Vec<MethodSpec>> {
    let mut list: Vec<Chain<'_, MethodSpec>> = Vec::new();
    for method in recipe.cam_methods {
        let name = match method.name {
            "classic" => MethodName::Classic,
            "weaktr" => MethodName::Weaktr,
            "aream" => MethodName::Aream,
            other => bail!("CAM method `{other}` has no --method name"),
        };
        if !options.wants(name) {
            continue;
        }
        list.push(Chain {
            name: name.name(),
            cost: name.cost(),
            run: Box::new(move |pipeline: &mut Pipeline| {
                let mut row = run_cam_method(ctx, pipeline, method)?;
                if name == MethodName::Weaktr {
                    segmentation::weaktr_stage2(ctx, pipeline, recipe.weaktr_stage2, &mut row)?;
                }
                Ok(row)
            }),
        });
    }
    if options.wants(MethodName::Getam) {
        list.push(Chain {
            name: MethodName::Getam.name(),
            cost: MethodName::Getam.cost(),
            run: Box::new(move |pipeline: &mut Pipeline| {
                segmentation::getam(ctx, pipeline, &recipe.getam)
            }),
        });
    }
    if options.wants(MethodName::Dfr) {
        match recipe.dfr {
            Some(config) => list.push(Chain {
                name: MethodName::Dfr.name(),
                cost: MethodName::Dfr.cost(),
                run: Box::new(move |pipeline: &mut Pipeline| {
                    segmentation::dfr(ctx, pipeline, config)
                }),
            }),
            None => println!("[dfr] skipped: no scribble config for this data set"),
        }
    }
    chains::run_chains(pipeline, list, options.jobs)
}

#[cfg(test)]
mod tests {
    use super::is_package_variable;

    #[test]
    fn only_the_running_packages_variables_are_dropped() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PKG_NAME",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            assert!(is_package_variable(name), "{name}");
        }
        for name in [
            "CARGO_TARGET_DIR",
            "CARGO_HOME",
            "CARGO",
            "CARGO_TERM_COLOR",
            "PATH",
        ] {
            assert!(!is_package_variable(name), "{name}");
        }
    }
}
