//! Deterministic random inputs shared by the loss tests (no `rand` state to thread).

use candle_core::{Device, Tensor};

/// The next value in [0, 1) of a 64-bit linear congruential generator (Knuth's MMIX
/// constants), advancing `seed`.
pub fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((*seed >> 40) as f32) / (1u64 << 24) as f32
}

/// A [B, C, H, W] tensor of `scale · (u − 0.5)`, u from [`lcg`] seeded by `seed`.
pub fn random(shape: (usize, usize, usize, usize), seed: u64, scale: f32) -> Tensor {
    let mut s = seed;
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f32> = (0..n).map(|_| scale * (lcg(&mut s) - 0.5)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Softmax over dim 1 (classes), from basic ops.
pub fn softmax(t: &Tensor) -> Tensor {
    let e = t.exp().unwrap();
    e.broadcast_div(&e.sum_keepdim(1).unwrap()).unwrap()
}
