//! Regularized losses, forward + backward, K = 21: the dense CRF loss (rloss, lattice, at
//! scale 1 and 0.5), the gated CRF loss (radius 5, RGBXY kernel) and DFR's regulariser
//! (gated form with 32 deep-feature channels; dense form with a 3-D PCA projection at scale
//! 0.5), at 128x128 and 320x320.
//!
//! `RAYON_NUM_THREADS=1 cargo bench -p wsss-benches --bench losses`.

use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wsss_loss::dense_crf::{dense_crf_loss, DenseCrfLossConfig};
use wsss_loss::dfr::{dfr_loss, DfrConfig, DfrForm};
use wsss_loss::gated_crf::{gated_crf_loss, GatedCrfConfig};

const K: usize = 21;

fn lcg(s: &mut u64) -> f32 {
    *s = s
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((*s >> 40) as f32) / (1u64 << 24) as f32
}

/// (image 0–255 [1,3,H,W], softmax seg [1,K,H,W], roi [1,H,W]).
fn inputs(h: usize, w: usize) -> (Tensor, Tensor, Tensor) {
    let dev = Device::Cpu;
    let mut s = 7u64;
    let mut img = vec![0f32; 3 * h * w];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let block = ((x / 40 + y / 30 + c) % 3) as f32 * 60.0;
                img[(c * h + y) * w + x] =
                    (block + (x + y) as f32 * 100.0 / (h + w) as f32 + 10.0 * lcg(&mut s))
                        .min(255.0);
            }
        }
    }
    let logits: Vec<f32> = (0..K * h * w).map(|_| 4.0 * lcg(&mut s)).collect();
    let image = Tensor::from_vec(img, (1, 3, h, w), &dev).unwrap();
    let logits = Tensor::from_vec(logits, (1, K, h, w), &dev).unwrap();
    let e = logits.exp().unwrap();
    let seg = e.broadcast_div(&e.sum_keepdim(1).unwrap()).unwrap();
    let roi = Tensor::ones((1, h, w), candle_core::DType::F32, &dev).unwrap();
    (image, seg, roi)
}

fn bench_losses(c: &mut Criterion) {
    // As the `wsss` binary does (wsss_core::malloc, wsss_core::threads).
    wsss_core::malloc::retain_freed_memory();
    wsss_core::threads::park_idle_workers();
    let mut group = c.benchmark_group("losses");
    group.sample_size(10);
    for size in [128usize, 320] {
        let (image, seg, roi) = inputs(size, size);
        let var = Var::from_tensor(&seg).unwrap();
        for scale in [1.0f32, 0.5] {
            let cfg = DenseCrfLossConfig {
                scale_factor: scale,
                ..DenseCrfLossConfig::rloss()
            };
            group.bench_function(
                BenchmarkId::new(format!("dense_crf_fwd_bwd_s{scale}"), size),
                |b| {
                    b.iter(|| {
                        let out =
                            dense_crf_loss(&image, var.as_tensor(), &roi, None, &cfg).unwrap();
                        out.loss.backward().unwrap()
                    })
                },
            );
        }
        // ImageNet-normalised RGB for the gated CRF loss.
        let rgb = ((&image / 255.0).unwrap() - 0.45).unwrap() / 0.225;
        let rgb = rgb.unwrap();
        let cfg = GatedCrfConfig::obukhov();
        group.bench_function(BenchmarkId::new("gated_crf_fwd_bwd_r5", size), |b| {
            b.iter(|| {
                let loss =
                    gated_crf_loss(var.as_tensor(), &[("rgb", &rgb)], None, None, &cfg).unwrap();
                loss.backward().unwrap()
            })
        });
        // DFR: unit-norm deep features (32 channels) varying smoothly over the image.
        let feat = {
            let mut v = vec![0f32; 32 * size * size];
            for c in 0..32 {
                for i in 0..size * size {
                    let (y, x) = ((i / size) as f32, (i % size) as f32);
                    // Phase offset: no pixel has all channels zero (a zero norm).
                    let phase = (c as f32 + 1.0) * (x + 2.0 * y + 1.0) / size as f32;
                    v[c * size * size + i] = phase.sin() + 0.5;
                }
            }
            let f = Tensor::from_vec(v, (1, 32, size, size), &Device::Cpu).unwrap();
            let norm = f.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap();
            f.broadcast_div(&norm).unwrap()
        };
        for form in [DfrForm::Gated, DfrForm::Dense] {
            let cfg = DfrConfig {
                form,
                ..DfrConfig::default()
            };
            let name = format!("dfr_{form:?}_fwd_bwd").to_lowercase();
            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter(|| {
                    let loss = dfr_loss(var.as_tensor(), &rgb, &feat, None, &cfg).unwrap();
                    loss.backward().unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_losses);
criterion_main!(benches);
