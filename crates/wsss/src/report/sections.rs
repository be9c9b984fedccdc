//! The report's sections, each appended to a [`Document`] from the stage outputs.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use image::RgbImage;
use wsss_data::palette::{read_label_png, LabelMap};
use wsss_metrics::{MetricsReport, SweepReport};

use super::document::Document;
use super::error::{io_error, parse_error, ReportError, Result};
use super::picture::{grid, heat_overlay, label_picture};
use super::plot::{draw_line_plot, with_column_headings, LinePlot, Marker, Series};
use super::{MethodSpec, ReportSpec};

/// A method's metric files, parsed.
pub(crate) struct LoadedMethod<'a> {
    spec: &'a MethodSpec,
    sweep: Option<SweepReport>,
    pseudo: Option<MetricsReport>,
    seg: Option<MetricsReport>,
    classifier: Option<ClassifierScores>,
}

/// What a training log says about the kept checkpoint (the last epoch flagged `best`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ClassifierScores {
    /// Classifier mAP on val (image labels only).
    map: Option<f64>,
    /// mIoU of painting every present class uniformly (best threshold).
    uniform_baseline: Option<f64>,
}

/// Reads the first training log's kept epoch; `None` when there is no log or no epoch.
fn read_classifier(logs: &[PathBuf]) -> Result<Option<ClassifierScores>> {
    let Some(path) = logs.iter().find(|p| p.is_file()) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let mut kept = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value =
            serde_json::from_str(line).map_err(|e| parse_error(path, e))?;
        if record.get("best").and_then(serde_json::Value::as_bool) == Some(true) {
            kept = Some(ClassifierScores {
                map: record.get("val_map").and_then(serde_json::Value::as_f64),
                uniform_baseline: record
                    .get("val_uniform_baseline_miou_gt")
                    .and_then(serde_json::Value::as_f64),
            });
        }
    }
    Ok(kept)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    serde_json::from_str(&text).map_err(|e| parse_error(path, e))
}

/// Reads a file when the spec names it and it exists (a stage not run yet is not an error).
fn read_optional<T: serde::de::DeserializeOwned>(path: Option<&PathBuf>) -> Result<Option<T>> {
    match path {
        Some(p) if p.is_file() => read_json(p).map(Some),
        _ => Ok(None),
    }
}

pub(crate) fn load_methods(methods: &[MethodSpec]) -> Result<Vec<LoadedMethod<'_>>> {
    methods
        .iter()
        .map(|spec| {
            Ok(LoadedMethod {
                spec,
                sweep: read_optional(spec.cam_sweep.as_ref())?,
                pseudo: read_optional(spec.pseudo_metrics.as_ref())?,
                seg: read_optional(spec.seg_metrics.as_ref())?,
                classifier: read_classifier(&spec.train_logs)?,
            })
        })
        .collect()
}

/// A fraction as a percentage with one decimal, "–" when absent or undefined.
fn percent(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{:.1}", 100.0 * v),
        _ => "–".into(),
    }
}

fn paper_cell(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.1}"))
}

