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

/// Writes one CAM file: `scores` (1, 2, 4) for model class 0 (label 1).
fn write_cam(
    path: &std::path::Path,
    values: &[f32],
    dtype: candle_core::DType,
) -> Result<(), Box<dyn std::error::Error>> {
    use candle_core::{Device, Tensor};
    let scores = Tensor::from_vec(values.to_vec(), (1, 2, 4), &Device::Cpu)?.to_dtype(dtype)?;
    let classes = Tensor::from_vec(vec![0i64], 1, &Device::Cpu)?;
    candle_core::safetensors::save(
        &[
            ("scores".to_string(), scores),
            ("classes".to_string(), classes),
        ]
        .into_iter()
        .collect(),
        path,
    )?;
    Ok(())
}

#[test]
fn eval_sweeps_cam_thresholds() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (cams, gt) = (dir.path().join("cams"), dir.path().join("gt"));
    std::fs::create_dir_all(&cams)?;
    std::fs::create_dir_all(&gt)?;
    // Foreground (label 1) where the CAM is 0.9, background where it is 0.2: every
    // threshold in [0.2, 0.9) is perfect, and Otsu's split falls there too.
    let g = LabelMap {
        width: 4,
        height: 2,
        data: vec![1, 1, 0, 0, 0, 255, 1, 0],
    };
    write_label_png(&gt.join("a.png"), &g, LabelFormat::Palette)?;
    write_label_png(&gt.join("b.png"), &g, LabelFormat::Palette)?;
    let cam = [0.9, 0.9, 0.2, 0.2, 0.2, 0.5, 0.9, 0.2];
    write_cam(&cams.join("a.safetensors"), &cam, candle_core::DType::F32)?;
    write_cam(&cams.join("b.safetensors"), &cam, candle_core::DType::F16)?;
    let json = dir.path().join("sweep.json");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wsss"))
            .args(["eval", "--cams"])
            .arg(&cams)
            .arg("--gt")
            .arg(&gt)
            .args(["--classes", "voc", "--json"])
            .arg(&json)
            .args(extra)
            .output()
    };
    let out = run(&["--sweep", "0:1:0.05"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Otsu"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    assert_eq!(report["thresholds"].as_array().unwrap().len(), 21);
    assert_eq!(report["best"]["miou"].as_f64(), Some(1.0));
    let t = report["best"]["threshold"].as_f64().unwrap();
    assert!((0.2..0.9).contains(&t), "{t}");
    assert_eq!(report["otsu"]["miou"].as_f64(), Some(1.0));
    // At threshold 0.95 everything is background: IoU(bg) = 5/9... mIoU < 1.
    assert!(report["thresholds"][19]["miou"].as_f64().unwrap() < 1.0);
    // A CAM whose size is not the ground truth's: an error naming the file.
    write_cam(&cams.join("c.safetensors"), &cam, candle_core::DType::F32)?;
    write_label_png(
        &gt.join("c.png"),
        &LabelMap::filled(3, 3, 0),
        LabelFormat::Palette,
    )?;
    let out = run(&[])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("c.safetensors"), "{stderr}");
    // A bad sweep spec is refused.
    std::fs::remove_file(cams.join("c.safetensors"))?;
    let out = run(&["--sweep", "1:0:0.1"])?;
    assert!(!out.status.success());
    Ok(())
}

#[test]
fn data_prepare_commands_run_on_fixtures() -> Result<(), Box<dyn std::error::Error>> {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wsss-data/tests/fixtures");
    let dir = tempfile::tempdir()?;
    let out = Command::new(env!("CARGO_BIN_EXE_wsss"))
        .args(["data", "prepare", "scribble", "--root"])
        .arg(dir.path())
        .arg("--xml")
        .arg(fixtures.join("scribble/pascal_2012"))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 XML files"));
    assert!(dir.path().join("Scribbles/2007_000032.png").is_file());
    let out = Command::new(env!("CARGO_BIN_EXE_wsss"))
        .args(["data", "prepare", "voc", "--root"])
        .arg(dir.path().join("nowhere"))
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
    Ok(())
}
