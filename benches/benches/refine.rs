//! PAR and PAMR at 256x256 and 512x512 with K = 21 (AFA/GETAM settings: 10 iterations,
//! dilations 1, 2, 4, 8, 12, 24). Run single-threaded with `RAYON_NUM_THREADS=1`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wsss_refine::{pamr, par};

const K: usize = 21;

/// A deterministic textured image (3 planes) and K soft masks.
fn inputs(side: usize) -> (Vec<f32>, Vec<f32>) {
    let pixels = side * side;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let image: Vec<f32> = (0..3 * pixels)
        .map(|i| {
            let p = i % pixels;
            let (y, x) = (p / side, p % side);
            let block = ((y / 32 + x / 48 + i / pixels) % 4) as f32 / 4.0;
            (block + 0.1 * next()).min(1.0)
        })
        .collect();
    let masks: Vec<f32> = (0..K * pixels).map(|_| next()).collect();
    (image, masks)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("refine");
    group.sample_size(10);
    for side in [256usize, 512] {
        let (image, masks) = inputs(side);
        let par_cfg = par::ParConfig::afa();
        group.bench_with_input(BenchmarkId::new("par_k21", side), &side, |b, _| {
            b.iter(|| {
                let mut m = masks.clone();
                par::refine_slice(&image, &mut m, K, (side, side), &par_cfg).unwrap();
                m
            })
        });
        let image255: Vec<f32> = image.iter().map(|v| (v * 255.0).round()).collect();
        let pamr_cfg = pamr::PamrConfig::getam();
        group.bench_with_input(BenchmarkId::new("pamr_k21", side), &side, |b, _| {
            b.iter(|| {
                let mut m = masks.clone();
                pamr::refine_slice(&image255, &mut m, K, (side, side), &pamr_cfg).unwrap();
                m
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
