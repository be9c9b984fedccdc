//! AReAM's CAM (He et al., "Mitigating Undisciplined Over-Smoothing in Transformer for
//! Weakly Supervised Semantic Segmentation", arXiv 2305.03112, Sec. 3.3 and Eq. 6-8), on an
//! MCTformer-V2 base (Xu et al., arXiv 2204.02874): C class tokens and a 3×3 patch head.
//!
//! `cam_gated = ReLU(head(patches)) ⊙ (mean over all L layers and heads of the
//! class-to-patch attention)`, then propagated by the shallow-layer patch affinity
//! `S = (1/s) Σ_{l<s} w_l · Ā_l[T:, T:]` with `w_l = 1 − ẽ_l` (mode E, the entropies
//! min–max normalised over layers) or `w_l = 1` (mode U); `cam = S · cam_gated` (per
//! class, over patches). This is `tools/camutils.py::gen_msf_cam` of Jessie459/AReAM for one
//! view; note that mode E is a plain mean of the weighted maps, not normalised by
//! `Σ (1 − ẽ_l)`, as in the code. Inference (`generate_attention_maps`) uses all layers
//! with no weights: mode U with s = L, which is what [`AreamCam`] does by default.
//!
//! ## The layer entropy
//! AReAM weights shallow layers by how *focused* their attention is: a layer whose rows are
//! close to uniform (high entropy) over-smooths, so it gets a small weight `1 − ẽ_l`. The
//! entropies come from a trained baseline run over a data set and are fixed afterwards.
//! [`LayerEntropy`] accumulates them: for each image, layer l and head, the Shannon
//! entropy `−Σ_j A[i, j] ln A[i, j]` of every query row i of the post-softmax attention,
//! averaged over rows, heads and images; [`LayerEntropy::normalised`] min–max normalises
//! the L means to [0, 1]. (The paper states the measure but not the averaging order;
//! this is our documented choice: a plain mean over rows, heads and images.)

use std::collections::HashMap;

use candle_core::{bail, DType, Device, Result, Tensor, D};
use serde::{Deserialize, Serialize};
use wsss_vit::{Config, Strictness, Taps, Vit};

use crate::{check_request, class_index, tokens_to_map, Cam, CamGenerator};

/// How the shallow layers are weighted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum AffinityMode {
    /// Mode U: a plain mean of the shallow layers' affinities.
    #[default]
    Uniform,
    /// Mode E: layer l weighted by `1 − ẽ_l`, ẽ the min–max normalised layer entropies
    /// (one per layer of the network, at least `layer_index` of them).
    Entropy {
        /// ẽ_l in [0, 1].
        entropies: Vec<f64>,
    },
}

/// AReAM CAM hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AreamConfig {
    /// T prefix tokens (C class tokens for MCTformer, 1 for Conformer).
    pub num_prefix: usize,
    /// s: the shallow layers are l < s (MCTformer 7, Conformer 9; inference: all L).
    pub layer_index: usize,
    /// Layer weighting.
    #[serde(default)]
    pub mode: AffinityMode,
    /// Gate the CAM by the class-to-patch attention (MCTformer; requires T = C).
    pub class_gating: bool,
}

impl AreamConfig {
    /// The inference-time CAM of an MCTformer-V2 base with C classes and L layers: all
    /// layers, uniform, class gating.
    pub fn inference(num_classes: usize, depth: usize) -> Self {
        Self {
            num_prefix: num_classes,
            layer_index: depth,
            mode: AffinityMode::Uniform,
            class_gating: true,
        }
    }
}

/// The CAM before and after propagation.
#[derive(Debug, Clone)]
pub struct AreamOutput {
    /// [B, C, gh, gw]: the gated CAM (the input when `class_gating` is false).
    pub cam_gated: Tensor,
    /// [B, C, gh, gw]: after shallow-affinity propagation.
    pub cam: Tensor,
}

