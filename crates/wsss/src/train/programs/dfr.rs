//! `program = "dfr"`: scribble-supervised segmentation with DFR (Zhang et al., "Dynamic
//! Feature Regularized Loss for Weakly Supervised Semantic Segmentation", arXiv 2108.01296)
//! and its ablation rows, on a ViT encoder with a `wsss_seg` decoder.
//!
//! loss = pCE(scribbles) + λ_reg · regulariser(softmax) + λ_fc · consistency(F), where the
//! `variant` picks the rows of the ablation:
//!
//! | variant | regulariser | consistency | target |
//! |---|---|---|---|
//! | `pce` | none | no | scribbles |
//! | `dense_crf` | dense CRF loss (Tang et al., arXiv 1803.10464), lattice | no | scribbles |
//! | `gated_crf` | gated CRF loss (Obukhov et al., arXiv 1906.04651), RGB+xy | no | scribbles |
//! | `dfr_no_fc` | DFR kernel with F = the encoder's unit-norm patch tokens | no | scribbles |
//! | `dfr` | DFR kernel with F = the feature head's output | yes | scribbles |
//! | `full_mask` | none | no | full masks (upper bound) |
//!
//! During the first `warmup_epochs` only pCE trains (the regularisers need a sensible
//! prediction to regularise). F is upsampled bilinearly from the token grid to the
//! regulariser's resolution and detached inside the kernel; the consistency loss sees the
//! upsampled F at the scribbled pixels (differentiable).
//!
//! `[method]`: see [`DfrMethod`].

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use wsss_core::resize::{resize, AlignCorners, ResizeMode};
use wsss_data::batch::{Batch, IMAGENET_MEAN, IMAGENET_STD};
use wsss_loss::dense_crf::{dense_crf_loss, DenseCrfLossConfig, Gate};
use wsss_loss::dfr::{dfr_loss, DfrConfig, DfrForm};
use wsss_loss::feature_consistency::{
    confident_labels, feature_consistency_loss, FeatureConsistencyConfig,
};
use wsss_loss::gated_crf::{gated_crf_loss, GatedCrfConfig, GatedCrfKernel};
use wsss_loss::segmentation::partial_cross_entropy;
use wsss_seg::{DecoderConfig, FeatureHeadConfig, MlpFusionConfig};

use super::segnet::{encoder_config, evaluate_segmentation, SegNet, ENCODER};
use super::BuildContext;
use crate::train::config::{BestMode, OptimizerConfig, TrainConfig};
use crate::train::data::EvalData;
use crate::train::optim::ParamGroup;
use crate::train::params::{timm_decays, Params};
use crate::train::runner::{EvalContext, Metrics, Program, Segmenter, StepContext, StepOutput};

/// The ablation row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Partial CE only.
    Pce,
    /// + dense CRF loss.
    DenseCrf,
    /// + gated CRF loss.
    GatedCrf,
    /// + DFR regulariser with the encoder's tokens as F (no consistency head).
    DfrNoFc,
    /// + DFR regulariser with the feature head, + consistency loss.
    Dfr,
    /// CE on full masks (upper bound).
    FullMask,
}

fn d_lambda_dense() -> f64 {
    1e-7
}
fn d_lambda_gated() -> f64 {
    0.1
}
fn d_lambda_fc() -> f64 {
    0.1
}
fn d_one() -> usize {
    1
}
fn d_lr_scale() -> f64 {
    1.0
}

/// Dense CRF loss settings of the `dense_crf` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseSettings {
    /// σ_rgb on 0–255 colours.
    pub sigma_rgb: f32,
    /// σ_xy in input pixels.
    pub sigma_xy: f32,
    /// Working scale in (0, 1].
    pub scale_factor: f32,
}

impl Default for DenseSettings {
    /// rloss: σ_rgb 15, σ_xy 80, full scale.
    fn default() -> Self {
        Self {
            sigma_rgb: 15.0,
            sigma_xy: 80.0,
            scale_factor: 1.0,
        }
    }
}

