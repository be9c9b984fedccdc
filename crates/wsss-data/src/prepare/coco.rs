//! COCO 2014 instance annotations (Lin et al., ECCV 2014, arXiv:1405.0312) as VOC-style
//! semantic masks.
//!
//! `<root>/annotations/instances_{train,val}2014.json` is read as a stream: the
//! `annotations` array goes through a serde `DeserializeSeed`/`Visitor` one element at a
//! time, and each annotation is appended in a compact binary form to one of B spill files
//! (bucket = image id mod B) next to the output. The buckets are then processed one after
//! the other, images in parallel, so memory is about (annotation data)/B, never a vector
//! of all annotations.
//!
//! Rasterisation follows pycocotools' `maskApi.c` (BSD-2-Clause), reimplemented here:
//! polygons by `rleFrPoly` (boundary upsampled ×5, column-major run-length encoding; the
//! parts of one annotation are united), uncompressed RLE (`counts` as a list) and
//! compressed RLE strings (`rleFrString`, the LEB128-like 6-bit code with deltas from the
//! third count on). The fixture test compares the masks with ones produced by pycocotools.
//!
//! Painting order within an image: non-crowd instances by decreasing pixel area (ties by
//! annotation id), so a small object lying on a large one stays visible; then crowd
//! regions (`iscrowd = 1`) set to 255 (ignore) on the pixels no non-crowd instance covers.
//! Labels: [`CocoLayout::Coco80`] maps the categories sorted by id to 1..=80;
//! [`CocoLayout::Weaktr91`] keeps the raw ids (1..=90, 91 classes with background) as
//! WeakTr's checkpoints (arXiv:2304.01184) use. Image-level labels are the classes
//! present in the final mask.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{check_problems, create_dir};
use crate::classes::ClassSet;
use crate::error::{io_err, DataError, Result};
use crate::palette::{write_label_png, LabelFormat, LabelMap};
use crate::voc::{write_list, ImageLabels, IMAGE_DIR, LABEL_FILE, LIST_DIR, MASK_DIR};

/// A column-major run-length encoding (COCO's RLE): `counts` alternate runs of 0 and 1,
/// starting with 0, over the `height × width` pixels in column-major order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rle {
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
    /// Run lengths.
    pub counts: Vec<u32>,
}

impl Rle {
    /// Sets `value` in the row-major map `out` (`height * width`) where the RLE is 1.
    /// Runs past the end are clipped. Cost O(runs + area).
    pub fn paint(&self, out: &mut [u8], value: u8) {
        let (h, w) = (self.height as usize, self.width as usize);
        let n = h * w;
        let mut i = 0usize;
        for (k, &c) in self.counts.iter().enumerate() {
            let end = (i + c as usize).min(n);
            if k % 2 == 1 {
                for j in i..end {
                    out[(j % h) * w + j / h] = value;
                }
            }
            i = end;
        }
    }
}

/// Decodes a compressed RLE string (pycocotools `rleFrString`).
///
/// # Errors
/// A character outside the code's alphabet (`'0'..='o'`), an unfinished count, or a
/// negative run.
pub fn rle_from_string(s: &str, height: u32, width: u32) -> std::result::Result<Rle, String> {
    let bytes = s.as_bytes();
    let mut counts: Vec<u32> = Vec::new();
    let mut p = 0;
    while p < bytes.len() {
        let (mut x, mut k, mut more) = (0i64, 0u32, true);
        while more {
            let Some(&byte) = bytes.get(p) else {
                return Err("RLE string ends inside a count".into());
            };
            if !(48..48 + 64).contains(&byte) {
                return Err(format!("bad character {:?} in RLE string", byte as char));
            }
            if k > 12 {
                return Err("RLE count too long".into());
            }
            let c = (byte - 48) as i64;
            x |= (c & 0x1f) << (5 * k);
            more = c & 0x20 != 0;
            p += 1;
            k += 1;
            if !more && c & 0x10 != 0 {
                x |= -1i64 << (5 * k);
            }
        }
        let m = counts.len();
        if m > 2 {
            x += counts[m - 2] as i64;
        }
        counts.push(u32::try_from(x).map_err(|_| format!("RLE run {x} out of range"))?);
    }
    Ok(Rle {
        height,
        width,
        counts,
    })
}

