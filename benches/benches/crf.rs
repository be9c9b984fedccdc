//! Dense CRF inference and the permutohedral filter alone, K = 21.
//!
//! `cargo bench -p wsss-benches --bench crf` (set `RAYON_NUM_THREADS=1` for one thread).
//! Sizes: 256x256, 512x512, and 500x375 (the pydensecrf comparison, 10 iterations).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wsss_core::permutohedral::Permutohedral;
use wsss_refine::dense_crf::{dense_crf, unary_from_softmax, DenseCrfConfig};

const K: usize = 21;

/// A deterministic natural-looking RGB image (smooth gradients, blocks, noise), HWC u8.
fn image(h: usize, w: usize) -> Vec<u8> {
    let mut s = 12345u64;
    let mut out = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let noise = ((s >> 59) as i32) - 16;
            let block = ((x / 64 + y / 48) % 3) as i32 * 60;
            let r = (x * 200 / w) as i32 + block / 2 + noise;
            let g = (y * 200 / h) as i32 + noise;
            let b = 120 + block - noise;
            out.extend_from_slice(&[
                r.clamp(0, 255) as u8,
                g.clamp(0, 255) as u8,
                b.clamp(0, 255) as u8,
            ]);
        }
    }
    out
}

/// Class probabilities [K, N]: a softmax of smooth per-class bumps.
fn probabilities(h: usize, w: usize) -> Vec<f32> {
    let n = h * w;
    let mut logits = vec![0f32; K * n];
    for k in 0..K {
        let (cx, cy) = ((k * 37 % w) as f32, (k * 53 % h) as f32);
        for y in 0..h {
            for x in 0..w {
                let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
                logits[k * n + y * w + x] = 3.0 * (-d / (0.3 * w as f32)).exp();
            }
        }
    }
    for i in 0..n {
        let max = (0..K).map(|k| logits[k * n + i]).fold(f32::MIN, f32::max);
        let sum: f32 = (0..K).map(|k| (logits[k * n + i] - max).exp()).sum();
        for k in 0..K {
            logits[k * n + i] = (logits[k * n + i] - max).exp() / sum;
        }
    }
    logits
}

fn bilateral_features(img: &[u8], h: usize, w: usize) -> Vec<f32> {
    let mut f = Vec::with_capacity(h * w * 5);
    for y in 0..h {
        for x in 0..w {
            let p = &img[(y * w + x) * 3..(y * w + x) * 3 + 3];
            f.extend_from_slice(&[
                x as f32 / 83.0,
                y as f32 / 83.0,
                p[0] as f32 / 5.0,
                p[1] as f32 / 5.0,
                p[2] as f32 / 5.0,
            ]);
        }
    }
    f
}

fn bench_crf(c: &mut Criterion) {
    // As the `wsss` binary does (wsss_core::malloc, wsss_core::threads).
    wsss_core::malloc::retain_freed_memory();
    wsss_core::threads::park_idle_workers();
    let mut group = c.benchmark_group("crf");
    group.sample_size(10);
    for (h, w) in [(256usize, 256usize), (375, 500), (512, 512)] {
        let img = image(h, w);
        let unary = unary_from_softmax(&probabilities(h, w), 1e-5);
        let feats = bilateral_features(&img, h, w);
        let id = format!("{w}x{h}");
        group.bench_function(BenchmarkId::new("lattice_build_d5", &id), |b| {
            b.iter(|| Permutohedral::new(&feats, 5).unwrap())
        });
        let lattice = Permutohedral::new(&feats, 5).unwrap();
        let values: Vec<f32> = (0..h * w * K).map(|i| (i % 7) as f32 / 7.0).collect();
        let mut out = vec![0f32; h * w * K];
        group.bench_function(BenchmarkId::new("lattice_filter_d5_k21", &id), |b| {
            b.iter(|| lattice.filter(&values, K, &mut out).unwrap())
        });
        group.bench_function(BenchmarkId::new("dense_crf_10it_k21", &id), |b| {
            b.iter(|| dense_crf(&img, h, w, &unary, K, &DenseCrfConfig::weaktr()).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_crf);
criterion_main!(benches);
