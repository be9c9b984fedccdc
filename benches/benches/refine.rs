//! PAR and PAMR at 256x256 and 512x512 with K = 21 (AFA/GETAM settings: 10 iterations,
//! dilations 1, 2, 4, 8, 12, 24). Run single-threaded with `RAYON_NUM_THREADS=1`.
//!
//! Two groups: `refine` measures wall time (criterion's default), `refine_cpu` the CPU time
//! of the whole process (the sum over its threads of `/proc/self/task/*/schedstat`, Linux
//! only), which stays meaningful on a machine shared with other jobs.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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

/// CPU time of this process in nanoseconds (all threads), 0 where unavailable.
fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Process CPU time as a criterion measurement.
struct ProcessCpuTime;

impl Measurement for ProcessCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        process_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        process_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical >= 1e9 {
            (1e-9, "s cpu")
        } else if typical >= 1e6 {
            (1e-6, "ms cpu")
        } else {
            (1e-3, "us cpu")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(&self, _: f64, _: &Throughput, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v = 0.0);
        "n/a"
    }
    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn bench_wall(c: &mut Criterion) {
    // As the `wsss` binary does (wsss_core::malloc, wsss_core::threads).
    wsss_core::malloc::retain_freed_memory();
    wsss_core::threads::park_idle_workers();
    bench(c, "refine");
}

fn bench_cpu(c: &mut Criterion<ProcessCpuTime>) {
    bench(c, "refine_cpu");
}

fn bench<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let mut group = c.benchmark_group(name);
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

criterion_group!(wall, bench_wall);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ProcessCpuTime);
    targets = bench_cpu
}
criterion_main!(wall, cpu);
