//! Classic CAM, ToCo style (Ru et al., arXiv 2303.02506, `model_seg_neg.py`; CAM itself:
//! Zhou et al., arXiv 1512.04150, Eq. 1-2).
//!
//! A bias-free 1×1 convolution classifier `Wc` [C, D] is applied densely to the final
//! (normed) patch tokens: `cam_c = ReLU(Wc[c] · F)`. The classification logits come from
//! global **max** pooling of each feature channel first, then the classifier:
//! `logits_c = Wc[c] · max_{i,j} F[:, i, j]` (not the maximum of the CAM).
//!
//! ToCo applies the ReLU after bilinear upsampling; [`ClassicCam::generate`] therefore
//! returns the raw `Wc · F` maps at token resolution and [`crate::MultiScale`] applies the
//! ReLU after resizing, in ToCo's order.

use std::collections::HashMap;

use candle_core::{bail, DType, Device, Result, Tensor, D};
use wsss_vit::{Config, Strictness, Taps, Vit};

use crate::{check_request, class_index, tokens_to_map, Cam, CamGenerator};

/// What [`classic_cam`] computes.
#[derive(Debug, Clone)]
pub struct ClassicOutput {
    /// `Wc · F` before the ReLU, [B, C, gh, gw].
    pub raw: Tensor,
    /// `ReLU(Wc · F)`, [B, C, gh, gw].
    pub cam: Tensor,
    /// `Wc · GMP(F)`, [B, C].
    pub logits: Tensor,
}

/// CAM and GMP logits from a feature map.
///
/// # Shapes
/// - `features`: [B, D, gh, gw] (the patch tokens as a map).
/// - `weight`: [C, D] or [C, D, 1, 1] (`classifier.weight`).
/// - returns [`ClassicOutput`].
///
/// Cost: O(B·C·D·gh·gw) time, O(B·C·gh·gw) memory.
pub fn classic_cam(features: &Tensor, weight: &Tensor) -> Result<ClassicOutput> {
    let (b, d, gh, gw) = features.dims4()?;
    let weight = match weight.rank() {
        2 => weight.clone(),
        4 => weight.flatten_from(1)?,
        _ => bail!(
            "classifier weight must be [C, D] or [C, D, 1, 1], got {:?}",
            weight.dims()
        ),
    };
    let (c, wd) = weight.dims2()?;
    if wd != d {
        bail!("classifier weight has {wd} input channels, the features have {d}");
    }
    let flat = features.reshape((b, d, gh * gw))?;
    let raw = weight.broadcast_matmul(&flat)?.reshape((b, c, gh, gw))?;
    let pooled = flat.max(D::Minus1)?; // [B, D]
    let logits = pooled.matmul(&weight.t()?)?;
    Ok(ClassicOutput {
        cam: raw.relu()?,
        raw,
        logits,
    })
}

/// A ViT plus ToCo's bias-free 1×1 classifier.
#[derive(Debug, Clone)]
pub struct ClassicCam {
    vit: Vit,
    classifier: Tensor,
}

impl ClassicCam {
    /// `classifier` is `classifier.weight`, [C, D] or [C, D, 1, 1].
    pub fn new(vit: Vit, classifier: Tensor) -> Result<Self> {
        let classifier = match classifier.rank() {
            2 => classifier,
            4 => classifier.flatten_from(1)?,
            _ => bail!(
                "classifier weight must be [C, D] or [C, D, 1, 1], got {:?}",
                classifier.dims()
            ),
        };
        if classifier.dim(1)? != vit.config().embed_dim {
            bail!(
                "classifier weight has {} input channels, the ViT has D = {}",
                classifier.dim(1)?,
                vit.config().embed_dim
            );
        }
        Ok(Self { vit, classifier })
    }

    /// Builds the ViT (timm keys) and takes `classifier.weight` from the same state dict.
    pub fn from_state_dict(
        cfg: &Config,
        mut tensors: HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let Some(weight) = tensors.remove("classifier.weight") else {
            bail!("state dict has no `classifier.weight`");
        };
        let vit = Vit::from_state_dict(cfg, tensors, Strictness::AllowUnexpected, dtype, device)
            .map_err(candle_core::Error::wrap)?;
        Self::new(vit, weight.to_device(device)?.to_dtype(dtype)?)
    }

    /// The backbone.
    pub fn vit(&self) -> &Vit {
        &self.vit
    }

    /// The full computation for a batch.
    ///
    /// # Shapes
    /// - `images`: [B, 3, H, W]; returns [`ClassicOutput`] at the token grid.
    ///
    /// Cost: one ViT forward plus O(B·C·D·gh·gw).
    pub fn forward(&self, images: &Tensor) -> Result<ClassicOutput> {
        let out = self.vit.forward_tapped(images, Taps::default())?;
        let t = self.vit.config().class_tokens;
        let features = tokens_to_map(&out.patch_tokens(t)?, out.grid)?;
        classic_cam(&features, &self.classifier)
    }
}

impl CamGenerator for ClassicCam {
    /// Raw `Wc · F` maps [K, gh, gw] (ReLU after upsampling, as ToCo does).
    fn generate(&self, image: &Tensor, classes: &[usize]) -> Result<Cam> {
        check_request(image, classes, self.num_classes())?;
        let out = self.forward(image)?;
        let index = class_index(classes, image.device())?;
        let scores = out.raw.squeeze(0)?.index_select(&index, 0)?;
        Ok(Cam {
            scores,
            classes: classes.to_vec(),
        })
    }

    fn num_classes(&self) -> usize {
        self.classifier.dim(0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_pool_channels_before_classifying() -> Result<()> {
        // Two channels whose maxima sit at different pixels: GMP-then-classify differs
        // from max of the CAM.
        let dev = Device::Cpu;
        let features = Tensor::new(&[[[[1f32, 0.]], [[0., 2.]]]], &dev)?; // [1, 2, 1, 2]
        let weight = Tensor::new(&[[1f32, 1.], [1., -1.]], &dev)?;
        let out = classic_cam(&features, &weight)?;
        assert_eq!(out.logits.to_vec2::<f32>()?, vec![vec![3., -1.]]);
        let cam = out.cam.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(cam, vec![1., 2., 1., 0.]);
        Ok(())
    }

    #[test]
    fn bad_classifier_shape_errors() {
        let dev = Device::Cpu;
        let features = Tensor::zeros((1, 2, 1, 2), DType::F32, &dev).unwrap();
        let weight = Tensor::zeros((3, 5), DType::F32, &dev).unwrap();
        assert!(classic_cam(&features, &weight).is_err());
    }
}
