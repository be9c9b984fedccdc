//! `wsss segment` end to end: tiny segmentation runs (DFR, GETAM end to end) predict
//! label PNGs of the image size that `wsss eval --pred` scores; runs without a
//! segmentation head are refused with a clear error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Result;
use wsss::data::palette::read_label_png;
use wsss::data::scenes::{generate, ScenesConfig};
use wsss::data::SCENES_CLASSES;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn wsss(args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_wsss"))
        .args(args)
        .output()?)
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Trains `config` for one epoch on 32-pixel crops, with `extra` overrides.
fn train(config: &str, data: &Path, out: &Path, extra: &[&str]) -> Result<()> {
    let config = repo().join(config);
    let mut args = vec![
        "train",
        "--quiet",
        "--config",
        s(&config),
        "--out",
        s(out),
        "--data",
        s(data),
    ];
    for set in ["data.crop_size=32", "data.batch_size=4", "run.epochs=1"]
        .iter()
        .chain(extra)
    {
        args.extend(["--set", set]);
    }
    ok(wsss(&args)?);
    Ok(())
}

/// Segments val with `run`, checks every PNG against its image, then scores them.
fn segment_and_eval(run: &Path, data: &Path, out: &Path) -> Result<()> {
    ok(wsss(&[
        "segment",
        "--run",
        s(run),
        "--data",
        s(data),
        "--split",
        "val",
        "--out",
        s(out),
    ])?);
    let names: Vec<String> = std::fs::read_to_string(data.join("ImageSets/Segmentation/val.txt"))?
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(names.len(), 4);
    for name in &names {
        let pred = read_label_png(&out.join(format!("{name}.png")))?;
        let image = image::open(data.join(format!("JPEGImages/{name}.png")))?;
        assert_eq!((pred.width, pred.height), (image.width(), image.height()));
        assert!(
            pred.data
                .iter()
                .all(|&v| (v as usize) < SCENES_CLASSES.len()),
            "{name}: a label outside the classes"
        );
    }
    // A second run finds every output and does nothing.
    let again = wsss(&[
        "segment",
        "--run",
        s(run),
        "--data",
        s(data),
        "--out",
        s(out),
    ])?;
    assert!(String::from_utf8_lossy(&again.stderr).contains("4 already done"));
    let metrics = out.with_extension("json");
    ok(wsss(&[
        "eval",
        "--pred",
        s(out),
        "--gt",
        s(&data.join("SegmentationClass")),
        "--list",
        s(&data.join("ImageSets/Segmentation/val.txt")),
        "--classes",
        "scenes",
        "--json",
        s(&metrics),
    ])?);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics)?)?;
    let miou = json["scores"]["miou"]
        .as_f64()
        .expect("scores.miou in metrics.json");
    assert!((0.0..=1.0).contains(&miou), "{miou}");
    assert_eq!(json["images"].as_u64(), Some(4));
    Ok(())
}

#[test]
fn segment_runs_predict_pngs_that_eval_reads() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("scenes");
    generate(
        &ScenesConfig {
            train: 8,
            val: 4,
            // Larger than the 32-pixel training crops: prediction at another size.
            size: 44,
            ..ScenesConfig::default()
        },
        &data,
    )?;
    let dfr = dir.path().join("dfr");
    train(
        "configs/scenes/dfr_with_fc.toml",
        &data,
        &dfr,
        &[
            "method.variant=\"pce\"",
            "data.val_limit=4",
            "model.preset=\"tiny_test\"",
            "model.init=\"\"",
        ],
    )?;
    segment_and_eval(&dfr, &data, &dir.path().join("dfr_val"))?;

    let getam = dir.path().join("getam");
    train(
        "configs/scenes/getam.toml",
        &data,
        &getam,
        &[
            "model.preset=\"tiny_test\"",
            "model.init=\"\"",
            "method.seg_start_epoch=0",
            "method.start_layer=1",
        ],
    )?;
    segment_and_eval(&getam, &data, &dir.path().join("getam_val"))?;
    Ok(())
}

#[test]
fn segment_refuses_runs_without_a_segmentation_head() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("scenes");
    generate(
        &ScenesConfig {
            train: 2,
            val: 2,
            size: 32,
            ..ScenesConfig::default()
        },
        &data,
    )?;
    let out = dir.path().join("pred");
    let segment = |run: &Path| {
        wsss(&[
            "segment",
            "--run",
            s(run),
            "--data",
            s(&data),
            "--out",
            s(&out),
        ])
    };
    // Not a run folder at all.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty)?;
    let res = segment(&empty)?;
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("not a training run folder"), "{err}");
    // A CAM program's run.
    let classic = dir.path().join("classic");
    std::fs::create_dir(&classic)?;
    std::fs::copy(
        repo().join("configs/scenes/classic.toml"),
        classic.join("config.toml"),
    )?;
    let res = segment(&classic)?;
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("`classic` run") && err.contains("no segmentation head"),
        "{err}"
    );
    // A segmentation run that has not finished (no weights).
    let unfinished = dir.path().join("unfinished");
    std::fs::create_dir(&unfinished)?;
    std::fs::copy(
        repo().join("configs/scenes/getam.toml"),
        unfinished.join("config.toml"),
    )?;
    let res = segment(&unfinished)?;
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("no model.safetensors"), "{err}");
    assert!(!out.exists() || std::fs::read_dir(&out)?.next().is_none());
    Ok(())
}
