//! Segmentation rows of the scenes reproduction: a trained segmentation network predicts
//! the val split (`wsss segment`), scored on the ground truth (`wsss eval --pred`).
//!
//! - WeakTr stage 2 (`weaktr/seg_*`): a data folder whose train masks are WeakTr's refined
//!   pseudo labels and whose val masks are the ground truth, then
//!   configs/scenes/weaktr_stage2.toml on it; its score goes into the WeakTr row.
//! - GETAM end to end (`getam/*`): the CAM stages of [`super::methods`] on its classifier
//!   (GETAM maps), then its linear decoder segments val.
//! - DFR (`dfr/*`): scribble-supervised, configs/scenes/dfr_with_fc.toml.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use wsss::report::MethodSpec;

use super::methods::{list, run_cam_method, s, CamMethod, Mode, RunPaths};
use super::stage::{Pipeline, StageSpec};

/// GETAM end to end: its CAM rows come from the classifier (GETAM maps, start layer 2 as
/// in configs/scenes/getam.toml), refined like the other CAM methods.
pub const GETAM: CamMethod = CamMethod {
    name: "getam",
    train_config: "configs/scenes/getam.toml",
    cam_method: "kind = \"getam\"\nstart_layer = 2\n",
    refine_config: "configs/refine/par_reliable_scenes.toml",
    // One epoch must train the decoder too.
    quick_overrides: &["method.seg_start_epoch=0"],
};

/// WeakTr stage 2's training config.
pub const WEAKTR_STAGE2_CONFIG: &str = "configs/scenes/weaktr_stage2.toml";

/// DFR's training config (the full method: DFR regulariser + feature consistency).
pub const DFR_CONFIG: &str = "configs/scenes/dfr_with_fc.toml";

/// Outputs of the segment + eval stages.
struct Segmented {
    pred_dir: PathBuf,
    metrics: PathBuf,
}

/// `{method}/segment_val` then `{method}/seg_eval` on a finished training stage.
fn segment_and_eval(
    ctx: &RunPaths<'_>,
    pipeline: &mut Pipeline,
    method: &str,
    train_stage: &str,
    train_dir: &Path,
) -> Result<Segmented> {
    let dir = ctx.out.join(method);
    let pred_dir = dir.join("pred_val");
    let segment = format!("{method}/segment_val");
    let mut args = vec![
        "segment".into(),
        "--run".into(),
        s(train_dir),
        "--data".into(),
        s(ctx.data),
        "--split".into(),
        "val".into(),
        "--out".into(),
        s(&pred_dir),
    ];
    if let Some(device) = ctx.device {
        args.extend(["--device".into(), device.into()]);
    }
    ctx.per_image(
        pipeline,
        &StageSpec {
            name: segment.clone(),
            dir: pred_dir.clone(),
            program: ctx.wsss.to_path_buf(),
            args,
            inputs: vec![],
            after: vec![train_stage.into()],
            resume_args: vec![],
        },
    )?;
    let metrics = dir.join("seg_eval/metrics.json");
    ctx.eval(
        pipeline,
        format!("{method}/seg_eval"),
        ("--pred", &pred_dir),
        "val",
        &metrics,
        segment,
    )?;
    Ok(Segmented { pred_dir, metrics })
}

/// `wsss train --config CONFIG --out DIR --data DATA` as a stage (`--resume` after a kill).
fn train_stage(
    ctx: &RunPaths<'_>,
    pipeline: &mut Pipeline,
    name: &str,
    config: &str,
    data: &Path,
    after: &str,
) -> Result<PathBuf> {
    let config = ctx.root.join(config);
    if !config.is_file() {
        bail!("{} is missing", config.display());
    }
    let dir = ctx.out.join(name);
    let mut args = vec![
        "train".into(),
        "--config".into(),
        s(&config),
        "--out".into(),
        s(&dir),
        "--data".into(),
        s(data),
    ];
    args.extend(ctx.train_extra(&config)?);
    if ctx.quick {
        args.extend(["--set".into(), "run.epochs=1".into()]);
    }
    ctx.train(
        pipeline,
        &StageSpec {
            name: name.into(),
            dir: dir.clone(),
            program: ctx.wsss.to_path_buf(),
            args,
            inputs: ctx.train_inputs(config),
            after: vec![after.into()],
            resume_args: vec!["--resume".into()],
        },
    )?;
    Ok(dir)
}

