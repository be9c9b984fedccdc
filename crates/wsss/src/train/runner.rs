//! The shared training loop: a [`Program`] supplies parameters, a loss per batch and an
//! epoch-end evaluation; [`train`] does the rest (data on a worker thread, optimiser and
//! schedule, gradient clipping, progress bar, `metrics.jsonl`, atomic checkpoints every
//! N steps and at epoch ends, exact resume, the best checkpoint).
//!
//! Run folder:
//! - `config.toml`: the config as run (a resume with a different config is refused);
//! - `state.json`, `weights-STEP.safetensors`, `optimizer-STEP.safetensors`: the latest
//!   resumable checkpoint ([`super::checkpoint`]);
//! - `metrics.jsonl`: one JSON object per finished epoch;
//! - `best.safetensors` + `best.json`: the weights of the best epoch by the criterion;
//! - `model.safetensors` (last weights), `model.json` (the ViT config, for `wsss cam
//!   --model`) and `method.json` (whatever else the program needs to rebuild the model).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use wsss_data::batch::Batch;

use super::checkpoint::{self, save_tensors_atomic, write_atomic, TrainState};
use super::config::{BestMode, OptimizerConfig, TrainConfig};
use super::data::{mix_seed, EvalData, TrainData};
use super::optim::{clip_grad_norm, Optimizer, ParamGroup};
use super::params::{is_backbone, timm_decays, Params};

/// Named scalar metrics of an epoch (`val_map`, `val_cam_miou_gt`, …).
pub type Metrics = BTreeMap<String, f64>;

/// What the program sees at each step.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// 0-based epoch.
    pub epoch: usize,
    /// Optimiser steps taken before this one.
    pub step: usize,
    /// Epochs of the run.
    pub epochs: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Learning rate of this step (before group scales).
    pub lr: f64,
    /// A seed for any randomness of this step (derived from the run seed and the step,
    /// so a resumed run repeats it).
    pub seed: u64,
    /// Compute device.
    pub device: Device,
}

/// A step's result: the loss to minimise and named scalars to log (averaged per epoch).
pub struct StepOutput {
    /// Scalar loss; the runner calls `backward` on it.
    pub loss: Tensor,
    /// Scalars to log (`("cls", 0.4)`, …); the runner adds `loss`.
    pub scalars: Vec<(String, f64)>,
}

/// What the program sees at evaluation time.
#[derive(Debug, Clone)]
pub struct EvalContext {
    /// 0-based epoch just finished.
    pub epoch: usize,
    /// Compute device.
    pub device: Device,
    /// Class names, background first.
    pub class_names: Vec<String>,
}

/// A trainable method plugged into [`train`].
pub trait Program {
    /// The trainable parameters (official checkpoint keys).
    fn params(&self) -> &Params;

    /// Optimiser groups; by default the backbone at `backbone_lr_scale` and the rest at 1,
    /// timm's no-decay rule for 1-D tensors, tokens and position embeddings when
    /// `no_decay_1d` is set.
    fn param_groups(&self, opt: &OptimizerConfig) -> Vec<ParamGroup> {
        let no_decay_1d = opt.no_decay_1d;
        let backbone = opt.backbone_lr_scale;
        self.params().groups(opt.weight_decay, |name, var| {
            let lr = if is_backbone(name) { backbone } else { 1.0 };
            (lr, !no_decay_1d || timm_decays(name, var))
        })
    }

    /// Called at the start of every epoch (also a resumed one): switch phases here, as a
    /// pure function of `epoch`.
    fn on_epoch_start(&mut self, _epoch: usize) -> Result<()> {
        Ok(())
    }

    /// The loss of one batch (tensors on `ctx.device`).
    fn step(&mut self, batch: &Batch, ctx: &StepContext) -> Result<StepOutput>;

    /// Epoch-end evaluation on `data` (tensors of its batches are on the CPU).
    fn evaluate(&mut self, data: &EvalData, ctx: &EvalContext) -> Result<Metrics>;

    /// The default criterion of the best checkpoint: a key of [`Program::evaluate`]'s
    /// metrics and its direction. Keys that use ground-truth masks must say so
    /// (`…_gt`).
    fn best_by(&self) -> (String, BestMode);

