//! A training run interrupted mid-epoch (as if killed: no checkpoint at the stop) and
//! resumed ends with exactly the weights of the uninterrupted run.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use candle_core::Device;
use wsss::data::scenes::{generate, ScenesConfig};
use wsss::data::VocDataset;
use wsss::train::data::{EvalData, TrainData};
use wsss::train::programs::{build, BuildContext};
use wsss::train::{train, RunOptions, RunSummary, TrainConfig};

fn config(root: &Path, program: &str, method: &str) -> String {
    format!(
        r#"
program = "{program}"
[data]
root = {root:?}
crop_size = 32
batch_size = 4
scale_range = [0.8, 1.2]
flip = true
[run]
epochs = 2
seed = 7
checkpoint_every = 1
[optimizer]
kind = "adamw"
lr = 1e-3
weight_decay = 0.05
clip_grad_norm = 1.0
[schedule]
kind = "cosine"
warmup_epochs = 0.5
[model]
preset = "tiny_test"
[method]
{method}
"#,
        root = root.display().to_string()
    )
}

fn run(
    text: &str,
    out: &Path,
    resume: bool,
    stop: Option<usize>,
) -> Result<(RunSummary, Vec<f32>)> {
    let (cfg, text) = TrainConfig::parse(text, &[])?;
    let ds = Arc::new(VocDataset::open(&cfg.data.root, "train")?);
    let data = TrainData {
        dataset: ds.clone(),
        augment: cfg.data.augment(),
        batch_size: cfg.data.batch_size,
        seed: cfg.run.seed,
        prefetch: 2,
    };
    let eval = EvalData {
        dataset: Arc::new(VocDataset::open(&cfg.data.root, "val")?),
        batch_size: 2,
        limit: None,
    };
    let ctx = BuildContext {
        num_classes: ds.num_classes(),
        device: Device::Cpu,
    };
    let mut program = build(&cfg, &ctx)?;
    let opts = RunOptions {
        resume,
        stop_after_steps: stop,
        ..RunOptions::default()
    };
    let summary = train(
        program.as_mut(),
        &cfg,
        &text,
        &data,
        Some(&eval),
        out,
        &opts,
    )?;
    let mut flat = Vec::new();
    for (_, v) in program.params().iter() {
        flat.extend(v.as_tensor().flatten_all()?.to_vec1::<f32>()?);
    }
    Ok((summary, flat))
}

fn scenes(dir: &Path) -> Result<()> {
    let cfg = ScenesConfig {
        train: 12,
        val: 4,
        size: 32,
        ..ScenesConfig::default()
    };
    generate(&cfg, dir)?;
    Ok(())
}

fn check_resume(program: &str, method: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("scenes");
    scenes(&root)?;
    let text = config(&root, program, method);

    let (straight, w_straight) = run(&text, &dir.path().join("a"), false, None)?;
    assert!(!straight.interrupted);
    assert_eq!((straight.epochs, straight.steps), (2, 6));

    // Killed after 5 steps: the last checkpoint is mid-epoch 2 (step 4).
    let b = dir.path().join("b");
    let (cut, _) = run(&text, &b, false, Some(5))?;
    assert!(cut.interrupted);
    let err = run(&text, &b, false, None).unwrap_err();
    assert!(format!("{err:#}").contains("--resume"), "{err:#}");
    let (resumed, w_resumed) = run(&text, &b, true, None)?;
    assert_eq!((resumed.epochs, resumed.steps), (2, 6));
    assert_eq!(w_straight, w_resumed, "resumed weights differ");
    assert!(w_straight.iter().all(|v| v.is_finite()));

    // The metrics have one line per epoch, as in the straight run.
    let lines = |p: &Path| std::fs::read_to_string(p.join("metrics.jsonl")).unwrap();
    let a_lines = lines(&dir.path().join("a"));
    let b_lines = lines(&b);
    assert_eq!(a_lines.lines().count(), 2);
    assert_eq!(b_lines.lines().count(), 2);
    let strip = |s: &str| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.retain(|k, _| !k.contains("second"));
                v
            })
            .collect()
    };
    assert_eq!(strip(&a_lines), strip(&b_lines));
    for f in [
        "best.safetensors",
        "best.json",
        "model.safetensors",
        "model.json",
        "config.toml",
    ] {
        assert!(b.join(f).is_file(), "{f} missing");
    }
    // A changed config is refused on resume.
    let changed = text.replace("lr = 1e-3", "lr = 2e-3");
    let err = run(&changed, &b, true, None).unwrap_err();
    assert!(format!("{err:#}").contains("differs"), "{err:#}");
    Ok(())
}

