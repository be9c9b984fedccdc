//! Trainable parameters: one [`Var`] per checkpoint key.
//!
//! A model is built from `params.tensors()` (the `Var`s' own tensors, not copies), and the
//! optimiser updates the `Var`s in place (`Var::set` writes into the same storage), so the
//! model stays valid across steps and never needs rebuilding. Do not cache tensors derived
//! from the weights (a transposed copy, a dtype conversion) between steps.

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{bail, DType, Result, Tensor, Var};

use super::optim::ParamGroup;

/// Named trainable parameters in a stable (sorted) order.
#[derive(Debug, Clone, Default)]
pub struct Params {
    vars: BTreeMap<String, Var>,
}

impl Params {
    /// One `Var` per tensor (f32 copies on the tensors' devices).
    pub fn from_tensors(tensors: HashMap<String, Tensor>) -> Result<Self> {
        let mut vars = BTreeMap::new();
        for (k, t) in tensors {
            vars.insert(k, Var::from_tensor(&t.to_dtype(DType::F32)?)?);
        }
        Ok(Self { vars })
    }

    /// Adds (or replaces) parameters.
    pub fn extend(&mut self, tensors: HashMap<String, Tensor>) -> Result<()> {
        for (k, t) in tensors {
            self.vars
                .insert(k, Var::from_tensor(&t.to_dtype(DType::F32)?)?);
        }
        Ok(())
    }

    /// The `Var`s' tensors by name, for building a model (they track gradients).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// The tensors of the keys starting with `prefix`, the prefix stripped.
    pub fn tensors_with_prefix(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.vars
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(prefix)
                    .map(|s| (s.to_string(), v.as_tensor().clone()))
            })
            .collect()
    }

    /// Detached copies of the current values, for a checkpoint.
    pub fn snapshot(&self) -> Result<HashMap<String, Tensor>> {
        self.vars
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().copy()?)))
            .collect()
    }

    /// Overwrites the values from a checkpoint; every parameter must be present with its
    /// shape.
    pub fn load(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (k, v) in &self.vars {
            let Some(t) = tensors.get(k) else {
                bail!("checkpoint has no parameter `{k}`");
            };
            if t.dims() != v.dims() {
                bail!(
                    "checkpoint parameter `{k}` has shape {:?}, the model {:?}",
                    t.dims(),
                    v.dims()
                );
            }
            v.set(&t.to_dtype(v.dtype())?.to_device(v.device())?)?;
        }
        Ok(())
    }

    /// The variable called `name`.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(name)
    }

    /// `(name, var)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.vars.iter()
    }

    /// All variables.
    pub fn vars(&self) -> Vec<Var> {
        self.vars.values().cloned().collect()
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Scalar count.
    pub fn numel(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// Parameter groups: `group_of(name)` gives `(lr_scale, apply_decay)`; decayed
    /// parameters get `weight_decay`, the others 0.
    pub fn groups(
        &self,
        weight_decay: f64,
        group_of: impl Fn(&str, &Var) -> (f64, bool),
    ) -> Vec<ParamGroup> {
        let mut groups: Vec<ParamGroup> = Vec::new();
        for (k, v) in &self.vars {
            let (lr_scale, decay) = group_of(k, v);
            let wd = if decay { weight_decay } else { 0.0 };
            match groups
                .iter_mut()
                .find(|g| g.lr_scale == lr_scale && g.weight_decay == wd)
            {
                Some(g) => g.params.push((k.clone(), v.clone())),
                None => groups.push(ParamGroup {
                    params: vec![(k.clone(), v.clone())],
                    lr_scale,
                    weight_decay: wd,
                }),
            }
        }
        groups
    }

    /// Names of the parameters without a gradient in `grads` (a test aid: every trainable
    /// parameter should get one).
    pub fn missing_gradients(&self, grads: &GradStore) -> Vec<String> {
        self.vars
            .iter()
            .filter(|(_, v)| grads.get(v.as_tensor()).is_none())
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Whether `name` is a ViT backbone weight in timm's naming (optionally under `encoder.`
/// or `backbone.`): patch embedding, position embedding, blocks, final norm. Class tokens
/// are not: WeakTr and MCTformer grow several from ImageNet's one, so they start new.
pub fn is_backbone(name: &str) -> bool {
    let short = name
        .strip_prefix("encoder.")
        .or_else(|| name.strip_prefix("backbone."))
        .unwrap_or(name);
    short.starts_with("patch_embed.")
        || short == "pos_embed"
        || short.starts_with("blocks.")
        || short.starts_with("norm.")
}

/// timm's `param_groups_weight_decay` rule: no decay for 1-D tensors (biases, norms),
/// tokens and position embeddings.
pub fn timm_decays(name: &str, var: &Var) -> bool {
    !(var.rank() <= 1
        || name.ends_with(".bias")
        || name.ends_with("token")
        || name == "pos_embed"
        || name.ends_with("pos_embed"))
}

#[cfg(test)]
mod tests {
    use super::is_backbone;

    #[test]
    fn backbone_names_follow_timm() {
        for name in [
            "patch_embed.proj.weight",
            "pos_embed",
            "blocks.3.attn.qkv.weight",
            "norm.bias",
            "encoder.blocks.0.mlp.fc1.weight",
            "backbone.patch_embed.proj.bias",
        ] {
            assert!(is_backbone(name), "{name}");
        }
        for name in [
            "cls_token",
            "head.weight",
            "classifier.weight",
            "decoder.blocks.0.norm1.weight",
            "aaf.feat_ffn0.weight",
            "encoder.cls_token",
        ] {
            assert!(!is_backbone(name), "{name}");
        }
    }
}
