//! The TOML description of a training run: the program, its data, loop, optimiser,
//! schedule and model sections, and a `[method]` table that the program parses itself.
//!
//! ```toml
//! program = "weaktr_stage1"
//! [data]
//! root = "data/scenes"
//! crop_size = 96
//! batch_size = 16
//! [run]
//! epochs = 10
//! seed = 0
//! [optimizer]
//! kind = "adamw"
//! lr = 5e-4
//! weight_decay = 0.05
//! [schedule]
//! kind = "cosine"
//! warmup_epochs = 1
//! [model]
//! preset = "vit_scenes"
//! [method]   # program-specific
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wsss_data::transform::{AugmentConfig, ColourJitter};

use super::optim::OptimizerKind;
use super::schedule::Schedule;

/// Which training program runs (`program = "..."` at the top of the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgramKind {
    /// WeakTr stage 1: class tokens + patch head + AAF (arXiv 2304.01184).
    WeaktrStage1,
    /// AReAM on MCTformer-V2 (classification warm-up, then re-activation).
    Aream,
    /// Classic CAM baseline: a 1×1 classifier over patch tokens with global max pooling.
    Classic,
    /// GETAM end-to-end (classification + segmentation decoder).
    GetamE2e,
    /// WeakTr stage 2: segmentation on pseudo labels (branch `seg`).
    WeaktrStage2,
    /// DFR scribble training (branch `seg`).
    Dfr,
}

impl ProgramKind {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Self::WeaktrStage1 => "weaktr_stage1",
            Self::Aream => "aream",
            Self::Classic => "classic",
            Self::GetamE2e => "getam_e2e",
            Self::WeaktrStage2 => "weaktr_stage2",
            Self::Dfr => "dfr",
        }
    }
}

fn default_split() -> String {
    "train".into()
}
fn default_val_split() -> Option<String> {
    Some("val".into())
}
fn default_one() -> usize {
    1
}
fn default_prefetch() -> usize {
    2
}
fn default_scale() -> (f32, f32) {
    (1.0, 1.0)
}

/// `[data]`: where the images come from and how batches are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset root in the VOC layout (relative paths: from the working directory).
    pub root: PathBuf,
    /// Training split (`ImageSets/Segmentation/<split>.txt`).
    #[serde(default = "default_split")]
    pub train_split: String,
    /// Split evaluated at each epoch end (no augmentation); `None` skips evaluation.
    #[serde(default = "default_val_split")]
    pub val_split: Option<String>,
    /// Evaluate on at most this many validation images (the first ones of the list).
    #[serde(default)]
    pub val_limit: Option<usize>,
    /// Square training crop side in pixels.
    pub crop_size: u32,
    /// Images per optimiser step (the last incomplete batch of an epoch is dropped).
    pub batch_size: usize,
    /// Images per validation batch (images of different sizes go in separate batches).
    #[serde(default = "default_one")]
    pub val_batch_size: usize,
    /// Random rescale range before the crop.
    #[serde(default = "default_scale")]
    pub scale_range: (f32, f32),
    /// Random horizontal flips.
    #[serde(default)]
    pub flip: bool,
    /// Colour jitter strengths.
    #[serde(default)]
    pub jitter: Option<ColourJitter>,
    /// Batches prepared ahead by the loader thread.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
}

impl DataConfig {
    /// The augmentation of training samples.
    pub fn augment(&self) -> AugmentConfig {
        AugmentConfig {
            scale_range: self.scale_range,
            crop_size: self.crop_size,
            flip: self.flip,
            jitter: self.jitter,
        }
    }
}

/// What "best" means for the kept best checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BestMode {
    /// Higher is better (mAP, mIoU).
    #[default]
    Max,
    /// Lower is better (a loss).
    Min,
}

/// `[run]`: the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Epochs to train.
    pub epochs: usize,
    /// Seed of the initialisation, the data order and the augmentations.
    #[serde(default)]
    pub seed: u64,
    /// Threads of the compute pool (sets `RAYON_NUM_THREADS` before any work starts).
    #[serde(default)]
    pub threads: Option<usize>,
    /// Checkpoint every this many optimiser steps within an epoch (0: at epoch ends only).
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Evaluate every this many epochs (and always after the last).
    #[serde(default = "default_one")]
    pub eval_every: usize,
    /// Metric (a key of the epoch's evaluation) that selects `best.safetensors`; the
    /// program's default when absent.
    #[serde(default)]
    pub best_by: Option<String>,
    /// Direction of `best_by`.
    #[serde(default)]
    pub best_mode: Option<BestMode>,
}

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}

