//! `cargo xtask reproduce`: the main job, stage by stage, each through the `wsss` binary.
//!
//! Stages run in order and are skipped when their output already exists, so a re-run only
//! does what is missing. Implemented so far: `data` (generate the embedded scenes set) and
//! `scribbles` (score the scribbles as partial labels: coverage and precision). The
//! `train → cam → refine → segment` stages arrive with the training issues.

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
}

struct Stage<'a> {
    name: &'a str,
    done_marker: PathBuf,
    args: Vec<String>,
}

fn wsss_binary(root: &Path) -> Result<PathBuf> {
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

/// Runs the scenes reproduction into `options.out`.
pub fn scenes(root: &Path, options: &ReproduceOptions) -> Result<()> {
    let wsss = wsss_binary(root)?;
    let out = &options.out;
    let data = out.join("data");
    let (train, val) = if options.quick {
        (100, 40)
    } else {
        (1000, 200)
    };
    let s = |p: &Path| p.display().to_string();
    let stages = [
        Stage {
            name: "data",
            done_marker: data.join("stats.json"),
            args: vec![
                "data".into(),
                "scenes".into(),
                "--out".into(),
                s(&data),
                "--train".into(),
                train.to_string(),
                "--val".into(),
                val.to_string(),
                "--seed".into(),
                options.seed.to_string(),
            ],
        },
        Stage {
            name: "scribbles",
            done_marker: out.join("scribbles/metrics.json"),
            args: vec![
                "eval".into(),
                "--pred".into(),
                s(&data.join("Scribbles")),
                "--gt".into(),
                s(&data.join("SegmentationClass")),
                "--list".into(),
                s(&data.join("ImageSets/Segmentation/val.txt")),
                "--json".into(),
                s(&out.join("scribbles/metrics.json")),
            ],
        },
    ];
    for stage in &stages {
        if stage.done_marker.is_file() {
            println!(
                "[{}] done already ({}), skipped",
                stage.name,
                stage.done_marker.display()
            );
            continue;
        }
        println!("[{}] wsss {}", stage.name, stage.args.join(" "));
        let status = Command::new(&wsss)
            .args(&stage.args)
            .status()
            .with_context(|| format!("running stage {}", stage.name))?;
        if !status.success() {
            bail!("stage {} failed ({status})", stage.name);
        }
        if !stage.done_marker.is_file() {
            bail!(
                "stage {} finished without writing {}",
                stage.name,
                stage.done_marker.display()
            );
        }
    }
    println!(
        "outputs under {}; stages still to come: train, cam, refine, segment, report",
        out.display()
    );
    Ok(())
}