/// Encodes an RLE as a compressed string (pycocotools `rleToString`).
pub fn rle_to_string(rle: &Rle) -> String {
    let mut s = String::new();
    for (i, &c) in rle.counts.iter().enumerate() {
        let mut x = c as i64;
        if i > 2 {
            x -= rle.counts[i - 2] as i64;
        }
        let mut more = true;
        while more {
            let mut c = (x & 0x1f) as u8;
            x >>= 5;
            more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                c |= 0x20;
            }
            s.push((c + 48) as char);
        }
    }
    s
}

/// The RLE of one polygon `[x1, y1, x2, y2, …]` (pixel coordinates), exactly as
/// pycocotools' `rleFrPoly`: vertices scaled by 5 and rounded, the boundary walked densely,
/// its x-crossings downsampled to pixel columns, and the column-major crossing indices
/// turned into runs. Cost O(perimeter · 5 + crossings log crossings).
pub fn rle_from_polygon(xy: &[f64], height: u32, width: u32) -> Rle {
    let (h, w) = (height as i64, width as i64);
    let k = xy.len() / 2;
    let full = || Rle {
        height,
        width,
        counts: vec![height * width],
    };
    if k == 0 {
        return full();
    }
    let scale = 5.0f64;
    // C's (int)(v + .5): truncation toward zero, saturating here.
    let mut x: Vec<i64> = (0..k).map(|j| (scale * xy[2 * j] + 0.5) as i64).collect();
    let mut y: Vec<i64> = (0..k)
        .map(|j| (scale * xy[2 * j + 1] + 0.5) as i64)
        .collect();
    x.push(x[0]);
    y.push(y[0]);
    // Bound the walk: coordinates far outside the image add nothing but time.
    let limit = 5 * (h.max(w) + 2) * 4;
    for v in x.iter_mut().chain(y.iter_mut()) {
        *v = (*v).clamp(-limit, limit);
    }
    let (mut u, mut v) = (Vec::new(), Vec::new());
    for j in 0..k {
        let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
        let (dx, dy) = ((xe - xs).abs(), (ys - ye).abs());
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        if dx >= dy {
            let s = if dx == 0 {
                0.0
            } else {
                (ye - ys) as f64 / dx as f64
            };
            for d in 0..=dx {
                let t = if flip { dx - d } else { d };
                u.push(t + xs);
                v.push((ys as f64 + s * t as f64 + 0.5) as i64);
            }
        } else {
            let s = (xe - xs) as f64 / dy as f64;
            for d in 0..=dy {
                let t = if flip { dy - d } else { d };
                v.push(t + ys);
                u.push((xs as f64 + s * t as f64 + 0.5) as i64);
            }
        }
    }
    let mut a: Vec<u64> = Vec::new();
    for j in 1..u.len() {
        if u[j] == u[j - 1] {
            continue;
        }
        let xd = if u[j] < u[j - 1] { u[j] } else { u[j] - 1 } as f64;
        let xd = (xd + 0.5) / scale - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > (w - 1) as f64 {
            continue;
        }
        let yd = if v[j] < v[j - 1] { v[j] } else { v[j - 1] } as f64;
        let yd = ((yd + 0.5) / scale - 0.5).clamp(0.0, h as f64).ceil();
        a.push(xd as u64 * h as u64 + yd as u64);
    }
    a.push((h * w) as u64);
    a.sort_unstable();
    let mut prev = 0u64;
    for e in a.iter_mut() {
        let t = *e;
        *e -= prev;
        prev = t;
    }
    let mut counts = vec![a[0] as u32];
    let mut j = 1;
    while j < a.len() {
        if a[j] > 0 {
            counts.push(a[j] as u32);
            j += 1;
        } else {
            j += 1;
            if j < a.len() {
                if let Some(last) = counts.last_mut() {
                    *last += a[j] as u32;
                }
                j += 1;
            }
        }
    }
    Rle {
        height,
        width,
        counts,
    }
}

