//! Subcommands of the `wsss` binary, one module each.

mod cam;
mod data;
mod eval;
mod train;
mod vit;
mod weights;

use clap::{Parser, Subcommand};

/// Transformer-based weakly supervised semantic segmentation.
#[derive(Parser)]
#[command(name = "wsss", version, about, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pretrained weights: fetch from the Hugging Face Hub, inspect a file.
    #[command(subcommand)]
    Weights(weights::WeightsCommand),
    /// The ViT backbone: run a forward and print attention-map statistics.
    #[command(subcommand)]
    Vit(vit::VitCommand),
    /// CAMs of one image: safetensors scores and a heat-map overlay.
    Cam(cam::CamArgs),
    /// Datasets: generate the embedded scenes benchmark.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Score predicted label maps against ground truth (mIoU table, metrics.json).
    Eval(eval::EvalArgs),
    /// Train a model from a TOML config (WeakTr, AReAM, classic CAM, ...).
    Train(train::TrainArgs),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Weights(cmd) => cmd.run(),
            Command::Vit(cmd) => cmd.run(),
            Command::Cam(args) => args.run(),
            Command::Data(cmd) => cmd.run(),
            Command::Eval(args) => args.run(),
            Command::Train(args) => args.run(),
        }
    }
}