pub(crate) fn results_table(doc: &mut Document, spec: &ReportSpec, methods: &[LoadedMethod<'_>]) {
    doc.heading(2, "Results (mIoU, %)");
    let show_paper = methods.iter().any(|m| m.spec.paper.is_some());
    let mut header: Vec<String> = [
        "method",
        "classifier mAP",
        "CAM best thr.",
        "CAM GT-free (Otsu)",
        "pseudo labels",
        "coverage",
        "precision",
        "segmentation",
    ]
    .map(String::from)
    .to_vec();
    if show_paper {
        header.extend(["paper CAM", "paper pseudo", "paper seg."].map(String::from));
    }
    let rows = methods
        .iter()
        .map(|m| {
            let mut row = vec![
                m.spec.name.clone(),
                percent(m.classifier.and_then(|c| c.map)),
            ];
            match &m.sweep {
                Some(s) => {
                    row.push(format!(
                        "{} (t={:.2})",
                        percent(Some(s.best.miou)),
                        s.best.threshold
                    ));
                    row.push(format!(
                        "{} (t={:.2})",
                        percent(Some(s.otsu.miou)),
                        s.otsu.threshold
                    ));
                }
                None => row.extend(["–".to_string(), "–".to_string()]),
            }
            let pseudo = m.pseudo.as_ref().map(|r| &r.scores);
            row.push(percent(pseudo.map(|s| s.miou)));
            row.push(percent(pseudo.map(|s| s.coverage)));
            row.push(percent(pseudo.map(|s| s.precision_on_covered)));
            row.push(percent(m.seg.as_ref().map(|r| r.scores.miou)));
            if show_paper {
                let paper = m.spec.paper.as_ref();
                row.push(paper_cell(paper.and_then(|p| p.cam)));
                row.push(paper_cell(paper.and_then(|p| p.pseudo)));
                row.push(paper_cell(paper.and_then(|p| p.seg)));
            }
            row
        })
        .collect::<Vec<_>>();
    let mut rows = rows;
    let baseline = methods
        .iter()
        .find_map(|m| m.classifier.and_then(|c| c.uniform_baseline));
    if let Some(baseline) = baseline {
        let mut row = vec![
            "uniform baseline".to_string(),
            "–".to_string(),
            percent(Some(baseline)),
        ];
        row.resize(header.len(), "–".to_string());
        rows.push(row);
    }
    doc.table(header, rows);
    let sources: Vec<String> = methods
        .iter()
        .filter_map(|m| {
            m.spec
                .paper
                .as_ref()
                .filter(|p| !p.source.is_empty())
                .map(|p| format!("{}: {}", m.spec.name, p.source))
        })
        .collect();
    doc.paragraph(format!(
        "Dataset `{}`. Classifier mAP: on val, from image labels, at the kept checkpoint. \
         CAM columns: background threshold tuned on ground truth (best) and \
         chosen without it (Otsu on the pooled CAM histogram); the uniform baseline paints \
         every present class uniformly (best threshold), the score a CAM must beat. Coverage: fraction of pixels \
         the pseudo labels do not ignore; precision: pixel accuracy on those.{}",
        spec.dataset,
        if sources.is_empty() {
            String::new()
        } else {
            format!(" Paper numbers: {}.", sources.join("; "))
        }
    ));
}

pub(crate) fn per_class_table(doc: &mut Document, spec: &ReportSpec, methods: &[LoadedMethod<'_>]) {
    let columns: Vec<(&str, &MetricsReport)> = methods
        .iter()
        .filter_map(|m| {
            m.seg
                .as_ref()
                .or(m.pseudo.as_ref())
                .map(|r| (m.spec.name.as_str(), r))
        })
        .collect();
    let Some(classes) = columns.iter().map(|(_, r)| r.scores.iou.len()).max() else {
        return;
    };
    doc.heading(2, "Per-class IoU (%)");
    let mut header = vec!["class".to_string()];
    header.extend(columns.iter().map(|(name, r)| {
        let what = if methods
            .iter()
            .any(|m| m.spec.name == *name && m.seg.is_some())
        {
            "seg."
        } else {
            "pseudo"
        };
        let _ = r;
        format!("{name} ({what})")
    }));
    let rows = (0..classes)
        .map(|c| {
            let name = spec
                .class_names
                .get(c)
                .or_else(|| columns.iter().find_map(|(_, r)| r.class_names.get(c)))
                .cloned()
                .unwrap_or_else(|| format!("class {c}"));
            let mut row = vec![name];
            row.extend(
                columns
                    .iter()
                    .map(|(_, r)| percent(r.scores.iou.get(c).copied())),
            );
            row
        })
        .collect();
    doc.table(header, rows);
}

pub(crate) fn sweep_plot(
    doc: &mut Document,
    methods: &[LoadedMethod<'_>],
    out_dir: &Path,
) -> Result<Option<PathBuf>> {
    let with_sweep: Vec<(&str, &SweepReport)> = methods
        .iter()
        .filter_map(|m| m.sweep.as_ref().map(|s| (m.spec.name.as_str(), s)))
        .collect();
    if with_sweep.is_empty() {
        return Ok(None);
    }
    let series: Vec<Series> = with_sweep
        .iter()
        .map(|(name, s)| Series {
            name: (*name).to_string(),
            points: s
                .thresholds
                .iter()
                .map(|t| (t.threshold as f64, 100.0 * t.miou))
                .collect(),
        })
        .collect();
    let mut markers = Vec::new();
    for (i, (_, s)) in with_sweep.iter().enumerate() {
        markers.push(Marker {
            series: i,
            x: s.best.threshold as f64,
            y: 100.0 * s.best.miou,
            label: " best".into(),
        });
        markers.push(Marker {
            series: i,
            x: s.otsu.threshold as f64,
            y: 100.0 * s.otsu.miou,
            label: " Otsu".into(),
        });
    }
    let file = "threshold_sweep.png";
    let path = out_dir.join(file);
    draw_line_plot(
        &LinePlot {
            title: "CAM mIoU vs background threshold",
            x_label: "background threshold",
            y_label: "mIoU (%)",
            series: &series,
            markers: &markers,
        },
        &path,
        800,
        480,
    )?;
    doc.heading(2, "Threshold sweep");
    doc.image(
        file,
        "CAM mIoU against the background threshold; dots: best and Otsu",
    );
    Ok(Some(path))
}

/// A named line of (x, y) points.
type NamedPoints = (String, Vec<(f64, f64)>);

/// Numeric fields of one training log, keyed by name, as (epoch, value) points.
fn log_series(path: &Path) -> Result<Vec<NamedPoints>> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let mut series: Vec<NamedPoints> = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| parse_error(path, format!("line {}: {e}", i + 1)))?;
        let Some(object) = value.as_object() else {
            return Err(parse_error(
                path,
                format!("line {} is not an object", i + 1),
            ));
        };
        let x = object
            .get("epoch")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or((i + 1) as f64);
        for (key, v) in object {
            let Some(v) = v.as_f64() else { continue };
            if key == "epoch" || key == "step" || !key.contains("loss") {
                continue;
            }
            match series.iter_mut().find(|(k, _)| k == key) {
                Some((_, points)) => points.push((x, v)),
                None => series.push((key.clone(), vec![(x, v)])),
            }
        }
    }
    Ok(series)
}

