//! Small helpers shared by the methods of this crate.

use candle_core::{bail, DType, Device, Result, Tensor};

/// All values of `xs`, row-major, as f32 on the CPU.
fn cpu_f32(xs: &Tensor) -> Result<Vec<f32>> {
    xs.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()
}

/// The planes of a `[K, H, W]` tensor as one f32 buffer, with `(K, H, W)`.
pub(crate) fn planes3(xs: &Tensor, what: &str) -> Result<(Vec<f32>, (usize, usize, usize))> {
    let Ok(dims) = xs.dims3() else {
        bail!("{what} must have shape [K, H, W], got {:?}", xs.dims())
    };
    Ok((cpu_f32(xs)?, dims))
}

/// `(B, C, H, W)`.
pub(crate) type Dims4 = (usize, usize, usize, usize);

/// The planes of a `[B, C, H, W]` tensor as one f32 buffer, with `(B, C, H, W)`.
pub(crate) fn planes4(xs: &Tensor, what: &str) -> Result<(Vec<f32>, Dims4)> {
    let Ok(dims) = xs.dims4() else {
        bail!("{what} must have shape [B, C, H, W], got {:?}", xs.dims())
    };
    Ok((cpu_f32(xs)?, dims))
}

/// Checks that `classes` are distinct foreground indices below 254 (so `c + 1` stays clear
/// of [`wsss_core::IGNORE`]) and returns the map order sorted by class index.
pub(crate) fn sorted_class_order(classes: &[usize]) -> Result<Vec<usize>> {
    let mut order: Vec<usize> = (0..classes.len()).collect();
    order.sort_by_key(|&i| classes[i]);
    for pair in order.windows(2) {
        if classes[pair[0]] == classes[pair[1]] {
            bail!("class {} is listed twice", classes[pair[0]]);
        }
    }
    if let Some(&c) = classes.iter().find(|&&c| c >= 254) {
        bail!("class index {c} is too large: labels store c + 1 in a u8 below 255");
    }
    Ok(order)
}
