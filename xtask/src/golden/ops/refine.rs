//! Adapters of the `label.*` and `refine.*` ops (wsss-refine).

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use wsss_refine::completion::{self, CompletionConfig, Conflict};
use wsss_refine::pamr::{self, PamrConfig};
use wsss_refine::par::{self, ParConfig};
use wsss_refine::threshold::{cam_to_label, reliable_label, ReliableConfig, ThresholdConfig};

use super::{Case, Outputs};

/// A `[K]` i64 class list as indices.
fn classes(t: &Tensor) -> Result<Vec<usize>> {
    t.to_dtype(DType::I64)?
        .flatten_all()?
        .to_vec1::<i64>()?
        .into_iter()
        .map(|c| match usize::try_from(c) {
            Ok(c) => Ok(c),
            Err(_) => bail!("negative class index {c}"),
        })
        .collect()
}

fn one(name: &str, t: Tensor) -> Outputs {
    [(name.to_string(), t)].into()
}

pub fn threshold(case: &Case) -> Result<Outputs> {
    let cfg = ThresholdConfig {
        background_threshold: case.param_or("bg_threshold", 0.2)?,
    };
    let label = cam_to_label(
        case.tensor("cams")?,
        &classes(case.tensor("classes")?)?,
        &cfg,
    )?;
    Ok(one("label", label))
}

pub fn reliable(case: &Case) -> Result<Outputs> {
    let cfg = ReliableConfig {
        low: case.param_or("low", 0.3)?,
        high: case.param_or("high", 0.7)?,
    };
    let label = reliable_label(
        case.tensor("cams")?,
        &classes(case.tensor("classes")?)?,
        &cfg,
    )?;
    Ok(one("label", label))
}

pub fn par(case: &Case) -> Result<Outputs> {
    let defaults = ParConfig::afa();
    let cfg = ParConfig {
        iterations: case.param_or("iterations", defaults.iterations)?,
        dilations: case.param_or("dilations", defaults.dilations)?,
        temperature: case.param_or("w1", defaults.temperature)?,
        position_weight: case.param_or("w2", defaults.position_weight)?,
    };
    let refined = par::refine(case.tensor("image")?, case.tensor("masks")?, &cfg)?;
    Ok(one("refined", refined))
}

pub fn pamr(case: &Case) -> Result<Outputs> {
    let defaults = PamrConfig::getam();
    let cfg = PamrConfig {
        iterations: case.param_or("iterations", defaults.iterations)?,
        dilations: case.param_or("dilations", defaults.dilations)?,
    };
    let refined = pamr::refine(case.tensor("image")?, case.tensor("masks")?, &cfg)?;
    Ok(one("refined", refined))
}

pub fn getam_completion(case: &Case) -> Result<Outputs> {
    let defaults = CompletionConfig::getam();
    let conflict: String = case.param_or("conflict", "ignore".to_string())?;
    let cfg = CompletionConfig {
        background_power: case.param_or("bg_power", defaults.background_power)?,
        percentile: case.param_or("percentile", defaults.percentile)?,
        opening: case.param_or("opening", defaults.opening)?,
        saliency_threshold: case.param_or("saliency_threshold", defaults.saliency_threshold)?,
        conflict: conflict.parse::<Conflict>().map_err(anyhow::Error::msg)?,
    };
    let saliency = case.tensors.get("saliency");
    let label = completion::getam(
        case.tensor("cams")?,
        &classes(case.tensor("classes")?)?,
        saliency,
        &cfg,
    )?;
    Ok(one("label", label))
}