pub(crate) fn training_curves(
    doc: &mut Document,
    spec: &ReportSpec,
    out_dir: &Path,
) -> Result<Option<PathBuf>> {
    let mut series = Vec::new();
    for method in &spec.methods {
        for log in method.train_logs.iter().filter(|p| p.is_file()) {
            let stage = log
                .parent()
                .and_then(Path::file_name)
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            for (key, points) in log_series(log)? {
                series.push(Series {
                    name: format!("{} {stage} {key}", method.name),
                    points,
                });
            }
        }
    }
    if series.iter().all(|s| s.points.is_empty()) {
        return Ok(None);
    }
    let file = "training_curves.png";
    let path = out_dir.join(file);
    draw_line_plot(
        &LinePlot {
            title: "Training losses",
            x_label: "epoch",
            y_label: "loss",
            series: &series,
            markers: &[],
        },
        &path,
        800,
        480,
    )?;
    doc.heading(2, "Training curves");
    doc.image(file, "training losses per epoch (from metrics.jsonl)");
    Ok(Some(path))
}

/// The CAM of `path` as a heat map: per pixel the maximum over its (foreground) classes,
/// scaled so the image's maximum is 1.
fn cam_heat(path: &Path, width: u32, height: u32) -> Result<Vec<f32>> {
    let err = |e: &dyn std::fmt::Display| parse_error(path, e);
    let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| err(&e))?;
    let scores = tensors
        .get("scores")
        .ok_or_else(|| parse_error(path, "no `scores` tensor"))?;
    let scores = scores
        .to_dtype(DType::F32)
        .and_then(|s| s.to_vec3::<f32>())
        .map_err(|e| err(&e))?;
    let (w, h) = (width as usize, height as usize);
    let mut heat = vec![0f32; w * h];
    // `wsss cam` writes foreground classes only (`classes` are foreground ids).
    for plane in &scores {
        if plane.len() != h || plane.first().map_or(0, Vec::len) != w {
            return Err(parse_error(
                path,
                format!("CAM is not {width}x{height} like its image"),
            ));
        }
        for (y, row) in plane.iter().enumerate() {
            for (x, v) in row.iter().enumerate() {
                heat[y * w + x] = heat[y * w + x].max(*v);
            }
        }
    }
    let max = heat.iter().copied().fold(0f32, f32::max);
    if max > 0.0 {
        heat.iter_mut().for_each(|v| *v /= max);
    }
    Ok(heat)
}

