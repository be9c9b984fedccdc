//! `wsss data`: dataset generation and preparation.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use wsss::data::scenes::{generate, ScenesConfig};
use wsss::data::SCENES_CLASSES;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Generate the embedded `scenes` benchmark (Fashion-MNIST objects on photo textures)
    /// in the VOC layout.
    Scenes {
        /// Output folder (created).
        #[arg(long)]
        out: PathBuf,
        /// Training images.
        #[arg(long, default_value_t = 1000)]
        train: usize,
        /// Validation images.
        #[arg(long, default_value_t = 200)]
        val: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Image side in pixels.
        #[arg(long, default_value_t = 96)]
        size: u32,
    },
}

impl DataCommand {
    pub fn run(self) -> Result<()> {
        match self {
            DataCommand::Scenes {
                out,
                train,
                val,
                seed,
                size,
            } => {
                let cfg = ScenesConfig {
                    train,
                    val,
                    seed,
                    size,
                    ..ScenesConfig::default()
                };
                let start = Instant::now();
                let stats = generate(&cfg, &out)
                    .with_context(|| format!("generating scenes in {}", out.display()))?;
                println!(
                    "wrote {} train + {} val scenes of {size}x{size} to {} in {:.1} s",
                    train,
                    val,
                    out.display(),
                    start.elapsed().as_secs_f64()
                );
                for (split, s) in &stats.splits {
                    println!(
                        "{split}: objects/image {:?}, classes/image {:?}, foreground {:.1}%, scribbled {:.2}%",
                        s.objects_per_image,
                        s.classes_per_image,
                        100.0 * s.foreground_fraction,
                        100.0 * s.scribble_fraction
                    );
                    let per_class: Vec<String> = s
                        .images_per_class
                        .iter()
                        .enumerate()
                        .map(|(k, n)| format!("{} {n}", SCENES_CLASSES[k + 1]))
                        .collect();
                    println!("  images per class: {}", per_class.join(", "));
                }
                Ok(())
            }
        }
    }
}
