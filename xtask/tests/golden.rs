//! Runs every golden case whose op has an adapter, as part of `cargo test`.
//!
//! The cases live outside the repository (`../shared/golden` beside the clone, or the
//! folder in `WSSS_GOLDEN`). Without them the test fails under CI (`CI` set) and is
//! reported as not run otherwise.

use std::path::PathBuf;

use xtask::golden::{ops::KNOWN_OPS, run_dir};

fn golden_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("WSSS_GOLDEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/golden"));
    dir.is_dir().then_some(dir)
}

#[test]
fn every_implemented_op_passes_its_golden_cases() -> anyhow::Result<()> {
    let Some(dir) = golden_dir() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "golden cases not found under CI"
        );
        eprintln!("golden cases not found: set WSSS_GOLDEN to run them");
        return Ok(());
    };
    let prefixes: Vec<String> = KNOWN_OPS.iter().map(|s| s.to_string()).collect();
    let reports = run_dir(&dir, &prefixes)?;
    let failures: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.line())
        .collect();
    assert!(!reports.is_empty(), "no golden case matched {prefixes:?}");
    assert!(
        failures.is_empty(),
        "golden failures:\n{}",
        failures.join("\n")
    );
    Ok(())
}
