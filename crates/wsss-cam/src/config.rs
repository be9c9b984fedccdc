//! [`CamConfig`]: the serde description of a CAM generator (backbone, method, scales), read
//! from TOML by `wsss cam --config`, and [`CamConfig::build`], which turns it and a state
//! dict (official key names) into a [`MultiScale`] generator.
//!
//! ```toml
//! [model]
//! preset = "deit_small_patch16_224"   # or `[model.config]` with every timm field
//! num_classes = 20
//!
//! [method]
//! kind = "getam"                       # classic | getam | weaktr | aream | rollout
//! start_layer = 6
//!
//! multiscale = "single"                # single | weaktr | toco, or a table
//! ```
//!
//! A top-level `multiscale` key must come before the first table in TOML; a
//! `[multiscale]` table (`scales`, `flip`, `flip_merge`, `eps`) works anywhere.

use std::collections::HashMap;

use candle_core::{bail, DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};
use wsss_vit::{Config, PosEmbedInterp, Strictness, Vit};

use crate::aream::{AffinityMode, AreamConfig};
use crate::{
    check_request, class_index, AafConfig, AreamCam, Cam, CamGenerator, ClassicCam, Getam,
    MultiScale, MultiScaleConfig, Rollout, WeakTr, WeakTrMap,
};

/// The backbone: a preset (timm name) or a full config, with optional overrides.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A [`Config::preset`] name (`deit_small_patch16_224`, `tiny_test`, …).
    #[serde(default)]
    pub preset: Option<String>,
    /// A full config (timm field names) instead of a preset.
    #[serde(default)]
    pub config: Option<Config>,
    /// Overrides the number of classes C (foreground classes: 20 for VOC).
    #[serde(default)]
    pub num_classes: Option<usize>,
    /// Overrides the number of class tokens (C for WeakTr / MCTformer).
    #[serde(default)]
    pub class_tokens: Option<usize>,
    /// Overrides whether the final LayerNorm is applied (WeakTr: false).
    #[serde(default)]
    pub final_norm: Option<bool>,
    /// Overrides the position-embedding interpolation.
    #[serde(default)]
    pub pos_embed_interp: Option<PosEmbedInterp>,
}

impl ModelSpec {
    /// The resolved backbone config; errors unless exactly one of `preset` and `config` is
    /// given, or when the preset is unknown.
    pub fn resolve(&self) -> Result<Config> {
        let mut cfg = match (&self.preset, &self.config) {
            (Some(name), None) => Config::preset(name).map_err(candle_core::Error::wrap)?,
            (None, Some(cfg)) => cfg.clone(),
            _ => bail!("[model] needs exactly one of `preset` and `config`"),
        };
        if let Some(c) = self.num_classes {
            cfg.num_classes = c;
        }
        if let Some(t) = self.class_tokens {
            cfg.class_tokens = t;
        }
        if let Some(f) = self.final_norm {
            cfg.final_norm = f;
        }
        if let Some(p) = self.pos_embed_interp {
            cfg.pos_embed_interp = p;
        }
        Ok(cfg)
    }
}

/// Which WeakTr map a [`CamMethod::Weaktr`] generator returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeakTrMapKind {
    /// The fused CAM propagated by the patch affinity (WeakTr's CAM generation).
    #[default]
    Fine,
    /// ReLU of the 3×3 patch head alone.
    Coarse,
    /// Class-to-patch attention ⊙ coarse CAM.
    Fused,
}

fn default_start_layer() -> usize {
    6
}

/// The CAM method and its hyperparameters (`kind = "…"` in TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CamMethod {
    /// ToCo-style classic CAM; the weights hold `classifier.weight` [C, D].
    Classic {},
    /// GETAM from block `start_layer` on (default 6, the paper's DeiT-S setting).
    Getam {
        /// First aggregated block.
        #[serde(default = "default_start_layer")]
        start_layer: usize,
    },
    /// WeakTr (official checkpoint keys: `head.*`, `adaptive_attention_fusion.*`).
    Weaktr {
        /// The returned map.
        #[serde(default)]
        map: WeakTrMapKind,
        /// AAF hyperparameters (default: the released models').
        #[serde(default = "AafConfig::weaktr")]
        aaf: AafConfig,
    },
    /// AReAM on an MCTformer-V2 base (`head.*`); defaults to the inference CAM.
    Aream {
        /// Shallow layers l < `layer_index` (default: all layers).
        #[serde(default)]
        layer_index: Option<usize>,
        /// Layer weighting (default uniform).
        #[serde(default)]
        mode: AffinityMode,
        /// Gate by the class-to-patch attention (default true).
        #[serde(default = "default_true")]
        class_gating: bool,
    },
    /// Attention rollout (a baseline without a class head).
    Rollout {},
}

