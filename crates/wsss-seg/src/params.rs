//! Parameter lists with their initialisers, so that every head can be created from a seed
//! (for training from scratch and for tests) with the checkpoint's own key names.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarBuilder;
use wsss_core::random::{normal, rng, truncated_normal};

/// How a parameter starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// `trunc_normal_(std)` (timm; Linear weights, class embeddings).
    TruncNormal(f32),
    /// `N(0, std²)` (Segmenter's `proj_patch`/`proj_classes`: `d^−½ · randn`).
    Normal(f32),
    /// Zeros (biases, LayerNorm shift).
    Zeros,
    /// Ones (LayerNorm scale).
    Ones,
}

/// One parameter: key (relative to the head's prefix), shape and initialiser.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Key as in the official checkpoint, e.g. `blocks.0.attn.qkv.weight`.
    pub key: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Initialiser.
    pub init: Init,
}

impl Param {
    pub(crate) fn new(key: impl Into<String>, shape: &[usize], init: Init) -> Self {
        Self {
            key: key.into(),
            shape: shape.to_vec(),
            init,
        }
    }
}

/// A Linear layer's two parameters (`weight` [out, in] truncated normal 0.02, `bias` zero),
/// as timm's and Segmenter's `init_weights` set them.
pub(crate) fn linear_params(out: &mut Vec<Param>, prefix: &str, inp: usize, outp: usize) {
    out.push(Param::new(
        format!("{prefix}.weight"),
        &[outp, inp],
        Init::TruncNormal(0.02),
    ));
    out.push(Param::new(format!("{prefix}.bias"), &[outp], Init::Zeros));
}

/// A LayerNorm's two parameters (ones, zeros).
pub(crate) fn norm_params(out: &mut Vec<Param>, prefix: &str, dim: usize) {
    out.push(Param::new(format!("{prefix}.weight"), &[dim], Init::Ones));
    out.push(Param::new(format!("{prefix}.bias"), &[dim], Init::Zeros));
}

/// Draws every parameter of `params` in order from one seeded generator, with `prefix`
/// prepended to the keys (`"decoder."`, or `""`).
///
/// # Shapes
/// One f32 CPU tensor per parameter. O(total parameters) time and memory.
pub fn init_params(params: &[Param], prefix: &str, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut r = rng(seed);
    let dev = Device::Cpu;
    params
        .iter()
        .map(|p| {
            let shape = p.shape.as_slice();
            let t = match p.init {
                Init::TruncNormal(std) => truncated_normal(shape, std, &mut r, &dev)?,
                Init::Normal(std) => normal(shape, 0.0, std, &mut r, &dev)?,
                Init::Zeros => Tensor::zeros(shape, DType::F32, &dev)?,
                Init::Ones => Tensor::ones(shape, DType::F32, &dev)?,
            };
            Ok((format!("{prefix}{}", p.key), t))
        })
        .collect()
}

/// Turns a state dict into trainable [`Var`]s (sorted by key) and a [`VarBuilder`] whose
/// tensors are those variables, so that a head built from it is differentiable.
///
/// Cost: one copy of every tensor onto `device` in `dtype`.
pub fn trainable(
    weights: &HashMap<String, Tensor>,
    dtype: DType,
    device: &Device,
) -> Result<(Vec<(String, Var)>, VarBuilder<'static>)> {
    let mut keys: Vec<&String> = weights.keys().collect();
    keys.sort();
    let mut vars = Vec::with_capacity(keys.len());
    let mut tensors = HashMap::with_capacity(keys.len());
    for key in keys {
        let var = Var::from_tensor(&weights[key].to_dtype(dtype)?.to_device(device)?)?;
        tensors.insert(key.clone(), var.as_tensor().clone());
        vars.push((key.clone(), var));
    }
    Ok((vars, VarBuilder::from_tensors(tensors, dtype, device)))
}
