//! Per-method stages of the scenes reproduction: train → CAM (train and val splits) →
//! CAM threshold sweep on val → refinement → pseudo-label scores on train.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use wsss::report::MethodSpec;

use super::stage::{Pipeline, StageSpec};

/// A CAM method trained from image labels on the scenes set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CamMethod {
    /// Name used for folders and report rows.
    pub name: &'static str,
    /// Training config under configs/scenes/.
    pub train_config: &'static str,
    /// The `[method]` table of the CAM config (TOML), appended to the trained model.
    pub cam_method: &'static str,
    /// Refinement config under configs/.
    pub refine_config: &'static str,
    /// Extra `--set` overrides of the training config under `--quick`
    /// (besides `run.epochs=1`).
    pub quick_overrides: &'static [&'static str],
}

/// The methods `cargo xtask reproduce` runs by default, the baseline first.
pub const CAM_METHODS: [CamMethod; 3] = [
    CamMethod {
        name: "classic",
        train_config: "configs/scenes/classic.toml",
        cam_method: "kind = \"classic\"\n",
        refine_config: "configs/refine/par_reliable_scenes.toml",
        quick_overrides: &[],
    },
    CamMethod {
        name: "weaktr",
        train_config: "configs/scenes/weaktr.toml",
        cam_method: "kind = \"weaktr\"\nmap = \"fine\"\n",
        refine_config: "configs/refine/par_reliable_scenes.toml",
        quick_overrides: &[],
    },
    CamMethod {
        name: "aream",
        train_config: "configs/scenes/aream.toml",
        cam_method: "kind = \"aream\"\n",
        refine_config: "configs/refine/par_reliable_scenes.toml",
        quick_overrides: &[],
    },
];

/// Which part of the pipeline an invocation runs (see the README's Slurm example).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every stage, then the report.
    #[default]
    All,
    /// The data and the trainings that start from it, nothing after (before shards).
    TrainOnly,
    /// Shard `index` of `count` of the per-image stages (CAM, refine, segment) of
    /// finished trainings; no scores, no later training, no report.
    Shard {
        /// k, in `0..count`.
        index: usize,
        /// n ≥ 1.
        count: usize,
    },
}

/// Paths shared by the stages of one run.
pub struct RunPaths<'a> {
    /// Repository root (configs are read from here).
    pub root: &'a Path,
    /// The `wsss` binary.
    pub wsss: &'a Path,
    /// Run folder.
    pub out: &'a Path,
    /// The scenes data root.
    pub data: &'a Path,
    /// The smallest meaningful run.
    pub quick: bool,
    /// Backbone weights every training starts from (`[model] init`), when the run
    /// provides one file for all (the scenes backbone).
    pub init: Option<&'a Path>,
    /// Which part of the pipeline runs.
    pub mode: Mode,
    /// Paper runs (VOC/COCO): the folder of ImageNet weights; each training gets
    /// `--set model.init=<folder>/<file name of its config's init>`.
    pub weights: Option<&'a Path>,
    /// `--device` of training and segmentation (None: the CPU default).
    pub device: Option<&'a str>,
    /// `scenes`, `voc` or `coco`.
    pub dataset: &'a str,
}

