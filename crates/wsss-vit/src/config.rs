//! The model description: timm's `VisionTransformer` arguments plus the WSSS variants.

use serde::{Deserialize, Serialize};

use crate::VitError;

/// What the classification logits are computed from (timm's `global_pool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GlobalPool {
    /// The class token through `head` (T = 1), or, with T > 1 class tokens
    /// (MCTformer/WeakTr), the channel mean of each class token (no head).
    #[default]
    Token,
    /// `head` on the mean of the patch tokens, after the final norm (timm with
    /// `fc_norm=False`).
    Avg,
}

/// How the patch part of the position embedding is resampled for a new token grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PosEmbedInterp {
    /// timm: bicubic to the target grid `size`, `align_corners=False`, no antialias;
    /// untouched when the grid already matches.
    #[default]
    Size,
    /// DINO/MCTformer/WeakTr/ToCo: bicubic called with `scale_factor = (g + 0.1)/g0` per
    /// axis (source coordinate `(o + ½)/s − ½`); untouched only when the patch count equals
    /// the stored one and the image is square.
    DinoScaleFactor,
}

/// What happens to pixels beyond the last whole patch when a side is not a multiple of
/// the patch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PatchPolicy {
    /// Drop them, as a stride-p convolution does (timm, WeakTr): `g = floor(H/p)`.
    #[default]
    Floor,
    /// Zero-pad the right and bottom up to the next multiple (AReAM/MCTformer's
    /// inference): `g = ceil(H/p)`.
    Pad,
}

fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_true() -> bool {
    true
}
fn default_eps() -> f64 {
    1e-6
}
fn default_class_tokens() -> usize {
    1
}

/// A ViT/DeiT architecture, with timm's field names (`params.model` of the golden cases).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Patch side p in pixels.
    pub patch_size: usize,
    /// Token width D.
    pub embed_dim: usize,
    /// Number of blocks L.
    pub depth: usize,
    /// Attention heads h (D divisible by h).
    pub num_heads: usize,
    /// MLP hidden width is `floor(D · mlp_ratio)`.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// `[H0, W0]`: the input size the position embedding was learned for.
    pub img_size: [usize; 2],
    /// Classes C of the head (0: no head).
    pub num_classes: usize,
    /// Prefix class tokens T ≥ 1 (T = C for MCTformer/WeakTr).
    #[serde(default = "default_class_tokens")]
    pub class_tokens: usize,
    /// Whether the fused qkv projection has a bias.
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    /// Pooling for the logits.
    #[serde(default)]
    pub global_pool: GlobalPool,
    /// Whether the final LayerNorm `norm` is applied (WeakTr/MCTformer: false).
    #[serde(default = "default_true")]
    pub final_norm: bool,
    /// LayerNorm epsilon (timm's ViT: 1e-6).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Position-embedding resampling rule.
    #[serde(default)]
    pub pos_embed_interp: PosEmbedInterp,
    /// Policy for image sides that are not multiples of the patch.
    #[serde(default)]
    pub patch_policy: PatchPolicy,
}

impl Config {
    fn timm(patch: usize, dim: usize, depth: usize, heads: usize, classes: usize) -> Self {
        Self {
            patch_size: patch,
            embed_dim: dim,
            depth,
            num_heads: heads,
            mlp_ratio: 4.0,
            img_size: [224, 224],
            num_classes: classes,
            class_tokens: 1,
            qkv_bias: true,
            global_pool: GlobalPool::Token,
            final_norm: true,
            layer_norm_eps: 1e-6,
            pos_embed_interp: PosEmbedInterp::Size,
            patch_policy: PatchPolicy::Floor,
        }
    }

    /// timm `deit_tiny_patch16_224` (D 192, 12 blocks, 3 heads, ImageNet-1k head).
    pub fn deit_tiny_patch16_224() -> Self {
        Self::timm(16, 192, 12, 3, 1000)
    }
    /// timm `deit_small_patch16_224` (D 384, 12 blocks, 6 heads).
    pub fn deit_small_patch16_224() -> Self {
        Self::timm(16, 384, 12, 6, 1000)
    }
    /// timm `deit_base_patch16_224` (D 768, 12 blocks, 12 heads).
    pub fn deit_base_patch16_224() -> Self {
        Self::timm(16, 768, 12, 12, 1000)
    }
    /// timm `vit_small_patch16_224` (same shapes as DeiT-S, AugReg weights).
    pub fn vit_small_patch16_224() -> Self {
        Self::timm(16, 384, 12, 6, 1000)
    }
    /// timm `vit_base_patch16_224`.
    pub fn vit_base_patch16_224() -> Self {
        Self::timm(16, 768, 12, 12, 1000)
    }
    /// A tiny random-weight configuration for tests and doctests: p 8, D 32, 2 blocks,
    /// 2 heads, 32×32 input, 3 classes.
    pub fn tiny_test() -> Self {
        Self {
            img_size: [32, 32],
            ..Self::timm(8, 32, 2, 2, 3)
        }
    }

    /// A small ViT for the embedded scenes benchmark, trained from scratch on a CPU:
    /// p 8 at 96×96 (a 12×12 grid), D 192, 6 blocks, 3 heads, 20 classes (set them with
    /// [`Config::with_classes`]).
    pub fn vit_scenes() -> Self {
        Self {
            img_size: [96, 96],
            ..Self::timm(8, 192, 6, 3, 20)
        }
    }

