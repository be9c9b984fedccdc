//! Multi-scale, flip-augmented CAM inference as a decorator over any [`CamGenerator`].
//!
//! For each scale s the image is resized (bilinear, align_corners = false) to
//! `floor(s·H) × floor(s·W)`, the inner generator runs on it (and on its horizontal flip,
//! flipped back), each map is resized to H × W (bilinear, align_corners = false) and passed
//! through a ReLU (ToCo's order: upsample, then ReLU), the two flips are merged (sum or
//! max), the scales are summed, and each class map is min–max normalised:
//! `(x − min) / (max(x − min) + eps)`. Classes not asked for are absent from the [`Cam`];
//! [`Cam::to_dense`] fills them with zeros.
//!
//! Presets: [`MultiScaleConfig::weaktr`] (scales 1.0, 1.2 with flip, summed; Zhu et al.,
//! arXiv 2304.01184) and [`MultiScaleConfig::toco`] (1.0, 0.5, 1.5 with flip, the flips
//! merged by max as ToCo's `multi_scale_cam` does; Ru et al., arXiv 2303.02506).

use candle_core::{bail, Result, Tensor};
use serde::{Deserialize, Serialize};
use wsss_core::resize::{resize, AlignCorners, ResizeMode};

use crate::{check_request, min_max_normalise, Cam, CamGenerator};

/// How the map of an image and that of its flip are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FlipMerge {
    /// Sum (WeakTr, AReAM).
    #[default]
    Sum,
    /// Element-wise maximum (ToCo).
    Max,
}

/// Scales and flips of [`MultiScale`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiScaleConfig {
    /// Image scale factors (each > 0).
    pub scales: Vec<f64>,
    /// Also run the horizontally flipped image.
    pub flip: bool,
    /// How the flipped view is merged.
    #[serde(default)]
    pub flip_merge: FlipMerge,
    /// Added to the maximum in the min–max normalisation.
    pub eps: f64,
}

impl MultiScaleConfig {
    /// WeakTr: scales 1.0 and 1.2, with flip, summed.
    pub fn weaktr() -> Self {
        Self {
            scales: vec![1.0, 1.2],
            flip: true,
            flip_merge: FlipMerge::Sum,
            eps: 1e-5,
        }
    }

    /// ToCo: scales 1.0, 0.5, 1.5, with flip merged by max.
    pub fn toco() -> Self {
        Self {
            scales: vec![1.0, 0.5, 1.5],
            flip: true,
            flip_merge: FlipMerge::Max,
            eps: 1e-5,
        }
    }

    /// One scale, no flip: only resizing and normalisation.
    pub fn single() -> Self {
        Self {
            scales: vec![1.0],
            flip: false,
            flip_merge: FlipMerge::Sum,
            eps: 1e-5,
        }
    }
}

/// A [`CamGenerator`] run at several scales and flips (see the module docs).
#[derive(Debug, Clone)]
pub struct MultiScale<G> {
    inner: G,
    config: MultiScaleConfig,
}

/// Reverses the last axis of `xs`.
pub fn flip_horizontal(xs: &Tensor) -> Result<Tensor> {
    let w = xs.dim(candle_core::D::Minus1)?;
    let index: Vec<u32> = (0..w as u32).rev().collect();
    let index = Tensor::from_vec(index, w, xs.device())?;
    xs.index_select(&index, xs.rank() - 1)
}

impl<G: CamGenerator> MultiScale<G> {
    /// Wraps `inner`; errors on an empty or non-positive scale list.
    pub fn new(inner: G, config: MultiScaleConfig) -> Result<Self> {
        if config.scales.is_empty() || config.scales.iter().any(|s| s.is_nan() || *s <= 0.0) {
            bail!(
                "multi-scale needs at least one positive scale, got {:?}",
                config.scales
            );
        }
        Ok(Self { inner, config })
    }

    /// The wrapped generator.
    pub fn inner(&self) -> &G {
        &self.inner
    }

    fn view(
        &self,
        image: &Tensor,
        classes: &[usize],
        size: (usize, usize),
        flip: bool,
    ) -> Result<Tensor> {
        let image = if flip {
            flip_horizontal(image)?
        } else {
            image.clone()
        };
        let maps = self.inner.generate(&image, classes)?.scores;
        let maps = resize(&maps, size, ResizeMode::Bilinear, AlignCorners::No)?.relu()?;
        if flip {
            flip_horizontal(&maps)
        } else {
            Ok(maps)
        }
    }
}