/// `[optimizer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// `adamw` or `sgd`.
    pub kind: OptimizerName,
    /// Base learning rate.
    pub lr: f64,
    /// Weight decay (decoupled for AdamW, L2 for SGD).
    #[serde(default)]
    pub weight_decay: f64,
    /// AdamW β1.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// AdamW β2.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// AdamW ε.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// SGD momentum.
    #[serde(default)]
    pub momentum: f64,
    /// Clip the global gradient norm to this value.
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    /// No weight decay on 1-D parameters (biases, norms) and embeddings, as timm's
    /// `param_groups_weight_decay` does.
    #[serde(default = "default_true")]
    pub no_decay_1d: bool,
    /// Learning-rate factor of the pre-trained ViT backbone (patch and position embeddings,
    /// blocks, final norm; see [`crate::train::params::is_backbone`]) in programs that use
    /// the default parameter groups: fine-tuning a `[model] init` backbone slower than its
    /// new heads and class tokens. 1 (one rate for all) by default.
    #[serde(default = "default_unit_scale")]
    pub backbone_lr_scale: f64,
}

fn default_true() -> bool {
    true
}

fn default_unit_scale() -> f64 {
    1.0
}

/// Optimiser names in config files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// `torch.optim.AdamW`.
    Adamw,
    /// `torch.optim.SGD` with momentum.
    Sgd,
}

impl OptimizerConfig {
    /// The update rule.
    pub fn kind(&self) -> OptimizerKind {
        match self.kind {
            OptimizerName::Adamw => OptimizerKind::AdamW {
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
            },
            OptimizerName::Sgd => OptimizerKind::Sgd {
                momentum: self.momentum,
            },
        }
    }
}

/// `[schedule]`, with warm-up in epochs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// Constant rate.
    #[default]
    Constant,
    /// Linear warm-up then cosine decay.
    Cosine {
        /// Warm-up length in epochs (fractions allowed).
        #[serde(default)]
        warmup_epochs: f64,
        /// Rate factor at step 0.
        #[serde(default)]
        warmup_start_factor: f64,
        /// Rate factor at the end.
        #[serde(default)]
        min_factor: f64,
    },
    /// Polynomial decay.
    Poly {
        /// Exponent.
        power: f64,
    },
}

impl ScheduleConfig {
    /// The per-step schedule for `steps_per_epoch`.
    pub fn schedule(&self, steps_per_epoch: usize) -> Schedule {
        match *self {
            Self::Constant => Schedule::Constant,
            Self::Cosine {
                warmup_epochs,
                warmup_start_factor,
                min_factor,
            } => Schedule::Cosine {
                warmup_steps: (warmup_epochs * steps_per_epoch as f64).round() as usize,
                warmup_start_factor,
                min_factor,
            },
            Self::Poly { power } => Schedule::Poly { power },
        }
    }
}

/// `[model]`: the backbone and its initialisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A `wsss_vit::Config` preset name (`vit_scenes`, `deit_small_patch16_224`, …).
    #[serde(default)]
    pub preset: Option<String>,
    /// A full ViT config instead of a preset (timm field names).
    #[serde(default)]
    pub vit: Option<wsss_vit::Config>,
    /// Training input size `[H, W]` the position embedding is learned for (default: the
    /// crop).
    #[serde(default)]
    pub img_size: Option<[usize; 2]>,
    /// ImageNet weights (a timm safetensors/state dict); from scratch when absent or
    /// empty (`--set model.init=""` turns a config's init off).
    #[serde(default, deserialize_with = "empty_path_is_none")]
    pub init: Option<PathBuf>,
}

fn empty_path_is_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<PathBuf>, D::Error> {
    let path: Option<PathBuf> = Option::deserialize(deserializer)?;
    Ok(path.filter(|p| !p.as_os_str().is_empty()))
}

