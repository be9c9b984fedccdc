//! Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers",
//! arXiv 2005.00928, Sec. 3): a class-agnostic baseline.
//!
//! Heads are averaged, the residual connection is modelled by adding the identity,
//! `Â_l = ½·Ā_l + ½·I` (rows renormalised to sum to 1), and the layers are composed
//! `R = Â_{L−1} · … · Â_0`. Row t of R (a class token) over the patch columns is the map.
//! With one class token every class gets the same map; with C class tokens (MCTformer
//! style) class c reads row c.

use candle_core::{bail, Result, Tensor, D};
use wsss_vit::{Taps, Vit};

use crate::{check_request, Cam, CamGenerator};

/// The rollout matrix of a stack of attention maps.
///
/// # Shapes
/// - `attention`: L tensors [B, h, N, N] (post-softmax), in layer order.
/// - returns R [B, N, N].
///
/// Cost: O(L·B·(h·N² + N³)) time, O(B·N²) memory.
pub fn attention_rollout(attention: &[Tensor]) -> Result<Tensor> {
    let Some(first) = attention.first() else {
        bail!("attention rollout needs at least one layer");
    };
    let (b, _, n, _) = first.dims4()?;
    let eye = Tensor::eye(n, first.dtype(), first.device())?.broadcast_as((b, n, n))?;
    let mut rollout: Option<Tensor> = None;
    for a in attention {
        let mixed = ((a.mean(1)? * 0.5)? + (&eye * 0.5)?)?;
        let mixed = mixed.broadcast_div(&mixed.sum_keepdim(D::Minus1)?)?;
        rollout = Some(match rollout {
            None => mixed,
            Some(r) => mixed.matmul(&r)?,
        });
    }
    Ok(rollout.unwrap())
}

/// Rollout CAMs from a ViT.
#[derive(Debug, Clone)]
pub struct Rollout {
    vit: Vit,
}

impl Rollout {
    /// Rollout over all layers of `vit`.
    pub fn new(vit: Vit) -> Self {
        Self { vit }
    }
}

impl CamGenerator for Rollout {
    /// Class-token rows of the rollout over the patch columns, [K, gh, gw] (rows sum to
    /// at most 1; not normalised).
    fn generate(&self, image: &Tensor, classes: &[usize]) -> Result<Cam> {
        check_request(image, classes, self.num_classes())?;
        let out = self.vit.forward_tapped(image, Taps::attention())?;
        let r = attention_rollout(&out.attention)?.squeeze(0)?;
        let t = self.vit.config().class_tokens;
        let (gh, gw) = out.grid;
        let maps: Vec<Tensor> = classes
            .iter()
            .map(|&c| {
                let row = if t == 1 { 0 } else { c };
                r.get(row)?.narrow(0, t, gh * gw)?.reshape((gh, gw))
            })
            .collect::<Result<_>>()?;
        Ok(Cam {
            scores: Tensor::stack(&maps, 0)?,
            classes: classes.to_vec(),
        })
    }

    fn num_classes(&self) -> usize {
        self.vit
            .config()
            .num_classes
            .max(self.vit.config().class_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn two_layers_by_hand() -> Result<()> {
        // N = 2, one head. Layer 0: A = [[0, 1], [1, 0]] → Â = [[.5, .5], [.5, .5]].
        // Layer 1: A = [[1, 0], [0, 1]] → Â = I. R = I · Â_0 = [[.5, .5], [.5, .5]].
        let dev = Device::Cpu;
        let a0 = Tensor::new(&[[[[0f32, 1.], [1., 0.]]]], &dev)?;
        let a1 = Tensor::new(&[[[[1f32, 0.], [0., 1.]]]], &dev)?;
        let r = attention_rollout(&[a0.clone(), a1])?;
        assert_eq!(r.flatten_all()?.to_vec1::<f32>()?, vec![0.5, 0.5, 0.5, 0.5]);
        // Order matters: layer 0 = [[.8,.2],[.4,.6]] → Â_0 = [[.9,.1],[.2,.8]];
        // layer 1 = swap → Â_1 = [[.5,.5],[.5,.5]]; R = Â_1·Â_0 = [[.55,.45],[.55,.45]].
        let b0 = Tensor::new(&[[[[0.8f32, 0.2], [0.4, 0.6]]]], &dev)?;
        let r = attention_rollout(&[b0, a0])?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let want = [0.55f32, 0.45, 0.55, 0.45];
        assert!(
            r.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6),
            "{r:?}"
        );
        assert!(attention_rollout(&[]).is_err());
        Ok(())
    }
}
