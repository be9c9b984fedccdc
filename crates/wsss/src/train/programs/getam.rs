//! `program = "getam_e2e"`: GETAM end to end (Sun et al., arXiv 2112.02841, Sec. 3.3):
//! a classification ViT (one class token, timm head) and a segmentation decoder trained
//! together from image labels.
//!
//! Each step: loss = MLSM(logits). From epoch `seg_start_epoch` on, also, per image,
//! 1. GETAM maps of the present classes from the current weights, one batched backward
//!    through the aggregated blocks on a detached view of the weights
//!    ([`wsss_cam::Getam`], strategy `Batched`; no weight gradients);
//! 2. PAMR refinement with the RGB image (0–255), division by the per-class max;
//! 3. label completion without saliency ([`wsss_refine::completion::getam`], contested
//!    pixels ignored);
//! 4. `seg_weight ·` balanced CE of the decoder logits on the completed labels.
//!
//! **Decoder** (ours, not the paper's DPT): a linear 1×1 head `decoder.{weight,bias}`
//! [C, D] on the final (normed) patch tokens, C = classes including background, upsampled
//! bilinearly to the image (Segmenter's `DecoderLinear`). The dense energy loss is not
//! added.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};
use wsss_cam::Getam;
use wsss_core::resize::{resize, AlignCorners, ResizeMode};
use wsss_data::batch::{Batch, IMAGENET_MEAN, IMAGENET_STD};
use wsss_loss::classification::multilabel_soft_margin;
use wsss_loss::segmentation::balanced_cross_entropy;
use wsss_metrics::ConfusionMatrix;
use wsss_refine::completion::CompletionConfig;
use wsss_refine::pamr::PamrConfig;
use wsss_vit::{Strictness, Taps, Vit};

use super::{
    evaluate_classifier, initial_vit_weights, to_device, torch_default_init, BuildContext,
};
use crate::train::config::{BestMode, TrainConfig};
use crate::train::data::{mix_seed, EvalData};
use crate::train::params::Params;
use crate::train::runner::{EvalContext, Metrics, Program, Segmenter, StepContext, StepOutput};

fn default_one() -> f64 {
    1.0
}

/// `[method]` of GETAM end to end.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetamE2eConfig {
    /// First aggregated block s (default L/2, the official 6 of 12).
    #[serde(default)]
    pub start_layer: Option<usize>,
    /// Epoch from which the segmentation loss is added.
    #[serde(default)]
    pub seg_start_epoch: usize,
    /// Weight of the balanced CE.
    #[serde(default = "default_one")]
    pub seg_weight: f64,
    /// PAMR settings.
    #[serde(default)]
    pub pamr: PamrConfig,
    /// Completion settings (GETAM VOC by default).
    #[serde(default)]
    pub completion: CompletionConfig,
}

/// The GETAM end-to-end program.
pub struct GetamE2e {
    params: Params,
    vit_model: Vit,
    getam: Getam,
    vit: wsss_vit::Config,
    cfg: GetamE2eConfig,
    start_layer: usize,
    segment: bool,
}

