//! Segmentation heads over ViT tokens, with official key names and seeded initialisation:
//!
//! - [`MaskTransformer`]: Segmenter's mask-transformer decoder (Strudel et al., arXiv
//!   2105.05633, Sec. 3.2) as WeakTr's stage 2 uses it (Zhu et al., arXiv 2304.01184,
//!   Sec. 3.3): 2 blocks over patch tokens and K learned class embeddings, L2-normalised
//!   patch and class embeddings, masks = patches · classesᵀ, LayerNorm over classes.
//! - [`LinearDecoder`] (Segmenter's linear baseline) and [`MlpFusionDecoder`] (a
//!   SegFormer-style multi-level MLP head, arXiv 2105.15203): the light decoders for GETAM
//!   end-to-end training (arXiv 2112.02841) and DFR scribble training.
//! - [`FeatureHead`]: DFR's feature consistency head (Zhang et al., arXiv 2108.01296),
//!   producing the deep features F of the dynamic kernel.
//! - [`DecoderConfig`]/[`Decoder`]: the decoders behind one serde enum; [`upsample`] to
//!   the image size as Segmenter does.
//!
//! Heads take the backbone's tokens ([`wsss_vit::VitOutput`]); they are built from a
//! `VarBuilder` (keys of each config's `params`), and [`init_params`] + [`trainable`] give
//! seeded `Var`s for training from scratch.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use wsss_seg::{trainable, upsample, Decoder, DecoderConfig, HeadDims};
//! use wsss_vit::{init_weights, Config, Strictness, Vit};
//!
//! let vit_cfg = Config::tiny_test(); // p 8, D 32, 2 blocks
//! let vit = Vit::from_state_dict(&vit_cfg, init_weights(&vit_cfg, 0)?, Strictness::Strict,
//!     DType::F32, &Device::Cpu)?;
//! let dims = HeadDims { encoder_dim: 32, num_classes: 5 };
//! let cfg = DecoderConfig::default(); // WeakTr's mask transformer
//! let weights = cfg.init_weights(dims, vit_cfg.depth, "", 1)?;
//! let (_vars, vb) = trainable(&weights, DType::F32, &Device::Cpu)?;
//! let decoder = Decoder::new(&cfg, dims, vit_cfg.depth, vb)?;
//! let images = Tensor::randn(0f32, 1.0, (2, 3, 32, 40), &Device::Cpu)?;
//! let out = vit.forward_tapped(&images, cfg.taps())?;
//! let masks = decoder.forward(&out, vit_cfg.class_tokens, None)?;
//! assert_eq!(masks.dims(), &[2, 5, 4, 5]);
//! assert_eq!(upsample(&masks, 8, (32, 40))?.dims(), &[2, 5, 32, 40]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod block;
pub mod decoder;
pub mod feature_head;
pub mod linear;
pub mod mask_transformer;
pub mod params;

use candle_core::{bail, Result, Tensor};
use wsss_core::resize::{resize, AlignCorners, ResizeMode};

pub use block::dropout;
pub use decoder::{Decoder, DecoderConfig};
pub use feature_head::{FeatureHead, FeatureHeadConfig};
pub use linear::{LinearDecoder, LinearDecoderConfig, MlpFusionConfig, MlpFusionDecoder};
pub use mask_transformer::{MaskTransformer, MaskTransformerConfig};
pub use params::{init_params, trainable, Init, Param};

/// What a head needs to know about its encoder and task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadDims {
    /// Width D of the encoder's tokens.
    pub encoder_dim: usize,
    /// Classes K, background included.
    pub num_classes: usize,
}

/// Token-grid logits to image logits as Segmenter does: bilinear (`align_corners = False`)
/// to the padded size (gh·p, gw·p), then cropped to (H, W); when the image is larger than
/// the padded grid (a backbone that floors odd sides), resized straight to (H, W).
/// Differentiable.
///
/// # Shapes
/// - `masks`: [B, K, gh, gw]; returns [B, K, H, W].
///
/// Cost: O(B·K·H·W·(gh + gw)) (two interpolation matrix products).
pub fn upsample(masks: &Tensor, patch_size: usize, (h, w): (usize, usize)) -> Result<Tensor> {
    let (_, _, gh, gw) = masks.dims4()?;
    if patch_size == 0 || h == 0 || w == 0 {
        bail!("upsample: patch size {patch_size} and size {h}x{w} must be positive");
    }
    let (ph, pw) = (gh * patch_size, gw * patch_size);
    if ph >= h && pw >= w {
        let up = resize(masks, (ph, pw), ResizeMode::Bilinear, AlignCorners::No)?;
        up.narrow(2, 0, h)?.narrow(3, 0, w)
    } else {
        resize(masks, (h, w), ResizeMode::Bilinear, AlignCorners::No)
    }
}
