//! ViT-S/16 (DeiT-S) forward at 224x224 on the CPU, batch 1 and 8, with and without
//! attention taps.

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wsss_core::threads::on_compute_pool;
use wsss_vit::{init_weights, Config, Strictness, Taps, Vit};

fn vit_forward(c: &mut Criterion) {
    // As the `wsss` binary does (wsss_core::malloc, wsss_core::threads).
    wsss_core::malloc::retain_freed_memory();
    wsss_core::threads::park_idle_workers();
    let cfg = Config::deit_small_patch16_224();
    let weights = init_weights(&cfg, 0).expect("init");
    let vit = Vit::from_state_dict(&cfg, weights, Strictness::Strict, DType::F32, &Device::Cpu)
        .expect("model");
    let mut group = c.benchmark_group("vit_s16_forward_224");
    group.sample_size(10);
    for batch in [1usize, 8] {
        let images = Tensor::zeros((batch, 3, 224, 224), DType::F32, &Device::Cpu).expect("images");
        group.bench_with_input(BenchmarkId::new("logits", batch), &images, |b, images| {
            b.iter(|| on_compute_pool(|| vit.forward(images).expect("forward")))
        });
        group.bench_with_input(
            BenchmarkId::new("with_attention_taps", batch),
            &images,
            |b, images| {
                b.iter(|| {
                    on_compute_pool(|| {
                        vit.forward_tapped(images, Taps::attention())
                            .expect("forward")
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, vit_forward);
criterion_main!(benches);