/// Gated CRF loss settings of the `gated_crf` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatedSettings {
    /// Window radius.
    pub radius: usize,
    /// σ_xy in regulariser pixels.
    pub sigma_xy: f32,
    /// σ_rgb on ImageNet-normalised RGB.
    pub sigma_rgb: f32,
}

impl Default for GatedSettings {
    /// Obukhov's defaults: radius 5, σ_xy 6, σ_rgb 0.1.
    fn default() -> Self {
        Self {
            radius: 5,
            sigma_xy: 6.0,
            sigma_rgb: 0.1,
        }
    }
}

fn d_decoder() -> DecoderConfig {
    DecoderConfig::MlpFusion(MlpFusionConfig::default())
}

/// `[method]` of the DFR program.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DfrMethod {
    /// The ablation row.
    pub variant: Variant,
    /// The decoder (`[method.decoder]`, default `mlp_fusion`).
    #[serde(default = "d_decoder")]
    pub decoder: DecoderConfig,
    /// The feature head of the `dfr` row.
    #[serde(default)]
    pub feature_head: FeatureHeadConfig,
    /// Epochs of pCE only before the regulariser and consistency losses start.
    #[serde(default)]
    pub warmup_epochs: usize,
    /// λ of the dense CRF loss (its energy is a sum over pixel pairs / B, rloss's form).
    #[serde(default = "d_lambda_dense")]
    pub lambda_dense: f64,
    /// λ of the gated CRF loss and of DFR's gated form (both per-pixel means).
    #[serde(default = "d_lambda_gated")]
    pub lambda_gated: f64,
    /// λ of DFR's regulariser; `None`: `lambda_gated` (gated form) or `lambda_dense`
    /// (dense form).
    #[serde(default)]
    pub lambda_dfr: Option<f64>,
    /// λ of the consistency loss.
    #[serde(default = "d_lambda_fc")]
    pub lambda_fc: f64,
    /// The dense CRF loss.
    #[serde(default)]
    pub dense_crf: DenseSettings,
    /// The gated CRF loss.
    #[serde(default)]
    pub gated_crf: GatedSettings,
    /// DFR's regulariser (form, σs, mix, projection).
    #[serde(default)]
    pub dfr: DfrConfig,
    /// The consistency loss.
    #[serde(default)]
    pub consistency: FeatureConsistencyConfig,
    /// Also use unlabelled pixels predicted with at least this probability as
    /// consistency labels (`None`: scribbles only).
    #[serde(default)]
    pub confident_threshold: Option<f32>,
    /// Let the consistency loss train the encoder too (else only the head).
    #[serde(default = "d_true")]
    pub consistency_trains_encoder: bool,
    /// The gated losses work at 1/`regularizer_downsample` of the input (block means).
    #[serde(default = "d_one")]
    pub regularizer_downsample: usize,
    /// Learning-rate scale of the encoder (1; WeakTr-style 0.1 with ImageNet weights).
    #[serde(default = "d_lr_scale")]
    pub encoder_lr_scale: f64,
}

fn d_true() -> bool {
    true
}

/// The DFR program.
pub struct DfrProgram {
    params: Params,
    net: SegNet,
    method: DfrMethod,
    num_classes: usize,
    epoch: usize,
}

impl DfrProgram {
    /// Builds the network of `[model]` + `[method]`.
    pub fn new(cfg: &TrainConfig, ctx: &BuildContext) -> Result<Self> {
        let method: DfrMethod = cfg.method()?;
        if method.regularizer_downsample == 0 {
            bail!("[method] regularizer_downsample must be at least 1");
        }
        let vit = encoder_config(cfg, &method.decoder)?;
        let head = (method.variant == Variant::Dfr).then_some(&method.feature_head);
        let c = ctx.num_classes;
        let weights = SegNet::initial_weights(cfg, &vit, &method.decoder, head, c)?;
        let weights = weights
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(&ctx.device)?)))
            .collect::<Result<_>>()?;
        let params = Params::from_tensors(weights)?;
        let net = SegNet::new(&params, &vit, &method.decoder, head, c, &ctx.device)?;
        Ok(Self {
            params,
            net,
            method,
            num_classes: c,
            epoch: 0,
        })
    }

    fn regularising(&self) -> bool {
        self.epoch >= self.method.warmup_epochs
            && !matches!(self.method.variant, Variant::Pce | Variant::FullMask)
    }
}

