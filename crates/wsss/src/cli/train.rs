//! `wsss train --config FILE --out RUN_DIR [--resume]`: runs a training program.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use wsss::core::device::parse_device;
use wsss::data::VocDataset;
use wsss::train::data::{EvalData, TrainData};
use wsss::train::programs::{build, BuildContext};
use wsss::train::{train, RunOptions, TrainConfig};

#[derive(Args)]
pub struct TrainArgs {
    /// The run's TOML config (see configs/).
    #[arg(long)]
    config: PathBuf,
    /// The run folder (checkpoints, metrics.jsonl, best/model weights).
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Override a config value: `section.key=value` (repeatable), e.g. `run.epochs=2`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Override `[data] root`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Compute device: cpu, cuda, cuda:N, metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Stop after this many steps without a final checkpoint (simulates a kill; testing).
    #[arg(long, hide = true)]
    stop_after_steps: Option<usize>,
}

impl TrainArgs {
    pub fn run(self) -> Result<()> {
        let mut overrides = self.overrides.clone();
        if let Some(d) = &self.data {
            overrides.push(format!("data.root={:?}", d.display().to_string()));
        }
        let (cfg, text) = TrainConfig::read(&self.config, &overrides)?;
        if let Some(t) = cfg.run.threads {
            // Before candle or rayon start any pool.
            std::env::set_var("RAYON_NUM_THREADS", t.to_string());
        }
        let device = parse_device(&self.device)?;
        let open = |split: &str| -> Result<Arc<VocDataset>> {
            Ok(Arc::new(
                VocDataset::open(&cfg.data.root, split).with_context(|| {
                    format!("opening split `{split}` of {}", cfg.data.root.display())
                })?,
            ))
        };
        let train_set = open(&cfg.data.train_split)?;
        let eval = match &cfg.data.val_split {
            Some(s) => Some(EvalData {
                dataset: open(s)?,
                batch_size: cfg.data.val_batch_size,
                limit: cfg.data.val_limit,
            }),
            None => None,
        };
        let data = TrainData {
            augment: cfg.data.augment(),
            batch_size: cfg.data.batch_size,
            seed: cfg.run.seed,
            prefetch: cfg.data.prefetch,
            dataset: train_set.clone(),
        };
        let mut program = build(
            &cfg,
            &BuildContext {
                num_classes: train_set.num_classes(),
                device: device.clone(),
            },
        )?;
        let opts = RunOptions {
            resume: self.resume,
            stop_after_steps: self.stop_after_steps,
            progress: !self.quiet,
            device,
        };
        let summary = train(
            program.as_mut(),
            &cfg,
            &text,
            &data,
            eval.as_ref(),
            &self.out,
            &opts,
        )?;
        println!("{}", serde_json::to_string(&summary)?);
        Ok(())
    }
}
