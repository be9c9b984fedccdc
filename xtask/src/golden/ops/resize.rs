//! `ops.resize`: PyTorch `F.interpolate` with `size`.

use anyhow::{Context, Result};
use wsss_core::resize::{resize as resize_tensor, ResizeMode};

use super::{Case, Outputs};

pub fn resize(case: &Case) -> Result<Outputs> {
    let mode: String = case.param("mode")?;
    let mode: ResizeMode = mode.parse().map_err(anyhow::Error::msg)?;
    let align: bool = case.param("align_corners")?;
    let size: [usize; 2] = case.param("size")?;
    let y =
        resize_tensor(case.input(0)?, (size[0], size[1]), mode, align.into()).context("resize")?;
    Ok([("y".to_string(), y)].into())
}
