//! The segmentation network shared by `weaktr_stage2` and `dfr`: a ViT encoder (keys
//! `encoder.*`, timm names), a decoder from `wsss_seg` (keys `decoder.*`) and, for DFR, a
//! feature head (`feature_head.*`): the key layout of WeakTr's/Segmenter's checkpoints.
//! Also the segmentation evaluation (arg-max mIoU on the ground-truth masks).

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rand::RngCore;
use wsss_metrics::ConfusionMatrix;
use wsss_seg::{upsample, Decoder, DecoderConfig, FeatureHead, FeatureHeadConfig, HeadDims};
use wsss_vit::{Taps, Vit, VitOutput};

use super::initial_vit_weights;
use crate::train::config::TrainConfig;
use crate::train::data::EvalData;
use crate::train::params::Params;
use crate::train::runner::Metrics;

/// Key prefixes.
pub const ENCODER: &str = "encoder.";
/// Decoder keys.
pub const DECODER: &str = "decoder.";
/// Feature-head keys.
pub const FEATURE_HEAD: &str = "feature_head.";

/// Encoder + decoder (+ feature head), built over the `Var`s of a [`Params`].
pub struct SegNet {
    /// The backbone config (no classifier head, one class token, final norm).
    pub vit_cfg: wsss_vit::Config,
    /// The backbone.
    pub vit: Vit,
    /// The decoder config.
    pub decoder_cfg: DecoderConfig,
    /// The decoder.
    pub decoder: Decoder,
    /// DFR's feature head, when asked for.
    pub feature_head: Option<FeatureHead>,
}

/// One forward: image-size logits and the backbone's output.
pub struct SegForward {
    /// [B, K, H, W] logits.
    pub logits: Tensor,
    /// The ViT output (tokens, grid, taps).
    pub vit: VitOutput,
}

impl SegNet {
    /// Initial weights of every part (seeded; ImageNet encoder from `[model] init`).
    pub fn initial_weights(
        cfg: &TrainConfig,
        vit_cfg: &wsss_vit::Config,
        decoder_cfg: &DecoderConfig,
        head: Option<&FeatureHeadConfig>,
        num_classes: usize,
    ) -> Result<HashMap<String, Tensor>> {
        let mut all: HashMap<String, Tensor> = initial_vit_weights(cfg, vit_cfg)?
            .into_iter()
            .map(|(k, t)| (format!("{ENCODER}{k}"), t))
            .collect();
        let dims = HeadDims {
            encoder_dim: vit_cfg.embed_dim,
            num_classes,
        };
        let seed = crate::train::data::mix_seed(&[cfg.run.seed, 0x5E6]);
        all.extend(decoder_cfg.init_weights(dims, vit_cfg.depth, DECODER, seed)?);
        if let Some(h) = head {
            let seed = crate::train::data::mix_seed(&[cfg.run.seed, 0xFEA7]);
            all.extend(wsss_seg::init_params(
                &h.params(vit_cfg.embed_dim),
                FEATURE_HEAD,
                seed,
            )?);
        }
        Ok(all)
    }

    /// Builds the network over `params` (no copies: the `Var`s' own tensors).
    pub fn new(
        params: &Params,
        vit_cfg: &wsss_vit::Config,
        decoder_cfg: &DecoderConfig,
        head: Option<&FeatureHeadConfig>,
        num_classes: usize,
        device: &Device,
    ) -> Result<Self> {
        let vb = |prefix: &str| {
            VarBuilder::from_tensors(params.tensors_with_prefix(prefix), DType::F32, device)
        };
        let vit = Vit::new(vit_cfg, vb(ENCODER)).context("building the encoder")?;
        let dims = HeadDims {
            encoder_dim: vit_cfg.embed_dim,
            num_classes,
        };
        let decoder = Decoder::new(decoder_cfg, dims, vit_cfg.depth, vb(DECODER))
            .context("building the decoder")?;
        let feature_head = head
            .map(|h| FeatureHead::new(h, vit_cfg.embed_dim, vb(FEATURE_HEAD)))
            .transpose()
            .context("building the feature head")?;
        Ok(Self {
            vit_cfg: vit_cfg.clone(),
            vit,
            decoder_cfg: decoder_cfg.clone(),
            decoder,
            feature_head,
        })
    }

    /// Logits at the image size (Segmenter's pad/crop upsampling). Dropout only with
    /// `rng`.
    ///
    /// # Shapes
    /// `images` [B, 3, H, W] → logits [B, K, H, W].
    pub fn forward(&self, images: &Tensor, rng: Option<&mut dyn RngCore>) -> Result<SegForward> {
        let (_, _, h, w) = images.dims4()?;
        let taps: Taps = self.decoder_cfg.taps();
        let out = self.vit.forward_tapped(images, taps)?;
        let grid = self.decoder.forward(&out, self.vit_cfg.class_tokens, rng)?;
        let logits = upsample(&grid, self.vit_cfg.patch_size, (h, w))?;
        Ok(SegForward { logits, vit: out })
    }

    /// The patch tokens of a forward, [B, gh·gw, D].
    pub fn patch_tokens(&self, out: &VitOutput) -> Result<Tensor> {
        Ok(out.patch_tokens(self.vit_cfg.class_tokens)?)
    }
}

/// The encoder config of a segmentation program: `[model]` with no classifier head, one
/// class token and the final norm (Segmenter's encoder), except under the `mlp_fusion`
/// decoder, which normalises each level itself and never reads the final tokens.
pub fn encoder_config(cfg: &TrainConfig, decoder: &DecoderConfig) -> Result<wsss_vit::Config> {
    let mut vit = cfg.model.vit_config(cfg.data.crop_size)?;
    vit.num_classes = 0;
    vit.class_tokens = 1;
    vit.final_norm = !matches!(decoder, DecoderConfig::MlpFusion(_));
    Ok(vit)
}

/// Arg-max segmentation scored on the ground-truth masks: `val_miou_gt`,
/// `val_pixel_acc_gt` (and nothing when the split has no masks).
pub fn evaluate_segmentation(
    data: &EvalData,
    device: &Device,
    num_classes: usize,
    mut forward: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Metrics> {
    let mut cm = ConfusionMatrix::new(num_classes);
    for batch in data.batches() {
        let batch = batch?;
        let logits = forward(&batch.images.to_device(device)?)?;
        let pred = logits
            .argmax(1)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::U8)?
            .flatten_all()?
            .to_vec1::<u8>()?;
        let gt = batch.masks.flatten_all()?.to_vec1::<u8>()?;
        cm.update(&pred, &gt)?;
    }
    let s = cm.scores();
    let mut m = Metrics::new();
    if s.miou.is_finite() {
        m.insert("val_miou_gt".into(), s.miou);
        m.insert("val_pixel_acc_gt".into(), s.pixel_acc);
    }
    Ok(m)
}
