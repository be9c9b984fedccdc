//! Samples to tensors: (B, 3, H, W) f32 ImageNet-normalised images, (B, H, W) u8 masks and
//! scribbles (255 where absent), (B, C − 1) f32 multi-hot image labels.

use candle_core::{Device, Tensor};

use crate::error::{DataError, Result};
use crate::image_io::RgbImage;
use crate::voc::Sample;

/// ImageNet mean (RGB, in [0, 1]).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A collated batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Sample names.
    pub names: Vec<String>,
    /// (B, 3, H, W) f32, `(x / 255 − mean) / std`.
    pub images: Tensor,
    /// (B, H, W) u8 masks, 255 where a sample has none.
    pub masks: Tensor,
    /// (B, H, W) u8 scribbles, 255 where a sample has none.
    pub scribbles: Tensor,
    /// (B, C − 1) f32 multi-hot foreground labels.
    pub labels: Tensor,
}

/// One image as normalised CHW f32 values.
///
/// # Shapes
/// Returns (3 · H · W,) in CHW order. O(N) time and memory.
pub fn normalise(img: &RgbImage) -> Vec<f32> {
    let n = (img.width() * img.height()) as usize;
    let mut out = vec![0f32; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = (p[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    out
}

/// Stacks samples of one size into a [`Batch`] on `device`.
///
/// # Shapes
/// images (B, 3, H, W) f32; masks, scribbles (B, H, W) u8; labels (B, C − 1) f32.
/// O(B · N) time and memory.
pub fn collate(samples: &[Sample], num_classes: usize, device: &Device) -> Result<Batch> {
    let first = samples
        .first()
        .ok_or_else(|| DataError::Invalid("cannot collate an empty batch".into()))?;
    let (w, h) = first.image.dimensions();
    let n = (w * h) as usize;
    let b = samples.len();
    let mut images = Vec::with_capacity(b * 3 * n);
    let mut masks = Vec::with_capacity(b * n);
    let mut scribbles = Vec::with_capacity(b * n);
    let mut labels = Vec::with_capacity(b * num_classes.saturating_sub(1));
    for s in samples {
        if s.image.dimensions() != (w, h) {
            return Err(DataError::Invalid(format!(
                "sample {} is {}x{}, batch is {w}x{h} (crop or resize first)",
                s.name,
                s.image.width(),
                s.image.height()
            )));
        }
        images.extend(normalise(&s.image));
        for (map, out) in [(&s.mask, &mut masks), (&s.scribble, &mut scribbles)] {
            match map {
                Some(m) if (m.width, m.height) == (w, h) => out.extend_from_slice(&m.data),
                Some(m) => {
                    return Err(DataError::Invalid(format!(
                        "sample {}: label map {}x{} differs from image {w}x{h}",
                        s.name, m.width, m.height
                    )))
                }
                None => out.extend(std::iter::repeat_n(255u8, n)),
            }
        }
        labels.extend(s.classes.multi_hot(num_classes));
    }
    let (h, w) = (h as usize, w as usize);
    Ok(Batch {
        names: samples.iter().map(|s| s.name.clone()).collect(),
        images: Tensor::from_vec(images, (b, 3, h, w), device)?,
        masks: Tensor::from_vec(masks, (b, h, w), device)?,
        scribbles: Tensor::from_vec(scribbles, (b, h, w), device)?,
        labels: Tensor::from_vec(labels, (b, num_classes.saturating_sub(1)), device)?,
    })
}