    /// What, besides the ViT config, rebuilds the model for inference (`method.json`).
    fn method_info(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The ViT config of the model (`model.json`).
    fn vit_config(&self) -> Option<wsss_vit::Config> {
        None
    }

    /// The model as a segmenter (`wsss segment`), for programs with a segmentation head.
    fn as_segmenter(&self) -> Option<&dyn Segmenter> {
        None
    }
}

/// A trained model that predicts dense class scores (`wsss segment`).
pub trait Segmenter: Sync {
    /// Segmentation logits at the image size.
    ///
    /// # Shapes
    /// `images` [B, 3, H, W] f32 (ImageNet-normalised) → [B, C, H, W] f32, C classes
    /// including background.
    fn segment(&self, images: &Tensor) -> Result<Tensor>;
}

/// Options of one invocation.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Continue from the run folder's checkpoint.
    pub resume: bool,
    /// Stop (as if killed, writing nothing more) after this many steps in this process.
    pub stop_after_steps: Option<usize>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Compute device.
    pub device: Device,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            resume: false,
            stop_after_steps: None,
            progress: false,
            device: Device::Cpu,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// Epochs completed.
    pub epochs: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Stopped by `stop_after_steps` before the end.
    pub interrupted: bool,
    /// Best epoch (1-based) and score.
    pub best: Option<(usize, f64)>,
    /// The last epoch's metrics.
    pub last_metrics: Metrics,
    /// Training seconds, summed over resumes.
    pub seconds: f64,
}

/// `best.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BestRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Criterion key.
    pub criterion: String,
    /// Its value.
    pub score: f64,
    /// Whether the criterion uses ground-truth masks.
    pub uses_ground_truth: bool,
}

fn to_device(batch: &Batch, device: &Device) -> Result<Batch> {
    if device.is_cpu() {
        return Ok(batch.clone());
    }
    Ok(Batch {
        names: batch.names.clone(),
        images: batch.images.to_device(device)?,
        masks: batch.masks.to_device(device)?,
        scribbles: batch.scribbles.to_device(device)?,
        labels: batch.labels.to_device(device)?,
    })
}

/// Keeps the first lines of `metrics.jsonl` whose `epoch` is at most `epochs_done` (a
/// kill between the metrics line and the checkpoint repeats that epoch).
fn truncate_metrics(path: &Path, epochs_done: usize) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path)?;
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["epoch"].as_u64())
                .is_some_and(|e| e as usize <= epochs_done)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_atomic(path, |tmp| Ok(std::fs::write(tmp, kept)?))
}

fn append_metrics(path: &Path, line: &serde_json::Value) -> Result<()> {
    let mut text = if path.is_file() {
        std::fs::read_to_string(path)?
    } else {
        String::new()
    };
    text.push_str(&serde_json::to_string(line)?);
    text.push('\n');
    write_atomic(path, |tmp| Ok(std::fs::write(tmp, text)?))
}

