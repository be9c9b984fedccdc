//! GETAM: gradient-weighted element-wise transformer attention maps (Sun et al., arXiv
//! 2112.02841, Eq. 3-5), as the official code computes them (`DPT/DPT.py:
//! generate_cam_2`, "cam * gradient^2").
//!
//! For class c and block l, with `A_l` the post-softmax attention [h, N, N] and
//! `G_l = ∂y_c/∂A_l`:
//!
//! `M_l = mean_h ReLU(G_l ⊙ A_l) ⊙ mean_h ReLU(G_l)`, `M = Σ_{l ≥ s} M_l`,
//! `getam_c = ReLU(M[0, 1:])` on the token grid,
//!
//! then bilinear upsampling (align_corners = true) and division by `max + 1e-5`. The
//! gradient enters twice (the paper's Eq. 4 multiplies by it once; the official code, which
//! we follow, squares it).
//!
//! Only the class token's row of `A_l` and `G_l` is used, so the maps cost O(L·h·N) once
//! the gradients exist.
//!
//! ## One forward, one backward for all K classes
//! The official code runs one backward per class with the graph retained
//! ([`GetamStrategy::PerClass`], candle's autograd through gradient probes, kept as the
//! oracle). [`GetamStrategy::Batched`] runs one forward at batch 1 and one hand-written,
//! activation-only backward carrying the K one-hot cotangents as a batch axis
//! ([`Vit::class_row_attention_gradients`]): no weight gradients, nothing below block s
//! differentiated, only the class-token rows propagated where nothing else is needed (the
//! last block's MLP and the whole of block s).

use candle_core::{bail, IndexOp, Result, Tensor};
use wsss_core::resize::{resize, AlignCorners, ResizeMode};
use wsss_vit::{one_hot, Taps, Vit};

use crate::{check_request, max_normalise, Cam, CamGenerator};

/// How the K per-class gradients are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GetamStrategy {
    /// Shared trunk below `start_layer`, batch K above it, one backward.
    #[default]
    Batched,
    /// One forward at batch 1, one backward per class (the authors' way; the test oracle).
    PerClass,
}

/// What [`Getam::compute`] returns.
#[derive(Debug, Clone)]
pub struct GetamOutput {
    /// Raw maps [K, gh, gw] (≥ 0, unnormalised).
    pub getam: Tensor,
    /// Upsampled, max-normalised maps [K, H, W] in [0, 1).
    pub getam_up: Tensor,
    /// Logits [1, C].
    pub logits: Tensor,
    /// `∂y_{c_0}/∂A_l` for the first requested class, per probed layer, [1, h, N, N]
    /// (only with [`GetamStrategy::PerClass`]; empty otherwise).
    pub first_class_gradients: Vec<(usize, Tensor)>,
}

/// GETAM on a ViT with a classification head.
#[derive(Debug, Clone)]
pub struct Getam {
    vit: Vit,
    start_layer: usize,
    strategy: GetamStrategy,
}

impl Getam {
    /// GETAM aggregating blocks `start_layer..depth` (the official code trains with 6 of
    /// 12), with the batched strategy.
    pub fn new(vit: Vit, start_layer: usize) -> Self {
        Self {
            vit,
            start_layer,
            strategy: GetamStrategy::Batched,
        }
    }