/// 0–255 RGB from ImageNet-normalised images.
fn rgb255(images: &Tensor) -> Result<Tensor> {
    let dev = images.device();
    let mean = Tensor::new(&IMAGENET_MEAN, dev)?.reshape((1, 3, 1, 1))?;
    let std = Tensor::new(&IMAGENET_STD, dev)?.reshape((1, 3, 1, 1))?;
    Ok((images.broadcast_mul(&std)?.broadcast_add(&mean)? * 255.0)?)
}

/// Block mean by `f` (differentiable), identity for 1.
fn pool(xs: &Tensor, f: usize) -> Result<Tensor> {
    if f == 1 {
        return Ok(xs.clone());
    }
    let (_, _, h, w) = xs.dims4()?;
    let xs = xs.narrow(2, 0, h / f * f)?.narrow(3, 0, w / f * f)?;
    Ok(xs.avg_pool2d(f)?)
}

/// [B, gh·gw, C] tokens → [B, C, gh, gw].
fn token_map(tokens: &Tensor, (gh, gw): (usize, usize)) -> Result<Tensor> {
    let (b, _, c) = tokens.dims3()?;
    Ok(tokens.transpose(1, 2)?.reshape((b, c, gh, gw))?)
}

impl Program for DfrProgram {
    fn params(&self) -> &Params {
        &self.params
    }

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

    fn on_epoch_start(&mut self, epoch: usize) -> Result<()> {
        self.epoch = epoch;
        Ok(())
    }

    fn step(&mut self, batch: &Batch, ctx: &StepContext) -> Result<StepOutput> {
        let m = &self.method;
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
        let out = self.net.forward(&batch.images, Some(&mut rng))?;
        let target = if m.variant == Variant::FullMask {
            &batch.masks
        } else {
            &batch.scribbles
        };
        let pce = partial_cross_entropy(&out.logits, target)?;
        let mut loss = pce.clone();
        let mut scalars = vec![("pce".to_string(), scalar(&pce)?)];
        if !self.regularising() {
            return Ok(StepOutput { loss, scalars });
        }
        let (b, _, h, w) = out.logits.dims4()?;
        let prob = candle_nn::ops::softmax(&out.logits, 1)?;
        let ds = m.regularizer_downsample;
        // Deep features on the token grid.
        let grid = out.vit.grid;
        let features = match m.variant {
            Variant::Dfr => {
                let mut tokens = self.net.patch_tokens(&out.vit)?;
                if !m.consistency_trains_encoder {
                    tokens = tokens.detach();
                }
                let head = self.net.feature_head.as_ref().expect("built for dfr");
                Some(head.forward(&tokens, grid)?)
            }
            Variant::DfrNoFc => {
                let t = self.net.patch_tokens(&out.vit)?.detach();
                let n = (t.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
                Some(token_map(&t.broadcast_div(&n)?, grid)?)
            }
            _ => None,
        };
        let reg = match m.variant {
            Variant::DenseCrf => {
                let d = &m.dense_crf;
                let cfg = DenseCrfLossConfig {
                    weight: 1.0,
                    sigma_rgb: d.sigma_rgb,
                    sigma_xy: d.sigma_xy,
                    scale_factor: d.scale_factor,
                    gate: Gate::None,
                    filter: wsss_core::permutohedral::FilterKind::Permutohedral,
                };
                let roi = Tensor::ones((b, h, w), DType::F32, prob.device())?;
                let l = dense_crf_loss(&rgb255(&batch.images)?, &prob, &roi, None, &cfg)?.loss;
                Some(("dense_crf", (l.squeeze(0)? * m.lambda_dense)?))
            }
            Variant::GatedCrf => {
                let g = &m.gated_crf;
                let cfg = GatedCrfConfig {
                    kernels: vec![GatedCrfKernel {
                        weight: 1.0,
                        sigma_xy: Some(g.sigma_xy),
                        modalities: vec![("rgb".into(), g.sigma_rgb)],
                    }],
                    radius: g.radius,
                };
                let p = pool(&prob, ds)?;
                let l = gated_crf_loss(&p, &[("rgb", &batch.images)], None, None, &cfg)?;
                Some(("gated_crf", (l.squeeze(0)? * m.lambda_gated)?))
            }
            Variant::Dfr | Variant::DfrNoFc => {
                let f = features.as_ref().expect("set above").detach();
                let (p, images, size) = match m.dfr.form {
                    DfrForm::Gated => {
                        let p = pool(&prob, ds)?;
                        let (_, _, ph, pw) = p.dims4()?;
                        (p, batch.images.clone(), (ph, pw))
                    }
                    DfrForm::Dense => (prob.clone(), batch.images.clone(), (h, w)),
                };
                let f = resize(&f, size, ResizeMode::Bilinear, AlignCorners::No)?;
                let lambda = m.lambda_dfr.unwrap_or(match m.dfr.form {
                    DfrForm::Gated => m.lambda_gated,
                    DfrForm::Dense => m.lambda_dense,
                });
                let l = dfr_loss(&p, &images, &f, None, &m.dfr)?;
                Some(("dfr", (l.squeeze(0)? * lambda)?))
            }
            Variant::Pce | Variant::FullMask => None,
        };
        if let Some((name, r)) = reg {
            scalars.push((name.to_string(), scalar(&r)?));
            loss = (loss + r)?;
        }
        if let (Variant::Dfr, Some(f)) = (m.variant, &features) {
            let f = resize(f, (h, w), ResizeMode::Bilinear, AlignCorners::No)?;
            let labels = match m.confident_threshold {
                Some(t) => confident_labels(&batch.scribbles, &prob.detach(), t)?,
                None => batch.scribbles.clone(),
            };
            let fc = feature_consistency_loss(&f, &labels, &m.consistency, ctx.seed)?;
            scalars.push(("consistency".into(), scalar(&fc)?));
            loss = (loss + (fc * m.lambda_fc)?)?;
        }
        Ok(StepOutput { loss, scalars })
    }

    fn evaluate(&mut self, data: &EvalData, ctx: &EvalContext) -> Result<Metrics> {
        // The same logits as `wsss segment` (Segmenter::segment).
        evaluate_segmentation(data, &ctx.device, self.num_classes, |images| {
            self.segment(images)
        })
    }

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
            "program": "dfr",
            "variant": self.method.variant,
            "decoder": self.method.decoder,
            "feature_head": self.method.feature_head,
            "encoder_prefix": ENCODER,
        })
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?[0])
}

