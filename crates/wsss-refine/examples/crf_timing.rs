//! Timing splits of the dense CRF (lattice builds, filters, whole inference), in process CPU
//! time (robust on a shared machine) and wall time; min of `REPS` runs.
//! `RAYON_NUM_THREADS=1 cargo run --release -p wsss-refine --example crf_timing -- [H W]`

use std::time::Instant;
use wsss_core::permutohedral::Permutohedral;
use wsss_refine::dense_crf::{dense_crf, unary_from_softmax, DenseCrfConfig};

const K: usize = 21;
const REPS: usize = 3;

fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| t.ok())
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

fn time<T>(what: &str, mut f: impl FnMut() -> T) -> T {
    let (mut best_cpu, mut best_wall) = (f64::MAX, f64::MAX);
    let mut out = None;
    for _ in 0..REPS {
        let (c0, w0) = (cpu_ns(), Instant::now());
        out = Some(std::hint::black_box(f()));
        best_cpu = best_cpu.min((cpu_ns() - c0) as f64 * 1e-6);
        best_wall = best_wall.min(w0.elapsed().as_secs_f64() * 1e3);
    }
    println!("{what:<28} cpu {best_cpu:8.1} ms   wall {best_wall:8.1} ms");
    out.unwrap()
}

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

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (h, w) = (
        args.first().copied().unwrap_or(375),
        args.get(1).copied().unwrap_or(500),
    );
    let img = image(h, w);
    let unary = unary_from_softmax(&probabilities(h, w), 1e-5);
    let mut f5 = Vec::with_capacity(h * w * 5);
    let mut f2 = Vec::with_capacity(h * w * 2);
    for y in 0..h {
        for x in 0..w {
            let p = &img[(y * w + x) * 3..(y * w + x) * 3 + 3];
            f5.extend_from_slice(&[
                x as f32 / 83.0,
                y as f32 / 83.0,
                p[0] as f32 / 5.0,
                p[1] as f32 / 5.0,
                p[2] as f32 / 5.0,
            ]);
            f2.extend_from_slice(&[x as f32 / 3.0, y as f32 / 3.0]);
        }
    }
    let l5 = time("lattice build d5", || Permutohedral::new(&f5, 5).unwrap());
    let l2 = time("lattice build d2", || Permutohedral::new(&f2, 2).unwrap());
    println!(
        "N {}  M(d5) {}  M(d2) {}",
        h * w,
        l5.num_vertices(),
        l2.num_vertices()
    );
    let values: Vec<f32> = (0..h * w * K).map(|i| (i % 7) as f32 / 7.0).collect();
    let mut out = vec![0f32; h * w * K];
    time("filter d5 K21", || l5.filter(&values, K, &mut out).unwrap());
    time("filter d2 K21", || l2.filter(&values, K, &mut out).unwrap());
    for it in [0usize, 1] {
        let cfg = DenseCrfConfig {
            iterations: it,
            ..DenseCrfConfig::weaktr()
        };
        time(&format!("dense_crf {it} it"), || {
            dense_crf(&img, h, w, &unary, K, &cfg).unwrap()
        });
    }
    time("dense_crf 10 it", || {
        dense_crf(&img, h, w, &unary, K, &DenseCrfConfig::weaktr()).unwrap()
    });
}
