//! Times PAR/PAMR once at a given size (for profiling under CPU contention, use `time`).
//! `cargo run --release -p wsss-refine --example par_timing -- par|pamr|parw SIDE K`

use std::time::Instant;
use wsss_refine::{pamr, par};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("par");
    let side: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(512);
    let k: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(21);
    let pixels = side * side;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let image: Vec<f32> = (0..3 * pixels).map(|_| next()).collect();
    let mut masks: Vec<f32> = (0..k * pixels).map(|_| next()).collect();
    let start = Instant::now();
    match which {
        "none" => {}
        "parw" => {
            let w = par::affinity_slice(&image, (side, side), &par::ParConfig::afa()).unwrap();
            std::hint::black_box(w);
        }
        "pamr" => pamr::refine_slice(
            &image,
            &mut masks,
            k,
            (side, side),
            &pamr::PamrConfig::getam(),
        )
        .unwrap(),
        _ => {
            par::refine_slice(&image, &mut masks, k, (side, side), &par::ParConfig::afa()).unwrap()
        }
    }
    eprintln!(
        "{which} {side} K={k}: {:.3} s wall",
        start.elapsed().as_secs_f64()
    );
    std::hint::black_box(masks);
}
