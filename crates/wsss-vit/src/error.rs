//! Errors of model construction and weight loading.

use std::path::PathBuf;

/// Everything that can go wrong while building a [`crate::Vit`] or reading its weights.
#[derive(Debug, thiserror::Error)]
pub enum VitError {
    /// No preset with this name.
    #[error("unknown ViT preset `{0}`; known presets: {known}", known = crate::Config::PRESETS.join(", "))]
    UnknownPreset(String),
    /// A config field breaks an invariant.
    #[error("invalid ViT config field `{field}`: {why}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// What was expected.
        why: String,
    },
    /// A weight file could not be read or parsed.
    #[error("cannot read weights from {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        source: candle_core::Error,
    },
    /// The file extension names no known weight format.
    #[error("{path}: unknown weight format (expected .safetensors, .pth, .pt or .bin)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The state dict does not fit the config.
    #[error("weights do not match the ViT config:\n{0}")]
    Mismatch(KeyReport),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// Missing, unexpected and mis-shaped keys of a state dict against a config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyReport {
    /// Keys the model needs that the file lacks.
    pub missing: Vec<String>,
    /// Keys in the file that the model does not use.
    pub unexpected: Vec<String>,
    /// `(key, shape in file, shape expected)`.
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl KeyReport {
    /// Whether nothing is wrong (unexpected keys count unless `allow_unexpected`).
    pub fn is_clean(&self, allow_unexpected: bool) -> bool {
        self.missing.is_empty()
            && self.wrong_shape.is_empty()
            && (allow_unexpected || self.unexpected.is_empty())
    }
}

impl std::fmt::Display for KeyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 12;
        let list = |f: &mut std::fmt::Formatter<'_>, title: &str, keys: &[String]| {
            if keys.is_empty() {
                return Ok(());
            }
            let more = keys.len().saturating_sub(SHOWN);
            let shown: Vec<&str> = keys.iter().take(SHOWN).map(String::as_str).collect();
            write!(f, "  {title} ({}): {}", keys.len(), shown.join(", "))?;
            if more > 0 {
                write!(f, ", … and {more} more")?;
            }
            writeln!(f)
        };
        list(f, "missing keys", &self.missing)?;
        list(f, "unexpected keys", &self.unexpected)?;
        for (key, got, want) in &self.wrong_shape {
            writeln!(
                f,
                "  wrong shape: `{key}` is {got:?} in the file, the config needs {want:?}"
            )?;
        }
        Ok(())
    }
}
