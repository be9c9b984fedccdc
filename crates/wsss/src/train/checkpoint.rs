//! Atomic, resumable checkpoints.
//!
//! A run folder holds `weights-STEP.safetensors`, `optimizer-STEP.safetensors` and
//! `state.json` naming them. Every file is written to a temporary name and renamed, and
//! `state.json` is renamed last, so a kill at any moment leaves either the previous
//! checkpoint or the new one, never a half-written file. Older step files are removed
//! after the new state is in place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Scalars of a training run that a resume needs.
///
/// The data order and augmentations are pure functions of `(seed, epoch, index)`
/// ([`super::data`]), so `epoch` and `batch_in_epoch` are the whole RNG position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Batches of the current epoch already trained on.
    #[serde(default)]
    pub batch_in_epoch: usize,
    /// Running sums of the logged step scalars of the current epoch.
    #[serde(default)]
    pub sums: std::collections::BTreeMap<String, f64>,
    /// Steps summed in `sums`.
    #[serde(default)]
    pub count: usize,
    /// Training seconds so far (all resumed segments).
    #[serde(default)]
    pub seconds: f64,
    /// 1-based epoch of `best_score`.
    #[serde(default)]
    pub best_epoch: Option<usize>,
    /// Optimiser steps taken.
    pub step: usize,
    /// Seed of the data-order generator.
    pub seed: u64,
    /// Best value of the model-selection criterion so far, if any.
    pub best_score: Option<f64>,
    /// Weight file of this checkpoint (relative to the run folder).
    pub weights_file: String,
    /// Optimiser-state file of this checkpoint.
    pub optimizer_file: String,
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    write(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Saves tensors as safetensors atomically.
pub fn save_tensors_atomic(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    write_atomic(path, |tmp| {
        Ok(candle_core::safetensors::save(tensors, tmp)?)
    })
}

/// Writes a checkpoint of `weights` and `optimizer_state` at `state.step` into `run_dir`.
pub fn save(
    run_dir: &Path,
    weights: &HashMap<String, Tensor>,
    optimizer_state: &HashMap<String, Tensor>,
    state: &TrainState,
) -> Result<TrainState> {
    let mut state = state.clone();
    state.weights_file = format!("weights-{:08}.safetensors", state.step);
    state.optimizer_file = format!("optimizer-{:08}.safetensors", state.step);
    save_tensors_atomic(weights, &run_dir.join(&state.weights_file))?;
    save_tensors_atomic(optimizer_state, &run_dir.join(&state.optimizer_file))?;
    let json = serde_json::to_vec_pretty(&state)?;
    write_atomic(&run_dir.join("state.json"), |tmp| {
        Ok(std::fs::write(tmp, &json)?)
    })?;
    for old in stale_files(run_dir, &state)? {
        std::fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(state)
}

fn stale_files(run_dir: &Path, keep: &TrainState) -> Result<Vec<PathBuf>> {
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(run_dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let is_step_file = (name.starts_with("weights-") || name.starts_with("optimizer-"))
            && name.ends_with(".safetensors");
        if is_step_file && name != keep.weights_file && name != keep.optimizer_file {
            stale.push(run_dir.join(name));
        }
    }
    Ok(stale)
}

/// A loaded checkpoint.
pub struct Checkpoint {
    /// Run scalars.
    pub state: TrainState,
    /// Model weights.
    pub weights: HashMap<String, Tensor>,
    /// Optimiser moments.
    pub optimizer: HashMap<String, Tensor>,
}

/// The latest checkpoint of `run_dir`, or `None` when the run has none yet.
pub fn load_latest(run_dir: &Path, device: &Device) -> Result<Option<Checkpoint>> {
    let state_path = run_dir.join("state.json");
    if !state_path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("reading {}", state_path.display()))?;
    let state: TrainState =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", state_path.display()))?;
    let load = |file: &str| {
        let path = run_dir.join(file);
        candle_core::safetensors::load(&path, device)
            .with_context(|| format!("reading {}", path.display()))
    };
    let weights = load(&state.weights_file)?;
    let optimizer = load(&state.optimizer_file)?;
    Ok(Some(Checkpoint {
        state,
        weights,
        optimizer,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn save_then_load_and_old_files_go() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let w = |v: f32| -> HashMap<String, Tensor> {
            [("a".to_string(), Tensor::full(v, 3, &Device::Cpu).unwrap())].into()
        };
        let state = TrainState {
            epoch: 1,
            step: 10,
            seed: 4,
            best_score: None,
            weights_file: String::new(),
            optimizer_file: String::new(),
            ..TrainState::default()
        };
        save(dir.path(), &w(1.0), &w(2.0), &state)?;
        let state2 = TrainState {
            epoch: 2,
            step: 20,
            ..state
        };
        save(dir.path(), &w(3.0), &w(4.0), &state2)?;
        let ckpt = load_latest(dir.path(), &Device::Cpu)?.expect("a checkpoint");
        assert_eq!((ckpt.state.epoch, ckpt.state.step), (2, 20));
        assert_eq!(
            ckpt.weights["a"].to_dtype(DType::F32)?.to_vec1::<f32>()?,
            vec![3.0; 3]
        );
        let files: Vec<_> = std::fs::read_dir(dir.path())?
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(load_latest(&dir.path().join("absent"), &Device::Cpu)?.is_none());
        Ok(())
    }
}
