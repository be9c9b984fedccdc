//! WeakTr's gradient-clipping decoder loss (Zhu et al., "WeakTr: Exploring Plain Vision
//! Transformer for Weakly-supervised Semantic Segmentation", arXiv 2304.01184, Sec. 3.3,
//! Eqs. 8–10; `OnlineRetraining/segm/model/decoder.py: GradientClipping`).
//!
//! Once the global mean loss `μ` has fallen to `start_value`, every pixel's loss is capped
//! by the mean loss of its tile (at least `μ`); pixels above their cap get zero gradient,
//! since pixels with a very large loss are likely wrong pseudo labels. The cap is a
//! constant (computed from a detached copy).

use candle_core::{bail, DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};

/// Gradient-clipping hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradientClippingConfig {
    /// Clipping is active only when the global mean loss is `<=` this.
    pub start_value: f32,
    /// Side of the square tiles of the cap grid (anchored at the top-left; partial tiles
    /// at the bottom/right are averaged over their own pixels).
    pub patch_size: usize,
}

impl GradientClippingConfig {
    /// WeakTr: start 1.2, tiles of 120 pixels (480 crops).
    pub fn weaktr() -> Self {
        Self {
            start_value: 1.2,
            patch_size: 120,
        }
    }
}

impl Default for GradientClippingConfig {
    fn default() -> Self {
        Self::weaktr()
    }
}

/// The result of [`gradient_clipping`].
#[derive(Debug, Clone)]
pub struct Clipped {
    /// `ℓ' = min(ℓ, m)` (`ℓ` itself when inactive); differentiable w.r.t. `ℓ`.
    pub loss_map: Tensor,
    /// The cap `m` of every pixel, `[B, H, W]`, when clipping is active.
    pub cap: Option<Tensor>,
    /// `[B, H, W]` u8: 1 where the pixel is clipped (zero gradient), else 0.
    pub clipped: Tensor,
}

impl Clipped {
    /// The training loss: the plain mean of the clipped map.
    pub fn mean(&self) -> Result<Tensor> {
        self.loss_map.mean_all()
    }
}

