//! `wsss report`: renders a run's report (markdown, standalone HTML, plots, overlays).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use wsss::report::{build, ReportSpec};

/// Render `report.md` and `report.html` from a report spec (written by `cargo xtask reproduce`).
#[derive(Args)]
pub struct ReportArgs {
    /// The report spec (JSON): methods, the stage outputs to read, stage timings.
    #[arg(long)]
    spec: PathBuf,
    /// Output folder for report.md, report.html and the pictures.
    #[arg(long)]
    out: PathBuf,
}

impl ReportArgs {
    pub fn run(self) -> Result<()> {
        let spec = ReportSpec::read(&self.spec)?;
        let files = build(&spec, &self.out)
            .with_context(|| format!("building the report in {}", self.out.display()))?;
        println!("report: {}", files.markdown.display());
        println!("report: {}", files.html.display());
        Ok(())
    }
}
