//! ScribbleSup scribbles (Lin et al., CVPR 2016, arXiv:1604.05144) as label PNGs.
//!
//! The release's `pascal_2012/<name>.xml` files hold, under `<annotation>`, the image
//! `<size>` (`<width>`, `<height>`) and one `<polygon>` per scribble: a class `<tag>` and
//! its `<point>`s (`<X>`, `<Y>`, pixels) as an open polyline. Tags use short names
//! (`plane`, `bike`, `table`, `plant`, `monitor`, `background`, …); the VOC names are
//! accepted too. Each polyline is drawn with Bresenham segments and a 3×3 brush (width
//! 3 px), clipped to the image, in file order (a later scribble overwrites an earlier one
//! where they cross), on a map initialised to 255 (unlabelled).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::voc::voc_root;
use super::{check_problems, create_dir};
use crate::classes::VOC_CLASSES;
use crate::error::{io_err, DataError, Result};
use crate::palette::{write_label_png, LabelFormat, LabelMap};
use crate::voc::{IMAGE_DIR, SCRIBBLE_DIR};

/// One scribble: a class label and its polyline (pixel coordinates).
#[derive(Debug, Clone, PartialEq)]
pub struct Scribble {
    /// VOC label (0 = background).
    pub label: u8,
    /// The points, in order.
    pub points: Vec<(i64, i64)>,
}

/// A parsed ScribbleSup XML file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScribbleFile {
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// Scribbles in file order.
    pub scribbles: Vec<Scribble>,
}

/// The VOC label of a ScribbleSup tag (short or VOC name), if known.
pub fn scribble_label(tag: &str) -> Option<u8> {
    let tag = tag.trim().to_ascii_lowercase();
    let voc = match tag.as_str() {
        "plane" => "aeroplane",
        "bike" => "bicycle",
        "table" => "diningtable",
        "plant" => "pottedplant",
        "monitor" | "tv" => "tvmonitor",
        "motorcycle" => "motorbike",
        t => t,
    };
    VOC_CLASSES.iter().position(|&c| c == voc).map(|i| i as u8)
}

/// Parses a ScribbleSup XML file.
///
/// # Errors
/// Malformed XML, a missing or non-numeric size or coordinate, an unknown class tag:
/// each names the file.
pub fn read_scribble_xml(path: &Path) -> Result<ScribbleFile> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let bad = |message: String| DataError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let doc = roxmltree::Document::parse(&text).map_err(|e| bad(format!("bad XML: {e}")))?;
    let root = doc.root_element();
    fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
        node.children().find(|c| c.has_tag_name(name))
    }
    let number = |node: roxmltree::Node<'_, '_>, name: &str, what: &str| -> Result<f64> {
        let text = child(node, name)
            .and_then(|n| n.text())
            .ok_or_else(|| bad(format!("missing <{name}> in {what}")))?;
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad(format!("<{name}>{text}</{name}> in {what} is not a number")))
    };
    let size = child(root, "size").ok_or_else(|| bad("missing <size>".into()))?;
    let (width, height) = (
        number(size, "width", "<size>")?,
        number(size, "height", "<size>")?,
    );
    if width < 1.0 || height < 1.0 || width > 65535.0 || height > 65535.0 {
        return Err(bad(format!("image size {width}x{height} out of range")));
    }
    let mut scribbles = Vec::new();
    for (i, poly) in root
        .children()
        .filter(|c| c.has_tag_name("polygon"))
        .enumerate()
    {
        let what = format!("<polygon> #{}", i + 1);
        let tag = child(poly, "tag")
            .and_then(|n| n.text())
            .ok_or_else(|| bad(format!("missing <tag> in {what}")))?;
        let label = scribble_label(tag).ok_or_else(|| {
            bad(format!(
                "unknown class `{}` in {what} (expected a VOC class or ScribbleSup short name)",
                tag.trim()
            ))
        })?;
        let points = poly
            .children()
            .filter(|c| c.has_tag_name("point"))
            .map(|p| {
                // Clamped so that a wild coordinate cannot make a segment endless.
                let coord = |v: f64| v.round().clamp(-1e5, 1e5) as i64;
                Ok((coord(number(p, "X", &what)?), coord(number(p, "Y", &what)?)))
            })
            .collect::<Result<Vec<_>>>()?;
        scribbles.push(Scribble { label, points });
    }
    Ok(ScribbleFile {
        width: width as u32,
        height: height as u32,
        scribbles,
    })
}

