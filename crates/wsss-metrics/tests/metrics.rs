//! Properties and hand-computed cases of the confusion matrix, scores and threshold sweep.

use proptest::prelude::*;
use wsss_metrics::{ConfusionMatrix, MetricsError, MetricsReport, ThresholdSweep, Unlabelled};

const C: usize = 4;

/// (pred, gt) pairs: pred in 0..C or 255, gt in 0..C or 255.
fn maps(n: usize) -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let label = prop_oneof![4 => 0u8..C as u8, 1 => Just(255u8)];
    (
        prop::collection::vec(label.clone(), n),
        prop::collection::vec(label, n),
    )
}

fn matrix(pred: &[u8], gt: &[u8]) -> ConfusionMatrix {
    let mut m = ConfusionMatrix::new(C);
    m.update(pred, gt).unwrap();
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]

    #[test]
    fn miou_and_accuracies_in_unit_interval((pred, gt) in maps(200)) {
        let s = matrix(&pred, &gt).scores();
        for v in [s.miou, s.pixel_acc, s.mean_acc, s.coverage] {
            prop_assert!(v.is_nan() || (0.0..=1.0).contains(&v), "{v}");
        }
        for v in s.iou.iter().chain(&s.precision).chain(&s.recall) {
            prop_assert!(v.is_nan() || (0.0..=1.0).contains(v));
        }
        let sm = matrix(&pred, &gt).scores_with(Unlabelled::Miss);
        prop_assert!(sm.miou.is_nan() || (0.0..=1.0).contains(&sm.miou));
        prop_assert!(sm.miou.is_nan() || sm.miou <= s.miou + 1e-12);
    }

    #[test]
    fn merge_is_associative_and_order_independent(
        (p1, g1) in maps(50), (p2, g2) in maps(70), (p3, g3) in maps(30)
    ) {
        let (a, b, c) = (matrix(&p1, &g1), matrix(&p2, &g2), matrix(&p3, &g3));
        let mut ab_c = a.clone();
        ab_c.merge(&b).unwrap();
        ab_c.merge(&c).unwrap();
        let mut bc = b.clone();
        bc.merge(&c).unwrap();
        let mut a_bc = a.clone();
        a_bc.merge(&bc).unwrap();
        let mut cba = c.clone();
        cba.merge(&b).unwrap();
        cba.merge(&a).unwrap();
        prop_assert_eq!(&ab_c, &a_bc);
        prop_assert_eq!(&ab_c, &cba);
        // And equal to one update over the concatenation.
        let all = matrix(&[p1, p2, p3].concat(), &[g1, g2, g3].concat());
        prop_assert_eq!(&ab_c, &all);
    }

    #[test]
    fn invariant_to_pixel_permutation((pred, gt) in maps(120), seed in any::<u64>()) {
        let n = pred.len();
        let mut order: Vec<usize> = (0..n).collect();
        // Fisher-Yates with a tiny LCG, deterministic per seed.
        let mut state = seed | 1;
        for i in (1..n).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        let pp: Vec<u8> = order.iter().map(|&i| pred[i]).collect();
        let gp: Vec<u8> = order.iter().map(|&i| gt[i]).collect();
        prop_assert_eq!(matrix(&pred, &gt), matrix(&pp, &gp));
    }

    #[test]
    fn sweep_matches_direct_thresholding(
        gt in prop::collection::vec(prop_oneof![0u8..C as u8, Just(255u8)], 60),
        cams in prop::collection::vec(0f32..1.0, 120),
        t in 0usize..11,
    ) {
        let thresholds: Vec<f32> = (0..=10).map(|i| i as f32 / 10.0).collect();
        let labels = [1u8, 3];
        let mut sweep = ThresholdSweep::new(C, thresholds.clone()).unwrap();
        sweep.update(&cams, &labels, &gt).unwrap();
        let n = gt.len();
        let pred: Vec<u8> = (0..n)
            .map(|i| {
                let (v, l) = if cams[n + i] > cams[i] { (cams[n + i], 3) } else { (cams[i], 1) };
                if v > thresholds[t] { l } else { 0 }
            })
            .collect();
        prop_assert_eq!(sweep.confusion_at(t), matrix(&pred, &gt));
    }
}