/// Category-id layout of the masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CocoLayout {
    /// The 80 categories sorted by id mapped to 1..=80 (81 classes with background).
    #[default]
    Coco80,
    /// The raw category ids 1..=90 kept (91 classes; WeakTr's checkpoints).
    Weaktr91,
}

/// `segmentation` of one annotation.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Segmentation {
    Polygons(Vec<Vec<f64>>),
    Rle { size: [u32; 2], counts: Counts },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Counts {
    List(Vec<u32>),
    String(String),
}

#[derive(Debug, Deserialize)]
struct Annotation {
    id: u64,
    image_id: u64,
    category_id: u64,
    #[serde(default)]
    iscrowd: u8,
    segmentation: Segmentation,
}

#[derive(Debug, Clone, Deserialize)]
struct ImageEntry {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
}

#[derive(Debug, Clone, Deserialize)]
struct Category {
    id: u64,
    name: String,
}

/// The compact spilled form of one annotation.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    id: u64,
    image_id: u64,
    category_id: u64,
    crowd: bool,
    shape: Shape,
}

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Polygons(Vec<Vec<f64>>),
    Rle { size: [u32; 2], counts: Vec<u32> },
    RleString { size: [u32; 2], text: String },
}

impl Record {
    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let u32b = |v: usize| (v as u32).to_le_bytes();
        out.write_all(&self.id.to_le_bytes())?;
        out.write_all(&self.image_id.to_le_bytes())?;
        out.write_all(&self.category_id.to_le_bytes())?;
        out.write_all(&[self.crowd as u8])?;
        match &self.shape {
            Shape::Polygons(polys) => {
                out.write_all(&[0])?;
                out.write_all(&u32b(polys.len()))?;
                for p in polys {
                    out.write_all(&u32b(p.len()))?;
                    for v in p {
                        out.write_all(&v.to_le_bytes())?;
                    }
                }
            }
            Shape::Rle { size, counts } => {
                out.write_all(&[1])?;
                out.write_all(&size[0].to_le_bytes())?;
                out.write_all(&size[1].to_le_bytes())?;
                out.write_all(&u32b(counts.len()))?;
                for c in counts {
                    out.write_all(&c.to_le_bytes())?;
                }
            }
            Shape::RleString { size, text } => {
                out.write_all(&[2])?;
                out.write_all(&size[0].to_le_bytes())?;
                out.write_all(&size[1].to_le_bytes())?;
                out.write_all(&u32b(text.len()))?;
                out.write_all(text.as_bytes())?;
            }
        }
        Ok(())
    }

    /// Reads records until the end of `bytes`.
    fn read_all(mut bytes: &[u8]) -> Option<Vec<Record>> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if b.len() < n {
                return None;
            }
            let (head, tail) = b.split_at(n);
            *b = tail;
            Some(head)
        }
        fn u64_(b: &mut &[u8]) -> Option<u64> {
            Some(u64::from_le_bytes(take(b, 8)?.try_into().ok()?))
        }
        fn u32_(b: &mut &[u8]) -> Option<u32> {
            Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?))
        }
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let b = &mut bytes;
            let (id, image_id, category_id) = (u64_(b)?, u64_(b)?, u64_(b)?);
            let crowd = take(b, 1)?[0] != 0;
            let shape = match take(b, 1)?[0] {
                0 => {
                    let n = u32_(b)? as usize;
                    let mut polys = Vec::with_capacity(n);
                    for _ in 0..n {
                        let m = u32_(b)? as usize;
                        let raw = take(b, 8 * m)?;
                        polys.push(
                            raw.chunks_exact(8)
                                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                                .collect(),
                        );
                    }
                    Shape::Polygons(polys)
                }
                1 => {
                    let size = [u32_(b)?, u32_(b)?];
                    let m = u32_(b)? as usize;
                    let raw = take(b, 4 * m)?;
                    let counts = raw
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                        .collect();
                    Shape::Rle { size, counts }
                }
                _ => {
                    let size = [u32_(b)?, u32_(b)?];
                    let m = u32_(b)? as usize;
                    let text = String::from_utf8(take(b, m)?.to_vec()).ok()?;
                    Shape::RleString { size, text }
                }
            };
            out.push(Record {
                id,
                image_id,
                category_id,
                crowd,
                shape,
            });
        }
        Some(out)
    }
}

