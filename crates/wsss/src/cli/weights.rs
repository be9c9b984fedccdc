//! `wsss weights fetch|inspect`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use wsss::vit::{check_keys, read_state_dict, Config};
use wsss::weights::{fetch, DEFAULT_FILE};

#[derive(Subcommand)]
pub enum WeightsCommand {
    /// Download a file of a Hub model repository into the standard HF cache and print its
    /// path (honours HF_HOME, HF_HUB_OFFLINE).
    Fetch {
        /// Repository id, e.g. `timm/deit_small_patch16_224.fb_in1k`.
        repo_id: String,
        /// File inside the repository.
        #[arg(long, default_value = DEFAULT_FILE)]
        file: String,
    },
    /// List the tensors of a weight file and check them against a ViT preset.
    Inspect {
        /// A `.safetensors` or `.pth` file.
        path: PathBuf,
        /// Preset to check the keys against (e.g. `deit_small_patch16_224`).
        #[arg(long)]
        preset: Option<String>,
    },
}

impl WeightsCommand {
    pub fn run(self) -> Result<()> {
        match self {
            WeightsCommand::Fetch { repo_id, file } => {
                println!("{}", fetch(&repo_id, &file)?.display());
            }
            WeightsCommand::Inspect { path, preset } => {
                let tensors = read_state_dict(&path)?;
                let mut names: Vec<_> = tensors.iter().collect();
                names.sort_by(|a, b| a.0.cmp(b.0));
                for (name, tensor) in &names {
                    println!("{name:<48} {:?} {:?}", tensor.dtype(), tensor.dims());
                }
                println!("{} tensors in {}", names.len(), path.display());
                if let Some(preset) = preset {
                    let cfg =
                        Config::preset(&preset).with_context(|| format!("--preset {preset}"))?;
                    let report = check_keys(&cfg, &tensors);
                    if report.is_clean(false) {
                        println!("all keys match {preset}");
                    } else {
                        print!("against {preset}:\n{report}");
                    }
                }
            }
        }
        Ok(())
    }
}
