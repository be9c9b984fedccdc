//! `wsss segment`: arg-max label maps of a split from a trained segmentation run
//! (`weaktr_stage2`, `dfr`, `getam_e2e`), one VOC palette PNG per image at the image size,
//! resumable and sharded like `wsss cam` and `wsss refine`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use wsss::core::device::parse_device;
use wsss::data::batch::normalise;
use wsss::data::palette::{write_label_png, LabelFormat, LabelMap};
use wsss::data::VocDataset;
use wsss::train::segment::{Checkpoint, SegmentationRun};

use super::stage::{create_out_dir, run_images, Shard};

/// Which weights of the run.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Weights {
    /// `model.safetensors`, the last epoch's.
    Final,
    /// `best.safetensors`, the best epoch by the run's criterion.
    Best,
}

/// Predict label maps with a trained segmentation model.
#[derive(Args)]
pub struct SegmentArgs {
    /// The training run folder (`wsss train --out`: config.toml + model.safetensors).
    #[arg(long)]
    run: PathBuf,
    /// Dataset root in the VOC layout.
    #[arg(long)]
    data: PathBuf,
    /// Split to segment (`ImageSets/Segmentation/<split>.txt`).
    #[arg(long, default_value = "val")]
    split: String,
    /// Output folder of `<name>.png` label maps.
    #[arg(long)]
    out: PathBuf,
    /// This run's share of the sorted image list: k/n, 0 <= k < n.
    #[arg(long, default_value = "0/1")]
    shard: Shard,
    /// Which weights of the run.
    #[arg(long, value_enum, default_value = "final")]
    weights: Weights,
    /// Compute device: cpu, cuda, cuda:N, metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Write 8-bit grey PNGs instead of VOC palette PNGs.
    #[arg(long)]
    grey: bool,
}

impl SegmentArgs {
    pub fn run(self) -> Result<()> {
        let device: Device = parse_device(&self.device)?;
        let dataset = VocDataset::open(&self.data, &self.split).with_context(|| {
            format!("opening split `{}` of {}", self.split, self.data.display())
        })?;
        let checkpoint = match self.weights {
            Weights::Final => Checkpoint::Final,
            Weights::Best => Checkpoint::Best,
        };
        let run = SegmentationRun::load(&self.run, dataset.num_classes(), checkpoint, &device)?;
        let segmenter = run.segmenter();
        create_out_dir(&self.out)?;
        let index: HashMap<&str, usize> = dataset
            .names()
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let names = self.shard.select(dataset.names());
        let format = if self.grey {
            LabelFormat::Grey
        } else {
            LabelFormat::Palette
        };
        // One image at a time: the model parallelises inside (candle's CPU kernels).
        run_images(
            "segment",
            &names,
            |name| self.out.join(format!("{name}.png")),
            false,
            |name, path| {
                let sample = dataset.load(index[name])?;
                let (w, h) = sample.image.dimensions();
                let planes = normalise(&sample.image);
                let image = Tensor::from_vec(planes, (1, 3, h as usize, w as usize), &device)?;
                let logits = segmenter.segment(&image)?;
                let dims = logits.dims4()?;
                if (dims.2, dims.3) != (h as usize, w as usize) {
                    bail!("the model returned {dims:?} logits for a {h}x{w} image");
                }
                let data = logits
                    .argmax(1)?
                    .to_dtype(DType::U8)?
                    .to_device(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<u8>()?;
                let map = LabelMap {
                    width: w,
                    height: h,
                    data,
                };
                write_label_png(path, &map, format)?;
                Ok(())
            },
        )?;
        eprintln!(
            "segment: weights {}, {} images of `{}` in {}",
            run.weights.display(),
            names.len(),
            self.split,
            self.out.display()
        );
        Ok(())
    }
}