/// Streams the `annotations` array into a sink, one element at a time.
struct AnnotationSeq<'a, F>(&'a mut F);

impl<'de, F: FnMut(Annotation) -> std::result::Result<(), String>> DeserializeSeed<'de>
    for AnnotationSeq<'_, F>
{
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Annotation) -> std::result::Result<(), String>> Visitor<'de>
    for AnnotationSeq<'_, F>
{
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of COCO annotations")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<u64, A::Error> {
        let mut n = 0;
        while let Some(a) = seq.next_element::<Annotation>()? {
            (self.0)(a).map_err(serde::de::Error::custom)?;
            n += 1;
        }
        Ok(n)
    }
}

/// The top-level object: `images` and `categories` kept (small), `annotations` streamed,
/// everything else skipped.
struct InstancesFile<'a, F> {
    sink: &'a mut F,
}

#[derive(Default)]
struct Header {
    images: Vec<ImageEntry>,
    categories: Vec<Category>,
    annotations: u64,
}

impl<'de, F: FnMut(Annotation) -> std::result::Result<(), String>> Visitor<'de>
    for InstancesFile<'_, F>
{
    type Value = Header;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a COCO instances JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Header, A::Error> {
        let mut header = Header::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "images" => header.images = map.next_value()?,
                "categories" => header.categories = map.next_value()?,
                "annotations" => {
                    header.annotations = map.next_value_seed(AnnotationSeq(&mut *self.sink))?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(header)
    }
}

/// What [`prepare_coco`] did.
#[derive(Debug, Clone, Default)]
pub struct CocoSummary {
    /// Per split (`train`, `val`): images, annotations, crowd annotations.
    pub splits: BTreeMap<String, (usize, u64, u64)>,
    /// Classes with background.
    pub num_classes: usize,
    /// Spill buckets used per split.
    pub buckets: usize,
}

impl fmt::Display for CocoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (split, (images, anns, crowd)) in &self.splits {
            writeln!(
                f,
                "{split}: {images} images, {anns} annotations ({crowd} crowd)"
            )?;
        }
        write!(
            f,
            "{} classes with background; {} spill bucket(s) per split",
            self.num_classes, self.buckets
        )
    }
}

/// Options of [`prepare_coco`].
#[derive(Debug, Clone, Default)]
pub struct CocoConfig {
    /// Label layout.
    pub layout: CocoLayout,
    /// Spill buckets per split; 0 = one per 64 MiB of JSON.
    pub buckets: usize,
}

