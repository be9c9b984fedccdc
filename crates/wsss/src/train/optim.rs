//! AdamW and SGD with PyTorch's update rules, parameter groups, and state that can be
//! saved and restored (candle-nn's optimisers keep their moments private, so a resumed run
//! could not continue exactly).

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// A named set of parameters sharing a learning-rate scale and weight decay.
#[derive(Debug, Clone)]
pub struct ParamGroup {
    /// `(name, var)` pairs; names key the saved state.
    pub params: Vec<(String, Var)>,
    /// Multiplies the optimiser's rate (WeakTr stage 2: 0.1 for the encoder).
    pub lr_scale: f64,
    /// Decoupled (AdamW) or L2 (SGD) weight decay.
    pub weight_decay: f64,
}

/// Which update rule, with its hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerKind {
    /// `torch.optim.AdamW`: decoupled decay `p ← p·(1 − lr·wd)`, then Adam with bias
    /// correction.
    AdamW {
        /// β1.
        beta1: f64,
        /// β2.
        beta2: f64,
        /// ε added to `sqrt(v̂)`.
        eps: f64,
    },
    /// `torch.optim.SGD` with momentum (no dampening, no Nesterov): `g ← g + wd·p`,
    /// `b ← μ·b + g` (b = g at the first step), `p ← p − lr·b`.
    Sgd {
        /// μ.
        momentum: f64,
    },
}

/// An optimiser over parameter groups; its moments are plain tensors keyed by name.
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    groups: Vec<ParamGroup>,
    /// Steps taken (bias correction uses it).
    pub step: usize,
    first: HashMap<String, Tensor>,
    second: HashMap<String, Tensor>,
}

impl Optimizer {
    /// A new optimiser with zero state.
    pub fn new(kind: OptimizerKind, groups: Vec<ParamGroup>) -> Self {
        Self {
            kind,
            groups,
            step: 0,
            first: HashMap::new(),
            second: HashMap::new(),
        }
    }