impl RunPaths<'_> {
    /// The training split (`train`, VOC's `train_aug`).
    pub fn train_split(&self) -> &'static str {
        if list(self.data, "train_aug").is_file() {
            "train_aug"
        } else {
            "train"
        }
    }

    /// The ground-truth folder (`SegmentationClassAug` when the root has it).
    pub fn gt_dir(&self) -> PathBuf {
        let aug = self.data.join("SegmentationClassAug");
        if aug.is_dir() {
            aug
        } else {
            self.data.join("SegmentationClass")
        }
    }

    /// `wsss eval --classes`: the built-in names of scenes and VOC, else the data root
    /// (its cls_labels.json).
    pub fn classes(&self) -> String {
        match self.dataset {
            "scenes" | "voc" => self.dataset.into(),
            _ => s(self.data),
        }
    }

    /// Arguments every `wsss train` of this run gets besides its config: the device and,
    /// on paper runs, the ImageNet weights of its config's `[model] init`.
    pub fn train_extra(&self, config: &Path) -> Result<Vec<String>> {
        let mut args = Vec::new();
        if let Some(device) = self.device {
            args.extend(["--device".into(), device.into()]);
        }
        if let Some(init) = self.init {
            args.extend(["--set".into(), format!("model.init={:?}", s(init))]);
        }
        if let Some(dir) = self.weights {
            if let Some(file) = super::paper::init_file(config)? {
                let path = dir.join(file);
                args.extend(["--set".into(), format!("model.init={:?}", s(&path))]);
            }
        }
        Ok(args)
    }

    /// The files a training stage's cache key covers: its config and the shared backbone.
    pub fn train_inputs(&self, config: PathBuf) -> Vec<PathBuf> {
        std::iter::once(config)
            .chain(self.init.map(Path::to_path_buf))
            .collect()
    }

    /// True for a `--shard` invocation.
    pub fn sharded(&self) -> bool {
        matches!(self.mode, Mode::Shard { .. })
    }

    /// A training stage: run (or reused) normally; under `--shard` it must have finished.
    pub fn train(&self, pipeline: &mut Pipeline, stage: &StageSpec) -> Result<()> {
        if self.sharded() {
            if !pipeline.reuse(stage)? {
                bail!(
                    "--shard runs the per-image stages of finished trainings, but `{}` has not \
                     finished (or its config changed): run the same command with --train-only \
                     instead of --shard first",
                    stage.name
                );
            }
            return Ok(());
        }
        pipeline.run(stage)?;
        Ok(())
    }

    /// A per-image stage (`wsss cam`, `refine`, `segment`): only this shard under `--shard`.
    pub fn per_image(&self, pipeline: &mut Pipeline, stage: &StageSpec) -> Result<()> {
        self.per_image_sharded_with(pipeline, stage, &[])
    }

    /// [`RunPaths::per_image`] with `shard_extra` appended to a shard's command only
    /// (e.g. `wsss refine --split`, so that it shards the whole list rather than the CAM
    /// files this shard happens to have).
    pub fn per_image_sharded_with(
        &self,
        pipeline: &mut Pipeline,
        stage: &StageSpec,
        shard_extra: &[String],
    ) -> Result<()> {
        match self.mode {
            Mode::Shard { index, count } => {
                let mut args = vec!["--shard".into(), format!("{index}/{count}")];
                args.extend(shard_extra.iter().cloned());
                pipeline.run_shard(stage, &args)?;
            }
            _ => {
                pipeline.run(stage)?;
            }
        }
        Ok(())
    }

    /// A scoring stage (needs every image): skipped under `--shard`.
    pub fn score(&self, pipeline: &mut Pipeline, stage: &StageSpec) -> Result<()> {
        if !self.sharded() {
            pipeline.run(stage)?;
        }
        Ok(())
    }

    /// A `wsss eval` scoring stage named `name`: `input` is `--pred DIR` (label PNGs) or
    /// `--cams DIR` (a threshold sweep), scored against the ground truth of `split` with
    /// this run's class names, the result written to `json` (the stage's folder is its
    /// parent); after `after`.
    pub fn eval(
        &self,
        pipeline: &mut Pipeline,
        name: String,
        input: (&str, &Path),
        split: &str,
        json: &Path,
        after: String,
    ) -> Result<()> {
        self.score(
            pipeline,
            &StageSpec {
                name,
                dir: json.parent().unwrap_or(Path::new(".")).to_path_buf(),
                program: self.wsss.to_path_buf(),
                args: vec![
                    "eval".into(),
                    input.0.into(),
                    s(input.1),
                    "--gt".into(),
                    s(&self.gt_dir()),
                    "--list".into(),
                    s(&list(self.data, split)),
                    "--classes".into(),
                    self.classes(),
                    "--json".into(),
                    s(json),
                ],
                inputs: vec![],
                after: vec![after],
                resume_args: vec![],
            },
        )
    }
}