impl GetamE2e {
    /// A ViT from `[model]` with one class token, final norm and a K-way head, plus the
    /// linear decoder (PyTorch default init).
    pub fn new(cfg: &TrainConfig, ctx: &BuildContext) -> Result<Self> {
        let m: GetamE2eConfig = cfg.method()?;
        let c = ctx.num_classes;
        let mut vit = cfg.model.vit_config(cfg.data.crop_size)?;
        vit.num_classes = c - 1;
        vit.class_tokens = 1;
        vit.final_norm = true;
        vit.global_pool = wsss_vit::GlobalPool::Token;
        let s = m.start_layer.unwrap_or(vit.depth / 2);
        anyhow::ensure!(
            s < vit.depth,
            "[method] start_layer {s} must be below the depth {}",
            vit.depth
        );
        let mut w = initial_vit_weights(cfg, &vit)?;
        let mut rng = wsss_core::random::rng(mix_seed(&[cfg.run.seed, 0x6E7A]));
        let d = vit.embed_dim;
        w.insert(
            "decoder.weight".into(),
            torch_default_init(&[c, d], d, &mut rng)?,
        );
        w.insert(
            "decoder.bias".into(),
            torch_default_init(&[c], d, &mut rng)?,
        );
        let params = Params::from_tensors(to_device(w, &ctx.device)?)?;
        let build = |detach: bool| -> Result<Vit> {
            let t = params
                .tensors()
                .into_iter()
                .map(|(k, v)| (k, if detach { v.detach() } else { v }))
                .collect();
            Ok(Vit::from_state_dict(
                &vit,
                t,
                Strictness::AllowUnexpected,
                DType::F32,
                &ctx.device,
            )?)
        };
        // The detached view shares the Vars' storage, so it follows every update.
        let getam = Getam::new(build(true)?, s);
        let vit_model = build(false)?;
        Ok(Self {
            params,
            vit_model,
            getam,
            vit,
            cfg: m,
            start_layer: s,
            segment: false,
        })
    }

    /// Classification logits [B, K] and segmentation logits [B, C, H, W].
    fn forward(&self, images: &Tensor) -> Result<(Tensor, Tensor)> {
        let out = self.vit_model.forward_tapped(images, Taps::default())?;
        let logits = out.logits.clone().expect("a classification head");
        let patches = out.patch_tokens(1)?; // [B, P, D]
        let w = self
            .params
            .get("decoder.weight")
            .expect("decoder")
            .as_tensor();
        let bias = self
            .params
            .get("decoder.bias")
            .expect("decoder")
            .as_tensor();
        let (b, _, _) = patches.dims3()?;
        let (gh, gw) = out.grid;
        let seg = patches
            .broadcast_matmul(&w.t()?)?
            .broadcast_add(bias)?
            .transpose(1, 2)?
            .reshape((b, w.dim(0)?, gh, gw))?;
        let (_, _, h, wd) = images.dims4()?;
        let seg = resize(&seg, (h, wd), ResizeMode::Bilinear, AlignCorners::No)?;
        Ok((logits, seg))
    }

    /// GETAM → PAMR → completion labels [B, H, W] u8 for a batch.
    fn pseudo_labels(&self, images: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = images.dims4()?;
        let k = self.vit.num_classes;
        let dev = images.device();
        let mean = Tensor::new(&IMAGENET_MEAN, dev)?.reshape((1, 3, 1, 1))?;
        let std = Tensor::new(&IMAGENET_STD, dev)?.reshape((1, 3, 1, 1))?;
        let rgb = (images.broadcast_mul(&std)?.broadcast_add(&mean)? * 255.0)?;
        let rows = labels.to_vec2::<f32>()?;
        let mut out = Vec::with_capacity(b * h * w);
        for (i, row) in rows.iter().enumerate() {
            let present: Vec<usize> = (0..k).filter(|&c| row[c] > 0.5).collect();
            if present.is_empty() {
                out.extend(std::iter::repeat_n(0u8, h * w));
                continue;
            }
            let image = images.get(i)?.unsqueeze(0)?.detach();
            let maps = self.getam.compute(&image, &present, None)?.getam_up; // [K', H, W]
            let refined = wsss_refine::pamr::refine(
                &rgb.get(i)?.unsqueeze(0)?,
                &maps.unsqueeze(0)?,
                &self.cfg.pamr,
            )?
            .squeeze(0)?;
            let max = refined.max_keepdim(D::Minus1)?.max_keepdim(D::Minus2)?;
            let norm = refined.broadcast_div(&(max + 1e-5)?)?;
            let label =
                wsss_refine::completion::getam(&norm, &present, None, &self.cfg.completion)?;
            out.extend(label.flatten_all()?.to_vec1::<u8>()?);
        }
        Ok(Tensor::from_vec(out, (b, h, w), &Device::Cpu)?.to_device(dev)?)
    }
}