    /// The preset called `name` (timm's model names, plus `vit_scenes` and `tiny_test`).
    pub fn preset(name: &str) -> Result<Self, VitError> {
        Ok(match name {
            "deit_tiny_patch16_224" => Self::deit_tiny_patch16_224(),
            "deit_small_patch16_224" => Self::deit_small_patch16_224(),
            "deit_base_patch16_224" => Self::deit_base_patch16_224(),
            "vit_small_patch16_224" => Self::vit_small_patch16_224(),
            "vit_base_patch16_224" => Self::vit_base_patch16_224(),
            "vit_scenes" => Self::vit_scenes(),
            "tiny_test" => Self::tiny_test(),
            other => return Err(VitError::UnknownPreset(other.to_string())),
        })
    }

    /// Names accepted by [`Config::preset`].
    pub const PRESETS: [&'static str; 7] = [
        "deit_tiny_patch16_224",
        "deit_small_patch16_224",
        "deit_base_patch16_224",
        "vit_small_patch16_224",
        "vit_base_patch16_224",
        "vit_scenes",
        "tiny_test",
    ];

    /// Sets the number of classes (and, for MCTformer/WeakTr layouts, class tokens).
    pub fn with_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Head width `D / h`.
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads.max(1)
    }

    /// MLP hidden width `floor(D · mlp_ratio)`.
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }

    /// The stored position grid `(gh0, gw0)`.
    pub fn stored_grid(&self) -> (usize, usize) {
        (
            self.img_size[0] / self.patch_size.max(1),
            self.img_size[1] / self.patch_size.max(1),
        )
    }

    /// Whether a `head` Linear exists (C > 0, and not the T > 1 token-mean logits).
    pub fn has_head(&self) -> bool {
        self.num_classes > 0 && !(self.class_tokens > 1 && self.global_pool == GlobalPool::Token)
    }

    /// The token grid `(gh, gw)` for an `h × w` input under the patch policy.
    pub fn token_grid(&self, h: usize, w: usize) -> (usize, usize) {
        let p = self.patch_size.max(1);
        match self.patch_policy {
            PatchPolicy::Floor => (h / p, w / p),
            PatchPolicy::Pad => (h.div_ceil(p), w.div_ceil(p)),
        }
    }

    /// Checks the invariants that the forward relies on.
    pub fn validate(&self) -> Result<(), VitError> {
        let bad = |field: &'static str, why: String| Err(VitError::Config { field, why });
        if self.patch_size == 0 {
            return bad("patch_size", "must be at least 1".into());
        }
        if self.embed_dim == 0
            || self.num_heads == 0
            || !self.embed_dim.is_multiple_of(self.num_heads)
        {
            return bad(
                "num_heads",
                format!(
                    "embed_dim {} must be a positive multiple of num_heads {}",
                    self.embed_dim, self.num_heads
                ),
            );
        }
        if self.class_tokens == 0 {
            return bad("class_tokens", "must be at least 1".into());
        }
        let (gh0, gw0) = self.stored_grid();
        if gh0 == 0 || gw0 == 0 {
            return bad(
                "img_size",
                format!(
                    "{:?} is smaller than one {}-pixel patch",
                    self.img_size, self.patch_size
                ),
            );
        }
        if self.class_tokens > 1
            && self.global_pool == GlobalPool::Token
            && self.num_classes != self.class_tokens
        {
            return bad(
                "num_classes",
                format!(
                    "with {} class tokens and token pooling the logits are the class tokens, so num_classes must be {} (got {})",
                    self.class_tokens, self.class_tokens, self.num_classes
                ),
            );
        }
        if self.mlp_hidden() == 0 {
            return bad(
                "mlp_ratio",
                format!("{} gives an empty MLP", self.mlp_ratio),
            );
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return bad("layer_norm_eps", "must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_unknown_preset_errors() {
        for name in Config::PRESETS {
            Config::preset(name).unwrap().validate().unwrap();
        }
        assert!(matches!(
            Config::preset("resnet50"),
            Err(VitError::UnknownPreset(_))
        ));
    }

    #[test]
    fn serde_defaults_match_timm() {
        let cfg: Config = serde_json::from_str(
            r#"{"patch_size":16,"embed_dim":64,"depth":1,"num_heads":4,"img_size":[64,64],"num_classes":5}"#,
        )
        .unwrap();
        assert_eq!(cfg.layer_norm_eps, 1e-6);
        assert!(cfg.final_norm && cfg.qkv_bias && cfg.class_tokens == 1);
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let mut cfg = Config::tiny_test();
        cfg.num_heads = 3;
        assert!(matches!(
            cfg.validate(),
            Err(VitError::Config {
                field: "num_heads",
                ..
            })
        ));
        let mut cfg = Config::tiny_test();
        cfg.class_tokens = 4;
        assert!(matches!(
            cfg.validate(),
            Err(VitError::Config {
                field: "num_classes",
                ..
            })
        ));
    }

    #[test]
    fn token_grid_policies() {
        let mut cfg = Config::tiny_test();
        assert_eq!(cfg.token_grid(33, 47), (4, 5));
        cfg.patch_policy = PatchPolicy::Pad;
        assert_eq!(cfg.token_grid(33, 47), (5, 6));
    }
}