/// Gates `feature_map` by the class-to-patch attention and propagates it by the
/// (weighted) shallow-layer patch affinity.
///
/// # Shapes
/// - `feature_map`: [B, C, gh, gw], ≥ 0 (ReLU of the patch head).
/// - `attention`: L tensors [B, h, N, N] (post-softmax), N = T + gh·gw.
/// - returns [`AreamOutput`].
///
/// Cost: O(L·B·h·N² + B·C·P²) time, O(B·N²) memory beyond the inputs.
pub fn aream_cam(
    feature_map: &Tensor,
    attention: &[Tensor],
    cfg: &AreamConfig,
) -> Result<AreamOutput> {
    let (b, c, gh, gw) = feature_map.dims4()?;
    let p = gh * gw;
    let t = cfg.num_prefix;
    let l = attention.len();
    let s = cfg.layer_index;
    if l == 0 || s == 0 || s > l {
        bail!("AReAM layer_index {s} must be in 1..={l} (the number of attention maps)");
    }
    for a in attention {
        let (ab, _, n, n2) = a.dims4()?;
        if ab != b || n != t + p || n2 != n {
            bail!(
                "attention {:?} does not match batch {b} and {t} prefix + {gh}x{gw} patch tokens",
                a.dims()
            );
        }
    }
    let mean_heads: Vec<Tensor> = attention.iter().map(|a| a.mean(1)).collect::<Result<_>>()?; // L × [B, N, N]
    let cam_gated = if cfg.class_gating {
        if t != c {
            bail!("class gating needs one prefix token per class, got {t} tokens and {c} classes");
        }
        let all = (Tensor::stack(&mean_heads, 0)?.sum(0)? / l as f64)?;
        let gate = all
            .narrow(1, 0, t)?
            .narrow(2, t, p)?
            .reshape((b, c, gh, gw))?;
        (feature_map * gate)?
    } else {
        feature_map.clone()
    };
    let weights: Vec<f64> = match &cfg.mode {
        AffinityMode::Uniform => vec![1.0; s],
        AffinityMode::Entropy { entropies } => {
            if entropies.len() < s {
                bail!(
                    "mode E needs at least {s} layer entropies, got {}",
                    entropies.len()
                );
            }
            entropies[..s].iter().map(|e| 1.0 - e).collect()
        }
    };
    let mut affinity: Option<Tensor> = None;
    for (a, w) in mean_heads[..s].iter().zip(weights) {
        let block = (a.narrow(1, t, p)?.narrow(2, t, p)? * w)?;
        affinity = Some(match affinity {
            None => block,
            Some(sum) => (sum + block)?,
        });
    }
    let affinity = (affinity.unwrap() / s as f64)?.contiguous()?; // [B, P, P]
    let cam = cam_gated
        .reshape((b, c, p))?
        .matmul(&affinity.t()?)?
        .reshape((b, c, gh, gw))?;
    Ok(AreamOutput { cam_gated, cam })
}

/// Running mean of per-layer attention entropy over a data set (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct LayerEntropy {
    sums: Vec<f64>,
    images: usize,
}

impl LayerEntropy {
    /// Adds a batch: `attention` holds L tensors [B, h, N, N] (post-softmax).
    ///
    /// Cost: O(L·B·h·N²).
    pub fn update(&mut self, attention: &[Tensor]) -> Result<()> {
        if self.sums.is_empty() {
            self.sums = vec![0.0; attention.len()];
        } else if self.sums.len() != attention.len() {
            bail!(
                "expected {} layers, got {}",
                self.sums.len(),
                attention.len()
            );
        }
        let mut batch = 0;
        for (sum, a) in self.sums.iter_mut().zip(attention) {
            let (b, _, _, _) = a.dims4()?;
            batch = b;
            let a = a.to_dtype(DType::F32)?;
            // 0·ln 0 = 0: clamp inside the log only.
            let plogp = (&a * a.clamp(1e-30f32, 1f32)?.log()?)?;
            let row_entropy = plogp.sum(D::Minus1)?.neg()?; // [B, h, N]
            let per_image = row_entropy.mean(D::Minus1)?.mean(D::Minus1)?; // [B]
            *sum += per_image
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
        self.images += batch;
        Ok(())
    }

    /// Mean entropy per layer (nats).
    pub fn means(&self) -> Vec<f64> {
        let n = self.images.max(1) as f64;
        self.sums.iter().map(|s| s / n).collect()
    }

    /// ẽ_l: the means min–max normalised to [0, 1] (all zeros if they are all equal).
    pub fn normalised(&self) -> Vec<f64> {
        let means = self.means();
        let min = means.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = means.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let range = max - min;
        means
            .iter()
            .map(|m| if range > 0.0 { (m - min) / range } else { 0.0 })
            .collect()
    }
}

/// An MCTformer-V2 network (C class tokens, 3×3 patch head `head.{weight,bias}`) producing
/// AReAM CAMs.
#[derive(Debug, Clone)]
pub struct AreamCam {
    vit: Vit,
    head_weight: Tensor,
    head_bias: Tensor,
    config: AreamConfig,
}

impl AreamCam {
    /// Builds the backbone (timm keys) and takes `head.weight` [C, D, 3, 3] and
    /// `head.bias` [C] from the same state dict. `cfg` needs `class_tokens = num_classes`.
    pub fn from_state_dict(
        cfg: &Config,
        config: AreamConfig,
        mut tensors: HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (c, d) = (cfg.num_classes, cfg.embed_dim);
        let (Some(w), Some(bias)) = (tensors.remove("head.weight"), tensors.remove("head.bias"))
        else {
            bail!("MCTformer state dict needs `head.weight` and `head.bias`");
        };
        if w.dims() != [c, d, 3, 3] || bias.dims() != [c] {
            bail!(
                "patch head has shapes {:?}, {:?}; expected [{c}, {d}, 3, 3], [{c}]",
                w.dims(),
                bias.dims()
            );
        }
        if config.num_prefix != cfg.class_tokens {
            bail!(
                "AReAM num_prefix {} differs from the ViT's {} class tokens",
                config.num_prefix,
                cfg.class_tokens
            );
        }
        let vit = Vit::from_state_dict(cfg, tensors, Strictness::AllowUnexpected, dtype, device)
            .map_err(candle_core::Error::wrap)?;
        Ok(Self {
            vit,
            head_weight: w.to_device(device)?.to_dtype(dtype)?,
            head_bias: bias.to_device(device)?.to_dtype(dtype)?,
            config,
        })
    }