impl Segmenter for DfrProgram {
    /// The decoder's logits, no dropout.
    fn segment(&self, images: &Tensor) -> Result<Tensor> {
        Ok(self.net.forward(&images.detach(), None)?.logits.detach())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::programs::weaktr_stage2::WeakTrStage2Method;

    /// Every shipped config of these programs parses, with its `[method]`.
    #[test]
    fn shipped_configs_parse() -> Result<()> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut seen = 0;
        for dir in [root.clone(), root.join("scenes")] {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                    continue;
                }
                let text = std::fs::read_to_string(&path)?;
                if !text.contains("program = \"dfr\"")
                    && !text.contains("program = \"weaktr_stage2\"")
                {
                    continue;
                }
                let (cfg, _) = TrainConfig::parse(&text, &[])?;
                match cfg.program {
                    crate::train::ProgramKind::Dfr => {
                        let m: DfrMethod = cfg.method()?;
                        assert!(m.lambda_fc >= 0.0, "{}", path.display());
                    }
                    _ => {
                        let _: WeakTrStage2Method = cfg.method()?;
                    }
                }
                seen += 1;
            }
        }
        assert!(seen >= 11, "found {seen} configs");
        Ok(())
    }

    #[test]
    fn bad_method_is_an_error() {
        let bad: std::result::Result<DfrMethod, _> =
            toml::from_str("variant = \"crf\"").map_err(|e: toml::de::Error| e.to_string());
        assert!(bad.is_err());
        let bad: std::result::Result<DfrMethod, _> =
            toml::from_str("variant = \"dfr\"\nlambda = 1");
        assert!(bad.is_err());
    }
}
