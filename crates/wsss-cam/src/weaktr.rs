//! WeakTr's stage-1 network: a ViT with C class tokens and no final norm, a 3×3 patch
//! head, and adaptive attention fusion (AAF) of all L·h attention maps (Zhu et al., arXiv
//! 2304.01184, Sec. 3.2, Eq. 1-6), as the official code (hustvl/WeakTr `models.py`
//! `WeakTr`, `AAF.py`) computes it.
//!
//! Details of the code that we follow (and where it departs from the paper's text):
//! - The AAF features are the *projected* attention-branch outputs `o_l` (after `proj`,
//!   before the residual), and "head j" owns the strided channels {j, j+h, j+2h, …}
//!   (the code views D as (hd, h)), not the per-head value outputs.
//! - Map index k = head·L + layer (the code stacks layers, then permutes heads first).
//! - Token pooling (max or mean) over all N tokens, class tokens included; the feature FFN
//!   is hd → hd/fr → 1 with no activation between; the head FFN is L·h → L·h/r → L·h with
//!   ReLU and a sigmoid and no biases (SE style).
//! - The fused attention is the *mean* over the L·h weighted maps; the final norm's weights
//!   are in the checkpoints but unused.
//!
//! The AAF inputs are detached in the official code's training; [`WeakTr::forward_train`]
//! does that, [`WeakTr::forward`] keeps them attached (inference).
//! Pooling happens before the channel permutation (max/mean over tokens commutes with it),
//! so the fusion costs O(L·N·D + L·h·N²) on top of the backbone.

use std::collections::HashMap;

use candle_core::{bail, DType, Device, Module, Result, Tensor, D};
use serde::{Deserialize, Serialize};
use wsss_vit::layers::Linear;
use wsss_vit::{Config, Strictness, Taps, Vit};

use crate::{check_request, class_index, tokens_to_map, Cam, CamGenerator};

/// Token pooling of the AAF features (`--pool-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenPool {
    /// Max over tokens (the released models: `--pool-type max`).
    #[default]
    Max,
    /// Mean over tokens (the code's default).
    Avg,
}

/// AAF hyperparameters (`params.aaf` of the golden cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AafConfig {
    /// Head FFN reduction r: hidden width `int(L·h / r)` (released: 8).
    pub reduction: usize,
    /// Feature FFN reduction: hidden width `int(hd / feat_reduction)` (released: 8).
    pub feat_reduction: usize,
    /// Token pooling.
    #[serde(default)]
    pub pool: TokenPool,
}

impl AafConfig {
    /// The released WeakTr models: r 8, fr 8, max pooling.
    pub fn weaktr() -> Self {
        Self {
            reduction: 8,
            feat_reduction: 8,
            pool: TokenPool::Max,
        }
    }
}

/// Which map [`WeakTr::generate`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeakTrMap {
    /// Class-to-patch attention ⊙ coarse CAM.
    Fused,
    /// The fused CAM propagated by the patch affinity (WeakTr's CAM generation).
    #[default]
    Fine,
}

/// Everything one WeakTr forward returns (token resolution).
#[derive(Debug, Clone)]
pub struct WeakTrOutput {
    /// Channel mean of each class token, [B, C].
    pub cls_logits: Tensor,
    /// GAP of the patch-head map, [B, C].
    pub coarse_logits: Tensor,
    /// GAP of the fine CAM, [B, C].
    pub fine_logits: Tensor,
    /// AAF weights in (0, 1), [B, L·h], index k = head·L + layer.
    pub head_weights: Tensor,
    /// ReLU(patch-head map), [B, C, gh, gw].
    pub coarse_cam: Tensor,
    /// Class-to-patch fused attention ⊙ coarse CAM, [B, C, gh, gw].
    pub fused_cam: Tensor,
    /// Fused CAM propagated by the patch affinity, [B, C, gh, gw].
    pub fine_cam: Tensor,
    /// Patch–patch block of the fused attention, [B, P, P].
    pub patch_affinity: Tensor,
}

/// The WeakTr network (backbone, patch head, AAF) with the official checkpoint's keys.
#[derive(Debug, Clone)]
pub struct WeakTr {
    vit: Vit,
    aaf: AafConfig,
    head_weight: Tensor,
    head_bias: Tensor,
    feat_ffn0: Linear,
    feat_ffn1: Linear,
    head_ffn0: Tensor,
    head_ffn2: Tensor,
    map: WeakTrMap,
}

fn take(
    tensors: &mut HashMap<String, Tensor>,
    key: &str,
    dims: &[usize],
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let Some(t) = tensors.remove(key) else {
        bail!("WeakTr state dict has no `{key}`");
    };
    if t.dims() != dims {
        bail!(
            "WeakTr weight `{key}` has shape {:?}, expected {dims:?}",
            t.dims()
        );
    }
    t.to_device(device)?.to_dtype(dtype)
}

