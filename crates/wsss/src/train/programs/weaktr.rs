//! `program = "weaktr_stage1"`: WeakTr's CAM-generation training (Zhu et al., arXiv
//! 2304.01184, Sec. 3.2; hustvl/WeakTr `main.py`/`engine.py`).
//!
//! A ViT with C class tokens and no final norm, a 3×3 patch head and adaptive attention
//! fusion (AAF). Loss = MLSM(class-token logits) + MLSM(coarse: GAP of the patch head) +
//! MLSM(fine: GAP of the AAF-fused fine CAM). The AAF inputs and the coarse CAM are
//! detached ([`wsss_cam::WeakTr::forward_train`]), so the fine loss trains only the AAF.
//! The weights carry the official keys and load into `wsss_cam::WeakTr::from_state_dict`.
//!
//! `[method]`: `aaf_reduction` (8), `aaf_feat_reduction` (8), `pool` ("max").

use anyhow::Result;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use wsss_cam::{AafConfig, TokenPool, WeakTr};
use wsss_data::batch::Batch;
use wsss_loss::classification::multilabel_soft_margin;

use super::{
    evaluate_classifier, initial_vit_weights, to_device, torch_default_init, BuildContext,
};
use crate::train::config::{BestMode, TrainConfig};
use crate::train::data::{mix_seed, EvalData};
use crate::train::params::Params;
use crate::train::runner::{EvalContext, Metrics, Program, StepContext, StepOutput};

fn eight() -> usize {
    8
}

/// `[method]` of WeakTr stage 1.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeakTrStage1Config {
    /// AAF head FFN reduction r.
    #[serde(default = "eight")]
    pub aaf_reduction: usize,
    /// AAF feature FFN reduction.
    #[serde(default = "eight")]
    pub aaf_feat_reduction: usize,
    /// AAF token pooling.
    #[serde(default)]
    pub pool: TokenPool,
}

impl Default for WeakTrStage1Config {
    fn default() -> Self {
        Self {
            aaf_reduction: 8,
            aaf_feat_reduction: 8,
            pool: TokenPool::Max,
        }
    }
}

impl WeakTrStage1Config {
    /// The AAF settings.
    pub fn aaf(&self) -> AafConfig {
        AafConfig {
            reduction: self.aaf_reduction,
            feat_reduction: self.aaf_feat_reduction,
            pool: self.pool,
        }
    }
}

/// The WeakTr stage-1 program.
pub struct WeakTrStage1 {
    params: Params,
    model: WeakTr,
    vit: wsss_vit::Config,
    aaf: AafConfig,
}

/// The ViT config of a WeakTr model over `k` foreground classes.
pub fn weaktr_vit(mut vit: wsss_vit::Config, k: usize) -> wsss_vit::Config {
    vit.num_classes = k;
    vit.class_tokens = k;
    vit.final_norm = false;
    vit.global_pool = wsss_vit::GlobalPool::Token;
    vit.pos_embed_interp = wsss_vit::PosEmbedInterp::DinoScaleFactor;
    vit
}

impl WeakTrStage1 {
    /// Backbone from `[model]` (ImageNet file or seeded init), patch head and AAF with
    /// PyTorch's default init.
    pub fn new(cfg: &TrainConfig, ctx: &BuildContext) -> Result<Self> {
        let m: WeakTrStage1Config = cfg.method()?;
        let aaf = m.aaf();
        let k = ctx.num_classes - 1;
        let vit = weaktr_vit(cfg.model.vit_config(cfg.data.crop_size)?, k);
        let mut w = initial_vit_weights(cfg, &vit)?;
        let mut rng = wsss_core::random::rng(mix_seed(&[cfg.run.seed, 0x3EA7]));
        let (d, l, h) = (vit.embed_dim, vit.depth, vit.num_heads);
        let hd = vit.head_dim();
        let (lh, hr, fr) = (
            l * h,
            l * h / aaf.reduction.max(1),
            hd / aaf.feat_reduction.max(1),
        );
        let p = "adaptive_attention_fusion.";
        let mut put = |key: String, shape: &[usize], fan_in: usize| -> Result<()> {
            w.insert(key, torch_default_init(shape, fan_in, &mut rng)?);
            Ok(())
        };
        put("head.weight".into(), &[k, d, 3, 3], d * 9)?;
        put("head.bias".into(), &[k], d * 9)?;
        put(format!("{p}attn_feat_ffn.0.weight"), &[fr.max(1), hd], hd)?;
        put(format!("{p}attn_feat_ffn.0.bias"), &[fr.max(1)], hd)?;
        put(
            format!("{p}attn_feat_ffn.1.weight"),
            &[1, fr.max(1)],
            fr.max(1),
        )?;
        put(format!("{p}attn_feat_ffn.1.bias"), &[1], fr.max(1))?;
        put(format!("{p}attn_head_ffn.0.weight"), &[hr.max(1), lh], lh)?;
        put(
            format!("{p}attn_head_ffn.2.weight"),
            &[lh, hr.max(1)],
            hr.max(1),
        )?;
        let params = Params::from_tensors(to_device(w, &ctx.device)?)?;
        let model = WeakTr::from_state_dict(&vit, aaf, params.tensors(), DType::F32, &ctx.device)?;
        Ok(Self {
            params,
            model,
            vit,
            aaf,
        })
    }
}

impl Program for WeakTrStage1 {
    fn params(&self) -> &Params {
        &self.params
    }

    fn step(&mut self, batch: &Batch, _ctx: &StepContext) -> Result<StepOutput> {
        let out = self.model.forward_train(&batch.images)?;
        let y = &batch.labels;
        let cls = multilabel_soft_margin(&out.cls_logits, y)?;
        let coarse = multilabel_soft_margin(&out.coarse_logits, y)?;
        let fine = multilabel_soft_margin(&out.fine_logits, y)?;
        let scalar =
            |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        let scalars = vec![
            ("cls".to_string(), scalar(&cls)?),
            ("coarse".to_string(), scalar(&coarse)?),
            ("fine".to_string(), scalar(&fine)?),
        ];
        Ok(StepOutput {
            loss: ((cls + coarse)? + fine)?,
            scalars,
        })
    }

    fn evaluate(&mut self, data: &EvalData, ctx: &EvalContext) -> Result<Metrics> {
        let model = &self.model;
        evaluate_classifier(data, &ctx.device, |images: &Tensor, _labels: &Tensor| {
            let out = model.forward(&images.detach())?;
            Ok((
                out.cls_logits,
                vec![("fine", out.fine_cam), ("coarse", out.coarse_cam)],
            ))
        })
    }

    fn best_by(&self) -> (String, BestMode) {
        ("val_map".into(), BestMode::Max)
    }

    fn vit_config(&self) -> Option<wsss_vit::Config> {
        Some(self.vit.clone())
    }

    fn method_info(&self) -> serde_json::Value {
        serde_json::json!({ "cam": "weaktr", "aaf": self.aaf })
    }
}
