//! `program = "weaktr_stage1"` (placeholder until the stage-1 program lands).
use anyhow::{bail, Result};

use super::BuildContext;
use crate::train::config::TrainConfig;

/// WeakTr stage 1.
pub struct WeakTrStage1;

impl WeakTrStage1 {
    /// Not yet available.
    pub fn build(
        _cfg: &TrainConfig,
        _ctx: &BuildContext,
    ) -> Result<Box<dyn crate::train::Program>> {
        bail!("weaktr_stage1 is not implemented yet")
    }
}
