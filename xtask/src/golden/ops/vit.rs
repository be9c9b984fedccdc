//! `vit.forward`: logits, tokens and per-layer attention of the backbone.

use anyhow::Result;
use wsss_vit::Taps;

use super::{Case, Outputs};

pub fn forward(case: &Case) -> Result<Outputs> {
    let vit = case.vit()?;
    let out = vit.forward_tapped(case.input(0)?, Taps::attention())?;
    let mut outputs: Outputs = [("tokens".to_string(), out.tokens)].into();
    if let Some(logits) = out.logits {
        outputs.insert("logits".into(), logits);
    }
    for (layer, attention) in out.attention.into_iter().enumerate() {
        outputs.insert(format!("attn.{layer}"), attention);
    }
    Ok(outputs)
}