/// WeakTr gradient clipping of a per-pixel loss map.
///
/// 1. `μ` = mean of `ℓ` (all B·H·W elements, ignored pixels being 0), no gradient.
/// 2. Inactive when `μ > start_value`: `ℓ' = ℓ`.
/// 3. Active otherwise: `ℓ̄` = batch mean of `ℓ`; tiles `T_ij` of `p × p` pixels from the
///    top-left (partial at the borders); `m_ij = max(mean_{T_ij} ℓ̄, μ)`;
///    `ℓ' = min(ℓ, m)` with gradient 1 where `ℓ <= m` and 0 where `ℓ > m`.
///
/// Identical to the official `avg_pool2d` + `repeat_interleave` form whenever H and W are
/// multiples of p, and defined for every size (the official one is not).
///
/// # Shapes
/// - `loss_map`: `[B, H, W]` float, `ℓ >= 0` (CE with `reduction="none"`).
/// - returns [`Clipped`] with `[B, H, W]` tensors.
///
/// Cost: O(B·H·W) time and memory.
pub fn gradient_clipping(loss_map: &Tensor, cfg: &GradientClippingConfig) -> Result<Clipped> {
    let Ok((b, h, w)) = loss_map.dims3() else {
        bail!(
            "gradient clipping needs a [B, H, W] loss map, got {:?}",
            loss_map.dims()
        )
    };
    if cfg.patch_size == 0 {
        bail!("gradient clipping patch size must be positive");
    }
    let n = b * h * w;
    if n == 0 {
        bail!(
            "gradient clipping got an empty loss map {:?}",
            loss_map.dims()
        );
    }
    let values = loss_map
        .detach()
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let mu = values.iter().sum::<f64>() / n as f64;
    let device = loss_map.device();
    if mu > cfg.start_value as f64 {
        let clipped = Tensor::zeros((b, h, w), DType::U8, device)?;
        return Ok(Clipped {
            loss_map: loss_map.clone(),
            cap: None,
            clipped,
        });
    }
    let pixels = h * w;
    let mut batch_mean = vec![0f64; pixels];
    for image in values.chunks_exact(pixels) {
        for (m, v) in batch_mean.iter_mut().zip(image) {
            *m += v / b as f64;
        }
    }
    let p = cfg.patch_size;
    let (th, tw) = (h.div_ceil(p), w.div_ceil(p));
    let mut tile = vec![(0f64, 0usize); th * tw];
    for y in 0..h {
        for x in 0..w {
            let t = &mut tile[(y / p) * tw + x / p];
            t.0 += batch_mean[y * w + x];
            t.1 += 1;
        }
    }
    let tile_cap: Vec<f64> = tile.iter().map(|&(s, c)| (s / c as f64).max(mu)).collect();
    let mut cap = Vec::with_capacity(n);
    let mut mask = Vec::with_capacity(n);
    for (i, &v) in values.iter().enumerate() {
        let pix = i % pixels;
        let m = tile_cap[(pix / w / p) * tw + (pix % w) / p];
        cap.push(m);
        mask.push(u8::from(v > m));
    }
    let cap = Tensor::from_vec(cap, (b, h, w), &Device::Cpu)?
        .to_dtype(loss_map.dtype())?
        .to_device(device)?;
    let clipped = Tensor::from_vec(mask, (b, h, w), device)?;
    let loss = clipped.where_cond(&cap, loss_map)?;
    Ok(Clipped {
        loss_map: loss,
        cap: Some(cap),
        clipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finite_difference::{check, values};

    #[test]
    fn tiles_and_caps_by_hand() -> Result<()> {
        // 1x3x3 map, tiles of 2: tiles {0,1,3,4}, {2,5}, {6,7}, {8}.
        let l = [0.0f64, 0.4, 1.0, 0.2, 0.2, 0.0, 0.1, 0.1, 0.9];
        let t = Tensor::from_vec(l.to_vec(), (1, 3, 3), &Device::Cpu)?;
        let cfg = GradientClippingConfig {
            start_value: 1.0,
            patch_size: 2,
        };
        let out = gradient_clipping(&t, &cfg)?;
        let mu = l.iter().sum::<f64>() / 9.0; // 0.3222
        let cap = out.cap.unwrap().flatten_all()?.to_vec1::<f64>()?;
        let want = [mu, mu, 0.5, mu, mu, 0.5, mu, mu, 0.9];
        for (a, b) in cap.iter().zip(want) {
            assert!((a - b).abs() < 1e-12);
        }
        let mask = out.clipped.flatten_all()?.to_vec1::<u8>()?;
        assert_eq!(mask, vec![0, 1, 1, 0, 0, 0, 0, 0, 0]);
        // Inactive above the start value.
        let cfg = GradientClippingConfig {
            start_value: 0.3,
            ..cfg
        };
        let out = gradient_clipping(&t, &cfg)?;
        assert!(out.cap.is_none());
        assert_eq!(out.loss_map.flatten_all()?.to_vec1::<f64>()?, l.to_vec());
        Ok(())
    }

    #[test]
    fn gradient_matches_finite_differences() -> Result<()> {
        let x = values(2 * 5 * 7, 13, (0.0, 2.0));
        let cfg = GradientClippingConfig {
            start_value: 1.5,
            patch_size: 3,
        };
        // The cap depends on ℓ only through detached values: the FD of the full function
        // also moves the cap, so compare against the clipped map with the cap held fixed.
        let t = Tensor::from_vec(x.clone(), (2, 5, 7), &Device::Cpu)?;
        let fixed = gradient_clipping(&t, &cfg)?;
        let cap = fixed.cap.clone().unwrap();
        let mask = fixed.clipped.clone();
        let worst = check(&x, &[2, 5, 7], |l| mask.where_cond(&cap, l)?.mean_all())?;
        assert!(worst < 1e-7);
        // And autograd through the real function gives (1 − mask)/N.
        let var = candle_core::Var::from_tensor(&t)?;
        let grads = gradient_clipping(var.as_tensor(), &cfg)?
            .mean()?
            .backward()?;
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()?
            .to_vec1::<f64>()?;
        let m = mask.flatten_all()?.to_vec1::<u8>()?;
        assert!(m.contains(&1) && m.contains(&0));
        for (g, m) in g.iter().zip(m) {
            assert!((g - f64::from(1 - m) / 70.0).abs() < 1e-15);
        }
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error() {
        let t = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(gradient_clipping(&t, &GradientClippingConfig::weaktr()).is_err());
        let t = Tensor::zeros((1, 2, 3), DType::F32, &Device::Cpu).unwrap();
        let cfg = GradientClippingConfig {
            patch_size: 0,
            ..GradientClippingConfig::weaktr()
        };
        assert!(gradient_clipping(&t, &cfg).is_err());
    }
}
