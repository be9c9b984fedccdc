//! Gradient probes: zero-valued `Var`s added after each attention softmax.
//!
//! candle's `backward` returns gradients only for `Var` leaves. Adding a zero `Var` `P_l`
//! after the softmax of layer l (`A_l = softmax(S_l) + P_l`) changes no value, and
//! `∂score/∂P_l = ∂score/∂A_l`: one `backward` yields the attention gradient of every probed
//! layer, as GETAM needs. Nothing is detached, so the rest of the graph is unchanged.
//!
//! Layers below the first probe get no gradient work at all: candle only differentiates
//! nodes that depend on a `Var`, and inference weights are plain tensors. Probing from
//! GETAM's `start_layer` therefore stops the backward there.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// The probes of one forward pass, by layer.
#[derive(Debug, Clone, Default)]
pub struct GradientProbes {
    probes: Vec<(usize, Var)>,
}

impl GradientProbes {
    pub(crate) fn push(&mut self, layer: usize, probe: Var) {
        self.probes.push((layer, probe));
    }

    /// Layers that carry a probe, in increasing order.
    pub fn layers(&self) -> impl Iterator<Item = usize> + '_ {
        self.probes.iter().map(|(l, _)| *l)
    }

    /// Whether no layer is probed.
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// The probe `Var` of `layer`, if probed.
    pub fn probe(&self, layer: usize) -> Option<&Var> {
        self.probes
            .iter()
            .find(|(l, _)| *l == layer)
            .map(|(_, v)| v)
    }

    /// `∂score/∂A_l` for each probed layer `l` (shape [B, h, N, N]), in layer order.
    /// A layer that the score does not depend on gets a zero gradient.
    pub fn gradients(&self, grads: &GradStore) -> Result<Vec<(usize, Tensor)>> {
        self.probes
            .iter()
            .map(|(layer, var)| {
                let grad = match grads.get(var.as_tensor()) {
                    Some(g) => g.clone(),
                    None => var.as_tensor().zeros_like()?,
                };
                Ok((*layer, grad))
            })
            .collect()
    }
}
