//! The embedded `scenes` benchmark, end to end: generate the data, then per method train →
//! CAM → refine → (segmentation training) → evaluate, and render the report.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::methods::{Mode, RunPaths};
use super::stage::{Pipeline, StageSpec};
use super::{wsss_binary, ReproduceOptions};

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// Sizes of the generated set.
fn sizes(quick: bool) -> (usize, usize) {
    if quick {
        (100, 40)
    } else {
        (1000, 200)
    }
}

/// Runs the scenes reproduction into `options.out`; returns the report folder (none for a
/// partial run: `--train-only`, `--shard`).
pub fn scenes(root: &Path, options: &ReproduceOptions) -> Result<Option<PathBuf>> {
    let wsss = wsss_binary(root, options.dev, options.features.as_deref())?;
    let out = &options.out;
    let data = out.join("data");
    let (train, val) = sizes(options.quick);
    let mut pipeline = Pipeline::new();

    pipeline.run(&StageSpec {
        name: "data".into(),
        dir: data.clone(),
        program: wsss.clone(),
        args: [
            args(&["data", "scenes", "--out"]),
            vec![s(&data)],
            args(&["--train"]),
            vec![train.to_string()],
            args(&["--val"]),
            vec![val.to_string()],
            args(&["--seed"]),
            vec![options.seed.to_string()],
        ]
        .concat(),
        inputs: vec![],
        after: vec![],
        resume_args: vec![],
    })?;

    let scribbles = out.join("scribbles");
    pipeline.run(&StageSpec {
        name: "scribbles".into(),
        dir: scribbles.clone(),
        program: wsss.clone(),
        args: vec![
            "eval".into(),
            "--pred".into(),
            s(&data.join("Scribbles")),
            "--gt".into(),
            s(&data.join("SegmentationClass")),
            "--list".into(),
            s(&data.join("ImageSets/Segmentation/val.txt")),
            "--json".into(),
            s(&scribbles.join("metrics.json")),
        ],
        inputs: vec![],
        after: vec!["data".into()],
        resume_args: vec![],
    })?;

    let ctx = RunPaths {
        root,
        wsss: &wsss,
        out,
        data: &data,
        quick: options.quick,
        mode: options.mode,
        weights: None,
        device: None,
        dataset: "scenes",
    };
    let methods = super::run_methods(&ctx, &mut pipeline, options, &super::SCENES)?;
    if options.mode != Mode::All {
        // Partial run (--train-only, --shard): the final un-sharded run reports.
        return Ok(None);
    }
    super::report::render(&wsss, out, &data, &pipeline, &methods, options).map(Some)
}
