//! The golden harness: runs reference cases (`NAME.json` + `NAME.safetensors`, format in
//! `shared/golden/FORMAT.md`) through the real library code and compares the outputs.
//!
//! Dispatch is by op name, one small adapter per op in [`ops`]. An adapter receives the
//! [`Case`] and returns its named output tensors; comparison and reporting live here.

pub mod compare;
pub mod ops;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::Deserialize;

pub use compare::{compare, Comparison, Tolerance};

/// The JSON half of a case.
#[derive(Debug, Clone, Deserialize)]
pub struct CaseSpec {
    /// Op name, e.g. `vit.forward`.
    pub op: String,
    /// Op-specific parameters.
    #[serde(default)]
    pub params: serde_json::Value,
    /// Names of input tensors.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Prefix of the weight tensors, when the op has a model.
    #[serde(default)]
    pub weights: Option<String>,
    /// Expected outputs and their tolerances.
    pub outputs: BTreeMap<String, Tolerance>,
    /// Free text.
    #[serde(default)]
    pub note: String,
}

/// One loaded case: spec plus every tensor of its safetensors file (on the CPU).
#[derive(Debug)]
pub struct Case {
    /// File stem, e.g. `vit.forward-001`.
    pub name: String,
    /// The JSON spec.
    pub spec: CaseSpec,
    /// All tensors of the case, by name.
    pub tensors: HashMap<String, Tensor>,
}

impl Case {
    /// Loads `DIR/NAME.json` and `DIR/NAME.safetensors`.
    pub fn load(json_path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(json_path)
            .with_context(|| format!("reading {}", json_path.display()))?;
        let spec: CaseSpec = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", json_path.display()))?;
        let tensor_path = json_path.with_extension("safetensors");
        let tensors = candle_core::safetensors::load(&tensor_path, &Device::Cpu)
            .with_context(|| format!("reading {}", tensor_path.display()))?;
        let name = json_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            name,
            spec,
            tensors,
        })
    }

    /// The tensor called `name`, or an error naming the case.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .with_context(|| format!("case {} has no tensor `{name}`", self.name))
    }

    /// The `i`-th declared input.
    pub fn input(&self, i: usize) -> Result<&Tensor> {
        let name =
            self.spec.inputs.get(i).with_context(|| {
                format!("case {} declares fewer than {} inputs", self.name, i + 1)
            })?;
        self.tensor(name)
    }

    /// The model weights with the prefix stripped (empty when the case has none).
    pub fn weights(&self) -> HashMap<String, Tensor> {
        let Some(prefix) = &self.spec.weights else {
            return HashMap::new();
        };
        self.tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(prefix.as_str())
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect()
    }

    /// The ViT described by `params.model`, built from the case's weights (strict keys).
    pub fn vit(&self) -> Result<wsss_vit::Vit> {
        let cfg: wsss_vit::Config = self.param("model")?;
        Ok(wsss_vit::Vit::from_state_dict(
            &cfg,
            self.weights(),
            wsss_vit::Strictness::Strict,
            candle_core::DType::F32,
            &Device::Cpu,
        )?)
    }

    /// A parameter deserialised from `params[key]`.
    pub fn param<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        let value = self
            .spec
            .params
            .get(key)
            .with_context(|| format!("case {}: params has no `{key}`", self.name))?;
        serde_json::from_value(value.clone())
            .with_context(|| format!("case {}: params.{key} has an unexpected form", self.name))
    }

    /// Like [`Case::param`], with a default when the key is absent.
    pub fn param_or<T: serde::de::DeserializeOwned>(&self, key: &str, default: T) -> Result<T> {
        match self.spec.params.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(_) => self.param(key),
        }
    }
}

/// What happened to one case.
#[derive(Debug)]
pub struct CaseReport {
    /// Case stem.
    pub name: String,
    /// Op name.
    pub op: String,
    /// Per output comparisons, or the error that stopped the case.
    pub outcome: std::result::Result<Vec<(String, Comparison)>, String>,
}

impl CaseReport {
    /// `true` when the op ran and every output is within tolerance.
    pub fn passed(&self) -> bool {
        matches!(&self.outcome, Ok(c) if c.iter().all(|(_, c)| c.pass))
    }

    /// One human line: status, case, op, and the worst output.
    pub fn line(&self) -> String {
        let status = if self.passed() { "PASS" } else { "FAIL" };
        let detail = match &self.outcome {
            Err(e) => format!("error: {e}"),
            Ok(comparisons) => comparisons
                .iter()
                .map(|(name, c)| format!("{name} {c}"))
                .collect::<Vec<_>>()
                .join("; "),
        };
        format!("{status} {:<32} {:<26} {detail}", self.name, self.op)
    }
}

/// All `*.json` cases in `dir`, sorted by name.
pub fn case_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading golden folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no golden cases (*.json) in {}", dir.display());
    }
    Ok(files)
}

/// Whether `op` is selected by the prefixes (all ops when `prefixes` is empty).
pub fn selected(op: &str, prefixes: &[String]) -> bool {
    prefixes.is_empty() || prefixes.iter().any(|p| op.starts_with(p.as_str()))
}

/// Runs one case through its adapter and compares every declared output.
pub fn run_case(case: &Case) -> CaseReport {
    let outcome = ops::run(case)
        .map_err(|e| format!("{e:#}"))
        .and_then(|got| {
            case.spec
                .outputs
                .iter()
                .map(|(name, tolerance)| {
                    let want = case.tensor(name).map_err(|e| e.to_string())?;
                    let got = got
                        .get(name)
                        .ok_or_else(|| format!("adapter produced no output `{name}`"))?;
                    compare(got, want, tolerance)
                        .map(|c| (name.clone(), c))
                        .map_err(|e| format!("{name}: {e:#}"))
                })
                .collect()
        });
    CaseReport {
        name: case.name.clone(),
        op: case.spec.op.clone(),
        outcome,
    }
}

/// Runs every selected case of `dir`; returns the reports in name order.
pub fn run_dir(dir: &Path, prefixes: &[String]) -> Result<Vec<CaseReport>> {
    let mut reports = Vec::new();
    for path in case_files(dir)? {
        let case = match Case::load(&path) {
            Ok(case) => case,
            Err(e) => {
                // A broken file still counts, as a failure.
                let name = path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                reports.push(CaseReport {
                    name,
                    op: "?".into(),
                    outcome: Err(format!("{e:#}")),
                });
                continue;
            }
        };
        if selected(&case.spec.op, prefixes) {
            reports.push(run_case(&case));
        }
    }
    Ok(reports)
}