#[test]
fn classic_resumes_exactly_after_a_mid_epoch_kill() -> Result<()> {
    check_resume("classic", "")
}

#[test]
fn weaktr_stage1_resumes_exactly_after_a_mid_epoch_kill() -> Result<()> {
    check_resume("weaktr_stage1", "aaf_reduction = 2\naaf_feat_reduction = 4")
}

/// One step's loss reaches every parameter (the ViT takes its grad-safe path).
fn check_gradients(program: &str, method: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("scenes");
    scenes(&root)?;
    let (cfg, _) = TrainConfig::parse(&config(&root, program, method), &[])?;
    let ds = Arc::new(VocDataset::open(&cfg.data.root, "train")?);
    let data = TrainData {
        dataset: ds.clone(),
        augment: cfg.data.augment(),
        batch_size: cfg.data.batch_size,
        seed: cfg.run.seed,
        prefetch: 1,
    };
    let ctx = BuildContext {
        num_classes: ds.num_classes(),
        device: Device::Cpu,
    };
    let mut program = build(&cfg, &ctx)?;
    let batch = data.epoch(0, 0).next().expect("a batch")?;
    let step_ctx = wsss::train::StepContext {
        epoch: cfg.run.epochs - 1,
        step: 0,
        epochs: cfg.run.epochs,
        steps_per_epoch: data.steps_per_epoch(),
        lr: 1e-3,
        seed: 1,
        device: Device::Cpu,
    };
    program.on_epoch_start(cfg.run.epochs - 1)?;
    let out = program.step(&batch, &step_ctx)?;
    let grads = out.loss.backward()?;
    let missing = program.params().missing_gradients(&grads);
    assert!(
        missing.is_empty(),
        "parameters without gradient: {missing:?}"
    );
    Ok(())
}

#[test]
fn every_parameter_gets_a_gradient() -> Result<()> {
    check_gradients("classic", "")?;
    check_gradients("weaktr_stage1", "aaf_reduction = 2\naaf_feat_reduction = 4")
}

#[test]
fn aream_resumes_exactly_after_a_mid_epoch_kill() -> Result<()> {
    // Warm-up epoch 1, re-activation in epoch 2 (where the kill happens).
    check_resume("aream", "warmup_epochs = 1\nlayer_index = 1")
}

#[test]
fn aream_reactivation_reaches_every_parameter() -> Result<()> {
    check_gradients(
        "aream",
        "warmup_epochs = 0\nlayer_index = 1\nentropies = [0.0, 1.0]",
    )
}

#[test]
fn weaktr_stage2_resumes_exactly_and_reaches_every_parameter() -> Result<()> {
    let method = "encoder_lr_scale = 0.1\nclipping = { start_value = 5.0, patch_size = 12 }";
    check_resume("weaktr_stage2", method)?;
    check_gradients("weaktr_stage2", method)
}

#[test]
fn dfr_resumes_exactly_and_reaches_every_parameter() -> Result<()> {
    let small = "warmup_epochs = 1\nregularizer_downsample = 2\n\
                 consistency = { max_points = 16 }\n\
                 dfr = { gated = { radius = 2, sigma_xy = 2.0 } }\n\
                 feature_head = { hidden_dim = 8, feature_dim = 4 }\n\
                 decoder = { kind = \"mlp_fusion\", embed_dim = 8 }";
    check_resume("dfr", &format!("variant = \"dfr\"\n{small}"))?;
    for variant in [
        "pce",
        "dense_crf",
        "gated_crf",
        "dfr_no_fc",
        "dfr",
        "full_mask",
    ] {
        let method = format!(
            "variant = \"{variant}\"\n{}\ndense_crf = {{ sigma_rgb = 15.0, sigma_xy = 10.0, scale_factor = 0.5 }}",
            small.replace("warmup_epochs = 1", "warmup_epochs = 0")
        );
        check_gradients("dfr", &method)?;
    }
    Ok(())
}

#[test]
fn getam_e2e_resumes_exactly_and_trains_every_parameter() -> Result<()> {
    let method = "start_layer = 1\nseg_start_epoch = 1\n[method.completion]\nbackground_power = 32.0\npercentile = 0.9\nopening = 3\nsaliency_threshold = 0.0\nconflict = \"ignore\"";
    check_resume("getam_e2e", method)?;
    check_gradients("getam_e2e", "start_layer = 1")
}
