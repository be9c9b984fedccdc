//! One enum over the decoders, selected from TOML by `kind`, so that a training program
//! builds "the decoder of the config" without knowing which.

use std::collections::HashMap;

use candle_core::{bail, Result, Tensor};
use candle_nn::VarBuilder;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use wsss_vit::{Taps, VitOutput};

use crate::linear::{LinearDecoder, LinearDecoderConfig, MlpFusionConfig, MlpFusionDecoder};
use crate::mask_transformer::{MaskTransformer, MaskTransformerConfig};
use crate::params::{init_params, Param};
use crate::HeadDims;

/// Which decoder, with its settings (`kind = "mask_transformer" | "linear" | "mlp_fusion"`).
///
/// ```
/// use wsss_seg::DecoderConfig;
/// let cfg: DecoderConfig = toml::from_str("kind = \"mask_transformer\"\nlayers = 2").unwrap();
/// assert!(matches!(cfg, DecoderConfig::MaskTransformer(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DecoderConfig {
    /// Segmenter's mask transformer (WeakTr stage 2).
    MaskTransformer(MaskTransformerConfig),
    /// One Linear per patch.
    Linear(LinearDecoderConfig),
    /// Multi-level all-MLP head.
    MlpFusion(MlpFusionConfig),
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self::MaskTransformer(MaskTransformerConfig::weaktr())
    }
}

impl DecoderConfig {
    /// Parameters (keys without a prefix) for an encoder of `depth` blocks.
    pub fn params(&self, dims: HeadDims, depth: usize) -> Vec<Param> {
        match self {
            Self::MaskTransformer(c) => c.params(dims),
            Self::Linear(c) => c.params(dims),
            Self::MlpFusion(c) => c.params(dims, depth),
        }
    }

    /// Seeded initial weights, keys prefixed by `prefix` (e.g. `"decoder."`).
    ///
    /// Cost: O(parameters).
    pub fn init_weights(
        &self,
        dims: HeadDims,
        depth: usize,
        prefix: &str,
        seed: u64,
    ) -> Result<HashMap<String, Tensor>> {
        init_params(&self.params(dims, depth), prefix, seed)
    }

    /// The ViT taps the decoder reads (block tokens for `mlp_fusion`).
    pub fn taps(&self) -> Taps {
        match self {
            Self::MlpFusion(_) => Taps {
                block_tokens: true,
                ..Taps::default()
            },
            _ => Taps::default(),
        }
    }
}

/// A built decoder.
#[derive(Debug, Clone)]
pub enum Decoder {
    /// See [`MaskTransformer`].
    MaskTransformer(MaskTransformer),
    /// See [`LinearDecoder`].
    Linear(LinearDecoder),
    /// See [`MlpFusionDecoder`].
    MlpFusion(MlpFusionDecoder),
}

impl Decoder {
    /// Builds the decoder of `cfg` for an encoder of `depth` blocks from `vb`.
    pub fn new(
        cfg: &DecoderConfig,
        dims: HeadDims,
        depth: usize,
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        Ok(match cfg {
            DecoderConfig::MaskTransformer(c) => {
                Self::MaskTransformer(MaskTransformer::new(c, dims, vb)?)
            }
            DecoderConfig::Linear(c) => Self::Linear(LinearDecoder::new(c, dims, vb)?),
            DecoderConfig::MlpFusion(c) => {
                Self::MlpFusion(MlpFusionDecoder::new(c, dims, depth, vb)?)
            }
        })
    }

    /// Logits on the token grid from a ViT forward (run with [`DecoderConfig::taps`]);
    /// `class_tokens` prefix tokens are dropped. Dropout only when `rng` is given.
    ///
    /// # Shapes
    /// - returns [B, K, gh, gw] with (gh, gw) = `out.grid`.
    ///
    /// Cost: that of the decoder (see each type).
    pub fn forward(
        &self,
        out: &VitOutput,
        class_tokens: usize,
        rng: Option<&mut dyn RngCore>,
    ) -> Result<Tensor> {
        let grid = out.grid;
        match self {
            Self::MaskTransformer(d) => d.forward(&out.patch_tokens(class_tokens)?, grid, rng),
            Self::Linear(d) => d.forward(&out.patch_tokens(class_tokens)?, grid),
            Self::MlpFusion(d) => {
                if out.block_tokens.is_empty() {
                    bail!("mlp fusion decoder: run the ViT with Taps {{ block_tokens: true }}");
                }
                d.forward(&out.block_tokens, class_tokens, grid, rng)
            }
        }
    }
}
