//! Training machinery shared by every training program: a TOML config ([`config`]),
//! deterministic batches on a worker thread ([`data`]), trainable parameters
//! ([`params`]), optimisers with checkpointable state ([`optim`]), learning-rate schedules
//! ([`schedule`]), atomic checkpoints that resume exactly ([`checkpoint`]), the loop that
//! a [`runner::Program`] plugs into ([`runner`]), and the programs themselves.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod metrics;
pub mod optim;
pub mod params;
pub mod programs;
pub mod runner;
pub mod schedule;
pub mod segment;

pub use config::{ProgramKind, TrainConfig};
pub use params::Params;
pub use runner::{
    train, EvalContext, Metrics, Program, RunOptions, RunSummary, Segmenter, StepContext,
    StepOutput,
};
