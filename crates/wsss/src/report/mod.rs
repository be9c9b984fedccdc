//! Run reports: the tables (CAM mIoU at the GT-tuned and the GT-free threshold, pseudo-label
//! mIoU with coverage and precision, segmentation mIoU, per-class IoU, wall time and peak
//! memory per stage, the papers' numbers beside ours), a threshold-sweep plot, training
//! curves and a grid of overlays, written as `report.md` plus a standalone `report.html`.
//!
//! The input is a [`ReportSpec`] (JSON, written by `cargo xtask reproduce`) that points at
//! the files the stages wrote: `sweep.json` ([`wsss_metrics::SweepReport`]), `metrics.json`
//! ([`wsss_metrics::MetricsReport`]), training `metrics.jsonl`, CAM safetensors and label PNGs.
//!
//! ```no_run
//! let spec = wsss::report::ReportSpec::read(std::path::Path::new("runs/scenes/report.json"))?;
//! let files = wsss::report::build(&spec, std::path::Path::new("runs/scenes/report"))?;
//! println!("{}", files.html.display());
//! # Ok::<(), wsss::report::ReportError>(())
//! ```

pub mod document;
mod error;
pub mod picture;
pub mod plot;
mod sections;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use document::{Block, Document};
pub use error::{ReportError, Result};

use error::{io_error, parse_error};

/// Everything a report shows, by reference to the stage outputs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReportSpec {
    /// Title (first heading).
    pub title: String,
    /// Dataset name (`scenes`, `voc`, `coco`).
    pub dataset: String,
    /// Paragraphs under the title (how the run was made, the command).
    #[serde(default)]
    pub summary: Vec<String>,
    /// Class names, index = label value (for the per-class table).
    #[serde(default)]
    pub class_names: Vec<String>,
    /// One entry per method (and per baseline).
    #[serde(default)]
    pub methods: Vec<MethodSpec>,
    /// Wall time and memory of each stage.
    #[serde(default)]
    pub stages: Vec<StageRecord>,
    /// Images shown in the overlay grid.
    #[serde(default)]
    pub overlays: Vec<OverlaySpec>,
}

/// The outputs of one method's stages; any may be missing (the table shows "–").
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MethodSpec {
    /// Row label.
    pub name: String,
    /// `sweep.json` of the CAMs (best and GT-free thresholds).
    #[serde(default)]
    pub cam_sweep: Option<PathBuf>,
    /// `metrics.json` of the refined pseudo labels.
    #[serde(default)]
    pub pseudo_metrics: Option<PathBuf>,
    /// `metrics.json` of the segmentation predictions.
    #[serde(default)]
    pub seg_metrics: Option<PathBuf>,
    /// Training logs (`metrics.jsonl`), plotted as curves.
    #[serde(default)]
    pub train_logs: Vec<PathBuf>,
    /// Folder of per-image CAM safetensors (`<name>.safetensors`).
    #[serde(default)]
    pub cam_dir: Option<PathBuf>,
    /// Folder of pseudo-label PNGs (`<name>.png`).
    #[serde(default)]
    pub pseudo_dir: Option<PathBuf>,
    /// Folder of predicted label PNGs (`<name>.png`).
    #[serde(default)]
    pub pred_dir: Option<PathBuf>,
    /// The paper's numbers for this method on this dataset.
    #[serde(default)]
    pub paper: Option<PaperNumbers>,
}

/// Published numbers, in percent mIoU.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PaperNumbers {
    /// CAM (seed) mIoU.
    #[serde(default)]
    pub cam: Option<f64>,
    /// Pseudo-label mIoU.
    #[serde(default)]
    pub pseudo: Option<f64>,
    /// Segmentation mIoU.
    #[serde(default)]
    pub seg: Option<f64>,
    /// Where they come from (paper, table, split).
    #[serde(default)]
    pub source: String,
}

/// One stage's cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StageRecord {
    /// Stage name (`weaktr/train`, ...).
    pub name: String,
    /// Wall-clock seconds of the run that produced the outputs.
    pub wall_s: f64,
    /// Peak resident memory of that run in MiB, when known.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
    /// Whether this invocation reused the outputs of an earlier run.
    #[serde(default)]
    pub cached: bool,
}

/// One row of the overlay grid.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OverlaySpec {
    /// Image id (file stem shared by CAMs and label PNGs).
    pub name: String,
    /// The RGB image.
    pub image: PathBuf,
    /// Its ground-truth label PNG.
    pub gt: PathBuf,
}

/// The files a report consists of.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html` (standalone).
    pub html: PathBuf,
    /// Pictures written beside them.
    pub pictures: Vec<PathBuf>,
}

impl ReportSpec {
    /// Reads a spec from JSON.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        serde_json::from_str(&text).map_err(|e| parse_error(path, e))
    }

    /// Writes the spec as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| parse_error(path, e))?;
        write_atomic(path, text.as_bytes())
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees
/// half a file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// Builds the report of `spec` into `out_dir`: the pictures first, then `report.md` and
/// `report.html` (each written atomically). Missing inputs show as "–" or are named in a
/// note in the report; a file that exists but does not parse is an error.
///
/// Cost: O(images in the overlay grid × pixels) plus reading the metric files.
pub fn build(spec: &ReportSpec, out_dir: &Path) -> Result<ReportFiles> {
    std::fs::create_dir_all(out_dir).map_err(io_error(out_dir))?;
    let mut doc = Document::new();
    let mut pictures = Vec::new();
    doc.heading(1, &spec.title);
    for paragraph in &spec.summary {
        doc.paragraph(paragraph);
    }
    let loaded = sections::load_methods(&spec.methods)?;
    sections::results_table(&mut doc, spec, &loaded);
    sections::per_class_table(&mut doc, spec, &loaded);
    if let Some(file) = sections::sweep_plot(&mut doc, &loaded, out_dir)? {
        pictures.push(file);
    }
    if let Some(file) = sections::training_curves(&mut doc, spec, out_dir)? {
        pictures.push(file);
    }
    if let Some(file) = sections::overlay_grid(&mut doc, spec, out_dir)? {
        pictures.push(file);
    }
    sections::stage_table(&mut doc, spec);

    let markdown = out_dir.join("report.md");
    write_atomic(&markdown, doc.to_markdown().as_bytes())?;
    let html = out_dir.join("report.html");
    write_atomic(&html, doc.to_html(&spec.title, out_dir).as_bytes())?;
    Ok(ReportFiles {
        markdown,
        html,
        pictures,
    })
}
