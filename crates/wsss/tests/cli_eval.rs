//! `wsss eval` end to end: PNG folders in, table out, metrics.json written.

use std::process::Command;

use wsss::data::palette::{write_label_png, LabelFormat, LabelMap};

#[test]
fn eval_writes_metrics_json() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (pred, gt) = (dir.path().join("pred"), dir.path().join("gt"));
    std::fs::create_dir_all(&pred)?;
    std::fs::create_dir_all(&gt)?;
    let g = LabelMap {
        width: 2,
        height: 2,
        data: vec![0, 1, 1, 255],
    };
    let p = LabelMap {
        width: 2,
        height: 2,
        data: vec![0, 1, 0, 3],
    };
    write_label_png(&gt.join("x.png"), &g, LabelFormat::Palette)?;
    write_label_png(&pred.join("x.png"), &p, LabelFormat::Palette)?;
    let json = dir.path().join("metrics.json");
    let out = Command::new(env!("CARGO_BIN_EXE_wsss"))
        .args(["eval", "--pred"])
        .arg(&pred)
        .arg("--gt")
        .arg(&gt)
        .arg("--json")
        .arg(&json)
        .args(["--classes", "voc"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("aeroplane") && stdout.contains("mIoU"),
        "{stdout}"
    );
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    // IoU background = 1/2, aeroplane = 1/2: mIoU 0.5.
    assert!((report["scores"]["miou"].as_f64().unwrap() - 0.5).abs() < 1e-12);
    let merged = dir.path().join("merged.json");
    let out = Command::new(env!("CARGO_BIN_EXE_wsss"))
        .args(["eval", "--merge"])
        .arg(&json)
        .arg(&json)
        .arg("--json")
        .arg(&merged)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&merged)?)?;
    assert_eq!(m["confusion"]["confusion"][1][1].as_u64(), Some(2));
    Ok(())
}