fn default_true() -> bool {
    true
}

/// Scales and flips: a preset name or a full [`MultiScaleConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MultiScaleSpec {
    /// `single`, `weaktr` or `toco`.
    Preset(String),
    /// Explicit scales.
    Custom(MultiScaleConfig),
}

impl Default for MultiScaleSpec {
    fn default() -> Self {
        Self::Preset("single".into())
    }
}

impl MultiScaleSpec {
    /// The resolved config; errors on an unknown preset name.
    pub fn resolve(&self) -> Result<MultiScaleConfig> {
        Ok(match self {
            Self::Custom(c) => c.clone(),
            Self::Preset(name) => match name.as_str() {
                "single" => MultiScaleConfig::single(),
                "weaktr" => MultiScaleConfig::weaktr(),
                "toco" => MultiScaleConfig::toco(),
                other => bail!(
                    "unknown multiscale preset `{other}` (expected single, weaktr or toco, \
                     or a table with scales, flip, eps)"
                ),
            },
        })
    }
}

/// A complete CAM generator description (see the module docs for the TOML form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CamConfig {
    /// Scales and flips (default `single`: the image size, min–max normalised).
    #[serde(default)]
    pub multiscale: MultiScaleSpec,
    /// The backbone.
    pub model: ModelSpec,
    /// The method.
    pub method: CamMethod,
}

/// A boxed generator is a generator (so [`MultiScale`] can wrap any method).
impl<G: CamGenerator + ?Sized> CamGenerator for Box<G> {
    fn generate(&self, image: &Tensor, classes: &[usize]) -> Result<Cam> {
        (**self).generate(image, classes)
    }

    fn num_classes(&self) -> usize {
        (**self).num_classes()
    }
}

/// WeakTr's coarse CAM (ReLU of the patch head), [K, gh, gw].
struct WeakTrCoarse(WeakTr);

impl CamGenerator for WeakTrCoarse {
    fn generate(&self, image: &Tensor, classes: &[usize]) -> Result<Cam> {
        check_request(image, classes, self.num_classes())?;
        let out = self.0.forward(image)?;
        let index = class_index(classes, image.device())?;
        Ok(Cam {
            scores: out.coarse_cam.squeeze(0)?.index_select(&index, 0)?,
            classes: classes.to_vec(),
        })
    }

    fn num_classes(&self) -> usize {
        self.0.num_classes()
    }
}

/// The multi-scale generator a [`CamConfig`] describes.
pub type BoxedGenerator = MultiScale<Box<dyn CamGenerator + Send + Sync>>;

impl CamConfig {
    /// The backbone config.
    pub fn backbone(&self) -> Result<Config> {
        self.model.resolve()
    }