/// Trains `program` on `train_data` (evaluating on `eval_data`) into `out`.
pub fn train(
    program: &mut dyn Program,
    cfg: &TrainConfig,
    config_text: &str,
    train_data: &TrainData,
    eval_data: Option<&EvalData>,
    out: &Path,
    opts: &RunOptions,
) -> Result<RunSummary> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let spe = train_data.steps_per_epoch();
    if spe == 0 {
        bail!(
            "the training split has {} images, fewer than one batch of {}",
            train_data.dataset.len(),
            train_data.batch_size
        );
    }
    let epochs = cfg.run.epochs;
    let total_steps = spe * epochs;
    let schedule = cfg.schedule.schedule(spe);
    let (default_key, default_mode) = program.best_by();
    let best_key = cfg.run.best_by.clone().unwrap_or(default_key);
    let best_mode = cfg.run.best_mode.unwrap_or(default_mode);
    let uses_gt = best_key.ends_with("_gt");

    let mut optimizer = Optimizer::new(cfg.optimizer.kind(), program.param_groups(&cfg.optimizer));
    let vars = program.params().vars();
    let config_path = out.join("config.toml");
    let metrics_path = out.join("metrics.jsonl");

    let existing = checkpoint::load_latest(out, &opts.device)?;
    let mut state = match existing {
        Some(ckpt) if opts.resume => {
            if let Ok(old) = std::fs::read_to_string(&config_path) {
                if old != config_text {
                    bail!(
                        "{} differs from the config given; resume with the same config or \
                         choose another --out",
                        config_path.display()
                    );
                }
            }
            program
                .params()
                .load(&ckpt.weights)
                .context("restoring the weights")?;
            optimizer.load_state(ckpt.optimizer, ckpt.state.step);
            truncate_metrics(&metrics_path, ckpt.state.epoch)?;
            ckpt.state
        }
        Some(_) => bail!(
            "{} already holds a checkpoint: pass --resume to continue it, or choose another --out",
            out.display()
        ),
        None => {
            if metrics_path.is_file() {
                std::fs::remove_file(&metrics_path)?;
            }
            TrainState {
                seed: cfg.run.seed,
                ..TrainState::default()
            }
        }
    };
    write_atomic(&config_path, |tmp| Ok(std::fs::write(tmp, config_text)?))?;
    if let Some(vit) = program.vit_config() {
        let json = serde_json::to_vec_pretty(&vit)?;
        write_atomic(&out.join("model.json"), |tmp| {
            Ok(std::fs::write(tmp, &json)?)
        })?;
    }
    let info = program.method_info();
    if !info.is_null() {
        let json = serde_json::to_vec_pretty(&serde_json::json!({
            "program": cfg.program.name(),
            "method": info,
        }))?;
        write_atomic(&out.join("method.json"), |tmp| {
            Ok(std::fs::write(tmp, &json)?)
        })?;
    }

    let class_names = train_data.dataset.class_names().to_vec();
    let mut steps_here = 0usize;
    let mut last_metrics = Metrics::new();
    let bar_style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");

    while state.epoch < epochs {
        let epoch = state.epoch;
        program.on_epoch_start(epoch)?;
        let pb = if opts.progress {
            ProgressBar::with_draw_target(Some(spe as u64), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        pb.set_style(bar_style.clone());
        pb.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
        pb.set_position(state.batch_in_epoch as u64);
        let epoch_start = Instant::now();
        let mut images_here = 0usize;
        let stream = train_data.epoch(epoch, state.batch_in_epoch);
        let mut segment_start = Instant::now();
        for batch in stream {
            let batch = to_device(&batch?, &opts.device)?;
            let lr = cfg.optimizer.lr * schedule.factor(state.step, total_steps);
            let ctx = StepContext {
                epoch,
                step: state.step,
                epochs,
                steps_per_epoch: spe,
                lr,
                seed: mix_seed(&[cfg.run.seed, state.step as u64, 0x57E9]),
                device: opts.device.clone(),
            };
            let out_step = program
                .step(&batch, &ctx)
                .with_context(|| format!("step {}", state.step))?;
            let loss = out_step
                .loss
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
            if !loss.is_finite() {
                bail!(
                    "loss is {loss} at step {} (epoch {})",
                    state.step,
                    epoch + 1
                );
            }
            let mut grads = out_step.loss.backward()?;
            if let Some(max_norm) = cfg.optimizer.clip_grad_norm {
                clip_grad_norm(&mut grads, &vars, max_norm)?;
            }
            optimizer.step(&grads, lr)?;
            drop(grads);
            state.step += 1;
            state.batch_in_epoch += 1;
            state.count += 1;
            *state.sums.entry("loss".into()).or_default() += loss;
            for (k, v) in out_step.scalars {
                *state.sums.entry(k).or_default() += v;
            }
            images_here += train_data.batch_size;
            steps_here += 1;
            let secs = epoch_start.elapsed().as_secs_f64().max(1e-9);
            pb.set_position(state.batch_in_epoch as u64);
            pb.set_message(format!(
                "loss {:.4} · {:.1} img/s",
                state.sums["loss"] / state.count as f64,
                images_here as f64 / secs
            ));
            if opts.stop_after_steps.is_some_and(|s| steps_here >= s) {
                pb.abandon();
                return Ok(RunSummary {
                    epochs: state.epoch,
                    steps: state.step,
                    interrupted: true,
                    best: None,
                    last_metrics,
                    seconds: state.seconds,
                });
            }
            let ce = cfg.run.checkpoint_every;
            if ce > 0 && state.batch_in_epoch % ce == 0 && state.batch_in_epoch < spe {
                state.seconds += segment_start.elapsed().as_secs_f64();
                segment_start = Instant::now();
                state = checkpoint::save(
                    out,
                    &program.params().snapshot()?,
                    &optimizer.state_tensors(),
                    &state,
                )?;
            }
        }
        if state.batch_in_epoch < spe {
            bail!("the data loader stopped early in epoch {}", epoch + 1);
        }
        pb.finish_and_clear();
        state.seconds += segment_start.elapsed().as_secs_f64();

        // Epoch end: train means, evaluation, best checkpoint, metrics line, checkpoint.
        let mut line = serde_json::Map::new();
        line.insert("epoch".into(), (epoch + 1).into());
        line.insert("step".into(), state.step.into());
        line.insert(
            "lr".into(),
            (cfg.optimizer.lr * schedule.factor(state.step.saturating_sub(1), total_steps)).into(),
        );
        let mut metrics = Metrics::new();
        for (k, v) in &state.sums {
            metrics.insert(format!("train_{k}"), v / state.count.max(1) as f64);
        }
        let evaluate = (epoch + 1) % cfg.run.eval_every == 0 || epoch + 1 == epochs;
        if let (true, Some(data)) = (evaluate, eval_data) {
            let t = Instant::now();
            let ctx = EvalContext {
                epoch,
                device: opts.device.clone(),
                class_names: class_names.clone(),
            };
            metrics.extend(program.evaluate(data, &ctx).context("evaluation")?);
            line.insert("eval_seconds".into(), t.elapsed().as_secs_f64().into());
        }
        line.insert(
            "images_per_second".into(),
            (images_here as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9)).into(),
        );
        let mut is_best = false;
        if let Some(&score) = metrics.get(&best_key) {
            is_best = match (state.best_score, best_mode) {
                (None, _) => true,
                (Some(b), BestMode::Max) => score > b,
                (Some(b), BestMode::Min) => score < b,
            };
            if is_best {
                state.best_score = Some(score);
                state.best_epoch = Some(epoch + 1);
                save_tensors_atomic(&program.params().snapshot()?, &out.join("best.safetensors"))?;
                let rec = BestRecord {
                    epoch: epoch + 1,
                    criterion: best_key.clone(),
                    score,
                    uses_ground_truth: uses_gt,
                };
                let json = serde_json::to_vec_pretty(&rec)?;
                write_atomic(&out.join("best.json"), |tmp| {
                    Ok(std::fs::write(tmp, &json)?)
                })?;
            }
        }
        for (k, v) in &metrics {
            line.insert(k.clone(), serde_json::json!(v));
        }
        line.insert("best".into(), is_best.into());
        append_metrics(&metrics_path, &serde_json::Value::Object(line))?;
        if opts.progress {
            let shown: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            let mut err = std::io::stderr();
            let _ = writeln!(err, "epoch {}/{epochs}: {}", epoch + 1, shown.join(", "));
        }
        last_metrics = metrics;
        state.epoch += 1;
        state.batch_in_epoch = 0;
        state.sums.clear();
        state.count = 0;
        segment_start = Instant::now();
        let _ = segment_start;
        state = checkpoint::save(
            out,
            &program.params().snapshot()?,
            &optimizer.state_tensors(),
            &state,
        )?;
    }
    save_tensors_atomic(
        &program.params().snapshot()?,
        &out.join("model.safetensors"),
    )?;
    Ok(RunSummary {
        epochs: state.epoch,
        steps: state.step,
        interrupted: false,
        best: state.best_epoch.zip(state.best_score),
        last_metrics,
        seconds: state.seconds,
    })
}

/// The run folder's final weights (`model.safetensors`), or `None` before the run ends.
pub fn final_weights(out: &Path) -> Option<PathBuf> {
    Some(out.join("model.safetensors")).filter(|p| p.is_file())
}
