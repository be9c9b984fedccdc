//! The embedded `scenes` benchmark, end to end: generate the data, then per method train →
//! CAM → refine → (segmentation training) → evaluate, and render the report.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::methods::{Mode, RunPaths};
use super::stage::{Pipeline, StageSpec};
use super::{wsss_binary, ReproduceOptions};

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// The shipped scenes backbone, relative to the repository root: the scenes analog of the
/// ImageNet weights every paper starts from (made by `cargo xtask reproduce --pretrain`,
/// see models/scenes/README.md).
pub const PRETRAINED: &str = "models/scenes/vit_scenes_pretrained.safetensors";

/// Sizes of the generated pre-training set (other compositions of the training objects,
/// seed 1; the benchmark's val objects never appear).
fn pretrain_sizes(quick: bool) -> (usize, usize) {
    if quick {
        (200, 40)
    } else {
        (10_000, 200)
    }
}

/// The backbone weights the methods start from: the shipped file, or (with `--pretrain`) a
/// classic classifier trained by configs/scenes/pretrain.toml on a generated set.
fn backbone(
    root: &Path,
    wsss: &Path,
    pipeline: &mut Pipeline,
    options: &ReproduceOptions,
) -> Result<PathBuf> {
    if !options.pretrain {
        let shipped = root.join(PRETRAINED);
        if !shipped.is_file() {
            bail!(
                "{} is missing: `cargo xtask reproduce --pretrain` trains it",
                shipped.display()
            );
        }
        return Ok(shipped);
    }
    let dir = options.out.join("pretrain");
    let data = dir.join("data");
    let (train, val) = pretrain_sizes(options.quick);
    pipeline.run(&StageSpec {
        name: "pretrain/data".into(),
        dir: data.clone(),
        program: wsss.to_path_buf(),
        args: [
            args(&["data", "scenes", "--out"]),
            vec![s(&data)],
            args(&["--train", &train.to_string(), "--val", &val.to_string()]),
            args(&["--seed", &(options.seed + 1).to_string()]),
        ]
        .concat(),
        inputs: vec![],
        after: vec![],
        resume_args: vec![],
    })?;
    let config = root.join("configs/scenes/pretrain.toml");
    let train_dir = dir.join("train");
    let mut train_args = [
        args(&["train", "--config"]),
        vec![s(&config)],
        args(&["--out"]),
        vec![s(&train_dir)],
        args(&["--data"]),
        vec![s(&data)],
    ]
    .concat();
    if options.quick {
        train_args.extend(args(&["--set", "run.epochs=1"]));
    }
    pipeline.run(&StageSpec {
        name: "pretrain/train".into(),
        dir: train_dir.clone(),
        program: wsss.to_path_buf(),
        args: train_args,
        inputs: vec![config],
        after: vec!["pretrain/data".into()],
        resume_args: vec!["--resume".into()],
    })?;
    Ok(train_dir.join("model.safetensors"))
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

    let init = backbone(root, &wsss, &mut pipeline, options)?;
    let ctx = RunPaths {
        root,
        wsss: &wsss,
        out,
        data: &data,
        quick: options.quick,
        init: Some(&init),
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