    /// The same with another strategy.
    pub fn with_strategy(mut self, strategy: GetamStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The backbone.
    pub fn vit(&self) -> &Vit {
        &self.vit
    }

    /// Maps, upsampled maps and logits for `classes` (any order, repeats allowed).
    ///
    /// `probes_from` (PerClass only) probes layers from that index on so that
    /// `first_class_gradients` covers them; it is clamped to `start_layer` at most.
    ///
    /// # Shapes
    /// - `image`: [1, 3, H, W], f32.
    /// - returns [`GetamOutput`].
    ///
    /// Cost (L blocks, s = start_layer, K classes, N tokens, D channels): Batched: one
    /// forward at batch 1 and one activation-only backward through L − s blocks for K
    /// cotangents, O(L·(N·D² + N²·D) + (L − s)·K·(N·D² + N²·D)) time, memory
    /// O((L − s)·(N·D + h·N²) + K·h·N²); PerClass: one forward at batch 1 and K autograd
    /// backwards through L − probes_from blocks, memory O((L − s)·h·N²) per backward.
    pub fn compute(
        &self,
        image: &Tensor,
        classes: &[usize],
        probes_from: Option<usize>,
    ) -> Result<GetamOutput> {
        let cfg = self.vit.config();
        check_request(image, classes, cfg.num_classes)?;
        if cfg.class_tokens != 1 {
            bail!(
                "GETAM needs one class token, the ViT has {}",
                cfg.class_tokens
            );
        }
        let depth = cfg.depth;
        let s = self.start_layer;
        if s >= depth {
            bail!("GETAM start_layer {s} must be below the depth {depth}");
        }
        if classes.is_empty() {
            bail!("GETAM needs at least one class");
        }
        let (_, _, h, w) = image.dims4()?;
        let (maps, logits, first) = match self.strategy {
            GetamStrategy::Batched => {
                let (maps, logits) = self.batched(image, classes)?;
                (maps, logits, Vec::new())
            }
            GetamStrategy::PerClass => {
                self.per_class(image, classes, probes_from.unwrap_or(s).min(s))?
            }
        };
        let up = resize(&maps, (h, w), ResizeMode::Bilinear, AlignCorners::Yes)?;
        Ok(GetamOutput {
            getam_up: max_normalise(&up, 1e-5)?,
            getam: maps,
            logits,
            first_class_gradients: first,
        })
    }

    fn batched(&self, image: &Tensor, classes: &[usize]) -> Result<(Tensor, Tensor)> {
        let cfg = self.vit.config();
        let cotangents = one_hot(classes, cfg.num_classes, image.dtype(), image.device())?;
        let out = self
            .vit
            .class_row_attention_gradients(image, &cotangents, self.start_layer)?;
        let maps = getam_maps(&out.attention, &out.gradients, out.grid)?;
        Ok((maps, out.logits))
    }

    #[allow(clippy::type_complexity)]
    fn per_class(
        &self,
        image: &Tensor,
        classes: &[usize],
        probes_from: usize,
    ) -> Result<(Tensor, Tensor, Vec<(usize, Tensor)>)> {
        let s = self.start_layer;
        let out = self
            .vit
            .forward_tapped(image, Taps::attention_with_probes(probes_from))?;
        let Some(logits) = &out.logits else {
            bail!("GETAM needs a ViT with a classification head");
        };
        let attention = &out.attention[s..];
        let mut maps = Vec::with_capacity(classes.len());
        let mut first = Vec::new();
        for (k, &class) in classes.iter().enumerate() {
            let grads = out.probes.gradients(&logits.i((0, class))?.backward()?)?;
            let used: Vec<Tensor> = grads
                .iter()
                .filter(|(l, _)| *l >= s)
                .map(|(_, g)| g.clone())
                .collect();
            maps.push(getam_maps(attention, &used, out.grid)?);
            if k == 0 {
                first = grads;
            }
        }
        Ok((Tensor::cat(&maps, 0)?, logits.detach(), first))
    }
}

/// GETAM maps from attention and attention gradients of the aggregated blocks.
///
/// # Shapes
/// - `attention`: per block [B_a, h, R, N] with B_a = 1 or K (post-softmax), R ≥ 1 rows
///   from the class token's on (R = N for full maps, R = 1 for class-token rows).
/// - `gradients`: per block [K, h, R', N], R' ≥ 1, the same blocks in the same order.
/// - `grid`: (gh, gw) with N = 1 + gh·gw.
/// - returns [K, gh, gw], `ReLU(Σ_l (mean_h ReLU(G⊙A) ⊙ mean_h ReLU(G))[0, 1:])`.
///
/// Cost: O(L·K·h·N) time and memory (only the class-token row is read).
pub fn getam_maps(
    attention: &[Tensor],
    gradients: &[Tensor],
    (gh, gw): (usize, usize),
) -> Result<Tensor> {
    if attention.len() != gradients.len() || attention.is_empty() {
        bail!(
            "getam_maps needs one gradient per attention map and at least one block, got {} and {}",
            attention.len(),
            gradients.len()
        );
    }
    let mut sum: Option<Tensor> = None;
    for (a, g) in attention.iter().zip(gradients) {
        let (k, _, _, n) = g.dims4()?;
        if n != 1 + gh * gw {
            bail!("attention over {n} tokens does not match 1 + {gh}x{gw}");
        }
        let a_row = a.narrow(2, 0, 1)?.narrow(3, 1, n - 1)?; // [B_a, h, 1, P]
        let g_row = g.narrow(2, 0, 1)?.narrow(3, 1, n - 1)?; // [K, h, 1, P]
        let weighted = g_row.broadcast_mul(&a_row)?.relu()?.mean(1)?; // [K, 1, P]
        let gate = g_row.relu()?.mean(1)?;
        let m = (weighted * gate)?.reshape((k, gh, gw))?;
        sum = Some(match sum {
            None => m,
            Some(s) => (s + m)?,
        });
    }
    sum.unwrap().relu()?.detach().contiguous()
}

impl CamGenerator for Getam {
    /// `getam_up`: [K, H, W], max-normalised.
    fn generate(&self, image: &Tensor, classes: &[usize]) -> Result<Cam> {
        let out = self.compute(image, classes, None)?;
        Ok(Cam {
            scores: out.getam_up,
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
    use candle_core::{DType, Device, Var};
    use candle_nn::{Init, VarBuilder, VarMap};
    use wsss_vit::{Config, GlobalPool};

    fn random_vit(cfg: &Config, _seed: u64) -> Result<Vit> {
        // Deterministic non-trivial weights: VarMap with randn init, seeded by shape order.
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let _ = Vit::new(cfg, vb.clone())?;
        for (name, var) in varmap.data().lock().unwrap().iter() {
            let init = if name.ends_with("bias") {
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.1,
                }
            } else if name.contains("norm") {
                Init::Randn {
                    mean: 1.0,
                    stdev: 0.1,
                }
            } else {
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.3,
                }
            };
            let t: Var = init.var(var.dims(), DType::F32, &dev)?;
            var.set(t.as_tensor())?;
        }
        // Rebuild from plain tensors so no weight is a Var.
        let tensors = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        Vit::new(cfg, VarBuilder::from_tensors(tensors, DType::F32, &dev))
    }

    fn cfg(pool: GlobalPool) -> Config {
        let mut cfg = Config::tiny_test();
        cfg.depth = 3;
        cfg.num_classes = 4;
        cfg.global_pool = pool;
        cfg
    }

    #[test]
    fn batched_equals_per_class_loop() -> Result<()> {
        for (pool, s) in [
            (GlobalPool::Token, 1),
            (GlobalPool::Avg, 0),
            (GlobalPool::Token, 2),
        ] {
            let vit = random_vit(&cfg(pool), 7)?;
            let image = Tensor::randn(0f32, 1.0, (1, 3, 24, 40), &Device::Cpu)?;
            let classes = [3, 0, 3, 1];
            let batched = Getam::new(vit.clone(), s).compute(&image, &classes, None)?;
            let oracle = Getam::new(vit, s)
                .with_strategy(GetamStrategy::PerClass)
                .compute(&image, &classes, None)?;
            let scale = oracle.getam.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(scale > 0.0, "degenerate test: all-zero maps");
            let diff = (batched.getam - &oracle.getam)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(
                diff <= 1e-5 * scale + 1e-9,
                "maps differ by {diff} (scale {scale})"
            );
            let diff = (batched.logits - oracle.logits)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-5, "logits differ by {diff}");
            assert_eq!(oracle.getam_up.dims(), &[4, 24, 40]);
            let max = oracle.getam_up.max_all()?.to_scalar::<f32>()?;
            assert!(max <= 1.0 && max > 0.9);
        }
        Ok(())
    }

