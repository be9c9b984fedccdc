//! CAM → label by thresholds: the background as a constant score, and the two-threshold
//! reliable label with an ignore band.
//!
//! Background-as-constant (`cam_to_label` in AFA, arXiv 2203.02664, Sec. 3.3; ToCo,
//! arXiv 2303.02506, Sec. 3.2; WeakTr's and MCTformer's evaluation): a pixel is background
//! when no CAM exceeds the constant `t`, else the class of the largest CAM. Reliable labels
//! (AFA's and ToCo's `ignore_mid`): class where the largest CAM is above `high`, background
//! where it is at most `low`, [`IGNORE`] in between.

use candle_core::{bail, Device, Result, Tensor};
use serde::{Deserialize, Serialize};
use wsss_core::IGNORE;

use crate::util::{planes3, sorted_class_order};

/// Background-as-constant labelling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThresholdConfig {
    /// The constant background score `t`: a pixel whose best CAM is `<= t` is background.
    pub background_threshold: f32,
}

impl ThresholdConfig {
    /// AFA's `bkg_score` 0.45.
    pub fn afa() -> Self {
        Self {
            background_threshold: 0.45,
        }
    }

    /// ToCo's `bkg_thre` 0.5.
    pub fn toco() -> Self {
        Self {
            background_threshold: 0.5,
        }
    }
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        Self::toco()
    }
}

/// Two-threshold reliable labels with an ignore band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReliableConfig {
    /// At or below this best-CAM value a pixel is surely background.
    pub low: f32,
    /// Above this best-CAM value a pixel is surely foreground; `low < high`.
    pub high: f32,
}

impl ReliableConfig {
    /// AFA's pair (0.35, 0.55).
    pub fn afa() -> Self {
        Self {
            low: 0.35,
            high: 0.55,
        }
    }

    /// ToCo's pair (0.25, 0.7).
    pub fn toco() -> Self {
        Self {
            low: 0.25,
            high: 0.7,
        }
    }
}

impl Default for ReliableConfig {
    fn default() -> Self {
        Self::toco()
    }
}

/// Per pixel: the best CAM value (or `-inf` when `K = 0`) and the label `classes[k*] + 1`
/// of its map, ties going to the smallest class index.
fn best_maps(cams: &[f32], classes: &[usize], pixels: usize) -> Result<Vec<(f32, u8)>> {
    if cams.len() != classes.len() * pixels {
        bail!(
            "{} CAM values for {} classes of {pixels} pixels",
            cams.len(),
            classes.len()
        );
    }
    let order = sorted_class_order(classes)?;
    let mut best = vec![(f32::NEG_INFINITY, 0u8); pixels];
    for &k in &order {
        let id = (classes[k] + 1) as u8;
        for (b, &v) in best.iter_mut().zip(&cams[k * pixels..(k + 1) * pixels]) {
            if v > b.0 {
                *b = (v, id);
            }
        }
    }
    Ok(best)
}

/// [`cam_to_label`] on a plain buffer of `K` row-major planes of `pixels` values.
///
/// # Errors
/// When `cams.len() != classes.len() * pixels`, a class repeats or is `>= 254`.
pub fn cam_to_label_slice(
    cams: &[f32],
    classes: &[usize],
    pixels: usize,
    cfg: &ThresholdConfig,
) -> Result<Vec<u8>> {
    let t = cfg.background_threshold;
    Ok(best_maps(cams, classes, pixels)?
        .into_iter()
        .map(|(v, id)| if v > t { id } else { 0 })
        .collect())
}

/// Background-as-constant label: `argmax([t, cams...])` with ties to the earlier entry
/// (a CAM equal to `t` is background; equal CAMs go to the smaller class index).
///
/// # Shapes
/// - `cams`: `[K, H, W]` f32, normalised CAMs of the K present classes (usually in [0, 1]).
/// - `classes`: `K` distinct 0-based class indices (< 254), any order.
/// - returns `[H, W]` u8: 0 background, `c + 1` for class `c`.
///
/// Cost: O(K·H·W) time, O(H·W) memory.
pub fn cam_to_label(cams: &Tensor, classes: &[usize], cfg: &ThresholdConfig) -> Result<Tensor> {
    let (data, (k, h, w)) = planes3(cams, "cams")?;
    if k != classes.len() {
        bail!("cams has {k} maps but {} classes are given", classes.len());
    }
    let label = cam_to_label_slice(&data, classes, h * w, cfg)?;
    Tensor::from_vec(label, (h, w), &Device::Cpu)?.to_device(cams.device())
}

