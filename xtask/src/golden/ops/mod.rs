//! One adapter per golden op: read the case's inputs and params, call the library, return
//! the named outputs. Adapters hold no algorithm code.

mod cam;
mod resize;
mod vit;

use std::collections::HashMap;

use anyhow::{bail, Result};
use candle_core::Tensor;

use super::Case;

/// Named output tensors of one case.
pub type Outputs = HashMap<String, Tensor>;

/// Ops with an adapter, for `cargo xtask golden --list`.
pub const KNOWN_OPS: &[&str] = &[
    "ops.resize",
    "vit.forward",
    "cam.classic",
    "cam.getam",
    "cam.weaktr",
    "aream.cam",
];

/// Runs `case` through the adapter of its op.
pub fn run(case: &Case) -> Result<Outputs> {
    match case.spec.op.as_str() {
        "ops.resize" => resize::resize(case),
        "vit.forward" => vit::forward(case),
        "cam.classic" => cam::classic(case),
        "cam.getam" => cam::getam(case),
        "cam.weaktr" => cam::weaktr(case),
        "aream.cam" => cam::aream(case),
        other => bail!("unknown op `{other}` (no adapter in xtask/src/golden/ops)"),
    }
}
