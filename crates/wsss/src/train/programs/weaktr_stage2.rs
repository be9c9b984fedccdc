//! `program = "weaktr_stage2"`: WeakTr's online retraining (Zhu et al., "WeakTr: Exploring
//! Plain Vision Transformer for Weakly-supervised Semantic Segmentation", arXiv 2304.01184,
//! Sec. 3.3; `OnlineRetraining/segm`): Segmenter's mask-transformer decoder on a ViT
//! encoder, trained on stage-1 pseudo labels with the gradient-clipping cross-entropy
//! (per-pixel CE, capped by its tile's mean once the global mean falls to `start_value`;
//! the mean is over all pixels, ignored ones counting 0, as the official
//! `weight_reduce_loss(reduction="mean")`), SGD with a poly schedule and the encoder's
//! rate scaled by 0.1.
//!
//! Pseudo labels: the `[data] root` must be a VOC-layout folder whose masks are the
//! stage-1 pseudo labels for the training split (PNG, 255 = ignore) and the ground truth
//! for the evaluated split (the runner reads one mask folder for both).
//!
//! Differences from the official run, by necessity or choice: the official SGD is
//! Nesterov (`opt = "sgd"` → `nesterov=True`), ours is plain momentum SGD; the encoder's
//! drop path (0.1 in the official CLI) is not implemented in `wsss_vit`.
//!
//! `[method]`: see [`WeakTrStage2Method`].

use anyhow::Result;
use candle_core::{DType, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use wsss_data::batch::Batch;
use wsss_loss::gradient_clipping::{gradient_clipping, GradientClippingConfig};
use wsss_loss::segmentation::cross_entropy_map;
use wsss_seg::{DecoderConfig, MaskTransformerConfig};

use super::segnet::{encoder_config, evaluate_segmentation, SegNet, ENCODER};
use super::BuildContext;
use crate::train::config::{BestMode, OptimizerConfig, TrainConfig};
use crate::train::data::EvalData;
use crate::train::optim::ParamGroup;
use crate::train::params::{timm_decays, Params};
use crate::train::runner::{EvalContext, Metrics, Program, Segmenter, StepContext, StepOutput};

fn d_enc_lr() -> f64 {
    0.1
}

/// `[method]` of WeakTr stage 2.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeakTrStage2Method {
    /// The decoder (`[method.decoder]`; WeakTr: 2 layers, dropout 0.1).
    #[serde(default)]
    pub decoder: MaskTransformerConfig,
    /// Gradient clipping (WeakTr: start 1.2, tiles of 120 pixels).
    #[serde(default)]
    pub clipping: GradientClippingConfig,
    /// Encoder learning-rate scale (`--enc-lr 0.1`).
    #[serde(default = "d_enc_lr")]
    pub encoder_lr_scale: f64,
}

/// The stage-2 program.
pub struct WeakTrStage2 {
    params: Params,
    net: SegNet,
    method: WeakTrStage2Method,
    num_classes: usize,
}

impl WeakTrStage2 {
    /// Builds encoder + mask transformer.
    pub fn new(cfg: &TrainConfig, ctx: &BuildContext) -> Result<Self> {
        let method: WeakTrStage2Method = cfg.method()?;
        let decoder = DecoderConfig::MaskTransformer(method.decoder.clone());
        let vit = encoder_config(cfg, &decoder)?;
        let c = ctx.num_classes;
        let weights = SegNet::initial_weights(cfg, &vit, &decoder, None, c)?
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(&ctx.device)?)))
            .collect::<Result<_>>()?;
        let params = Params::from_tensors(weights)?;
        let net = SegNet::new(&params, &vit, &decoder, None, c, &ctx.device)?;
        Ok(Self {
            params,
            net,
            method,
            num_classes: c,
        })
    }
}

impl Program for WeakTrStage2 {
    fn params(&self) -> &Params {
        &self.params
    }

    /// Encoder at `encoder_lr_scale`, decoder at 1; no decay on 1-D tensors, tokens,
    /// position and class embeddings (Segmenter's `no_weight_decay`).
    fn param_groups(&self, opt: &OptimizerConfig) -> Vec<ParamGroup> {
        let scale = self.method.encoder_lr_scale;
        let no_decay_1d = opt.no_decay_1d;
        self.params.groups(opt.weight_decay, |name, var| {
            let lr = if name.starts_with(ENCODER) {
                scale
            } else {
                1.0
            };
            let short = name.split_once('.').map_or(name, |(_, s)| s);
            let decays = !(no_decay_1d && (!timm_decays(short, var) || short == "cls_emb"));
            (lr, decays)
        })
    }

    fn step(&mut self, batch: &Batch, ctx: &StepContext) -> Result<StepOutput> {
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
        let out = self.net.forward(&batch.images, Some(&mut rng))?;
        let map = cross_entropy_map(&out.logits, &batch.masks)?;
        let clipped = gradient_clipping(&map, &self.method.clipping)?;
        let loss = clipped.mean()?;
        let mean_loss = map.mean_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let frac = clipped
            .clipped
            .to_dtype(DType::F64)?
            .mean_all()?
            .to_scalar::<f64>()?;
        Ok(StepOutput {
            loss,
            scalars: vec![("mean_loss".into(), mean_loss), ("clipped".into(), frac)],
        })
    }

    fn evaluate(&mut self, data: &EvalData, ctx: &EvalContext) -> Result<Metrics> {
        // The same logits as `wsss segment` (Segmenter::segment).
        evaluate_segmentation(data, &ctx.device, self.num_classes, |images| {
            self.segment(images)
        })
    }

    /// The official run keeps the best validation mIoU; labelled `_gt` (it scores on
    /// ground truth).
    fn best_by(&self) -> (String, BestMode) {
        ("val_miou_gt".into(), BestMode::Max)
    }

    fn vit_config(&self) -> Option<wsss_vit::Config> {
        Some(self.net.vit_cfg.clone())
    }

    fn as_segmenter(&self) -> Option<&dyn Segmenter> {
        Some(self)
    }

    fn method_info(&self) -> serde_json::Value {
        serde_json::json!({
            "program": "weaktr_stage2",
            "decoder": DecoderConfig::MaskTransformer(self.method.decoder.clone()),
            "encoder_prefix": ENCODER,
        })
    }
}

impl Segmenter for WeakTrStage2 {
    /// The decoder's logits, no dropout.
    fn segment(&self, images: &Tensor) -> Result<Tensor> {
        Ok(self.net.forward(&images.detach(), None)?.logits.detach())
    }
}