impl WeakTr {
    /// Builds the network from an official state dict (`checkpoint["model"]`): timm keys
    /// for the backbone, `head.{weight,bias}` [C, D, 3, 3], [C], and
    /// `adaptive_attention_fusion.{attn_feat_ffn.{0,1},attn_head_ffn.{0,2}}.*`.
    ///
    /// `cfg` must have `class_tokens = num_classes = C`, `final_norm = false` and (for the
    /// official models) `pos_embed_interp = DinoScaleFactor`.
    pub fn from_state_dict(
        cfg: &Config,
        aaf: AafConfig,
        mut tensors: HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let c = cfg.num_classes;
        if cfg.class_tokens != c || c == 0 {
            bail!(
                "WeakTr needs class_tokens = num_classes > 0, got {} and {c}",
                cfg.class_tokens
            );
        }
        let (l, h, d) = (cfg.depth, cfg.num_heads, cfg.embed_dim);
        let hd = cfg.head_dim();
        if aaf.reduction == 0 || aaf.feat_reduction == 0 {
            bail!("AAF reductions must be at least 1");
        }
        let hr = l * h / aaf.reduction;
        let fr = hd / aaf.feat_reduction;
        if hr == 0 || fr == 0 {
            bail!("AAF hidden widths int(L·h/r) = {hr} and int(hd/fr) = {fr} must be at least 1");
        }
        let lh = l * h;
        let prefix = "adaptive_attention_fusion.";
        let head_weight = take(&mut tensors, "head.weight", &[c, d, 3, 3], dtype, device)?;
        let head_bias = take(&mut tensors, "head.bias", &[c], dtype, device)?;
        let f0w = take(
            &mut tensors,
            &format!("{prefix}attn_feat_ffn.0.weight"),
            &[fr, hd],
            dtype,
            device,
        )?;
        let f0b = take(
            &mut tensors,
            &format!("{prefix}attn_feat_ffn.0.bias"),
            &[fr],
            dtype,
            device,
        )?;
        let f1w = take(
            &mut tensors,
            &format!("{prefix}attn_feat_ffn.1.weight"),
            &[1, fr],
            dtype,
            device,
        )?;
        let f1b = take(
            &mut tensors,
            &format!("{prefix}attn_feat_ffn.1.bias"),
            &[1],
            dtype,
            device,
        )?;
        let head_ffn0 = take(
            &mut tensors,
            &format!("{prefix}attn_head_ffn.0.weight"),
            &[hr, lh],
            dtype,
            device,
        )?;
        let head_ffn2 = take(
            &mut tensors,
            &format!("{prefix}attn_head_ffn.2.weight"),
            &[lh, hr],
            dtype,
            device,
        )?;
        let vit = Vit::from_state_dict(cfg, tensors, Strictness::AllowUnexpected, dtype, device)
            .map_err(candle_core::Error::wrap)?;
        Ok(Self {
            vit,
            aaf,
            head_weight,
            head_bias,
            feat_ffn0: Linear::new(f0w, Some(f0b)),
            feat_ffn1: Linear::new(f1w, Some(f1b)),
            head_ffn0,
            head_ffn2,
            map: WeakTrMap::default(),
        })
    }

    /// Chooses the map that [`CamGenerator::generate`] returns.
    pub fn with_map(mut self, map: WeakTrMap) -> Self {
        self.map = map;
        self
    }

    /// The backbone.
    pub fn vit(&self) -> &Vit {
        &self.vit
    }

    /// The full eval-mode forward.
    ///
    /// # Shapes
    /// - `images`: [B, 3, H, W] f32 (ImageNet-normalised); P = gh·gw, N = C + P.
    /// - returns [`WeakTrOutput`].
    ///
    /// Cost: the backbone, O(B·C·D·9·P) for the head, O(B·L·(N·D + h·N²)) for the fusion
    /// and O(B·C·P²) for the fine CAM; memory O(B·L·h·N²) for the attention maps.
    pub fn forward(&self, images: &Tensor) -> Result<WeakTrOutput> {
        self.forward_impl(images, false)
    }

    /// The training forward of the official code: the AAF inputs (attention maps, branch
    /// outputs) and the coarse CAM are detached, so a loss on `fine_logits` trains only the
    /// AAF module while losses on `cls_logits` and `coarse_logits` train the backbone and
    /// the patch head (WeakTr `models.py`, `attn_weights.detach().clone()`,
    /// `x_patch.detach().clone()`).
    ///
    /// # Shapes
    /// As [`WeakTr::forward`].
    pub fn forward_train(&self, images: &Tensor) -> Result<WeakTrOutput> {
        self.forward_impl(images, true)
    }

