//! One adapter per golden op: read the case's inputs and params, call the library, return
//! the named outputs. Adapters hold no algorithm code.

mod cam;
mod crf;
mod loss;
mod metrics;
mod refine;
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
    "label.threshold",
    "label.reliable",
    "refine.par",
    "refine.pamr",
    "label.getam_completion",
    "loss.gradient_clipping",
    "aream.affinity_target",
    "aream.loss",
    "crf.dense_inference",
    "crf.dense_labels",
    "loss.dense_crf",
    "loss.gated_crf",
    "cam.classic",
    "cam.getam",
    "cam.weaktr",
    "aream.cam",
    "metrics.confusion",
];

/// Runs `case` through the adapter of its op.
pub fn run(case: &Case) -> Result<Outputs> {
    match case.spec.op.as_str() {
        "metrics.confusion" => metrics::confusion(case),
        "ops.resize" => resize::resize(case),
        "vit.forward" => vit::forward(case),
        "label.threshold" => refine::threshold(case),
        "label.reliable" => refine::reliable(case),
        "refine.par" => refine::par(case),
        "refine.pamr" => refine::pamr(case),
        "label.getam_completion" => refine::getam_completion(case),
        "loss.gradient_clipping" => loss::gradient_clipping(case),
        "aream.affinity_target" => loss::affinity_target(case),
        "aream.loss" => loss::aream_loss(case),
        "crf.dense_inference" => crf::dense_inference(case),
        "crf.dense_labels" => crf::dense_labels(case),
        "loss.dense_crf" => crf::dense_crf_loss(case),
        "loss.gated_crf" => crf::gated_crf_loss(case),
        "cam.classic" => cam::classic(case),
        "cam.getam" => cam::getam(case),
        "cam.weaktr" => cam::weaktr(case),
        "aream.cam" => cam::aream(case),
        other => bail!("unknown op `{other}` (no adapter in xtask/src/golden/ops)"),
    }
}
