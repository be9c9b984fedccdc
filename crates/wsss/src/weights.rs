//! Fetching pretrained weights from the Hugging Face Hub: the only code in `wsss` that
//! downloads, and only when a user asks (`wsss weights fetch`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// The file fetched when none is named: timm repositories ship `model.safetensors`.
pub const DEFAULT_FILE: &str = "model.safetensors";

/// Whether `HF_HUB_OFFLINE` asks for no network (`1`, `true`, `yes`, `on`).
pub fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// Looks `file` of the model repository `repo_id` up in the standard HF cache
/// (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`) without any network access.
pub fn cached(repo_id: &str, file: &str) -> Option<PathBuf> {
    hf_hub::Cache::from_env()
        .model(repo_id.to_string())
        .get(file)
}

/// Returns the local path of `file` from `repo_id`, downloading it into the HF cache when
/// missing. With `HF_HUB_OFFLINE` set, only the cache is consulted and a miss is an error
/// that says how to get the file.
pub fn fetch(repo_id: &str, file: &str) -> Result<PathBuf> {
    if let Some(path) = cached(repo_id, file) {
        return Ok(path);
    }
    if hub_offline() {
        bail!(
            "`{file}` of `{repo_id}` is not in the Hugging Face cache and HF_HUB_OFFLINE is set.\n\
             On a machine with network access run `wsss weights fetch {repo_id} --file {file}` and copy \
             the cache folder ({}) here, or download the file by hand and pass its path with --weights.",
            hf_hub::Cache::from_env().path().display()
        );
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .context("setting up the Hugging Face Hub client")?;
    api.model(repo_id.to_string()).get(file).with_context(|| {
        format!(
            "downloading `{file}` of `{repo_id}` from the Hugging Face Hub; without network access, \
             download it elsewhere and pass its path with --weights (or set HF_HUB_OFFLINE=1 to use the cache only)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_miss_explains_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("HF_HOME", dir.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
        let err = fetch("timm/deit_small_patch16_224.fb_in1k", DEFAULT_FILE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("HF_HUB_OFFLINE is set"), "{err}");
        assert!(
            err.contains("wsss weights fetch timm/deit_small_patch16_224.fb_in1k"),
            "{err}"
        );
    }
}
