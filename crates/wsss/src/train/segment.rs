//! Rebuilding a trained segmentation model from its run folder, for `wsss segment`.
//!
//! A run folder written by [`super::train`] holds `config.toml` (the config as run),
//! `model.safetensors` (the final weights) and `best.safetensors` (the best epoch's). The
//! model is rebuilt by the program the config names (the same code that trained it, so
//! no key layout is duplicated here), with `[model] init` dropped (the trained weights
//! replace every parameter), and the weights are loaded into it. Programs with a
//! segmentation head ([`super::Segmenter`]): `weaktr_stage2`, `dfr`, `getam_e2e`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;

use super::programs::{build, BuildContext};
use super::runner::Program;
use super::TrainConfig;

/// Which weights of a run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checkpoint {
    /// `model.safetensors`: the weights at the end of training (no selection on ground
    /// truth).
    #[default]
    Final,
    /// `best.safetensors`: the best epoch by the run's criterion (which may use val
    /// ground truth, e.g. `val_miou_gt`).
    Best,
}

impl Checkpoint {
    /// The file name in a run folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Final => "model.safetensors",
            Self::Best => "best.safetensors",
        }
    }
}

/// A trained program rebuilt from its run folder; [`SegmentationRun::segmenter`] is its
/// segmentation head.
pub struct SegmentationRun {
    program: Box<dyn Program>,
    /// The config the run was trained with.
    pub config: TrainConfig,
    /// The weight file loaded.
    pub weights: PathBuf,
}

impl SegmentationRun {
    /// Rebuilds the model of `run_dir` for `num_classes` classes (with background) and
    /// loads its `checkpoint`. Errors when the folder is not a finished training run or its
    /// program has no segmentation head.
    pub fn load(
        run_dir: &Path,
        num_classes: usize,
        checkpoint: Checkpoint,
        device: &Device,
    ) -> Result<Self> {
        let config_path = run_dir.join("config.toml");
        if !config_path.is_file() {
            bail!(
                "{} is not a training run folder (no config.toml; `wsss train --out` writes one)",
                run_dir.display()
            );
        }
        let (mut config, _) = TrainConfig::read(&config_path, &[])?;
        const SEGMENTING: [&str; 3] = ["weaktr_stage2", "dfr", "getam_e2e"];
        let name = config.program.name();
        if !SEGMENTING.contains(&name) {
            bail!(
                "{} is a `{name}` run, which has no segmentation head; `wsss segment` needs a \
                 run of one of {SEGMENTING:?} (for CAM programs use `wsss cam` + `wsss refine`)",
                run_dir.display()
            );
        }
        let weights = run_dir.join(checkpoint.file_name());
        if !weights.is_file() {
            bail!(
                "{} has no {} (is the training finished?)",
                run_dir.display(),
                checkpoint.file_name()
            );
        }
        // The trained weights replace every parameter: skip reading ImageNet weights.
        config.model.init = None;
        let program = build(
            &config,
            &BuildContext {
                num_classes,
                device: device.clone(),
            },
        )
        .with_context(|| format!("rebuilding the `{name}` model of {}", run_dir.display()))?;
        if program.as_segmenter().is_none() {
            bail!("program `{name}` has no segmentation head");
        }
        let tensors = candle_core::safetensors::load(&weights, device)
            .with_context(|| format!("reading {}", weights.display()))?;
        program.params().load(&tensors).with_context(|| {
            format!(
                "loading {} into a `{name}` model with {num_classes} classes",
                weights.display()
            )
        })?;
        Ok(Self {
            program,
            config,
            weights,
        })
    }

    /// The segmentation head.
    pub fn segmenter(&self) -> &dyn super::Segmenter {
        self.program
            .as_segmenter()
            .expect("checked in SegmentationRun::load")
    }
}
