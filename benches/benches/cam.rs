//! CAM generators on DeiT-S/16 (seeded random weights from `init_weights`, 20 classes),
//! K = 3 requested classes, one image at 224×224 and 448×448, CPU.
//!
//! - `vit_forward`: the plain logits forward (reference for the generators' overhead).
//! - `classic`: ToCo-style CAM (1×1 classifier on the final patch tokens).
//! - `getam_batched`: one forward, one hand-written activation-only backward for K classes.
//! - `getam_per_class`: the authors' way (autograd, one backward per class); the oracle.
//! - `rollout`: attention rollout.
//! - `mct_vit_forward`: the plain forward of the 20-class-token backbone (WeakTr/AReAM).
//! - `weaktr_fused`, `weaktr_fine`: WeakTr with adaptive attention fusion (the same
//!   network forward; fine adds the patch-affinity propagation's share of it). Their ratio
//!   to `mct_vit_forward` is the AAF overhead.
//! - `aream`: MCTformer-V2 CAM propagated by the all-layer patch affinity.
//!
//! Run with `RAYON_NUM_THREADS=2 cargo bench -p wsss-benches --bench cam`.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use wsss_cam::aream::AreamConfig;
use wsss_cam::{
    AafConfig, AreamCam, CamGenerator, ClassicCam, Getam, GetamStrategy, Rollout, WeakTr, WeakTrMap,
};
use wsss_core::random::{normal, rng};
use wsss_core::threads::on_compute_pool;
use wsss_vit::{init_weights, Config, PosEmbedInterp, Strictness, Vit};

const CLASSES: [usize; 3] = [3, 7, 15];
const SIDES: [usize; 2] = [224, 448];

/// `init_weights` plus N(0, 0.02²) extra tensors (heads, AAF), seeded.
fn state(cfg: &Config, extra: &[(&str, Vec<usize>)]) -> HashMap<String, Tensor> {
    let mut state = init_weights(cfg, 0).expect("init");
    let mut rng = rng(1);
    for (key, shape) in extra {
        let t = normal(shape.clone(), 0.0, 0.02, &mut rng, &Device::Cpu).expect("normal");
        state.insert(key.to_string(), t);
    }
    state
}

fn deit_s() -> Config {
    Config::deit_small_patch16_224().with_classes(20)
}

fn multi_token() -> Config {
    let mut cfg = deit_s();
    cfg.class_tokens = 20;
    cfg.final_norm = false;
    cfg.pos_embed_interp = PosEmbedInterp::DinoScaleFactor;
    cfg
}

fn image(side: usize) -> Tensor {
    normal((1, 3, side, side), 0.0, 1.0, &mut rng(2), &Device::Cpu).expect("image")
}

fn bench(c: &mut Criterion) {
    // As the `wsss` binary does (wsss_core::malloc, wsss_core::threads).
    wsss_core::malloc::retain_freed_memory();
    wsss_core::threads::park_idle_workers();
    let dev = Device::Cpu;
    let cfg = deit_s();
    let vit = Vit::from_state_dict(&cfg, state(&cfg, &[]), Strictness::Strict, DType::F32, &dev)
        .expect("vit");

    let mut cls_cfg = deit_s();
    cls_cfg.num_classes = 0;
    let classic = ClassicCam::from_state_dict(
        &cls_cfg,
        state(&cls_cfg, &[("classifier.weight", vec![20, 384, 1, 1])]),
        DType::F32,
        &dev,
    )
    .expect("classic");
    let getam = Getam::new(vit.clone(), 6);
    let getam_loop = Getam::new(vit.clone(), 6).with_strategy(GetamStrategy::PerClass);
    let rollout = Rollout::new(vit.clone());

    let mt = multi_token();
    let (l, h, hd) = (mt.depth, mt.num_heads, mt.head_dim());
    let aaf = AafConfig::weaktr();
    let prefix = "adaptive_attention_fusion.";
    let extra = [
        ("head.weight".to_string(), vec![20, 384, 3, 3]),
        ("head.bias".to_string(), vec![20]),
        (format!("{prefix}attn_feat_ffn.0.weight"), vec![hd / 8, hd]),
        (format!("{prefix}attn_feat_ffn.0.bias"), vec![hd / 8]),
        (format!("{prefix}attn_feat_ffn.1.weight"), vec![1, hd / 8]),
        (format!("{prefix}attn_feat_ffn.1.bias"), vec![1]),
        (
            format!("{prefix}attn_head_ffn.0.weight"),
            vec![l * h / 8, l * h],
        ),
        (
            format!("{prefix}attn_head_ffn.2.weight"),
            vec![l * h, l * h / 8],
        ),
    ];
    let extra: Vec<(&str, Vec<usize>)> =
        extra.iter().map(|(k, s)| (k.as_str(), s.clone())).collect();
    let mt_state = state(&mt, &extra);
    let mt_vit = Vit::from_state_dict(
        &mt,
        mt_state.clone(),
        Strictness::AllowUnexpected,
        DType::F32,
        &dev,
    )
    .expect("mct vit");
    let weaktr =
        WeakTr::from_state_dict(&mt, aaf, mt_state.clone(), DType::F32, &dev).expect("weaktr");
    let weaktr_fused = weaktr.clone().with_map(WeakTrMap::Fused);
    let weaktr_fine = weaktr.with_map(WeakTrMap::Fine);
    let aream = AreamCam::from_state_dict(
        &mt,
        AreamConfig::inference(20, 12),
        mt_state,
        DType::F32,
        &dev,
    )
    .expect("aream");

    for side in SIDES {
        let img = image(side);
        let mut group = c.benchmark_group(format!("cam_{side}"));
        group.sample_size(10);
        group.bench_function("vit_forward", |b| {
            b.iter(|| on_compute_pool(|| vit.forward(&img).unwrap()))
        });
        group.bench_function("classic", |b| {
            b.iter(|| on_compute_pool(|| classic.generate(&img, &CLASSES).unwrap()))
        });
        group.bench_function("getam_batched", |b| {
            b.iter(|| on_compute_pool(|| getam.generate(&img, &CLASSES).unwrap()))
        });
        group.bench_function("getam_per_class", |b| {
            b.iter(|| on_compute_pool(|| getam_loop.generate(&img, &CLASSES).unwrap()))
        });
        group.bench_function("rollout", |b| {
            b.iter(|| on_compute_pool(|| rollout.generate(&img, &CLASSES).unwrap()))
        });
        group.bench_function("mct_vit_forward", |b| {
            b.iter(|| on_compute_pool(|| mt_vit.forward(&img).unwrap()))
        });
        group.bench_function("weaktr_fused", |b| {
            b.iter(|| on_compute_pool(|| weaktr_fused.generate(&img, &CLASSES).unwrap()))
        });
        group.bench_function("weaktr_fine", |b| {
            b.iter(|| on_compute_pool(|| weaktr_fine.generate(&img, &CLASSES).unwrap()))
        });
        group.bench_function("aream", |b| {
            b.iter(|| on_compute_pool(|| aream.generate(&img, &CLASSES).unwrap()))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