/// A symbolic link `dst` → `src` (a copy where links are unavailable), replacing `dst`.
fn link(src: &Path, dst: &Path) -> Result<()> {
    if dst.symlink_metadata().is_ok() {
        std::fs::remove_file(dst).with_context(|| format!("replacing {}", dst.display()))?;
    }
    let src = src
        .canonicalize()
        .with_context(|| format!("{} is missing", src.display()))?;
    #[cfg(unix)]
    std::os::unix::fs::symlink(&src, dst)
        .with_context(|| format!("linking {} to {}", dst.display(), src.display()))?;
    #[cfg(not(unix))]
    std::fs::copy(&src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    Ok(())
}

fn names(data: &Path, split: &str) -> Result<Vec<String>> {
    let path = list(data, split);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Assembles a VOC-layout folder for WeakTr stage 2 in `out`: the images and lists of
/// `data`, `SegmentationClass/<train name>.png` → `pseudo_train`'s label,
/// `SegmentationClass/<val name>.png` → the ground truth. Links, not copies.
pub fn build_seg_data(
    data: &Path,
    train_split: &str,
    gt_dir: &Path,
    pseudo_train: &Path,
    out: &Path,
) -> Result<()> {
    let lists = out.join("ImageSets/Segmentation");
    let masks = out.join("SegmentationClass");
    for dir in [&lists, &masks] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    link(&data.join("JPEGImages"), &out.join("JPEGImages"))?;
    link(&data.join("cls_labels.json"), &out.join("cls_labels.json"))?;
    for split in [train_split, "val"] {
        link(&list(data, split), &lists.join(format!("{split}.txt")))?;
    }
    for name in names(data, train_split)? {
        let label = pseudo_train.join(format!("{name}.png"));
        if !label.is_file() {
            bail!(
                "no pseudo label {} for training image `{name}` (did refine_train run on every \
                 shard?)",
                label.display()
            );
        }
        link(&label, &masks.join(format!("{name}.png")))?;
    }
    for name in names(data, "val")? {
        let gt = gt_dir.join(format!("{name}.png"));
        link(&gt, &masks.join(format!("{name}.png")))?;
    }
    Ok(())
}

/// WeakTr stage 2 on WeakTr's pseudo labels; fills the segmentation columns of `weaktr`
/// (the row [`run_cam_method`] returned for WeakTr).
pub fn weaktr_stage2(
    ctx: &RunPaths<'_>,
    pipeline: &mut Pipeline,
    config: &str,
    weaktr: &mut MethodSpec,
) -> Result<()> {
    if ctx.mode != Mode::All {
        // Its training needs every pseudo label: the final un-sharded run does it.
        return Ok(());
    }
    let pseudo_train = ctx.out.join("weaktr/pseudo_train");
    let seg_data = ctx.out.join("weaktr/seg_data");
    let stage = StageSpec {
        name: "weaktr/seg_data".into(),
        dir: seg_data.clone(),
        program: "xtask".into(),
        args: vec![
            "seg-data".into(),
            s(ctx.data),
            s(&pseudo_train),
            s(&seg_data),
        ],
        inputs: vec![],
        after: vec!["data".into(), "weaktr/refine_train".into()],
        resume_args: vec![],
    };
    pipeline.run_in_process(&stage, || {
        build_seg_data(
            ctx.data,
            ctx.train_split(),
            &ctx.gt_dir(),
            &pseudo_train,
            &seg_data,
        )
    })?;
    let train_dir = train_stage(
        ctx,
        pipeline,
        "weaktr/seg_train",
        config,
        &seg_data,
        "weaktr/seg_data",
    )?;
    let seg = segment_and_eval(ctx, pipeline, "weaktr", "weaktr/seg_train", &train_dir)?;
    weaktr.seg_metrics = Some(seg.metrics);
    weaktr.pred_dir = Some(seg.pred_dir);
    weaktr.train_logs.push(train_dir.join("metrics.jsonl"));
    Ok(())
}

/// GETAM end to end: CAM stages on its classifier, then its decoder's segmentation.
pub fn getam(
    ctx: &RunPaths<'_>,
    pipeline: &mut Pipeline,
    method: &CamMethod,
) -> Result<MethodSpec> {
    let mut spec = run_cam_method(ctx, pipeline, method)?;
    if ctx.mode == Mode::TrainOnly {
        return Ok(spec);
    }
    let train_dir = ctx.out.join("getam/train");
    let seg = segment_and_eval(ctx, pipeline, "getam", "getam/train", &train_dir)?;
    spec.seg_metrics = Some(seg.metrics);
    spec.pred_dir = Some(seg.pred_dir);
    Ok(spec)
}

/// DFR on the scenes scribbles: train, segment val, score.
pub fn dfr(ctx: &RunPaths<'_>, pipeline: &mut Pipeline, config: &str) -> Result<MethodSpec> {
    let train_dir = train_stage(ctx, pipeline, "dfr/train", config, ctx.data, "data")?;
    if ctx.mode == Mode::TrainOnly {
        return Ok(MethodSpec::default());
    }
    let seg = segment_and_eval(ctx, pipeline, "dfr", "dfr/train", &train_dir)?;
    Ok(MethodSpec {
        name: "dfr (scribbles)".into(),
        seg_metrics: Some(seg.metrics),
        pred_dir: Some(seg.pred_dir),
        train_logs: vec![train_dir.join("metrics.jsonl")],
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn seg_data_links_pseudo_labels_for_train_and_ground_truth_for_val() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pseudo = dir.path().join("pseudo");
        write(&data.join("ImageSets/Segmentation/train.txt"), "t0\nt1\n");
        write(&data.join("ImageSets/Segmentation/val.txt"), "v0\n");
        write(&data.join("cls_labels.json"), "{}");
        write(&data.join("JPEGImages/t0.png"), "img");
        for n in ["t0", "t1", "v0"] {
            write(&data.join(format!("SegmentationClass/{n}.png")), "gt");
        }
        write(&pseudo.join("t0.png"), "pseudo");
        let out = dir.path().join("seg");
        let gt = data.join("SegmentationClass");
        let err = build_seg_data(&data, "train", &gt, &pseudo, &out).unwrap_err();
        assert!(err.to_string().contains("`t1`"), "{err}");
        write(&pseudo.join("t1.png"), "pseudo");
        // Twice: a resumed stage replaces what a killed one linked.
        build_seg_data(&data, "train", &gt, &pseudo, &out).unwrap();
        build_seg_data(&data, "train", &gt, &pseudo, &out).unwrap();
        let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
        assert_eq!(read("SegmentationClass/t0.png"), "pseudo");
        assert_eq!(read("SegmentationClass/t1.png"), "pseudo");
        assert_eq!(read("SegmentationClass/v0.png"), "gt");
        assert_eq!(read("JPEGImages/t0.png"), "img");
        assert_eq!(read("ImageSets/Segmentation/val.txt"), "v0\n");
    }
}