fn read_rgb(path: &Path) -> Result<RgbImage> {
    Ok(image::open(path)
        .map_err(|e| parse_error(path, e))?
        .to_rgb8())
}

fn read_labels(path: &Path) -> Result<LabelMap> {
    read_label_png(path).map_err(|e| parse_error(path, e))
}

pub(crate) fn overlay_grid(
    doc: &mut Document,
    spec: &ReportSpec,
    out_dir: &Path,
) -> Result<Option<PathBuf>> {
    if spec.overlays.is_empty() {
        return Ok(None);
    }
    let mut columns = vec!["image".to_string(), "ground truth".to_string()];
    for m in &spec.methods {
        if m.cam_dir.is_some() {
            columns.push(format!("{} CAM", m.name));
        }
        if m.pseudo_dir.is_some() {
            columns.push(format!("{} pseudo label", m.name));
        }
        if m.pred_dir.is_some() {
            columns.push(format!("{} prediction", m.name));
        }
    }
    let mut rows = Vec::new();
    for overlay in &spec.overlays {
        let image = read_rgb(&overlay.image)?;
        let gt = read_labels(&overlay.gt)?;
        let mut row = vec![
            Some(image.clone()),
            Some(label_picture(&gt, Some((&image, 0.7)))?),
        ];
        for m in &spec.methods {
            if let Some(dir) = &m.cam_dir {
                let path = dir.join(format!("{}.safetensors", overlay.name));
                row.push(if path.is_file() {
                    let heat = cam_heat(&path, image.width(), image.height())?;
                    Some(heat_overlay(&image, &heat, 0.5)?)
                } else {
                    None
                });
            }
            for dir in [&m.pseudo_dir, &m.pred_dir].into_iter().flatten() {
                let path = dir.join(format!("{}.png", overlay.name));
                row.push(if path.is_file() {
                    Some(label_picture(&read_labels(&path)?, Some((&image, 0.7)))?)
                } else {
                    None
                });
            }
        }
        rows.push(row);
    }
    let (tile, gap) = (128, 4);
    let picture = with_column_headings(&grid(&rows, tile, gap)?, &columns, tile, gap)?;
    let file = "overlays.png";
    let path = out_dir.join(file);
    let mut bytes = Vec::new();
    picture
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| ReportError::Picture(format!("{}: {e}", path.display())))?;
    super::write_atomic(&path, &bytes)?;
    doc.heading(2, "Overlays");
    doc.paragraph(format!(
        "Columns (named over the grid): {}. Rows: {}. Grey tiles: output not produced.",
        columns.join(", "),
        spec.overlays
            .iter()
            .map(|o| format!("`{}`", o.name))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    doc.image(file, "overlay grid");
    Ok(Some(path))
}

pub(crate) fn stage_table(doc: &mut Document, spec: &ReportSpec) {
    if spec.stages.is_empty() {
        return;
    }
    doc.heading(2, "Stages");
    let rows = spec
        .stages
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                format!("{:.1}", s.wall_s),
                s.peak_rss_mib
                    .map_or_else(|| "–".into(), |m| format!("{m:.0}")),
                if s.cached { "cached" } else { "ran" }.to_string(),
            ]
        })
        .collect();
    doc.table(
        ["stage", "wall time (s)", "peak memory (MiB)", "this run"]
            .map(String::from)
            .to_vec(),
        rows,
    );
    let total: f64 = spec.stages.iter().map(|s| s.wall_s).sum();
    doc.paragraph(format!(
        "Sum of the stages' wall times: {total:.1} s. Independent stages may run side by side \
         (`cargo xtask reproduce --jobs`), so a run can take less than this sum, and a \
         stage's time then includes its share of the machine. Cached stages show the time of \
         the run that produced their outputs."
    ));
}
