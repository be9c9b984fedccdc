//! `program = "classic"`: the classic-CAM baseline (Zhou et al., arXiv 1512.04150) in
//! ToCo's form (Ru et al., arXiv 2303.02506): a ViT, its final-normed patch tokens, global
//! max pooling and a bias-free 1×1 classifier `classifier.weight` [K, D], trained with the
//! multilabel soft-margin loss. The weights load into `wsss_cam::ClassicCam`.
//!
//! `[method]`: none.

use anyhow::Result;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use wsss_cam::ClassicCam;
use wsss_data::batch::Batch;
use wsss_loss::classification::multilabel_soft_margin;

use super::{evaluate_classifier, initial_vit_weights, BuildContext};
use crate::train::config::{BestMode, TrainConfig};
use crate::train::data::EvalData;
use crate::train::params::Params;
use crate::train::runner::{EvalContext, Metrics, Program, StepContext, StepOutput};

/// `[method]` of the classic program (empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassicConfig {}

/// The classic-CAM classifier.
pub struct Classic {
    params: Params,
    model: ClassicCam,
    vit: wsss_vit::Config,
}

impl Classic {
    /// A ViT of `[model]` with one class token, its final norm, no timm head, and a
    /// `classifier.weight` [K, D] initialised with std 0.02.
    pub fn new(cfg: &TrainConfig, ctx: &BuildContext) -> Result<Self> {
        let _: ClassicConfig = cfg.method()?;
        let k = ctx.num_classes - 1;
        let mut vit = cfg.model.vit_config(cfg.data.crop_size)?;
        vit.num_classes = 0;
        vit.class_tokens = 1;
        vit.final_norm = true;
        let mut weights = initial_vit_weights(cfg, &vit)?;
        let mut rng = wsss_core::random::rng(wsss_core_seed(cfg.run.seed));
        weights.insert(
            "classifier.weight".into(),
            wsss_core::random::truncated_normal(
                (k, vit.embed_dim),
                0.02,
                &mut rng,
                &candle_core::Device::Cpu,
            )?,
        );
        let weights = weights
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(&ctx.device)?)))
            .collect::<Result<_>>()?;
        let params = Params::from_tensors(weights)?;
        let model = ClassicCam::from_state_dict(&vit, params.tensors(), DType::F32, &ctx.device)?;
        Ok(Self { params, model, vit })
    }
}

fn wsss_core_seed(seed: u64) -> u64 {
    crate::train::data::mix_seed(&[seed, 0xC1A5])
}

impl Program for Classic {
    fn params(&self) -> &Params {
        &self.params
    }

    fn step(&mut self, batch: &Batch, _ctx: &StepContext) -> Result<StepOutput> {
        let out = self.model.forward(&batch.images)?;
        let loss = multilabel_soft_margin(&out.logits, &batch.labels)?;
        Ok(StepOutput {
            loss,
            scalars: vec![],
        })
    }

    fn evaluate(&mut self, data: &EvalData, ctx: &EvalContext) -> Result<Metrics> {
        let model = &self.model;
        evaluate_classifier(data, &ctx.device, |images: &Tensor, _labels: &Tensor| {
            let out = model.forward(&images.detach())?;
            Ok((out.logits.detach(), vec![("classic", out.cam.detach())]))
        })
    }

    fn best_by(&self) -> (String, BestMode) {
        ("val_map".into(), BestMode::Max)
    }

    fn vit_config(&self) -> Option<wsss_vit::Config> {
        Some(self.vit.clone())
    }

    fn method_info(&self) -> serde_json::Value {
        serde_json::json!({ "cam": "classic" })
    }
}
