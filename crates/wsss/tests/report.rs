//! A report built from stage outputs that the test writes: tables hold the scored numbers,
//! the pictures exist and the HTML embeds them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use image::{Rgb, RgbImage};
use wsss::data::palette::{write_label_png, LabelFormat, LabelMap};
use wsss::metrics::{ConfusionMatrix, MetricsReport, ThresholdSweep};
use wsss::report::{build, MethodSpec, OverlaySpec, PaperNumbers, ReportSpec, StageRecord};

const W: u32 = 8;
const H: u32 = 6;

/// Ground truth: class 1 on the left half, background on the right.
fn gt() -> LabelMap {
    let mut map = LabelMap::filled(W, H, 0);
    for y in 0..H {
        for x in 0..W / 2 {
            map.set(x, y, 1);
        }
    }
    map
}

fn write_stage_outputs(dir: &Path) -> (ReportSpec, f64) {
    let gt = gt();
    let image = RgbImage::from_fn(W, H, |x, y| Rgb([(x * 30) as u8, (y * 40) as u8, 90]));
    image.save(dir.join("img0.png")).unwrap();
    write_label_png(&dir.join("gt0.png"), &gt, LabelFormat::Palette).unwrap();

    // Pseudo labels: one left column wrong, one right column ignored.
    let mut pseudo = gt.clone();
    for y in 0..H {
        pseudo.set(0, y, 0);
        pseudo.set(W - 1, y, 255);
    }
    std::fs::create_dir_all(dir.join("pseudo")).unwrap();
    write_label_png(&dir.join("pseudo/img0.png"), &pseudo, LabelFormat::Palette).unwrap();
    let mut confusion = ConfusionMatrix::new(2);
    confusion.update(&pseudo.data, &gt.data).unwrap();
    let report = MetricsReport::new(confusion, vec!["background".into(), "object".into()], 1);
    let pseudo_miou = report.scores.miou;
    report.write_json(&dir.join("pseudo_metrics.json")).unwrap();

    // CAM: ramp from left (1) to right (0) for class 1.
    let cam: Vec<f32> = (0..H * W)
        .map(|i| 1.0 - (i % W) as f32 / (W - 1) as f32)
        .collect();
    let mut sweep = ThresholdSweep::new(2, vec![0.2, 0.5, 0.8]).unwrap();
    sweep.update(&cam, &[1], &gt.data).unwrap();
    serde_json::to_writer(
        std::fs::File::create(dir.join("sweep.json")).unwrap(),
        &sweep.report(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("cams")).unwrap();
    let tensors = HashMap::from([
        (
            "scores".to_string(),
            Tensor::from_vec(cam, (1, H as usize, W as usize), &Device::Cpu).unwrap(),
        ),
        (
            "classes".to_string(),
            Tensor::new(&[1i64], &Device::Cpu).unwrap(),
        ),
    ]);
    candle_core::safetensors::save(&tensors, dir.join("cams/img0.safetensors")).unwrap();

    std::fs::write(
        dir.join("metrics.jsonl"),
        concat!(
            "{\"epoch\":1,\"loss\":0.9,\"lr\":0.1,\"best\":true,\"val_map\":0.4,",
            "\"val_uniform_baseline_miou_gt\":0.2}\n",
            "{\"epoch\":2,\"loss\":0.5,\"lr\":0.05,\"best\":true,\"val_map\":0.625,",
            "\"val_uniform_baseline_miou_gt\":0.25}\n",
            "{\"epoch\":3,\"loss\":0.4,\"lr\":0.01,\"best\":false,\"val_map\":0.5}\n",
        ),
    )
    .unwrap();

    let spec = ReportSpec {
        title: "Test run".into(),
        dataset: "scenes".into(),
        summary: vec!["made by a test".into()],
        class_names: vec!["background".into(), "object".into()],
        methods: vec![
            MethodSpec {
                name: "alpha".into(),
                cam_sweep: Some(dir.join("sweep.json")),
                pseudo_metrics: Some(dir.join("pseudo_metrics.json")),
                train_logs: vec![dir.join("metrics.jsonl")],
                cam_dir: Some(dir.join("cams")),
                pseudo_dir: Some(dir.join("pseudo")),
                pred_dir: Some(dir.join("missing_preds")),
                paper: Some(PaperNumbers {
                    seg: Some(74.0),
                    source: "a paper".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            MethodSpec {
                name: "beta (not run yet)".into(),
                seg_metrics: Some(dir.join("nothing.json")),
                ..Default::default()
            },
        ],
        stages: vec![StageRecord {
            name: "alpha/train".into(),
            wall_s: 12.5,
            peak_rss_mib: Some(321.0),
            cached: true,
        }],
        overlays: vec![OverlaySpec {
            name: "img0".into(),
            image: dir.join("img0.png"),
            gt: dir.join("gt0.png"),
        }],
    };
    (spec, pseudo_miou)
}

#[test]
fn report_tables_pictures_and_html() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, pseudo_miou) = write_stage_outputs(dir.path());
    let spec_path = dir.path().join("spec.json");
    spec.write(&spec_path).unwrap();
    let spec = ReportSpec::read(&spec_path).unwrap();
    let out = dir.path().join("report");
    let files = build(&spec, &out).unwrap();

    let md = std::fs::read_to_string(&files.markdown).unwrap();
    let pseudo = format!("{:.1}", 100.0 * pseudo_miou);
    // The kept checkpoint is the last epoch flagged best (epoch 2).
    assert!(md.contains("| alpha | 62.5 | 100.0 (t=0.50) |"), "{md}");
    assert!(md.contains("| uniform baseline | – | 25.0 | – |"), "{md}");
    assert!(md.contains(&pseudo), "pseudo mIoU {pseudo} missing:\n{md}");
    // One of 8 columns ignored: coverage 87.5 %; one of 7 covered columns wrong.
    assert!(md.contains("| 87.5 | 85.7 |"), "{md}");
    assert!(md.contains("| 74.0 |"));
    assert!(md.contains("| beta (not run yet) | – | – | – | – | – | – | – |"));
    assert!(md.contains("| alpha/train | 12.5 | 321 | cached |"));
    for picture in ["threshold_sweep.png", "training_curves.png", "overlays.png"] {
        assert!(out.join(picture).is_file(), "{picture} missing");
        assert!(md.contains(&format!("]({picture})")));
    }
    // image, GT, CAM, pseudo, prediction (grey): 5 tiles of 128 px plus gaps of 4, under
    // a 34 px band of column headings.
    let grid = image::open(out.join("overlays.png")).unwrap().to_rgb8();
    let band = 34;
    assert_eq!(grid.dimensions(), (5 * 128 + 6 * 4, band + 128 + 2 * 4));
    assert_eq!(
        grid.get_pixel(4 + 4 * 132 + 10, band + 10).0,
        [220, 220, 220]
    );

    let html = std::fs::read_to_string(&files.html).unwrap();
    assert_eq!(html.matches("data:image/png;base64,").count(), 3);
    assert!(html.contains("<td>alpha</td>"));
}

#[test]
fn a_corrupt_metrics_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spec, _) = write_stage_outputs(dir.path());
    std::fs::write(dir.path().join("bad.json"), "{ not json").unwrap();
    spec.methods[1].seg_metrics = Some(dir.path().join("bad.json"));
    let err = build(&spec, &dir.path().join("r")).unwrap_err();
    assert!(err.to_string().contains("bad.json"), "{err}");
}