    /// One update at learning rate `lr` from the gradients in `grads`; parameters without
    /// a gradient are left alone (their state too).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        for group in &self.groups {
            let lr = lr * group.lr_scale;
            let wd = group.weight_decay;
            for (name, var) in &group.params {
                let Some(grad) = grads.get(var.as_tensor()) else {
                    continue;
                };
                // A Var's gradient can still record ops on forward tensors (candle detaches
                // only intermediate nodes' gradients); moments built from it would then hold
                // every step's graph alive, a leak of a whole forward pass per step.
                let grad = &grad.detach();
                let p = &var.as_tensor().detach();
                match self.kind {
                    OptimizerKind::AdamW { beta1, beta2, eps } => {
                        let m = match self.first.get(name) {
                            Some(m) => ((m * beta1)? + (grad * (1.0 - beta1))?)?,
                            None => (grad * (1.0 - beta1))?,
                        };
                        let v = match self.second.get(name) {
                            Some(v) => ((v * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?,
                            None => (grad.sqr()? * (1.0 - beta2))?,
                        };
                        let m_hat = (&m / (1.0 - beta1.powi(t)))?;
                        let v_hat = (&v / (1.0 - beta2.powi(t)))?;
                        let decayed = (p * (1.0 - lr * wd))?;
                        let update = (m_hat / (v_hat.sqrt()? + eps)?)?;
                        var.set(&(decayed - (update * lr)?)?)?;
                        self.first.insert(name.clone(), m);
                        self.second.insert(name.clone(), v);
                    }
                    OptimizerKind::Sgd { momentum } => {
                        let g = if wd != 0.0 {
                            (grad + (p * wd)?)?
                        } else {
                            grad.clone()
                        };
                        let buf = match self.first.get(name) {
                            Some(b) if momentum != 0.0 => ((b * momentum)? + &g)?,
                            _ => g,
                        };
                        var.set(&(p - (&buf * lr)?)?)?;
                        if momentum != 0.0 {
                            self.first.insert(name.clone(), buf);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The state as named tensors (`first.NAME`, `second.NAME`) for a safetensors file.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let first = self
            .first
            .iter()
            .map(|(k, v)| (format!("first.{k}"), v.clone()));
        let second = self
            .second
            .iter()
            .map(|(k, v)| (format!("second.{k}"), v.clone()));
        first.chain(second).collect()
    }

    /// Restores moments saved by [`Optimizer::state_tensors`] and the step count.
    pub fn load_state(&mut self, tensors: HashMap<String, Tensor>, step: usize) {
        self.step = step;
        self.first.clear();
        self.second.clear();
        for (key, tensor) in tensors {
            if let Some(name) = key.strip_prefix("first.") {
                self.first.insert(name.to_string(), tensor);
            } else if let Some(name) = key.strip_prefix("second.") {
                self.second.insert(name.to_string(), tensor);
            }
        }
    }

    /// Saves the moments to `path` (safetensors).
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.state_tensors(), path)
    }
}

/// Scales the gradients of `vars` so that their global L2 norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for var in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            total += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = total.sqrt();
    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        for var in vars {
            if let Some(g) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn quadratic_grads(x: &Var) -> Result<GradStore> {
        // f(x) = Σ (x − 3)²
        (x.as_tensor() - 3.0)?.sqr()?.sum_all()?.backward()
    }

    #[test]
    fn moments_keep_no_graph_alive() -> Result<()> {
        // x's gradient 2·x·y² is computed from y, a tracked tensor: unless the optimiser
        // detaches it, the moments hold the step's graph (a leak of one graph per step).
        let x = Var::new(&[1f32, 2.0], &Device::Cpu)?;
        let y = Var::new(&[3f32, 4.0], &Device::Cpu)?;
        let grads = (x.as_tensor() * y.as_tensor())?
            .sqr()?
            .sum_all()?
            .backward()?;
        assert!(grads.get(x.as_tensor()).is_some_and(|g| g.track_op()));
        for kind in [
            OptimizerKind::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            OptimizerKind::Sgd { momentum: 0.9 },
        ] {
            let group = ParamGroup {
                params: vec![("x".into(), x.clone()), ("y".into(), y.clone())],
                lr_scale: 1.0,
                weight_decay: 0.1,
            };
            let mut opt = Optimizer::new(kind, vec![group]);
            opt.step(&grads, 1e-3)?;
            opt.step(&grads, 1e-3)?;
            let state = opt.state_tensors();
            assert!(!state.is_empty());
            for (name, t) in state {
                assert!(!t.track_op(), "{name} records ops");
            }
        }
        Ok(())
    }

    #[test]
    fn first_adamw_step_moves_each_coordinate_by_lr() -> Result<()> {
        let x = Var::new(&[0f32, 10.0, 2.5], &Device::Cpu)?;
        let group = ParamGroup {
            params: vec![("x".into(), x.clone())],
            lr_scale: 1.0,
            weight_decay: 0.0,
        };
        let mut opt = Optimizer::new(
            OptimizerKind::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-12,
            },
            vec![group],
        );
        opt.step(&quadratic_grads(&x)?, 0.1)?;
        // m̂/sqrt(v̂) = sign(g) at the first step.
        let got = x.as_tensor().to_vec1::<f32>()?;
        for (g, want) in got.iter().zip([0.1f32, 9.9, 2.6]) {
            assert!((g - want).abs() < 1e-5, "{got:?}");
        }
        Ok(())
    }

    #[test]
    fn optimisers_converge_and_state_round_trips() -> Result<()> {
        for (kind, lr) in [
            (
                OptimizerKind::AdamW {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                },
                0.3,
            ),
            (OptimizerKind::Sgd { momentum: 0.9 }, 0.05),
        ] {
            let run = |steps_before_restart: Option<usize>| -> Result<Vec<f32>> {
                let x = Var::new(&[0f32, 10.0], &Device::Cpu)?;
                let group = || ParamGroup {
                    params: vec![("x".into(), x.clone())],
                    lr_scale: 1.0,
                    weight_decay: 0.01,
                };
                let mut opt = Optimizer::new(kind, vec![group()]);
                for i in 0..100 {
                    if Some(i) == steps_before_restart {
                        let saved = opt.state_tensors();
                        let step = opt.step;
                        opt = Optimizer::new(kind, vec![group()]);
                        opt.load_state(saved, step);
                    }
                    opt.step(&quadratic_grads(&x)?, lr)?;
                }
                x.as_tensor().to_vec1::<f32>()
            };
            let straight = run(None)?;
            assert_eq!(
                straight,
                run(Some(23))?,
                "{kind:?}: restart changed the result"
            );
            assert!(
                straight.iter().all(|v| (v - 3.0).abs() < 0.6),
                "{kind:?}: {straight:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn clipping_bounds_the_global_norm() -> Result<()> {
        let x = Var::new(&[0f32, 0.0], &Device::Cpu)?;
        let mut grads = quadratic_grads(&x)?; // g = (−6, −6), norm 8.485
        let norm = clip_grad_norm(&mut grads, std::slice::from_ref(&x), 1.0)?;
        assert!((norm - 72f64.sqrt()).abs() < 1e-4);
        let g = grads
            .get(x.as_tensor())
            .unwrap()
            .sqr()?
            .sum_all()?
            .to_scalar::<f32>()?
            .sqrt();
        assert!((g - 1.0).abs() < 1e-4, "{g}");
        Ok(())
    }
}