    /// The forward: feature map, attention, AReAM CAM.
    ///
    /// # Shapes
    /// - `images`: [B, 3, H, W]; returns [`AreamOutput`] at the token grid.
    pub fn forward(&self, images: &Tensor) -> Result<AreamOutput> {
        let out = self.vit.forward_tapped(images, Taps::attention())?;
        let t = self.vit.config().class_tokens;
        let c = self.vit.config().num_classes;
        let features = tokens_to_map(&out.patch_tokens(t)?, out.grid)?;
        let feature_map = features
            .conv2d(&self.head_weight, 1, 1, 1, 1)?
            .broadcast_add(&self.head_bias.reshape((1, c, 1, 1))?)?
            .relu()?;
        aream_cam(&feature_map, &out.attention, &self.config)
    }
}

impl CamGenerator for AreamCam {
    /// The propagated CAM [K, gh, gw].
    fn generate(&self, image: &Tensor, classes: &[usize]) -> Result<Cam> {
        check_request(image, classes, self.num_classes())?;
        let out = self.forward(image)?;
        let index = class_index(classes, image.device())?;
        Ok(Cam {
            scores: out.cam.squeeze(0)?.index_select(&index, 0)?,
            classes: classes.to_vec(),
        })
    }

    fn num_classes(&self) -> usize {
        self.vit.config().num_classes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_attention_has_maximal_entropy() -> Result<()> {
        let dev = Device::Cpu;
        let uniform = (Tensor::ones((1, 1, 4, 4), DType::F32, &dev)? / 4.0)?;
        let peaked = Tensor::eye(4, DType::F32, &dev)?.reshape((1, 1, 4, 4))?;
        let mut e = LayerEntropy::default();
        e.update(&[uniform, peaked])?;
        let means = e.means();
        assert!((means[0] - 4f64.ln()).abs() < 1e-6 && means[1].abs() < 1e-6);
        assert_eq!(e.normalised(), vec![1.0, 0.0]);
        Ok(())
    }

    #[test]
    fn identity_affinity_keeps_the_gated_cam() -> Result<()> {
        // T = C = 1, 2 patches; attention = identity on patches, class row (0, .5, .5).
        let dev = Device::Cpu;
        let a = Tensor::new(&[[[[0f32, 0.5, 0.5], [0., 1., 0.], [0., 0., 1.]]]], &dev)?;
        let fm = Tensor::new(&[[[[2f32, 4.]]]], &dev)?;
        let cfg = AreamConfig {
            num_prefix: 1,
            layer_index: 1,
            mode: AffinityMode::Uniform,
            class_gating: true,
        };
        let out = aream_cam(&fm, &[a], &cfg)?;
        assert_eq!(out.cam.flatten_all()?.to_vec1::<f32>()?, vec![1., 2.]);
        let bad = AreamConfig {
            layer_index: 2,
            ..cfg
        };
        assert!(aream_cam(&fm, &[Tensor::zeros((1, 1, 3, 3), DType::F32, &dev)?], &bad).is_err());
        Ok(())
    }
}