impl Program for GetamE2e {
    fn params(&self) -> &Params {
        &self.params
    }

    fn on_epoch_start(&mut self, epoch: usize) -> Result<()> {
        self.segment = epoch >= self.cfg.seg_start_epoch;
        Ok(())
    }

    fn step(&mut self, batch: &Batch, _ctx: &StepContext) -> Result<StepOutput> {
        let (logits, seg) = self.forward(&batch.images)?;
        let cls = multilabel_soft_margin(&logits, &batch.labels)?;
        let scalar =
            |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        let mut scalars = vec![("cls".to_string(), scalar(&cls)?)];
        let mut loss = cls;
        if self.segment {
            let labels = self.pseudo_labels(&batch.images, &batch.labels)?;
            let ce = balanced_cross_entropy(&seg, &labels)?;
            scalars.push(("seg".to_string(), scalar(&ce)?));
            loss = (loss + (ce * self.cfg.seg_weight)?)?;
        } else {
            scalars.push(("seg".to_string(), 0.0));
        }
        Ok(StepOutput { loss, scalars })
    }

    fn evaluate(&mut self, data: &EvalData, ctx: &EvalContext) -> Result<Metrics> {
        let c = data.dataset.num_classes();
        let k = c - 1;
        let mut m = evaluate_classifier(data, &ctx.device, |images: &Tensor, labels: &Tensor| {
            let logits = self.forward(&images.detach())?.0.detach();
            let (b, _, h, w) = images.dims4()?;
            // GETAM maps of the present classes (the others stay zero).
            let rows = labels.to_vec2::<f32>()?;
            let mut cams = Vec::with_capacity(b);
            for (i, row) in rows.iter().enumerate() {
                let present: Vec<usize> = (0..k).filter(|&c| row[c] > 0.5).collect();
                let dense = if present.is_empty() {
                    Tensor::zeros((k, h, w), DType::F32, images.device())?
                } else {
                    let image = images.get(i)?.unsqueeze(0)?.detach();
                    let maps = self.getam.compute(&image, &present, None)?.getam_up;
                    wsss_cam::Cam {
                        scores: maps,
                        classes: present,
                    }
                    .to_dense(k)?
                };
                cams.push(dense);
            }
            Ok((logits, vec![("getam", Tensor::stack(&cams, 0)?)]))
        })?;
        // The decoder's segmentation on the ground truth.
        let mut cm = ConfusionMatrix::new(c);
        let mut any = false;
        for batch in data.batches() {
            let batch = batch?;
            let seg = self
                .forward(&batch.images.to_device(&ctx.device)?.detach())?
                .1;
            let pred = seg
                .argmax(1)?
                .to_dtype(DType::U8)?
                .flatten_all()?
                .to_vec1::<u8>()?;
            let gt = batch.masks.flatten_all()?.to_vec1::<u8>()?;
            any |= gt.iter().any(|&g| g != 255);
            cm.update(&pred, &gt)?;
        }
        if any {
            m.insert("val_seg_miou_gt".into(), cm.scores().miou);
        }
        Ok(m)
    }

    fn best_by(&self) -> (String, BestMode) {
        ("val_map".into(), BestMode::Max)
    }

    fn vit_config(&self) -> Option<wsss_vit::Config> {
        Some(self.vit.clone())
    }

    fn as_segmenter(&self) -> Option<&dyn Segmenter> {
        Some(self)
    }

    fn method_info(&self) -> serde_json::Value {
        serde_json::json!({
            "cam": "getam",
            "start_layer": self.start_layer,
            "decoder": "linear 1x1 on final patch tokens: decoder.weight [C, D], decoder.bias [C], bilinear upsampling",
        })
    }
}

impl Segmenter for GetamE2e {
    /// The linear decoder's logits, upsampled bilinearly.
    fn segment(&self, images: &Tensor) -> Result<Tensor> {
        Ok(self.forward(&images.detach())?.1.detach())
    }
}