#[test]
fn hand_computed_scores() {
    // gt:   0 0 1 1 2 255
    // pred: 0 1 1 1 0 2
    let mut m = ConfusionMatrix::new(3);
    m.update(&[0, 1, 1, 1, 0, 2], &[0, 0, 1, 1, 2, 255])
        .unwrap();
    assert_eq!(m.counts(), &[1, 1, 0, 0, 2, 0, 1, 0, 0]);
    assert_eq!(m.ignored(), 1);
    let s = m.scores();
    assert_eq!(s.iou, vec![1.0 / 3.0, 2.0 / 3.0, 0.0]);
    assert!((s.miou - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(s.pixel_acc, 3.0 / 5.0);
    assert!((s.mean_acc - (0.5 + 1.0 + 0.0) / 3.0).abs() < 1e-12);
    assert_eq!(s.precision[1], 2.0 / 3.0);
    assert!(s.precision[2].is_nan());
}

#[test]
fn unlabelled_predictions_give_coverage_and_both_policies() {
    let mut m = ConfusionMatrix::new(2);
    m.update(&[0, 255, 1, 255], &[0, 0, 1, 1]).unwrap();
    let skip = m.scores();
    assert_eq!(skip.coverage, 0.5);
    assert_eq!(skip.precision_on_covered, 1.0);
    assert_eq!(skip.miou, 1.0);
    let miss = m.scores_with(Unlabelled::Miss);
    assert_eq!(miss.miou, 0.5);
    assert_eq!(miss.pixel_acc, 0.5);
}

#[test]
fn class_only_predicted_is_not_averaged() {
    let mut m = ConfusionMatrix::new(3);
    m.update(&[0, 2], &[0, 0]).unwrap();
    let s = m.scores();
    assert_eq!(s.iou[2], 0.0);
    assert!(s.iou[1].is_nan());
    assert_eq!(s.miou, 0.5);
}

#[test]
fn bad_inputs_are_errors() {
    let mut m = ConfusionMatrix::new(3);
    assert!(matches!(
        m.update(&[0, 1], &[0]),
        Err(MetricsError::SizeMismatch { pred: 2, gt: 1 })
    ));
    let err = m.update(&[0, 7], &[0, 1]).unwrap_err();
    assert!(matches!(
        err,
        MetricsError::PredictionOutOfRange {
            value: 7,
            index: 1,
            ..
        }
    ));
    assert!(err.to_string().contains("out of range"));
    // An invalid prediction where the ground truth is ignored is not counted, so not an error.
    m.update(&[0, 7], &[0, 255]).unwrap();
    assert!(m.merge(&ConfusionMatrix::new(4)).is_err());
    assert!(ThresholdSweep::new(3, vec![0.5, 0.2]).is_err());
    assert!(ThresholdSweep::new(3, vec![]).is_err());
    let mut sweep = ThresholdSweep::new(3, vec![0.5]).unwrap();
    assert!(sweep.update(&[0.1], &[5], &[0]).is_err());
    assert!(sweep.update(&[0.1, 0.2], &[1], &[0]).is_err());
}

#[test]
fn json_round_trip_and_nan_as_null() -> Result<(), Box<dyn std::error::Error>> {
    let mut m = ConfusionMatrix::new(3);
    m.update(&[0, 1, 255], &[0, 1, 1])?;
    let dir = std::env::temp_dir().join(format!("wsss-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let report = MetricsReport::new(m.clone(), vec!["bg".into(), "a".into(), "b".into()], 1);
    let path = dir.join("metrics.json");
    report.write_json(&path)?;
    let text = std::fs::read_to_string(&path)?;
    assert!(text.contains("null"), "NaN IoU of class 2 must be null");
    assert_eq!(ConfusionMatrix::read_json(&path)?, m);
    let back: MetricsReport = serde_json::from_str(&text)?;
    assert!(back.scores.iou[2].is_nan());
    assert!(report.table().contains("bg"));
    std::fs::write(
        &path,
        r#"{"num_classes": 2, "confusion": [[1]], "unlabelled": [0, 0]}"#,
    )?;
    let err = ConfusionMatrix::read_json(&path).unwrap_err();
    assert!(err.to_string().contains("metrics.json"), "{err}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn otsu_splits_a_bimodal_histogram_and_sweep_picks_best() {
    // Object pixels high (0.8), background pixels low (0.2): any threshold in [0.2, 0.8) is
    // perfect; Otsu must land there without ground truth.
    let n = 100;
    let gt: Vec<u8> = (0..n).map(|i| if i < 30 { 1 } else { 0 }).collect();
    let cams: Vec<f32> = gt.iter().map(|&g| if g == 1 { 0.8 } else { 0.2 }).collect();
    let mut sweep = ThresholdSweep::new(2, ThresholdSweep::default_thresholds()).unwrap();
    let items = vec![(cams.clone(), gt.clone()); 4];
    sweep
        .par_accumulate(&items, |(c, g)| {
            Ok::<_, MetricsError>((c.clone(), vec![1u8], g.clone()))
        })
        .unwrap();
    let report = sweep.report();
    assert_eq!(report.best.miou, 1.0);
    assert!(
        (0.2..0.8).contains(&report.otsu.threshold),
        "{}",
        report.otsu.threshold
    );
    assert_eq!(report.otsu.miou, 1.0);
    assert_eq!(report.thresholds.len(), 101);
}

#[test]
fn par_accumulate_equals_serial() {
    let images: Vec<(Vec<u8>, Vec<u8>)> = (0..20u8)
        .map(|k| {
            let pred = (0..64u8).map(|i| (i.wrapping_mul(k + 1)) % 4).collect();
            let gt = (0..64u8).map(|i| (i / 16 + k) % 5).collect(); // 4 = ignored (>= C)
            (pred, gt)
        })
        .collect();
    let par =
        ConfusionMatrix::par_accumulate(C, &images, |x| Ok::<_, MetricsError>(x.clone())).unwrap();
    let mut serial = ConfusionMatrix::new(C);
    for (p, g) in &images {
        serial.update(p, g).unwrap();
    }
    assert_eq!(par, serial);
    assert!(par.ignored() > 0);
}