/// Converts `<root>/annotations/instances_{train,val}2014.json` (each split whose file
/// exists) into `<root>/SegmentationClass/<stem>.png` (palette), links
/// `<root>/JPEGImages/<stem>.jpg` to `<root>/{train,val}2014/<file>` (hard link, else a
/// copy), and writes `ImageSets/Segmentation/{train,val}.txt` and `cls_labels.json`.
///
/// # Errors
/// No annotation file, malformed JSON (with its position), an annotation of an unknown
/// category or image, an RLE whose size is not the image's, a missing image file: every
/// problem names its file.
pub fn prepare_coco(root: &Path, cfg: &CocoConfig) -> Result<CocoSummary> {
    let splits: Vec<(&str, PathBuf)> = ["train", "val"]
        .into_iter()
        .map(|s| (s, root.join(format!("annotations/instances_{s}2014.json"))))
        .filter(|(_, p)| p.is_file())
        .collect();
    if splits.is_empty() {
        return Err(DataError::Layout {
            root: root.to_path_buf(),
            problems: vec![format!(
                "{}: missing (and no instances_val2014.json either)",
                root.join("annotations/instances_train2014.json").display()
            )],
        });
    }
    for d in [IMAGE_DIR, MASK_DIR, LIST_DIR] {
        create_dir(&root.join(d))?;
    }
    let mut summary = CocoSummary::default();
    let mut labels = ImageLabels::default();
    for (split, json) in splits {
        let size = std::fs::metadata(&json).map_err(io_err(&json))?.len();
        let buckets = if cfg.buckets > 0 {
            cfg.buckets
        } else {
            (size / (64 << 20)) as usize + 1
        };
        summary.buckets = buckets;
        let spill = root.join(format!(".{split}2014.spill"));
        create_dir(&spill)?;
        let result = convert_split(root, split, &json, &spill, buckets, cfg.layout, &mut labels);
        let _ = std::fs::remove_dir_all(&spill);
        let (names, anns, crowd) = result?;
        summary
            .splits
            .insert(split.to_string(), (names.len(), anns, crowd));
        write_list(&root.join(LIST_DIR).join(format!("{split}.txt")), &names)?;
    }
    summary.num_classes = labels.classes.len();
    labels.write(&root.join(LABEL_FILE))?;
    Ok(summary)
}