    /// Builds the generator from a state dict with the official key names (timm keys for
    /// the backbone, `classifier.weight` for classic CAM, `head.*` and
    /// `adaptive_attention_fusion.*` for WeakTr, `head.*` for AReAM).
    ///
    /// Maps come out at the image size, min–max normalised to [0, 1) (see [`MultiScale`]).
    pub fn build(
        &self,
        tensors: HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
    ) -> Result<BoxedGenerator> {
        let cfg = self.backbone()?;
        let vit = |tensors: HashMap<String, Tensor>| {
            Vit::from_state_dict(&cfg, tensors, Strictness::AllowUnexpected, dtype, device)
                .map_err(candle_core::Error::wrap)
        };
        let inner: Box<dyn CamGenerator + Send + Sync> = match &self.method {
            CamMethod::Classic {} => {
                Box::new(ClassicCam::from_state_dict(&cfg, tensors, dtype, device)?)
            }
            CamMethod::Getam { start_layer } => {
                if *start_layer >= cfg.depth {
                    bail!(
                        "GETAM start_layer {start_layer} must be below the depth {}",
                        cfg.depth
                    );
                }
                Box::new(Getam::new(vit(tensors)?, *start_layer))
            }
            CamMethod::Weaktr { map, aaf } => {
                let net = WeakTr::from_state_dict(&cfg, *aaf, tensors, dtype, device)?;
                match map {
                    WeakTrMapKind::Fine => Box::new(net.with_map(WeakTrMap::Fine)),
                    WeakTrMapKind::Fused => Box::new(net.with_map(WeakTrMap::Fused)),
                    WeakTrMapKind::Coarse => Box::new(WeakTrCoarse(net)),
                }
            }
            CamMethod::Aream {
                layer_index,
                mode,
                class_gating,
            } => {
                let aream = AreamConfig {
                    layer_index: layer_index.unwrap_or(cfg.depth),
                    mode: mode.clone(),
                    class_gating: *class_gating,
                    ..AreamConfig::inference(cfg.num_classes, cfg.depth)
                };
                Box::new(AreamCam::from_state_dict(
                    &cfg, aream, tensors, dtype, device,
                )?)
            }
            CamMethod::Rollout {} => Box::new(Rollout::new(vit(tensors)?)),
        };
        MultiScale::new(inner, self.multiscale.resolve()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<CamConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn parses_every_method() {
        let cfg = parse(
            "multiscale = \"toco\"\n[model]\npreset = \"tiny_test\"\nnum_classes = 4\n\
             [method]\nkind = \"getam\"\nstart_layer = 1\n",
        )
        .unwrap();
        assert_eq!(cfg.method, CamMethod::Getam { start_layer: 1 });
        assert_eq!(cfg.backbone().unwrap().num_classes, 4);
        assert_eq!(cfg.multiscale.resolve().unwrap(), MultiScaleConfig::toco());
        for kind in ["classic", "rollout", "weaktr", "aream"] {
            let cfg = parse(&format!(
                "[model]\npreset = \"tiny_test\"\n[method]\nkind = \"{kind}\"\n"
            ))
            .unwrap();
            assert_eq!(
                cfg.multiscale.resolve().unwrap(),
                MultiScaleConfig::single()
            );
        }
        let cfg = parse(
            "[model]\npreset = \"tiny_test\"\n[method]\nkind = \"weaktr\"\nmap = \"coarse\"\n\
             [multiscale]\nscales = [1.0, 0.5]\nflip = true\neps = 1e-5\n",
        )
        .unwrap();
        assert_eq!(cfg.multiscale.resolve().unwrap().scales, vec![1.0, 0.5]);
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(parse("[model]\npreset = \"tiny_test\"\n[method]\nkind = \"gradcam\"\n").is_err());
        assert!(parse(
            "[model]\npreset = \"tiny_test\"\n[method]\nkind = \"classic\"\nstart_layer = 1\n"
        )
        .is_err());
        let unknown = parse("[model]\npreset = \"nope\"\n[method]\nkind = \"classic\"\n").unwrap();
        assert!(unknown.backbone().is_err());
        let neither = parse("[model]\nnum_classes = 3\n[method]\nkind = \"classic\"\n").unwrap();
        assert!(neither.backbone().is_err());
        let bad_scales = parse(
            "multiscale = \"huge\"\n[model]\npreset = \"tiny_test\"\n[method]\nkind = \"rollout\"\n",
        )
        .unwrap();
        assert!(bad_scales.multiscale.resolve().is_err());
    }

    #[test]
    fn builds_and_checks_the_start_layer() -> Result<()> {
        let cfg =
            parse("[model]\npreset = \"tiny_test\"\n[method]\nkind = \"getam\"\nstart_layer = 5\n")
                .map_err(candle_core::Error::wrap)?;
        let weights = wsss_vit::init_weights(&cfg.backbone()?, 1)?;
        let err = cfg
            .build(weights.clone(), DType::F32, &Device::Cpu)
            .err()
            .unwrap();
        assert!(err.to_string().contains("start_layer"), "{err}");
        let cfg = CamConfig {
            method: CamMethod::Rollout {},
            ..cfg
        };
        let generator = cfg.build(weights, DType::F32, &Device::Cpu)?;
        let image = Tensor::randn(0f32, 1.0, (1, 3, 24, 16), &Device::Cpu)?;
        let cam = generator.generate(&image, &[1])?;
        assert_eq!(cam.scores.dims(), &[1, 24, 16]);
        Ok(())
    }
}
