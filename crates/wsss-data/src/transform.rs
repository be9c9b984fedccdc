//! Training augmentations with an explicit RNG: random rescale, crop with padding (255 in
//! label maps), horizontal flip, colour jitter. Image and label maps move together.

use image::imageops::FilterType;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::image_io::RgbImage;
use crate::palette::LabelMap;
use crate::voc::Sample;

/// ImageNet mean as u8 RGB: the padding colour of images (0 after normalisation).
pub const PAD_COLOUR: [u8; 3] = [124, 116, 104];

/// Colour jitter strengths: each factor is drawn uniformly from `[1 − s, 1 + s]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ColourJitter {
    /// Brightness strength.
    pub brightness: f32,
    /// Contrast strength.
    pub contrast: f32,
    /// Saturation strength.
    pub saturation: f32,
}

/// The augmentation pipeline (ToCo/AFA style: rescale, flip, jitter, crop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Random scale factor range `[low, high]`.
    pub scale_range: (f32, f32),
    /// Square crop size in pixels.
    pub crop_size: u32,
    /// Random horizontal flip with probability 1/2.
    pub flip: bool,
    /// Colour jitter, if any.
    pub jitter: Option<ColourJitter>,
}

impl AugmentConfig {
    /// ToCo's VOC settings: scales [0.5, 2.0], crop 448, flip, jitter 0.3.
    pub fn toco(crop_size: u32) -> Self {
        Self {
            scale_range: (0.5, 2.0),
            crop_size,
            flip: true,
            jitter: Some(ColourJitter {
                brightness: 0.3,
                contrast: 0.3,
                saturation: 0.3,
            }),
        }
    }
}

/// Label map resized with nearest neighbour (PyTorch `nearest`: `src = floor(dst · in / out)`).
pub fn resize_labels(map: &LabelMap, width: u32, height: u32) -> LabelMap {
    let mut out = LabelMap::filled(width, height, 255);
    for y in 0..height {
        let sy = ((y as u64 * map.height as u64) / height as u64) as u32;
        for x in 0..width {
            let sx = ((x as u64 * map.width as u64) / width as u64) as u32;
            out.set(x, y, map.get(sx, sy));
        }
    }
    out
}

/// Rescales image (bilinear) and label maps (nearest) by `scale`. Cost O(N).
pub fn rescale(sample: &Sample, scale: f32) -> Sample {
    let w = ((sample.image.width() as f32 * scale).round() as u32).max(1);
    let h = ((sample.image.height() as f32 * scale).round() as u32).max(1);
    Sample {
        name: sample.name.clone(),
        image: image::imageops::resize(&sample.image, w, h, FilterType::Triangle),
        classes: sample.classes.clone(),
        mask: sample.mask.as_ref().map(|m| resize_labels(m, w, h)),
        scribble: sample.scribble.as_ref().map(|m| resize_labels(m, w, h)),
    }
}

/// Mirrors left-right.
pub fn hflip(sample: &Sample) -> Sample {
    let flip_map = |m: &LabelMap| {
        let mut out = m.clone();
        for row in out.data.chunks_mut(m.width as usize) {
            row.reverse();
        }
        out
    };
    Sample {
        name: sample.name.clone(),
        image: image::imageops::flip_horizontal(&sample.image),
        classes: sample.classes.clone(),
        mask: sample.mask.as_ref().map(flip_map),
        scribble: sample.scribble.as_ref().map(flip_map),
    }
}

/// A `size`×`size` crop at a random position. A side shorter than `size` is padded first
/// (the image at a random offset in the canvas; image padding [`PAD_COLOUR`], label
/// padding 255).
pub fn random_crop<R: Rng>(sample: &Sample, size: u32, rng: &mut R) -> Sample {
    let (w, h) = sample.image.dimensions();
    let (cw, ch) = (w.max(size), h.max(size));
    let (ox, oy) = (rng.random_range(0..=cw - w), rng.random_range(0..=ch - h));
    let (x0, y0) = (
        rng.random_range(0..=cw - size),
        rng.random_range(0..=ch - size),
    );
    // Canvas coordinate (x0 + x, y0 + y) comes from source (x0 + x − ox, y0 + y − oy).
    let source = |x: u32, y: u32| -> Option<(u32, u32)> {
        let sx = (x0 + x).checked_sub(ox)?;
        let sy = (y0 + y).checked_sub(oy)?;
        (sx < w && sy < h).then_some((sx, sy))
    };
    let mut image = RgbImage::from_pixel(size, size, image::Rgb(PAD_COLOUR));
    for y in 0..size {
        for x in 0..size {
            if let Some((sx, sy)) = source(x, y) {
                image.put_pixel(x, y, *sample.image.get_pixel(sx, sy));
            }
        }
    }
    let crop_map = |m: &LabelMap| {
        let mut out = LabelMap::filled(size, size, 255);
        for y in 0..size {
            for x in 0..size {
                if let Some((sx, sy)) = source(x, y) {
                    out.set(x, y, m.get(sx, sy));
                }
            }
        }
        out
    };
    Sample {
        name: sample.name.clone(),
        image,
        classes: sample.classes.clone(),
        mask: sample.mask.as_ref().map(crop_map),
        scribble: sample.scribble.as_ref().map(crop_map),
    }
}

/// Brightness, contrast (around the mean grey), then saturation (around each pixel's grey),
/// each factor uniform in `[1 − s, 1 + s]`; clamped to [0, 255].
pub fn colour_jitter<R: Rng>(img: &RgbImage, jitter: &ColourJitter, rng: &mut R) -> RgbImage {
    let mut factor = |s: f32| {
        if s > 0.0 {
            rng.random_range(1.0 - s..=1.0 + s)
        } else {
            1.0
        }
    };
    let (b, c, s) = (
        factor(jitter.brightness),
        factor(jitter.contrast),
        factor(jitter.saturation),
    );
    let grey = |p: [f32; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let n = (img.width() * img.height()).max(1) as f32;
    let mean = img
        .pixels()
        .map(|p| grey([p[0] as f32, p[1] as f32, p[2] as f32]) * b)
        .sum::<f32>()
        / n;
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let mut v = [p[0] as f32 * b, p[1] as f32 * b, p[2] as f32 * b];
        for x in &mut v {
            *x = (*x - mean) * c + mean;
        }
        let g = grey(v);
        for (dst, x) in p.0.iter_mut().zip(v) {
            *dst = ((x - g) * s + g).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// The whole pipeline: rescale by a random factor, flip, jitter, crop.
pub fn augment<R: Rng>(sample: &Sample, cfg: &AugmentConfig, rng: &mut R) -> Sample {
    let (lo, hi) = cfg.scale_range;
    let scale = if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    };
    let mut s = rescale(sample, scale);
    if cfg.flip && rng.random_bool(0.5) {
        s = hflip(&s);
    }
    if let Some(j) = &cfg.jitter {
        s.image = colour_jitter(&s.image, j, rng);
    }
    random_crop(&s, cfg.crop_size, rng)
}