/// Draws the scribbles on a map initialised to 255, 3 px wide.
///
/// Cost O(total polyline length), memory O(width · height).
pub fn rasterise_scribbles(file: &ScribbleFile) -> LabelMap {
    let mut map = LabelMap::filled(file.width, file.height, 255);
    let (w, h) = (file.width as i64, file.height as i64);
    let mut stamp = |x: i64, y: i64, v: u8| {
        for yy in y - 1..=y + 1 {
            for xx in x - 1..=x + 1 {
                if xx >= 0 && yy >= 0 && xx < w && yy < h {
                    map.data[(yy * w + xx) as usize] = v;
                }
            }
        }
    };
    for s in &file.scribbles {
        if let [(x, y)] = s.points[..] {
            stamp(x, y, s.label);
        }
        for seg in s.points.windows(2) {
            bresenham(seg[0], seg[1], |x, y| stamp(x, y, s.label));
        }
    }
    map
}

/// Calls `f` on every pixel of the Bresenham segment from `a` to `b`, both included.
pub fn bresenham((x0, y0): (i64, i64), (x1, y1): (i64, i64), mut f: impl FnMut(i64, i64)) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    // max(|dx|, |dy|) + 1 pixels.
    loop {
        f(x, y);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// What [`prepare_scribble`] did.
#[derive(Debug, Clone, Default)]
pub struct ScribbleSummary {
    /// The XML folder read.
    pub xml_dir: PathBuf,
    /// The folder written (`<root>/Scribbles`).
    pub out_dir: PathBuf,
    /// Files converted.
    pub files: usize,
    /// Scribbles drawn.
    pub scribbles: usize,
    /// Fraction of pixels labelled.
    pub labelled_fraction: f64,
}

impl std::fmt::Display for ScribbleSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} XML files ({} scribbles) from {} -> {}; {:.2}% of pixels labelled",
            self.files,
            self.scribbles,
            self.xml_dir.display(),
            self.out_dir.display(),
            100.0 * self.labelled_fraction
        )
    }
}

/// Converts `<xml dir>/*.xml` into `<VOC root>/Scribbles/<name>.png` (palette PNGs).
/// `root` is the VOC root (as for [`super::voc::prepare_voc`]); the XML folder is
/// `xml_dir`, else the first of `root/pascal_2012`, `root/scribble_annotation/pascal_2012`
/// that exists. Where `JPEGImages/<name>.jpg` exists its size must match the XML's.
///
/// # Errors
/// No XML folder, or any bad XML (unknown class, malformed, size mismatch): all listed,
/// each naming its file.
pub fn prepare_scribble(root: &Path, xml_dir: Option<&Path>) -> Result<ScribbleSummary> {
    let voc = voc_root(root).unwrap_or_else(|| root.to_path_buf());
    let xml_dir = match xml_dir {
        Some(d) => d.to_path_buf(),
        None => [
            voc.join("pascal_2012"),
            voc.join("scribble_annotation/pascal_2012"),
            root.join("pascal_2012"),
            root.join("scribble_annotation/pascal_2012"),
        ]
        .into_iter()
        .find(|d| d.is_dir())
        .ok_or_else(|| DataError::Layout {
            root: root.to_path_buf(),
            problems: vec![format!(
                "no pascal_2012/ (ScribbleSup XML folder) under {}",
                root.display()
            )],
        })?,
    };
    let mut xmls: Vec<PathBuf> = std::fs::read_dir(&xml_dir)
        .map_err(io_err(&xml_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    xmls.sort();
    let out_dir = voc.join(SCRIBBLE_DIR);
    create_dir(&out_dir)?;
    let results: Vec<std::result::Result<(usize, u64, u64), String>> = xmls
        .par_iter()
        .map(|xml| {
            let file = read_scribble_xml(xml).map_err(|e| e.to_string())?;
            let name = xml
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let image = voc.join(IMAGE_DIR).join(format!("{name}.jpg"));
            if image.is_file() {
                if let Ok((w, h)) = image::image_dimensions(&image) {
                    if (w, h) != (file.width, file.height) {
                        return Err(format!(
                            "{}: size {}x{} but {} is {w}x{h}",
                            xml.display(),
                            file.width,
                            file.height,
                            image.display()
                        ));
                    }
                }
            }
            let map = rasterise_scribbles(&file);
            let labelled = map.data.iter().filter(|&&v| v != 255).count() as u64;
            write_label_png(
                &out_dir.join(format!("{name}.png")),
                &map,
                LabelFormat::Palette,
            )
            .map_err(|e| e.to_string())?;
            Ok((file.scribbles.len(), labelled, map.data.len() as u64))
        })
        .collect();
    let mut problems = Vec::new();
    let mut summary = ScribbleSummary {
        xml_dir,
        out_dir,
        ..ScribbleSummary::default()
    };
    let (mut labelled, mut total) = (0u64, 0u64);
    for r in results {
        match r {
            Ok((n, l, t)) => {
                summary.files += 1;
                summary.scribbles += n;
                labelled += l;
                total += t;
            }
            Err(p) => problems.push(p),
        }
    }
    check_problems(root, problems)?;
    if total > 0 {
        summary.labelled_fraction = labelled as f64 / total as f64;
    }
    Ok(summary)
}