/// [`reliable_label`] on a plain buffer of `K` row-major planes of `pixels` values.
///
/// # Errors
/// Like [`cam_to_label_slice`], and when `low >= high` or a threshold is not finite.
pub fn reliable_label_slice(
    cams: &[f32],
    classes: &[usize],
    pixels: usize,
    cfg: &ReliableConfig,
) -> Result<Vec<u8>> {
    if !(cfg.low.is_finite() && cfg.high.is_finite() && cfg.low < cfg.high) {
        bail!(
            "reliable label thresholds need low < high, got low {} high {}",
            cfg.low,
            cfg.high
        );
    }
    Ok(best_maps(cams, classes, pixels)?
        .into_iter()
        .map(|(v, id)| {
            if v > cfg.high {
                id
            } else if v > cfg.low {
                IGNORE
            } else {
                0
            }
        })
        .collect())
}

/// Two-threshold reliable label: with `m` the best CAM, the class where `m > high`,
/// [`IGNORE`] where `low < m <= high`, background where `m <= low` (all background when
/// `K = 0`).
///
/// # Shapes
/// - `cams`: `[K, H, W]` f32; `classes`: `K` distinct class indices (< 254).
/// - returns `[H, W]` u8 with values 0, `c + 1`, 255.
///
/// Cost: O(K·H·W) time, O(H·W) memory.
pub fn reliable_label(cams: &Tensor, classes: &[usize], cfg: &ReliableConfig) -> Result<Tensor> {
    let (data, (k, h, w)) = planes3(cams, "cams")?;
    if k != classes.len() {
        bail!("cams has {k} maps but {} classes are given", classes.len());
    }
    let label = reliable_label_slice(&data, classes, h * w, cfg)?;
    Tensor::from_vec(label, (h, w), &Device::Cpu)?.to_device(cams.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ties_and_threshold_equality() -> Result<()> {
        // Equal maps go to the smaller class index even when listed second; t itself is bg.
        let cams = [0.6f32, 0.45, 0.6, 0.1];
        let label = cam_to_label_slice(&cams, &[9, 2], 2, &ThresholdConfig::afa())?;
        assert_eq!(label, vec![3, 0]);
        let label = cam_to_label_slice(&[0.45f32], &[0], 1, &ThresholdConfig::afa())?;
        assert_eq!(label, vec![0]);
        Ok(())
    }

    #[test]
    fn no_classes_is_background() -> Result<()> {
        let cams = Tensor::zeros((0, 2, 3), candle_core::DType::F32, &Device::Cpu)?;
        let label = reliable_label(&cams, &[], &ReliableConfig::afa())?;
        assert_eq!(label.dims(), &[2, 3]);
        assert!(label
            .flatten_all()?
            .to_vec1::<u8>()?
            .iter()
            .all(|&v| v == 0));
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(cam_to_label_slice(&[0.0; 3], &[1], 2, &ThresholdConfig::afa()).is_err());
        assert!(cam_to_label_slice(&[0.0; 2], &[1, 1], 1, &ThresholdConfig::afa()).is_err());
        assert!(cam_to_label_slice(&[0.0; 1], &[254], 1, &ThresholdConfig::afa()).is_err());
        let bad = ReliableConfig {
            low: 0.6,
            high: 0.4,
        };
        assert!(reliable_label_slice(&[0.0; 1], &[1], 1, &bad).is_err());
        let cams = Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(cam_to_label(&cams, &[0, 1], &ThresholdConfig::afa()).is_err());
    }

    proptest! {
        #[test]
        fn labels_use_only_present_classes(
            values in proptest::collection::vec(0f32..1.0, 3 * 20),
            low in 0f32..0.5,
        ) {
            let classes = [4usize, 0, 17];
            let allowed = [0u8, 5, 1, 18, IGNORE];
            let cfg = ReliableConfig { low, high: low + 0.3 };
            let reliable = reliable_label_slice(&values, &classes, 20, &cfg).unwrap();
            prop_assert!(reliable.iter().all(|v| allowed.contains(v)));
            let plain = cam_to_label_slice(&values, &classes, 20, &ThresholdConfig { background_threshold: low }).unwrap();
            prop_assert!(plain.iter().all(|v| allowed[..4].contains(v)));
            // Reliable foreground agrees with the plain label at the high threshold.
            let high = cam_to_label_slice(&values, &classes, 20, &ThresholdConfig { background_threshold: low + 0.3 }).unwrap();
            for (r, h) in reliable.iter().zip(&high) {
                if *h != 0 { prop_assert_eq!(r, h); }
            }
        }
    }
}
