//! CAM generators on DeiT-S/16 (random weights, 20 classes), K = 3 classes, CPU.
//!
//! Run with `RAYON_NUM_THREADS=2 cargo bench -p wsss-benches --bench cam -- --quick`.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use wsss_cam::aream::AreamConfig;
use wsss_cam::{
    AafConfig, AreamCam, CamGenerator, ClassicCam, Getam, GetamStrategy, Rollout, WeakTr,
};
use wsss_vit::{expected_keys, Config, PosEmbedInterp, Strictness, Vit};

const CLASSES: [usize; 3] = [3, 7, 15];

fn random_state(cfg: &Config, extra: &[(&str, Vec<usize>)]) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let mut keys = expected_keys(cfg);
    keys.extend(extra.iter().map(|(k, s)| (k.to_string(), s.clone())));
    keys.into_iter()
        .map(|(k, shape)| {
            let t = if k.contains("norm") && k.ends_with("weight") {
                Tensor::ones(shape, DType::F32, &dev).unwrap()
            } else {
                Tensor::randn(0f32, 0.05, shape, &dev).unwrap()
            };
            (k, t)
        })
        .collect()
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
    Tensor::randn(0f32, 1.0, (1, 3, side, side), &Device::Cpu).unwrap()
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("cam");
    group.sample_size(10);

    let cfg = deit_s();
    let vit = Vit::from_state_dict(
        &cfg,
        random_state(&cfg, &[]),
        Strictness::Strict,
        DType::F32,
        &dev,
    )
    .unwrap();
    let img224 = image(224);
    let img448 = image(448);

    group.bench_function("vit_forward_224", |b| {
        b.iter(|| vit.forward(&img224).unwrap())
    });
    for (name, strategy) in [
        ("batched", GetamStrategy::Batched),
        ("per_class", GetamStrategy::PerClass),
    ] {
        let getam = Getam::new(vit.clone(), 6).with_strategy(strategy);
        group.bench_function(format!("getam_{name}_224"), |b| {
            b.iter(|| getam.generate(&img224, &CLASSES).unwrap())
        });
        group.bench_function(format!("getam_{name}_448"), |b| {
            b.iter(|| getam.generate(&img448, &CLASSES).unwrap())
        });
    }

    let mut cls_cfg = deit_s();
    cls_cfg.num_classes = 0;
    let classic = ClassicCam::from_state_dict(
        &cls_cfg,
        random_state(&cls_cfg, &[("classifier.weight", vec![20, 384, 1, 1])]),
        DType::F32,
        &dev,
    )
    .unwrap();
    group.bench_function("classic_224", |b| {
        b.iter(|| classic.generate(&img224, &CLASSES).unwrap())
    });

    let rollout = Rollout::new(vit.clone());
    group.bench_function("rollout_224", |b| {
        b.iter(|| rollout.generate(&img224, &CLASSES).unwrap())
    });

    let mt = multi_token();
    let (l, h, hd) = (mt.depth, mt.num_heads, mt.head_dim());
    let aaf = AafConfig::weaktr();
    let weaktr_extra = [
        ("head.weight", vec![20, 384, 3, 3]),
        ("head.bias", vec![20]),
        (
            "adaptive_attention_fusion.attn_feat_ffn.0.weight",
            vec![hd / 8, hd],
        ),
        (
            "adaptive_attention_fusion.attn_feat_ffn.0.bias",
            vec![hd / 8],
        ),
        (
            "adaptive_attention_fusion.attn_feat_ffn.1.weight",
            vec![1, hd / 8],
        ),
        ("adaptive_attention_fusion.attn_feat_ffn.1.bias", vec![1]),
        (
            "adaptive_attention_fusion.attn_head_ffn.0.weight",
            vec![l * h / 8, l * h],
        ),
        (
            "adaptive_attention_fusion.attn_head_ffn.2.weight",
            vec![l * h, l * h / 8],
        ),
    ];
    let state = random_state(&mt, &weaktr_extra);
    let mt_vit = Vit::from_state_dict(
        &mt,
        state.clone(),
        Strictness::AllowUnexpected,
        DType::F32,
        &dev,
    )
    .unwrap();
    group.bench_function("mct_vit_forward_224", |b| {
        b.iter(|| mt_vit.forward(&img224).unwrap())
    });
    let weaktr = WeakTr::from_state_dict(&mt, aaf, state.clone(), DType::F32, &dev).unwrap();
    group.bench_function("weaktr_224", |b| {
        b.iter(|| weaktr.generate(&img224, &CLASSES).unwrap())
    });
    let aream =
        AreamCam::from_state_dict(&mt, AreamConfig::inference(20, 12), state, DType::F32, &dev)
            .unwrap();
    group.bench_function("aream_224", |b| {
        b.iter(|| aream.generate(&img224, &CLASSES).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