    #[test]
    fn maps_square_the_gradient() -> Result<()> {
        // One block, one head, N = 2: M[0, 1] = ReLU(g·a)·ReLU(g).
        let dev = Device::Cpu;
        let a = Tensor::new(&[[[[0.4f32, 0.6], [0.5, 0.5]]]], &dev)?;
        let g = Tensor::new(&[[[[9f32, 2.0], [7., 7.]]]], &dev)?;
        let m = getam_maps(&[a], &[g], (1, 1))?;
        assert!((m.flatten_all()?.to_vec1::<f32>()?[0] - 0.6 * 2.0 * 2.0).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn bad_requests_error() -> Result<()> {
        let vit = random_vit(&cfg(GlobalPool::Token), 1)?;
        let image = Tensor::randn(0f32, 1.0, (1, 3, 16, 16), &Device::Cpu)?;
        assert!(Getam::new(vit.clone(), 3)
            .compute(&image, &[0], None)
            .is_err());
        assert!(Getam::new(vit.clone(), 1)
            .compute(&image, &[4], None)
            .is_err());
        assert!(Getam::new(vit.clone(), 1)
            .compute(&image, &[], None)
            .is_err());
        let batch = Tensor::randn(0f32, 1.0, (2, 3, 16, 16), &Device::Cpu)?;
        assert!(Getam::new(vit, 1).compute(&batch, &[0], None).is_err());
        Ok(())
    }
}
