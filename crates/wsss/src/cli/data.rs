//! `wsss data`: dataset generation and preparation.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use wsss::data::prepare::coco::{prepare_coco, CocoConfig, CocoLayout};
use wsss::data::prepare::scribble::prepare_scribble;
use wsss::data::prepare::voc::prepare_voc;
use wsss::data::scenes::{generate, ScenesConfig};
use wsss::data::SCENES_CLASSES;

/// COCO label layouts.
#[derive(Clone, Copy, ValueEnum)]
pub enum Layout {
    /// 80 categories sorted by id -> 1..80.
    Coco80,
    /// Raw category ids 1..90 (WeakTr's 91-class checkpoints).
    Weaktr91,
}

/// Datasets to convert into the VOC layout.
#[derive(Subcommand)]
pub enum PrepareCommand {
    /// PASCAL VOC 2012 (+ SBD): check the tree, build SegmentationClassAug, write
    /// train_aug.txt and cls_labels.json.
    Voc {
        /// VOCdevkit/VOC2012 (or a folder holding VOCdevkit/ or VOC2012/).
        #[arg(long)]
        root: PathBuf,
        /// SBD's benchmark_RELEASE (or its dataset/ folder with cls/).
        #[arg(long)]
        sbd: Option<PathBuf>,
    },
    /// COCO 2014: instances JSON -> palette masks, lists, image labels.
    Coco {
        /// Folder with annotations/instances_{train,val}2014.json and {train,val}2014/.
        #[arg(long)]
        root: PathBuf,
        /// Label layout.
        #[arg(long, value_enum, default_value = "coco80")]
        layout: Layout,
        /// Spill buckets per split (0: one per 64 MiB of JSON).
        #[arg(long, default_value_t = 0)]
        buckets: usize,
    },
    /// ScribbleSup: pascal_2012/*.xml -> Scribbles/*.png (width 3, 255 unlabelled).
    Scribble {
        /// The VOC root (XMLs under pascal_2012/ there or beside it).
        #[arg(long)]
        root: PathBuf,
        /// The XML folder, if elsewhere.
        #[arg(long)]
        xml: Option<PathBuf>,
    },
}

impl PrepareCommand {
    fn run(self) -> Result<()> {
        let start = Instant::now();
        match self {
            PrepareCommand::Voc { root, sbd } => {
                let s = prepare_voc(&root, sbd.as_deref())
                    .with_context(|| format!("preparing VOC in {}", root.display()))?;
                println!("{s}");
            }
            PrepareCommand::Coco {
                root,
                layout,
                buckets,
            } => {
                let cfg = CocoConfig {
                    layout: match layout {
                        Layout::Coco80 => CocoLayout::Coco80,
                        Layout::Weaktr91 => CocoLayout::Weaktr91,
                    },
                    buckets,
                };
                let s = prepare_coco(&root, &cfg)
                    .with_context(|| format!("preparing COCO in {}", root.display()))?;
                println!("{s}");
            }
            PrepareCommand::Scribble { root, xml } => {
                let s = prepare_scribble(&root, xml.as_deref())
                    .with_context(|| format!("preparing scribbles in {}", root.display()))?;
                println!("{s}");
            }
        }
        println!("done in {:.2} s", start.elapsed().as_secs_f64());
        Ok(())
    }
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Convert a public dataset (VOC+SBD, COCO, ScribbleSup) into the VOC layout.
    #[command(subcommand)]
    Prepare(PrepareCommand),
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
        /// Also write a contact sheet of the first 8 training scenes (image, mask,
        /// scribbles) here (datasets/scenes/contact_sheet.png is made this way).
        #[arg(long)]
        contact_sheet: Option<PathBuf>,
    },
}

impl DataCommand {
    pub fn run(self) -> Result<()> {
        match self {
            DataCommand::Prepare(cmd) => cmd.run(),
            DataCommand::Scenes {
                out,
                train,
                val,
                seed,
                size,
                contact_sheet,
            } => {
                let cfg = ScenesConfig {
                    train,
                    val,
                    seed,
                    size,
                    ..ScenesConfig::default()
                };
                if let Some(path) = &contact_sheet {
                    wsss::data::image_io::write_image(
                        path,
                        &wsss::data::scenes::contact_sheet(&cfg, 8)?,
                    )
                    .with_context(|| format!("writing {}", path.display()))?;
                    println!("wrote {}", path.display());
                }
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
