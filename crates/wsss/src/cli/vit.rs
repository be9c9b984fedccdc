//! `wsss vit stats`: a forward pass with attention statistics.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, D};
use clap::Subcommand;
use wsss::core::random::{normal, rng};
use wsss::vit::{init_weights, Config, Strictness, Taps, Vit};

#[derive(Subcommand)]
pub enum VitCommand {
    /// Run the backbone on a random image and print per-layer attention statistics
    /// (entropy of the class-token row, and the attention mass the class token keeps).
    Stats {
        /// Architecture preset.
        #[arg(long, default_value = "tiny_test")]
        preset: String,
        /// Weights (`.safetensors`/`.pth`, timm keys); random initialisation when absent.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Input size HxW in pixels.
        #[arg(long, default_value = "64x64", value_parser = parse_size)]
        size: (usize, usize),
        /// Seed of the random image and weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn parse_size(s: &str) -> std::result::Result<(usize, usize), String> {
    let (h, w) = s
        .split_once('x')
        .ok_or_else(|| format!("expected HxW, got `{s}`"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("expected HxW, got `{s}`"))
    };
    Ok((parse(h)?, parse(w)?))
}

impl VitCommand {
    pub fn run(self) -> Result<()> {
        let VitCommand::Stats {
            preset,
            weights,
            size,
            seed,
        } = self;
        let device = Device::Cpu;
        let cfg = Config::preset(&preset)?;
        let vit = match &weights {
            Some(path) => Vit::from_file(&cfg, path, Strictness::AllowUnexpected, &device)
                .with_context(|| format!("loading {}", path.display()))?,
            None => Vit::from_state_dict(
                &cfg,
                init_weights(&cfg, seed)?,
                Strictness::Strict,
                DType::F32,
                &device,
            )?,
        };
        let (h, w) = size;
        if h < cfg.patch_size || w < cfg.patch_size {
            bail!(
                "--size {h}x{w} is smaller than one {p}x{p} patch",
                p = cfg.patch_size
            );
        }
        let image = normal((1, 3, h, w), 0.0, 1.0, &mut rng(seed), &device)?;
        let out = vit.forward_tapped(&image, Taps::attention())?;
        let t = cfg.class_tokens;
        println!(
            "{preset}: {} blocks, {} heads, grid {}x{}, {} tokens ({})",
            cfg.depth,
            cfg.num_heads,
            out.grid.0,
            out.grid.1,
            out.tokens.dim(1)?,
            if weights.is_some() {
                "loaded weights"
            } else {
                "random weights"
            }
        );
        println!(
            "{:>5} {:>14} {:>14} {:>12}",
            "layer", "cls entropy", "cls self-attn", "max attn"
        );
        for (layer, attention) in out.attention.iter().enumerate() {
            // [B, h, N, N] → the class-token rows, averaged over heads.
            let cls_rows = attention.narrow(2, 0, t)?.mean(1)?; // [B, t, N]
            let entropy = (cls_rows.clamp(1e-12f32, 1f32)?.log()? * &cls_rows)?
                .sum(D::Minus1)?
                .neg()?
                .mean_all()?;
            let self_attn = cls_rows.narrow(2, 0, t)?.sum(D::Minus1)?.mean_all()?;
            let max = attention
                .max_keepdim(D::Minus1)?
                .max_keepdim(D::Minus2)?
                .flatten_all()?
                .max(0)?;
            println!(
                "{layer:>5} {:>14.4} {:>14.4} {:>12.4}",
                entropy.to_scalar::<f32>()?,
                self_attn.to_scalar::<f32>()?,
                max.to_scalar::<f32>()?
            );
        }
        if let Some(logits) = out.logits {
            println!("logits: {:?}", logits.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    }
}