impl<G: CamGenerator> CamGenerator for MultiScale<G> {
    /// Normalised maps [K, H, W] in [0, 1).
    ///
    /// Cost: one inner generation per scale and flip, plus O(K·H·W) per view.
    fn generate(&self, image: &Tensor, classes: &[usize]) -> Result<Cam> {
        check_request(image, classes, self.num_classes())?;
        let (_, _, h, w) = image.dims4()?;
        let mut total: Option<Tensor> = None;
        for &s in &self.config.scales {
            let size = (
                (h as f64 * s).floor() as usize,
                (w as f64 * s).floor() as usize,
            );
            if size.0 == 0 || size.1 == 0 {
                bail!("scale {s} shrinks the {h}x{w} image to nothing");
            }
            let scaled = resize(image, size, ResizeMode::Bilinear, AlignCorners::No)?;
            let mut maps = self.view(&scaled, classes, (h, w), false)?;
            if self.config.flip {
                let flipped = self.view(&scaled, classes, (h, w), true)?;
                maps = match self.config.flip_merge {
                    FlipMerge::Sum => (maps + flipped)?,
                    FlipMerge::Max => maps.maximum(&flipped)?,
                };
            }
            total = Some(match total {
                None => maps,
                Some(t) => (t + maps)?,
            });
        }
        Ok(Cam {
            scores: min_max_normalise(&total.unwrap(), self.config.eps)?,
            classes: classes.to_vec(),
        })
    }

    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A generator whose map for class c is the image's first channel plus c, at half
    /// resolution: easy to predict.
    struct Probe;
    impl CamGenerator for Probe {
        fn generate(&self, image: &Tensor, classes: &[usize]) -> Result<Cam> {
            let (_, _, h, w) = image.dims4()?;
            let base = image.get(0)?.get(0)?;
            let maps: Vec<Tensor> = classes
                .iter()
                .map(|&c| base.affine(1.0, c as f64))
                .collect::<Result<_>>()?;
            let maps = Tensor::stack(&maps, 0)?;
            let scores = resize(
                &maps,
                (h / 2, w / 2),
                ResizeMode::Bilinear,
                AlignCorners::No,
            )?;
            Ok(Cam {
                scores,
                classes: classes.to_vec(),
            })
        }
        fn num_classes(&self) -> usize {
            3
        }
    }

    #[test]
    fn maps_are_image_sized_and_normalised() -> Result<()> {
        let image = Tensor::rand(0f32, 1.0, (1, 3, 12, 16), &Device::Cpu)?;
        for cfg in [MultiScaleConfig::weaktr(), MultiScaleConfig::toco()] {
            let cam = MultiScale::new(Probe, cfg)?.generate(&image, &[2, 0])?;
            assert_eq!(cam.scores.dims(), &[2, 12, 16]);
            let max = cam.scores.max_all()?.to_scalar::<f32>()?;
            let min = cam.scores.min_all()?.to_scalar::<f32>()?;
            assert!(min.abs() < 1e-6 && (max - 1.0).abs() < 1e-3, "{min} {max}");
            assert_eq!(
                cam.to_dense(3)?
                    .get(1)?
                    .abs()?
                    .sum_all()?
                    .to_scalar::<f32>()?,
                0.0
            );
        }
        Ok(())
    }

    #[test]
    fn flip_of_a_symmetric_generator_doubles_the_sum() -> Result<()> {
        // A left-right symmetric image: flip-sum is twice the single view, so both
        // normalise to the same map.
        let row = Tensor::new(&[0f32, 1., 2., 2., 1., 0.], &Device::Cpu)?;
        let image = row.broadcast_as((1, 3, 4, 6))?.contiguous()?;
        let one = MultiScale::new(Probe, MultiScaleConfig::single())?.generate(&image, &[0])?;
        let cfg = MultiScaleConfig {
            flip: true,
            ..MultiScaleConfig::single()
        };
        let both = MultiScale::new(Probe, cfg)?.generate(&image, &[0])?;
        let diff = (one.scores - both.scores)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-4);
        Ok(())
    }

    #[test]
    fn bad_scales_error() {
        let cfg = MultiScaleConfig {
            scales: vec![],
            ..MultiScaleConfig::single()
        };
        assert!(MultiScale::new(Probe, cfg).is_err());
        let cfg = MultiScaleConfig {
            scales: vec![-1.0],
            ..MultiScaleConfig::single()
        };
        assert!(MultiScale::new(Probe, cfg).is_err());
    }
}
