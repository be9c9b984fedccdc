//! `cargo xtask bench`: runs the criterion benches and writes a table of medians to
//! `docs/results/bench-<device>.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One benchmark's median from criterion's `estimates.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Median {
    /// Criterion id: `group/function/parameter`.
    pub id: String,
    /// Median time in seconds.
    pub seconds: f64,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Deserialize)]
struct Estimates {
    median: Estimate,
}

/// Reads every `*/new/estimates.json` under `criterion_dir` (criterion's output folder).
pub fn collect_medians(criterion_dir: &Path) -> Result<Vec<Median>> {
    let mut medians = Vec::new();
    visit(criterion_dir, criterion_dir, &mut medians)?;
    medians.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(medians)
}

fn visit(root: &Path, dir: &Path, out: &mut Vec<Median>) -> Result<()> {
    let estimates = dir.join("new/estimates.json");
    if estimates.is_file() {
        let text = std::fs::read_to_string(&estimates)
            .with_context(|| format!("reading {}", estimates.display()))?;
        let parsed: Estimates = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", estimates.display()))?;
        let id = dir
            .strip_prefix(root)
            .unwrap_or(dir)
            .to_string_lossy()
            .replace('\\', "/");
        out.push(Median {
            id,
            seconds: parsed.median.point_estimate * 1e-9,
        });
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "report") {
            visit(root, &path, out)?;
        }
    }
    Ok(())
}

/// Formats medians as a markdown table.
pub fn markdown(device: &str, medians: &[Median]) -> String {
    let mut text = format!("# Benchmarks on {device}\n\nMedians from criterion (`cargo xtask bench`).\n\n| benchmark | median |\n|---|---|\n");
    for m in medians {
        let time = if m.seconds >= 1.0 {
            format!("{:.3} s", m.seconds)
        } else if m.seconds >= 1e-3 {
            format!("{:.2} ms", m.seconds * 1e3)
        } else {
            format!("{:.1} µs", m.seconds * 1e6)
        };
        let _ = writeln!(text, "| `{}` | {time} |", m.id);
    }
    text
}

/// Runs `cargo bench -p wsss-benches [--features F] [-- FILTER]` in `root` and writes the
/// table to `docs/results/bench-<device>.md`.
pub fn run(root: &Path, features: Option<&str>, filter: Option<&str>) -> Result<PathBuf> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).args(["bench", "-p", "wsss-benches"]);
    if let Some(features) = features {
        cmd.args(["--features", features]);
    }
    if let Some(filter) = filter {
        cmd.args(["--", filter]);
    }
    let status = cmd.status().context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let medians = collect_medians(&target.join("criterion"))?;
    let device = match features {
        Some(f) if f.contains("cuda") => "cuda",
        Some(f) if f.contains("metal") => "metal",
        _ => "cpu",
    };
    let out = root.join(format!("docs/results/bench-{device}.md"));
    std::fs::create_dir_all(out.parent().unwrap_or(root))?;
    std::fs::write(&out, markdown(device, &medians))
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_layout() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        let est = dir.join("vit/logits/1/new");
        std::fs::create_dir_all(&est)?;
        std::fs::write(
            est.join("estimates.json"),
            r#"{"median":{"point_estimate":1500000.0}}"#,
        )?;
        std::fs::create_dir_all(dir.join("report"))?;
        let medians = collect_medians(&dir)?;
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(
            medians,
            vec![Median {
                id: "vit/logits/1".into(),
                seconds: 1.5e-3
            }]
        );
        assert!(markdown("cpu", &medians).contains("| `vit/logits/1` | 1.50 ms |"));
        Ok(())
    }
}
