//! One adapter per golden op: read the case's inputs and params, call the library, return
//! the named outputs. Adapters hold no algorithm code.

mod metrics;
mod resize;
mod vit;

use std::collections::HashMap;

use anyhow::{bail, Result};
use candle_core::Tensor;

use super::Case;

/// Named output tensors of one case.
pub type Outputs = HashMap<String, Tensor>;

/// Ops with an adapter, for `cargo xtask golden --list`.
pub const KNOWN_OPS: &[&str] = &["metrics.confusion", "ops.resize", "vit.forward"];

/// Runs `case` through the adapter of its op.
pub fn run(case: &Case) -> Result<Outputs> {
    match case.spec.op.as_str() {
        "metrics.confusion" => metrics::confusion(case),
        "ops.resize" => resize::resize(case),
        "vit.forward" => vit::forward(case),
        other => bail!("unknown op `{other}` (no adapter in xtask/src/golden/ops)"),
    }
}
