//! Subcommands of the `wsss` binary, one module each.

mod aream;
mod cam;
mod data;
mod eval;
mod refine;
mod report;
mod segment;
mod stage;
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
    /// CAMs of a split (one safetensors per image) or of one image (with an overlay).
    Cam(cam::CamArgs),
    /// CAMs -> pseudo-label PNGs through a chain of refinements (PAR, CRF, thresholds…).
    Refine(refine::RefineArgs),
    /// Datasets: prepare VOC/SBD, COCO, ScribbleSup; generate the embedded scenes benchmark.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Score predicted label maps against ground truth (mIoU table, metrics.json), merge
    /// shards, or sweep the background threshold over CAM files (sweep.json).
    Eval(eval::EvalArgs),
    /// Render a run's report (tables, plots, overlays) as report.md and report.html.
    Report(report::ReportArgs),
    /// Label maps of a split from a trained segmentation run (weaktr_stage2, dfr, getam_e2e).
    Segment(segment::SegmentArgs),
    /// Train a model from a TOML config (WeakTr, AReAM, classic CAM, ...).
    Train(train::TrainArgs),
    /// AReAM helpers: per-layer attention entropy for mode E.
    #[command(subcommand)]
    Aream(aream::AreamCommand),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Weights(cmd) => cmd.run(),
            Command::Vit(cmd) => cmd.run(),
            Command::Cam(args) => args.run(),
            Command::Refine(args) => args.run(),
            Command::Data(cmd) => cmd.run(),
            Command::Eval(args) => args.run(),
            Command::Report(args) => args.run(),
            Command::Segment(args) => args.run(),
            Command::Train(args) => args.run(),
            Command::Aream(cmd) => cmd.run(),
        }
    }
}