fn convert_split(
    root: &Path,
    split: &str,
    json: &Path,
    spill: &Path,
    buckets: usize,
    layout: CocoLayout,
    labels: &mut ImageLabels,
) -> Result<(Vec<String>, u64, u64)> {
    let bucket_path = |b: usize| spill.join(format!("{b}.bin"));
    let mut writers = (0..buckets)
        .map(|b| {
            let p = bucket_path(b);
            File::create(&p).map(BufWriter::new).map_err(io_err(&p))
        })
        .collect::<Result<Vec<_>>>()?;
    let (mut crowd, mut io_error) = (0u64, None);
    let mut sink = |a: Annotation| -> std::result::Result<(), String> {
        let shape = match a.segmentation {
            Segmentation::Polygons(p) => Shape::Polygons(p),
            Segmentation::Rle {
                size,
                counts: Counts::List(counts),
            } => Shape::Rle { size, counts },
            Segmentation::Rle {
                size,
                counts: Counts::String(text),
            } => Shape::RleString { size, text },
        };
        crowd += (a.iscrowd != 0) as u64;
        let r = Record {
            id: a.id,
            image_id: a.image_id,
            category_id: a.category_id,
            crowd: a.iscrowd != 0,
            shape,
        };
        let b = (a.image_id % buckets as u64) as usize;
        r.write(&mut writers[b]).map_err(|e| {
            let msg = format!("{}: {e}", bucket_path(b).display());
            io_error = Some(msg.clone());
            msg
        })
    };
    let file = File::open(json).map_err(io_err(json))?;
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 20, file));
    let header = de
        .deserialize_map(InstancesFile { sink: &mut sink })
        .map_err(|e| DataError::Parse {
            path: json.to_path_buf(),
            message: io_error.clone().unwrap_or_else(|| e.to_string()),
        })?;
    for (b, w) in writers.iter_mut().enumerate() {
        w.flush().map_err(io_err(&bucket_path(b)))?;
    }
    drop(writers);

    // Class table.
    let mut cats = header.categories.clone();
    cats.sort_by_key(|c| c.id);
    let (label_of, names): (HashMap<u64, u8>, Vec<String>) = match layout {
        CocoLayout::Coco80 => (
            cats.iter()
                .enumerate()
                .map(|(i, c)| (c.id, i as u8 + 1))
                .collect(),
            std::iter::once("background".to_string())
                .chain(cats.iter().map(|c| c.name.clone()))
                .collect(),
        ),
        CocoLayout::Weaktr91 => {
            let mut names: Vec<String> = (0..91).map(|i| format!("unused{i}")).collect();
            names[0] = "background".into();
            let mut map = HashMap::new();
            for c in &cats {
                if c.id == 0 || c.id > 90 {
                    return Err(DataError::Parse {
                        path: json.to_path_buf(),
                        message: format!(
                            "category id {} does not fit the 91-id layout (1..=90)",
                            c.id
                        ),
                    });
                }
                names[c.id as usize] = c.name.clone();
                map.insert(c.id, c.id as u8);
            }
            (map, names)
        }
    };
    if label_of.len() > 254 {
        return Err(DataError::Parse {
            path: json.to_path_buf(),
            message: format!("{} categories do not fit u8 labels", label_of.len()),
        });
    }
    if labels.classes.is_empty() {
        labels.classes = names;
    } else if labels.classes != names {
        return Err(DataError::Parse {
            path: json.to_path_buf(),
            message: "categories differ from the other split's".into(),
        });
    }

    let images: HashMap<u64, &ImageEntry> = header.images.iter().map(|i| (i.id, i)).collect();
    let image_dir = root.join(format!("{split}2014"));
    let mut problems = Vec::new();
    let mut annotations = 0u64;
    for b in 0..buckets {
        let p = bucket_path(b);
        let mut bytes = Vec::new();
        File::open(&p)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_err(&p))?;
        let records = Record::read_all(&bytes).ok_or_else(|| DataError::Parse {
            path: p.clone(),
            message: "truncated spill file".into(),
        })?;
        drop(bytes);
        annotations += records.len() as u64;
        let mut per_image: HashMap<u64, Vec<Record>> = HashMap::new();
        for r in records {
            if !images.contains_key(&r.image_id) {
                problems.push(format!(
                    "{}: annotation {} refers to unknown image {}",
                    json.display(),
                    r.id,
                    r.image_id
                ));
                continue;
            }
            per_image.entry(r.image_id).or_default().push(r);
        }
        let todo: Vec<&ImageEntry> = header
            .images
            .iter()
            .filter(|i| (i.id % buckets as u64) as usize == b)
            .collect();
        let done: Vec<std::result::Result<(String, ClassSet), String>> = todo
            .par_iter()
            .map(|im| {
                let recs = per_image.get(&im.id).map(Vec::as_slice).unwrap_or(&[]);
                let mask = semantic_mask(im, recs, &label_of)
                    .map_err(|e| format!("{}: {e}", json.display()))?;
                let stem = Path::new(&im.file_name)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| im.file_name.clone());
                write_label_png(
                    &root.join(MASK_DIR).join(format!("{stem}.png")),
                    &mask,
                    LabelFormat::Palette,
                )
                .map_err(|e| e.to_string())?;
                link_image(
                    &image_dir.join(&im.file_name),
                    &root.join(IMAGE_DIR).join(format!("{stem}.jpg")),
                )?;
                Ok((stem, ClassSet::from_mask(&mask.data)))
            })
            .collect();
        for d in done {
            match d {
                Ok((stem, classes)) => {
                    labels.labels.insert(stem, classes);
                }
                Err(p) => problems.push(p),
            }
        }
    }
    check_problems(root, problems)?;
    let mut names: Vec<String> = header
        .images
        .iter()
        .map(|im| {
            Path::new(&im.file_name)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| im.file_name.clone())
        })
        .collect();
    names.sort();
    Ok((names, annotations, crowd))
}

/// Hard-links (else copies) the image into `JPEGImages`; a missing source names it.
fn link_image(src: &Path, dst: &Path) -> std::result::Result<(), String> {
    if !src.is_file() {
        return Err(format!("{}: missing image", src.display()));
    }
    if dst.is_file() {
        return Ok(());
    }
    std::fs::hard_link(src, dst)
        .or_else(|_| {
            let tmp = crate::palette::tmp_path(dst);
            std::fs::copy(src, &tmp).and_then(|_| std::fs::rename(&tmp, dst))
        })
        .map_err(|e| format!("{}: {e}", dst.display()))
}