    fn forward_impl(&self, images: &Tensor, detach: bool) -> Result<WeakTrOutput> {
        let cfg = self.vit.config();
        let (c, l, h) = (cfg.num_classes, cfg.depth, cfg.num_heads);
        let hd = cfg.head_dim();
        let taps = Taps {
            attention: true,
            branch_outputs: true,
            ..Taps::default()
        };
        let out = self.vit.forward_tapped(images, taps)?;
        let Some(cls_logits) = out.logits.clone() else {
            bail!("WeakTr's ViT must produce class-token logits");
        };
        let (gh, gw) = out.grid;
        let p = gh * gw;
        let b = out.tokens.dim(0)?;
        let n = c + p;

        let features = tokens_to_map(&out.patch_tokens(c)?, out.grid)?;
        let head_map = features
            .conv2d(&self.head_weight, 1, 1, 1, 1)?
            .broadcast_add(&self.head_bias.reshape((1, c, 1, 1))?)?;
        let coarse_logits = head_map.mean(D::Minus1)?.mean(D::Minus1)?;
        let coarse_cam = if detach {
            head_map.detach().relu()?
        } else {
            head_map.relu()?
        };
        let detached = |ts: &[Tensor]| -> Vec<Tensor> {
            ts.iter()
                .map(|t| if detach { t.detach() } else { t.clone() })
                .collect()
        };

        // AAF weights: pool each layer's branch output over tokens, then split channels
        // as (hd, h) with the head index fastest.
        let pooled = detached(&out.branch_outputs)
            .iter()
            .map(|branch| match self.aaf.pool {
                TokenPool::Max => branch.max(1),
                TokenPool::Avg => branch.mean(1),
            })
            .collect::<Result<Vec<_>>>()?;
        let pooled = Tensor::stack(&pooled, 0)? // [L, B, D]
            .reshape((l, b, hd, h))?
            .permute((1, 3, 0, 2))?
            .reshape((b, h * l, hd))?;
        let t = self
            .feat_ffn1
            .forward(&self.feat_ffn0.forward(&pooled)?)?
            .reshape((b, h * l))?;
        let hidden = t.matmul(&self.head_ffn0.t()?)?.relu()?;
        let head_weights = candle_nn::ops::sigmoid(&hidden.matmul(&self.head_ffn2.t()?)?)?;

        // Fused attention: mean over k = head·L + layer of w_k·A_k, only the patch columns,
        // summed layer by layer (one [B, 1, h] × [B, h, N·N] product each) so that the L
        // maps are read once and never copied into one [B, h, L, N, N] tensor.
        let per_layer = head_weights.reshape((b, h, l))?;
        let mut weighted: Option<Tensor> = None;
        for (layer, attention) in detached(&out.attention).iter().enumerate() {
            let w = per_layer
                .narrow(2, layer, 1)?
                .transpose(1, 2)?
                .contiguous()?; // [B, 1, h]
            let sum = w.matmul(&attention.reshape((b, h, n * n))?)?; // [B, 1, N·N]
            weighted = Some(match weighted {
                None => sum,
                Some(acc) => (acc + sum)?,
            });
        }
        let Some(weighted) = weighted else {
            bail!("WeakTr needs at least one block");
        };
        let fused = (weighted.reshape((b, n, n))?.narrow(2, c, p)? / (h * l) as f64)?;
        let cross = fused.narrow(1, 0, c)?.reshape((b, c, gh, gw))?;
        let fused_cam = (cross * &coarse_cam)?;
        let patch_affinity = fused.narrow(1, c, p)?.contiguous()?;
        let fine_cam = fused_cam
            .reshape((b, c, p))?
            .matmul(&patch_affinity.t()?)?
            .reshape((b, c, gh, gw))?;
        let fine_logits = fine_cam.mean(D::Minus1)?.mean(D::Minus1)?;
        Ok(WeakTrOutput {
            cls_logits,
            coarse_logits,
            fine_logits,
            head_weights,
            coarse_cam,
            fused_cam,
            fine_cam,
            patch_affinity,
        })
    }
}

impl CamGenerator for WeakTr {
    /// The fine (default) or fused CAM, [K, gh, gw].
    fn generate(&self, image: &Tensor, classes: &[usize]) -> Result<Cam> {
        check_request(image, classes, self.num_classes())?;
        let out = self.forward(image)?;
        let maps = match self.map {
            WeakTrMap::Fused => out.fused_cam,
            WeakTrMap::Fine => out.fine_cam,
        };
        let index = class_index(classes, image.device())?;
        Ok(Cam {
            scores: maps.squeeze(0)?.index_select(&index, 0)?,
            classes: classes.to_vec(),
        })
    }

    fn num_classes(&self) -> usize {
        self.vit.config().num_classes
    }
}
