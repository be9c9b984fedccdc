//! `wsss refine`: CAM files → pseudo-label PNGs (VOC palette, 255 = ignore) through a
//! TOML-described chain of refinement steps ([`RefineConfig`], see configs/refine/).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::Args;
use wsss::data::image_io::read_image;
use wsss::data::palette::{read_label_png, write_label_png, LabelFormat, LabelMap};
use wsss::data::voc::{read_list, IMAGE_DIR, LIST_DIR};
use wsss::refine::pipeline::RefineConfig;

use super::stage::{create_out_dir, run_images, Shard};

/// Refine the CAMs of `wsss cam` into label maps that `wsss eval --pred` scores.
#[derive(Args)]
pub struct RefineArgs {
    /// The refinement chain (TOML `[[steps]]`; see configs/refine/).
    #[arg(long)]
    config: PathBuf,
    /// Folder of CAM files (`<name>.safetensors` with `scores` (K, H, W), `classes` (K)).
    #[arg(long)]
    cams: PathBuf,
    /// Dataset root in the VOC layout (the images: `JPEGImages/<name>.jpg` or `.png`).
    #[arg(long)]
    data: PathBuf,
    /// Split to refine (`ImageSets/Segmentation/<split>.txt`); default: every CAM file.
    #[arg(long)]
    split: Option<String>,
    /// Folder of saliency maps (`<name>.png`, grey 0–255) for GETAM's completion.
    #[arg(long)]
    saliency: Option<PathBuf>,
    /// Output folder of `<name>.png` label maps.
    #[arg(long)]
    out: PathBuf,
    /// This run's share of the sorted image list: k/n, 0 <= k < n.
    #[arg(long, default_value = "0/1")]
    shard: Shard,
    /// Write 8-bit grey PNGs instead of VOC palette PNGs.
    #[arg(long)]
    grey: bool,
}

/// A CAM file's content: `scores` as f32 planes, their (K, H, W), and the K class ids.
pub type CamFile = (Vec<f32>, (usize, usize, usize), Vec<usize>);

/// Reads a CAM file (`scores` f16/f32, `classes` integers), with errors naming it.
pub fn read_cam(path: &Path) -> Result<CamFile> {
    if !path.is_file() {
        bail!("missing CAM file {}", path.display());
    }
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("reading {}", path.display()))?;
    let scores = tensors
        .get("scores")
        .with_context(|| format!("{}: no `scores` tensor", path.display()))?;
    let classes = tensors
        .get("classes")
        .with_context(|| format!("{}: no `classes` tensor", path.display()))?;
    let dims = scores
        .dims3()
        .with_context(|| format!("{}: `scores` must be (K, H, W)", path.display()))?;
    let classes: Vec<i64> = classes
        .to_dtype(DType::I64)?
        .flatten_all()?
        .to_vec1()
        .with_context(|| format!("{}: `classes` must be integers", path.display()))?;
    if classes.len() != dims.0 {
        bail!(
            "{}: {} score maps but {} classes",
            path.display(),
            dims.0,
            classes.len()
        );
    }
    let classes = classes
        .into_iter()
        .map(|c| {
            if (0..254).contains(&c) {
                Ok(c as usize)
            } else {
                bail!("{}: class id {c} is outside 0..254", path.display())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let scores: Vec<f32> = scores.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    if scores.iter().any(|v| !v.is_finite()) {
        bail!("{}: `scores` has non-finite values", path.display());
    }
    Ok((scores, dims, classes))
}

/// The image of `name` under `root` (`.jpg`, else `.png`).
fn image_path(root: &Path, name: &str) -> PathBuf {
    let jpg = root.join(IMAGE_DIR).join(format!("{name}.jpg"));
    if jpg.is_file() {
        jpg
    } else {
        root.join(IMAGE_DIR).join(format!("{name}.png"))
    }
}

impl RefineArgs {
    pub fn run(self) -> Result<()> {
        let text = std::fs::read_to_string(&self.config)
            .with_context(|| format!("reading {}", self.config.display()))?;
        let config: RefineConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", self.config.display()))?;
        config
            .check()
            .with_context(|| format!("checking {}", self.config.display()))?;
        let names = match &self.split {
            Some(split) => read_list(&self.data.join(LIST_DIR).join(format!("{split}.txt")))?,
            None => {
                let mut names: Vec<String> = std::fs::read_dir(&self.cams)
                    .with_context(|| format!("reading {}", self.cams.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                    .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .filter(|n| !n.starts_with('.'))
                    .collect();
                names.sort();
                names
            }
        };
        if names.is_empty() {
            bail!(
                "no images to refine (no CAM files in {})",
                self.cams.display()
            );
        }
        create_out_dir(&self.out)?;
        let names = self.shard.select(&names);
        let format = if self.grey {
            LabelFormat::Grey
        } else {
            LabelFormat::Palette
        };
        run_images(
            "refine",
            &names,
            |name| self.out.join(format!("{name}.png")),
            true,
            |name, out| {
                let cam_path = self.cams.join(format!("{name}.safetensors"));
                let (scores, (_, h, w), classes) = read_cam(&cam_path)?;
                let img_path = image_path(&self.data, name);
                let image = read_image(&img_path)?;
                let (iw, ih) = (image.width() as usize, image.height() as usize);
                if (ih, iw) != (h, w) {
                    bail!(
                        "{} has {h}x{w} maps but the image {} is {ih}x{iw}",
                        cam_path.display(),
                        img_path.display()
                    );
                }
                let saliency = match &self.saliency {
                    None => None,
                    Some(dir) => {
                        let path = dir.join(format!("{name}.png"));
                        let map = read_label_png(&path)?;
                        if (map.height as usize, map.width as usize) != (h, w) {
                            bail!(
                                "saliency {} is {}x{}, the image {h}x{w}",
                                path.display(),
                                map.height,
                                map.width
                            );
                        }
                        Some(map.data)
                    }
                };
                let label = config
                    .run(
                        image.as_raw(),
                        (h, w),
                        &scores,
                        &classes,
                        saliency.as_deref(),
                    )
                    .with_context(|| format!("refining {}", cam_path.display()))?;
                let map = LabelMap {
                    width: w as u32,
                    height: h as u32,
                    data: label,
                };
                write_label_png(out, &map, format)?;
                Ok(())
            },
        )?;
        Ok(())
    }
}