/// One image's semantic mask from its annotations (see the module docs for the order).
fn semantic_mask(
    im: &ImageEntry,
    recs: &[Record],
    label_of: &HashMap<u64, u8>,
) -> std::result::Result<LabelMap, String> {
    let (h, w) = (im.height, im.width);
    let n = h as usize * w as usize;
    let mut instances: Vec<(u64, u64, u8, bool, Vec<u8>)> = Vec::with_capacity(recs.len());
    for r in recs {
        let label = *label_of
            .get(&r.category_id)
            .ok_or_else(|| format!("annotation {} has unknown category {}", r.id, r.category_id))?;
        let mut m = vec![0u8; n];
        match &r.shape {
            Shape::Polygons(polys) => {
                for p in polys {
                    rle_from_polygon(p, h, w).paint(&mut m, 1);
                }
            }
            Shape::Rle { size, counts } => {
                check_size(r.id, *size, im)?;
                Rle {
                    height: h,
                    width: w,
                    counts: counts.clone(),
                }
                .paint(&mut m, 1);
            }
            Shape::RleString { size, text } => {
                check_size(r.id, *size, im)?;
                rle_from_string(text, h, w)
                    .map_err(|e| format!("annotation {}: {e}", r.id))?
                    .paint(&mut m, 1);
            }
        }
        let area = m.iter().map(|&v| v as u64).sum();
        instances.push((area, r.id, label, r.crowd, m));
    }
    instances.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut out = LabelMap::filled(w, h, 0);
    let mut covered = vec![false; n];
    for (_, _, label, crowd, m) in instances.iter().filter(|i| !i.3) {
        debug_assert!(!crowd);
        for i in 0..n {
            if m[i] != 0 {
                out.data[i] = *label;
                covered[i] = true;
            }
        }
    }
    for (_, _, _, _, m) in instances.iter().filter(|i| i.3) {
        for i in 0..n {
            if m[i] != 0 && !covered[i] {
                out.data[i] = 255;
            }
        }
    }
    Ok(out)
}

fn check_size(id: u64, size: [u32; 2], im: &ImageEntry) -> std::result::Result<(), String> {
    if size != [im.height, im.width] {
        return Err(format!(
            "annotation {id}: RLE size {size:?} but image {} is [{}, {}]",
            im.file_name, im.height, im.width
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle_string_round_trip() {
        let rle = Rle {
            height: 10,
            width: 30,
            counts: vec![3, 5, 0, 40, 100, 2, 150],
        };
        let s = rle_to_string(&rle);
        assert_eq!(rle_from_string(&s, 10, 30).unwrap(), rle);
        assert!(rle_from_string("\u{7f}", 1, 1).is_err());
    }

    #[test]
    fn polygon_square_fills_its_pixels() {
        // The square [1.5, 4.5]² covers pixel centres 2, 3, 4 (pycocotools: 1..=4 on rows).
        let rle = rle_from_polygon(&[1.5, 1.5, 4.5, 1.5, 4.5, 4.5, 1.5, 4.5], 8, 8);
        let mut m = vec![0u8; 64];
        rle.paint(&mut m, 1);
        assert_eq!(
            m.iter().filter(|&&v| v == 1).count(),
            rle.counts.iter().skip(1).step_by(2).sum::<u32>() as usize
        );
        assert_eq!(m[3 * 8 + 3], 1);
        assert_eq!(m[0], 0);
    }

    #[test]
    fn record_round_trip() {
        let r = Record {
            id: 7,
            image_id: 9,
            category_id: 18,
            crowd: true,
            shape: Shape::Polygons(vec![vec![1.0, 2.5, 3.0, 4.0, 5.0, 6.0]]),
        };
        let s = Record {
            shape: Shape::RleString {
                size: [3, 4],
                text: "abc".into(),
            },
            ..r.clone()
        };
        let mut buf = Vec::new();
        r.write(&mut buf).unwrap();
        s.write(&mut buf).unwrap();
        assert_eq!(Record::read_all(&buf).unwrap(), vec![r, s]);
        assert!(Record::read_all(&buf[..buf.len() - 1]).is_none());
    }
}