/// `base` (a refinement config) with the thresholds of its `par_reliable` and `reliable`
/// steps set from the method's GT-free Otsu threshold `t` on its val CAMs (`sweep.json` of
/// `wsss eval --cams`; Otsu uses the CAM histogram only): trusted foreground above
/// `high = t`, trusted background below `low = t / 2`. ToCo's fixed 0.7/0.25 assume VOC-scale
/// CAMs; on scenes the methods' CAM scales differ (classic's Otsu is near 0.3, WeakTr's
/// fine CAM's near 0.7), so one fixed pair would favour one method.
pub fn refine_with_otsu(base: &Path, sweep: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(sweep).with_context(|| format!("reading {}", sweep.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", sweep.display()))?;
    let Some(t) = report["otsu"]["threshold"].as_f64() else {
        bail!("{} has no otsu.threshold", sweep.display());
    };
    let text =
        std::fs::read_to_string(base).with_context(|| format!("reading {}", base.display()))?;
    let mut config: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", base.display()))?;
    let mut adapted = 0;
    if let Some(toml::Value::Array(steps)) = config.get_mut("steps") {
        for step in steps.iter_mut().filter_map(toml::Value::as_table_mut) {
            let kind = step.get("kind").and_then(toml::Value::as_str);
            if matches!(kind, Some("par_reliable" | "reliable")) {
                step.insert("low".into(), toml::Value::Float(t / 2.0));
                step.insert("high".into(), toml::Value::Float(t));
                adapted += 1;
            }
        }
    }
    if adapted == 0 {
        bail!(
            "{} has no par_reliable/reliable step to take thresholds",
            base.display()
        );
    }
    Ok(format!(
        "# {} with thresholds from this method's val CAM Otsu threshold {t:.3} \
         (high = t, low = t / 2), written by cargo xtask reproduce.\n{}",
        base.display(),
        toml::to_string_pretty(&config)?
    ))
}

pub(crate) fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The trained model's description (`model.json`) as the `[model.config]` of a CAM config.
fn cam_config(train_dir: &Path, method: &str) -> Result<String> {
    let path = train_dir.join("model.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (written by wsss train)", path.display()))?;
    let mut json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    drop_nulls(&mut json);
    let value: toml::Value =
        serde_json::from_value(json).with_context(|| format!("{} as TOML", path.display()))?;
    let mut model = toml::map::Map::new();
    model.insert("config".into(), value);
    let mut top = toml::map::Map::new();
    top.insert("model".into(), toml::Value::Table(model));
    let model = toml::to_string(&toml::Value::Table(top))?;
    Ok(format!(
        "# Generated by `cargo xtask reproduce` from {}.\n{model}\n[method]\n{method}",
        path.display()
    ))
}

/// Removes `null` members (unset options), which TOML cannot express.
fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Trained weights of a run folder: the best checkpoint, else the final one.
fn weights(train_dir: &Path) -> Result<PathBuf> {
    ["best.safetensors", "model.safetensors"]
        .iter()
        .map(|f| train_dir.join(f))
        .find(|p| p.is_file())
        .with_context(|| format!("no trained weights in {}", train_dir.display()))
}

pub(crate) fn list(data: &Path, split: &str) -> PathBuf {
    data.join(format!("ImageSets/Segmentation/{split}.txt"))
}

/// Runs one CAM method's stages; returns what the report shows of it.
pub fn run_cam_method(
    ctx: &RunPaths<'_>,
    pipeline: &mut Pipeline,
    method: &CamMethod,
) -> Result<MethodSpec> {
    let dir = ctx.out.join(method.name);
    let train_dir = dir.join("train");
    let config = ctx.root.join(method.train_config);
    if !config.is_file() {
        bail!("{} is missing", config.display());
    }
    let mut train_args = vec![
        "train".into(),
        "--config".into(),
        s(&config),
        "--out".into(),
        s(&train_dir),
        "--data".into(),
        s(ctx.data),
    ];
    train_args.extend(ctx.train_extra(&config)?);
    if ctx.quick {
        train_args.extend(["--set".into(), "run.epochs=1".into()]);
        for set in method.quick_overrides {
            train_args.extend(["--set".into(), set.to_string()]);
        }
    }
    let train = format!("{}/train", method.name);
    ctx.train(
        pipeline,
        &StageSpec {
            name: train.clone(),
            dir: train_dir.clone(),
            program: ctx.wsss.to_path_buf(),
            args: train_args,
            inputs: ctx.train_inputs(config),
            after: vec!["data".into()],
            resume_args: vec!["--resume".into()],
        },
    )?;
    if ctx.mode == Mode::TrainOnly {
        return Ok(MethodSpec {
            name: method.name.into(),
            ..Default::default()
        });
    }

    let cam_toml = dir.join("cam.toml");
    std::fs::write(&cam_toml, cam_config(&train_dir, method.cam_method)?)
        .with_context(|| format!("writing {}", cam_toml.display()))?;
    let weights = weights(&train_dir)?;
    let cams = |split: &str| dir.join(format!("cam_{split}"));
    let train_split = ctx.train_split();
    for (split, list_name) in [("train", train_split), ("val", "val")] {
        ctx.per_image(
            pipeline,
            &StageSpec {
                name: format!("{}/cam_{split}", method.name),
                dir: cams(split),
                program: ctx.wsss.to_path_buf(),
                args: vec![
                    "cam".into(),
                    "--config".into(),
                    s(&cam_toml),
                    "--weights".into(),
                    s(&weights),
                    "--data".into(),
                    s(ctx.data),
                    "--split".into(),
                    list_name.into(),
                    "--out".into(),
                    s(&cams(split)),
                ],
                inputs: vec![cam_toml.clone()],
                after: vec![train.clone()],
                resume_args: vec![],
            },
        )?;
    }

    let sweep = dir.join("cam_eval/sweep.json");
    ctx.eval(
        pipeline,
        format!("{}/cam_eval", method.name),
        ("--cams", &cams("val")),
        "val",
        &sweep,
        format!("{}/cam_val", method.name),
    )?;

    let base_refine = ctx.root.join(method.refine_config);
    let refine_config = if ctx.dataset == "scenes" {
        let adapted = dir.join("refine.toml");
        if !sweep.is_file() {
            // Under --shard the sweep has not run: the final plain run refines.
            println!(
                "[{}/refine] waits for the CAM sweep (its thresholds come from it)",
                method.name
            );
            return Ok(MethodSpec {
                name: method.name.into(),
                cam_sweep: Some(sweep),
                train_logs: vec![train_dir.join("metrics.jsonl")],
                cam_dir: Some(cams("val")),
                ..Default::default()
            });
        }
        let text = refine_with_otsu(&base_refine, &sweep)?;
        std::fs::write(&adapted, text).with_context(|| format!("writing {}", adapted.display()))?;
        adapted
    } else {
        base_refine
    };
    let pseudo = |split: &str| dir.join(format!("pseudo_{split}"));
    for (split, list_name) in [("train", train_split), ("val", "val")] {
        ctx.per_image_sharded_with(
            pipeline,
            &StageSpec {
                name: format!("{}/refine_{split}", method.name),
                dir: pseudo(split),
                program: ctx.wsss.to_path_buf(),
                args: vec![
                    "refine".into(),
                    "--config".into(),
                    s(&refine_config),
                    "--cams".into(),
                    s(&cams(split)),
                    "--data".into(),
                    s(ctx.data),
                    "--out".into(),
                    s(&pseudo(split)),
                ],
                inputs: vec![refine_config.clone()],
                after: vec![format!("{}/cam_{split}", method.name)],
                resume_args: vec![],
            },
            &["--split".into(), list_name.into()],
        )?;
    }

    let pseudo_metrics = dir.join("pseudo_eval/metrics.json");
    ctx.eval(
        pipeline,
        format!("{}/pseudo_eval", method.name),
        ("--pred", &pseudo("train")),
        train_split,
        &pseudo_metrics,
        format!("{}/refine_train", method.name),
    )?;

    Ok(MethodSpec {
        name: method.name.into(),
        cam_sweep: Some(sweep),
        pseudo_metrics: Some(pseudo_metrics),
        train_logs: vec![train_dir.join("metrics.jsonl")],
        cam_dir: Some(cams("val")),
        pseudo_dir: Some(pseudo("val")),
        ..Default::default()
    })
}

#[cfg(test)]
mod otsu_tests {
    use super::refine_with_otsu;

    #[test]
    fn reliable_thresholds_follow_the_sweeps_otsu_threshold() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let sweep = dir.path().join("sweep.json");
        std::fs::write(
            &sweep,
            r#"{"otsu": {"threshold": 0.4, "miou": 0.3}, "best": {"threshold": 0.2, "miou": 0.35}}"#,
        )?;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = refine_with_otsu(
            &root.join("configs/refine/par_reliable_scenes.toml"),
            &sweep,
        )?;
        let config: toml::Table = toml::from_str(&text)?;
        let step = config["steps"][0].as_table().unwrap();
        assert_eq!(step["high"].as_float(), Some(0.4));
        assert!((step["low"].as_float().unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(step["par"]["iterations"].as_integer(), Some(10));

        // A config without a reliable step cannot take thresholds: an error, not a no-op.
        let err = refine_with_otsu(&root.join("configs/refine/par_afa.toml"), &sweep)
            .unwrap_err()
            .to_string();
        assert!(err.contains("par_reliable"), "{err}");
        std::fs::write(&sweep, "{}")?;
        let err = refine_with_otsu(
            &root.join("configs/refine/par_reliable_scenes.toml"),
            &sweep,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("otsu"), "{err}");
        Ok(())
    }
}