impl ModelConfig {
    /// The backbone configuration (preset or inline), with `img_size` set.
    pub fn vit_config(&self, crop: u32) -> Result<wsss_vit::Config> {
        let mut cfg = match (&self.vit, &self.preset) {
            (Some(v), None) => v.clone(),
            (None, Some(p)) => wsss_vit::Config::preset(p).context("[model] preset")?,
            (Some(_), Some(_)) => bail!("[model]: give either `preset` or `vit`, not both"),
            (None, None) => bail!("[model]: give `preset` (e.g. \"vit_scenes\") or a `vit` table"),
        };
        cfg.img_size = self.img_size.unwrap_or([crop as usize, crop as usize]);
        Ok(cfg)
    }
}

/// A whole training config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The program.
    pub program: ProgramKind,
    /// Free-form note (e.g. the paper's expected numbers).
    #[serde(default)]
    pub expect: Option<toml::Table>,
    /// Data.
    pub data: DataConfig,
    /// Loop.
    pub run: RunConfig,
    /// Optimiser.
    pub optimizer: OptimizerConfig,
    /// Schedule.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Model.
    pub model: ModelConfig,
    /// Program-specific settings, parsed by the program with [`TrainConfig::method`].
    #[serde(default)]
    pub method: toml::Table,
}

impl TrainConfig {
    /// Parses TOML text, after applying `overrides` (`section.key=value`, the value parsed
    /// as TOML, else taken as a string).
    pub fn parse(text: &str, overrides: &[String]) -> Result<(Self, String)> {
        let mut table: toml::Table = toml::from_str(text).context("parsing the config TOML")?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let text = if overrides.is_empty() {
            text.to_string()
        } else {
            toml::to_string_pretty(&table)?
        };
        let cfg: TrainConfig = toml::from_str(&text).context("reading the config")?;
        cfg.validate()?;
        Ok((cfg, text))
    }

    /// Reads `path` (see [`TrainConfig::parse`]). A relative `[model] init` in the file is
    /// taken relative to the file's folder (so shipped configs find shipped weights from
    /// any working directory); one given by an override stays relative to the working
    /// directory.
    pub fn read(path: &Path, overrides: &[String]) -> Result<(Self, String)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let folder = path.parent().unwrap_or(Path::new("."));
        let text = init_relative_to(&text, folder)
            .with_context(|| format!("config {}", path.display()))?;
        Self::parse(&text, overrides).with_context(|| format!("config {}", path.display()))
    }

    /// The `[method]` table as the program's config type (defaults for missing keys).
    pub fn method<T: DeserializeOwned>(&self) -> Result<T> {
        toml::Value::Table(self.method.clone())
            .try_into()
            .with_context(|| format!("[method] of program `{}`", self.program.name()))
    }

    fn validate(&self) -> Result<()> {
        if self.data.batch_size == 0 {
            bail!("[data] batch_size must be at least 1");
        }
        if self.data.crop_size == 0 {
            bail!("[data] crop_size must be at least 1");
        }
        if self.data.val_batch_size == 0 {
            bail!("[data] val_batch_size must be at least 1");
        }
        if !(self.optimizer.lr.is_finite() && self.optimizer.lr > 0.0) {
            bail!("[optimizer] lr must be a positive number");
        }
        let scale = self.optimizer.backbone_lr_scale;
        if !(scale.is_finite() && scale >= 0.0) {
            bail!("[optimizer] backbone_lr_scale must be a number >= 0");
        }
        if self.run.eval_every == 0 {
            bail!("[run] eval_every must be at least 1");
        }
        let (lo, hi) = self.data.scale_range;
        if !(lo > 0.0 && hi >= lo) {
            bail!("[data] scale_range must be [low, high] with 0 < low <= high");
        }
        Ok(())
    }
}

/// `text` with a relative `[model] init` joined onto `folder` (unchanged otherwise).
fn init_relative_to(text: &str, folder: &Path) -> Result<String> {
    let mut table: toml::Table = toml::from_str(text).context("parsing the config TOML")?;
    let Some(toml::Value::Table(model)) = table.get_mut("model") else {
        return Ok(text.to_string());
    };
    let Some(toml::Value::String(init)) = model.get_mut("init") else {
        return Ok(text.to_string());
    };
    if init.is_empty() || Path::new(init.as_str()).is_absolute() {
        return Ok(text.to_string());
    }
    *init = folder.join(init.as_str()).display().to_string();
    Ok(toml::to_string_pretty(&table)?)
}

fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let Some((path, value)) = assignment.split_once('=') else {
        bail!("override `{assignment}` is not KEY=VALUE (e.g. run.epochs=2)");
    };
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(value.into())),
        Err(_) => toml::Value::String(value.to_string()),
    };
    let keys: Vec<&str> = path.trim().split('.').collect();
    let (last, parents) = keys.split_last().expect("split yields one item");
    let mut node = table;
    for k in parents {
        let entry = node
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("override `{assignment}`: `{k}` is not a table"),
        };
    }
    node.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
program = "classic"
[data]
root = "data"
crop_size = 32
batch_size = 4
[run]
epochs = 2
[optimizer]
kind = "adamw"
lr = 1e-3
[model]
preset = "tiny_test"
"#;

    #[test]
    fn minimal_config_parses_with_defaults_and_overrides() -> Result<()> {
        let (cfg, _) = TrainConfig::parse(MINIMAL, &[])?;
        assert_eq!(cfg.program, ProgramKind::Classic);
        assert_eq!(cfg.data.val_split.as_deref(), Some("val"));
        assert_eq!(cfg.schedule, ScheduleConfig::Constant);
        let (cfg, text) = TrainConfig::parse(
            MINIMAL,
            &[
                "run.epochs=5".into(),
                "data.root=/x/y".into(),
                "method.a=1".into(),
            ],
        )?;
        assert_eq!(cfg.run.epochs, 5);
        assert_eq!(cfg.data.root, PathBuf::from("/x/y"));
        assert_eq!(cfg.method["a"].as_integer(), Some(1));
        assert!(text.contains("epochs = 5"));
        Ok(())
    }

    #[test]
    fn relative_init_in_a_file_is_taken_from_the_files_folder() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let with_init = format!("{MINIMAL}init = \"../w.safetensors\"\n");
        let sub = dir.path().join("configs");
        std::fs::create_dir_all(&sub)?;
        std::fs::write(sub.join("a.toml"), &with_init)?;
        let (cfg, text) = TrainConfig::read(&sub.join("a.toml"), &[])?;
        assert_eq!(cfg.model.init, Some(sub.join("../w.safetensors")));
        assert!(text.contains("w.safetensors"));
        let (cfg, _) = TrainConfig::read(&sub.join("a.toml"), &["model.init=x.st".into()])?;
        assert_eq!(cfg.model.init, Some(PathBuf::from("x.st")));
        let (cfg, _) = TrainConfig::read(&sub.join("a.toml"), &["model.init=\"\"".into()])?;
        assert_eq!(cfg.model.init, None);
        let absolute = MINIMAL.replace("preset", "init = \"/abs/w.st\"\npreset");
        std::fs::write(sub.join("b.toml"), absolute)?;
        let (cfg, _) = TrainConfig::read(&sub.join("b.toml"), &[])?;
        assert_eq!(cfg.model.init, Some(PathBuf::from("/abs/w.st")));
        Ok(())
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let bad = MINIMAL.replace("\"classic\"", "\"nope\"");
        let err = format!("{:#}", TrainConfig::parse(&bad, &[]).unwrap_err());
        assert!(err.contains("nope"), "{err}");
        let bad = MINIMAL.replace("batch_size = 4", "batch_size = 0");
        let err = format!("{:#}", TrainConfig::parse(&bad, &[]).unwrap_err());
        assert!(err.contains("batch_size"), "{err}");
        let bad = MINIMAL.replace("crop_size = 32", "crop_size = 32\ncrop = 3");
        let err = format!("{:#}", TrainConfig::parse(&bad, &[]).unwrap_err());
        assert!(err.contains("crop"), "{err}");
        let err = format!(
            "{:#}",
            TrainConfig::parse(MINIMAL, &["run.epochs".into()]).unwrap_err()
        );
        assert!(err.contains("KEY=VALUE"), "{err}");
    }
}
