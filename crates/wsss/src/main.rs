//! The `wsss` command line: one subcommand per stage.

mod cli;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    // Megabyte buffers are freed and re-allocated on every kernel call: keep them mapped.
    wsss_core::malloc::retain_freed_memory();
    // Idle candle workers sleep rather than spin against the busy ones (before any thread).
    wsss_core::threads::park_idle_workers();
    let cli = cli::Cli::parse();
    wsss_core::threads::on_compute_pool(move || cli.run())
}
