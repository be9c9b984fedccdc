//! The `wsss` command line: one subcommand per stage.

mod cli;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    // Megabyte buffers are freed and re-allocated on every kernel call: keep them mapped.
    wsss_core::malloc::retain_freed_memory();
    cli::Cli::parse().run()
}
