//! Reading state dicts (safetensors, PyTorch pickles) and checking them against a config.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::{Config, KeyReport, Vit, VitError};

/// Keys under which training scripts nest the state dict in a `.pth` checkpoint, tried in
/// order after the top level (`torch.save(model.state_dict())`).
pub const NESTED_STATE_DICT_KEYS: [&str; 4] = ["model", "state_dict", "model_state_dict", "net"];

/// Reads every tensor of a weight file, on the CPU.
///
/// - `.safetensors`: read as is.
/// - `.pth`, `.pt`, `.bin`: PyTorch zip pickles through candle's reader; the state dict may
///   sit at the top level or under one of [`NESTED_STATE_DICT_KEYS`].
///
/// In both cases a `module.` prefix (DataParallel/DDP) is stripped from every key.
pub fn read_state_dict(path: impl AsRef<Path>) -> Result<HashMap<String, Tensor>, VitError> {
    let path = path.as_ref();
    let read_err = |source| VitError::Read {
        path: path.to_path_buf(),
        source,
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let tensors: Vec<(String, Tensor)> = match ext.as_str() {
        "safetensors" => candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(read_err)?
            .into_iter()
            .collect(),
        "pth" | "pt" | "bin" => read_pickle(path).map_err(read_err)?,
        _ => {
            return Err(VitError::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    };
    Ok(tensors
        .into_iter()
        .map(|(k, v)| {
            (
                k.strip_prefix("module.").map(str::to_string).unwrap_or(k),
                v,
            )
        })
        .collect())
}

fn read_pickle(path: &Path) -> candle_core::Result<Vec<(String, Tensor)>> {
    if !path.is_file() {
        candle_core::bail!("no such file");
    }
    let top = candle_core::pickle::read_all_with_key(path, None)?;
    if !top.is_empty() {
        return Ok(top);
    }
    for key in NESTED_STATE_DICT_KEYS {
        if let Ok(nested) = candle_core::pickle::read_all_with_key(path, Some(key)) {
            if !nested.is_empty() {
                return Ok(nested);
            }
        }
    }
    candle_core::bail!(
        "no tensors found at the top level nor under any of {:?}",
        NESTED_STATE_DICT_KEYS
    )
}

/// Every key the backbone of `cfg` reads, with its shape, in timm's names.
pub fn expected_keys(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (d, p, t, hm) = (
        cfg.embed_dim,
        cfg.patch_size,
        cfg.class_tokens,
        cfg.mlp_hidden(),
    );
    let (gh0, gw0) = cfg.stored_grid();
    let mut keys = vec![
        ("cls_token".to_string(), vec![1, t, d]),
        ("pos_embed".to_string(), vec![1, t + gh0 * gw0, d]),
        ("patch_embed.proj.weight".to_string(), vec![d, 3, p, p]),
        ("patch_embed.proj.bias".to_string(), vec![d]),
    ];
    for l in 0..cfg.depth {
        let b = format!("blocks.{l}");
        keys.push((format!("{b}.norm1.weight"), vec![d]));
        keys.push((format!("{b}.norm1.bias"), vec![d]));
        keys.push((format!("{b}.attn.qkv.weight"), vec![3 * d, d]));
        if cfg.qkv_bias {
            keys.push((format!("{b}.attn.qkv.bias"), vec![3 * d]));
        }
        keys.push((format!("{b}.attn.proj.weight"), vec![d, d]));
        keys.push((format!("{b}.attn.proj.bias"), vec![d]));
        keys.push((format!("{b}.norm2.weight"), vec![d]));
        keys.push((format!("{b}.norm2.bias"), vec![d]));
        keys.push((format!("{b}.mlp.fc1.weight"), vec![hm, d]));
        keys.push((format!("{b}.mlp.fc1.bias"), vec![hm]));
        keys.push((format!("{b}.mlp.fc2.weight"), vec![d, hm]));
        keys.push((format!("{b}.mlp.fc2.bias"), vec![d]));
    }
    if cfg.final_norm {
        keys.push(("norm.weight".to_string(), vec![d]));
        keys.push(("norm.bias".to_string(), vec![d]));
    }
    if cfg.has_head() {
        keys.push(("head.weight".to_string(), vec![cfg.num_classes, d]));
        keys.push(("head.bias".to_string(), vec![cfg.num_classes]));
    }
    keys
}

/// Compares a state dict with what `cfg` needs.
pub fn check_keys(cfg: &Config, tensors: &HashMap<String, Tensor>) -> KeyReport {
    let expected = expected_keys(cfg);
    let mut report = KeyReport::default();
    for (key, shape) in &expected {
        match tensors.get(key) {
            None => report.missing.push(key.clone()),
            Some(t) if t.dims() != shape.as_slice() => {
                report
                    .wrong_shape
                    .push((key.clone(), t.dims().to_vec(), shape.clone()))
            }
            Some(_) => {}
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
    report.unexpected = tensors
        .keys()
        .filter(|k| !known.contains(k.as_str()))
        .cloned()
        .collect();
    report.unexpected.sort();
    report
}

/// How strictly a state dict must fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strictness {
    /// Every key used, none missing, no shape off.
    #[default]
    Strict,
    /// Extra keys are fine (a WeakTr checkpoint carries its head and fusion module; a
    /// classifier checkpoint may carry an optimiser's extras).
    AllowUnexpected,
}

impl Vit {
    /// Builds the model from an in-memory state dict after checking its keys and shapes
    /// (a [`VitError::Mismatch`] lists every missing, unexpected and mis-shaped key).
    pub fn from_state_dict(
        cfg: &Config,
        tensors: HashMap<String, Tensor>,
        strictness: Strictness,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, VitError> {
        cfg.validate()?;
        let report = check_keys(cfg, &tensors);
        if !report.is_clean(strictness == Strictness::AllowUnexpected) {
            return Err(VitError::Mismatch(report));
        }
        let vb = VarBuilder::from_tensors(tensors, dtype, device);
        Ok(Vit::new(cfg, vb)?)
    }

    /// Reads a weight file ([`read_state_dict`]) and builds the model from it.
    pub fn from_file(
        cfg: &Config,
        path: impl AsRef<Path>,
        strictness: Strictness,
        device: &Device,
    ) -> Result<Self, VitError> {
        Self::from_state_dict(cfg, read_state_dict(path)?, strictness, DType::F32, device)
    }
}
