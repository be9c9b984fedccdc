//! The `wsss train` and `wsss aream entropy` commands end to end on a tiny scenes set,
//! and every shipped config parses.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use wsss::data::scenes::{generate, ScenesConfig};
use wsss::train::TrainConfig;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_shipped_config_parses() -> Result<()> {
    let mut seen = 0;
    for dir in [repo().join("configs"), repo().join("configs/scenes")] {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                TrainConfig::read(&path, &[])?;
                seen += 1;
            }
        }
    }
    assert!(seen >= 9, "{seen} configs");
    Ok(())
}

#[test]
fn train_then_entropy_through_the_binary() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("scenes");
    generate(
        &ScenesConfig {
            train: 8,
            val: 4,
            size: 32,
            ..ScenesConfig::default()
        },
        &root,
    )?;
    let out = dir.path().join("run");
    let wsss = env!("CARGO_BIN_EXE_wsss");
    let status = Command::new(wsss)
        .args(["train", "--quiet", "--config"])
        .arg(repo().join("configs/scenes/aream.toml"))
        .arg("--out")
        .arg(&out)
        .arg("--data")
        .arg(&root)
        .args([
            "--set",
            "model.preset=\"tiny_test\"",
            "--set",
            "model.init=\"\"",
            "--set",
            "data.crop_size=32",
            "--set",
            "data.batch_size=4",
            "--set",
            "run.epochs=2",
            "--set",
            "method.warmup_epochs=1",
            "--set",
            "method.layer_index=1",
        ])
        .status()?;
    assert!(status.success());
    let lines = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    assert_eq!(lines.lines().count(), 2);
    assert!(lines.contains("val_map") && lines.contains("val_cam_miou_gt"));
    let output = Command::new(wsss)
        .args(["aream", "entropy", "--weights"])
        .arg(out.join("model.safetensors"))
        .arg("--data")
        .arg(&root)
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let e = json["entropies"].as_array().expect("entropies");
    assert_eq!(e.len(), 2);
    assert!(e.iter().all(|v| (0.0..=1.0).contains(&v.as_f64().unwrap())));

    // Bad input: a missing config and a wrong override are errors, not panics.
    let bad = Command::new(wsss)
        .args(["train", "--config", "/nonexistent.toml", "--out"])
        .arg(dir.path().join("x"))
        .output()?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nonexistent"));
    Ok(())
}

#[test]
fn every_scenes_config_builds_its_program() -> Result<()> {
    use wsss::train::programs::{build, BuildContext};
    let ctx = BuildContext {
        num_classes: wsss::data::SCENES_CLASSES.len(),
        device: candle_core::Device::Cpu,
    };
    for entry in std::fs::read_dir(repo().join("configs/scenes"))? {
        let path = entry?.path();
        let (cfg, _) = TrainConfig::read(&path, &[])?;
        let program =
            build(&cfg, &ctx).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
        assert!(!program.params().is_empty());
    }
    Ok(())
}
