//! Seeded initialisation with timm's scheme, for training from scratch and for tests.

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor};
use wsss_core::random::{normal, rng, truncated_normal, uniform};

use crate::{expected_keys, Config};

/// A full state dict (timm key names, f32, CPU) initialised as timm's
/// `VisionTransformer(weight_init='')` does: Linear weights and `pos_embed` truncated normal
/// with std 0.02, biases zero, LayerNorms one/zero, `cls_token` normal with std 1e-6, and the
/// patch convolution with PyTorch's default `U(±1/sqrt(fan_in))`. Deterministic in `seed`.
///
/// ```
/// use wsss_vit::{init_weights, Config};
/// let a = init_weights(&Config::tiny_test(), 1)?;
/// let b = init_weights(&Config::tiny_test(), 1)?;
/// let same = (&a["pos_embed"] - &b["pos_embed"])?.abs()?.sum_all()?.to_scalar::<f32>()?;
/// assert_eq!(same, 0.0);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn init_weights(cfg: &Config, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = rng(seed);
    let device = Device::Cpu;
    let fan_in = (3 * cfg.patch_size * cfg.patch_size) as f32;
    expected_keys(cfg)
        .into_iter()
        .map(|(key, shape)| {
            let tensor = if key == "cls_token" {
                normal(shape, 0.0, 1e-6, &mut rng, &device)?
            } else if key == "pos_embed" {
                truncated_normal(shape, 0.02, &mut rng, &device)?
            } else if key.starts_with("patch_embed.proj.") {
                let bound = fan_in.sqrt().recip();
                uniform(shape, -bound, bound, &mut rng, &device)?
            } else if key.contains("norm") && key.ends_with("weight") {
                Tensor::ones(shape, candle_core::DType::F32, &device)?
            } else if key.ends_with("bias") {
                Tensor::zeros(shape, candle_core::DType::F32, &device)?
            } else {
                truncated_normal(shape, 0.02, &mut rng, &device)?
            };
            Ok((key, tensor))
        })
        .collect()
}
