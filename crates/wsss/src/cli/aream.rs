//! `wsss aream entropy`: per-layer attention entropies of a trained (warm-up) model, the
//! weights of AReAM's E mode.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use wsss::core::device::parse_device;
use wsss::data::VocDataset;
use wsss::train::data::EvalData;
use wsss::train::programs::aream::layer_entropy;
use wsss::vit::{read_state_dict, Config, Strictness, Vit};

#[derive(Subcommand)]
pub enum AreamCommand {
    /// Mean attention entropy per layer over a split, min–max normalised (mode E).
    Entropy(EntropyArgs),
}

#[derive(Args)]
pub struct EntropyArgs {
    /// Weights (a run's `best.safetensors`/`model.safetensors`, or an MCTformer checkpoint).
    #[arg(long)]
    weights: PathBuf,
    /// Model config JSON (default: `model.json` beside the weights).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Dataset root (VOC layout).
    #[arg(long)]
    data: PathBuf,
    /// Split.
    #[arg(long, default_value = "train")]
    split: String,
    /// At most this many images.
    #[arg(long)]
    limit: Option<usize>,
    /// Images per batch (same-size images only).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Write the result as JSON here too.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compute device.
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl AreamCommand {
    pub fn run(self) -> Result<()> {
        match self {
            AreamCommand::Entropy(args) => args.run(),
        }
    }
}

impl EntropyArgs {
    fn run(self) -> Result<()> {
        let device = parse_device(&self.device)?;
        let model_path = match &self.model {
            Some(p) => p.clone(),
            None => self
                .weights
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("model.json"),
        };
        let text = std::fs::read_to_string(&model_path).with_context(|| {
            format!(
                "reading model config {} (pass --model)",
                model_path.display()
            )
        })?;
        let cfg: Config = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", model_path.display()))?;
        let tensors = read_state_dict(&self.weights)
            .with_context(|| format!("reading {}", self.weights.display()))?;
        let vit = Vit::from_state_dict(
            &cfg,
            tensors,
            Strictness::AllowUnexpected,
            candle_core::DType::F32,
            &device,
        )?;
        let dataset = VocDataset::open(&self.data, &self.split)
            .with_context(|| format!("opening {} split {}", self.data.display(), self.split))?;
        let data = EvalData {
            dataset: Arc::new(dataset),
            batch_size: self.batch_size.max(1),
            limit: self.limit,
        };
        let entropy = layer_entropy(&vit, &data, &device)?;
        let json = serde_json::json!({
            "weights": self.weights.display().to_string(),
            "split": self.split,
            "images": data.len(),
            "means": entropy.means(),
            "entropies": entropy.normalised(),
        });
        let text = serde_json::to_string_pretty(&json)?;
        if let Some(out) = &self.out {
            std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
        }
        println!("{text}");
        eprintln!(
            "for the AReAM config: [method] entropies = {:?}",
            entropy.normalised()
        );
        Ok(())
    }
}
