//! `wsss data prepare voc`: checks a PASCAL VOC 2012 tree (Everingham et al., IJCV 2010),
//! builds `SegmentationClassAug` with the SBD masks (Hariharan et al., ICCV 2011), and
//! writes the standard `train_aug` list and the image-level labels.
//!
//! `train_aug` = (SBD train ∪ SBD val ∪ VOC train) − VOC val: 10,582 images on the full
//! data, with `train` (1,464) and `val` (1,449) as VOC ships them. A mask in
//! `SegmentationClassAug/` comes from, in order: the file already there (checked, kept);
//! VOC's own `SegmentationClass/` (finer, with its 255 boundary band); SBD's
//! `cls/<name>.mat`. Masks are written as 8-bit grey PNGs, as the usual
//! `SegmentationClassAug` download (ToCo, AFA, WeakTr) has them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::sbd::read_sbd_cls;
use super::{check_problems, create_dir, find_root};
use crate::classes::{ClassSet, VOC_CLASSES};
use crate::error::Result;
use crate::palette::{read_label_png, write_label_png, LabelFormat};
use crate::voc::{
    check_label_map, read_list, write_list, ImageLabels, IMAGE_DIR, LABEL_FILE, LIST_DIR,
    MASK_AUG_DIR, MASK_DIR,
};

/// Where each mask of `SegmentationClassAug` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskSource {
    /// Already in `SegmentationClassAug/` (checked, left as it was).
    Kept,
    /// Converted from VOC's `SegmentationClass/`.
    Voc,
    /// Converted from SBD's `cls/<name>.mat`.
    Sbd,
}

/// What [`prepare_voc`] did.
#[derive(Debug, Clone, Default)]
pub struct VocSummary {
    /// The VOC2012 folder used as the dataset root.
    pub root: PathBuf,
    /// The SBD `dataset` folder used, if any.
    pub sbd: Option<PathBuf>,
    /// Images in `train_aug`, `train`, `val`.
    pub train_aug: usize,
    /// Images in `train`.
    pub train: usize,
    /// Images in `val`.
    pub val: usize,
    /// Masks already present and kept.
    pub kept: usize,
    /// Masks converted from VOC's `SegmentationClass`.
    pub from_voc: usize,
    /// Masks converted from SBD.
    pub from_sbd: usize,
    /// Per class (index = label, background first): images of `train_aug` containing it.
    pub train_aug_images_per_class: Vec<usize>,
}

impl std::fmt::Display for VocSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "VOC root: {}", self.root.display())?;
        match &self.sbd {
            Some(s) => writeln!(f, "SBD: {}", s.display())?,
            None => writeln!(f, "SBD: none (train_aug = VOC train only)")?,
        }
        writeln!(
            f,
            "lists: train_aug {} (standard 10582), train {} (1464), val {} (1449)",
            self.train_aug, self.train, self.val
        )?;
        writeln!(
            f,
            "{MASK_AUG_DIR}: {} kept, {} from VOC {MASK_DIR}, {} from SBD cls/*.mat",
            self.kept, self.from_voc, self.from_sbd
        )?;
        let per_class: Vec<String> = self
            .train_aug_images_per_class
            .iter()
            .enumerate()
            .skip(1)
            .map(|(k, n)| format!("{} {n}", VOC_CLASSES[k]))
            .collect();
        write!(f, "train_aug images per class: {}", per_class.join(", "))
    }
}

/// The VOC2012 folder under `root` (`root`, `root/VOC2012` or `root/VOCdevkit/VOC2012`).
pub fn voc_root(root: &Path) -> Option<PathBuf> {
    find_root(
        &[
            root.to_path_buf(),
            root.join("VOC2012"),
            root.join("VOCdevkit/VOC2012"),
        ],
        IMAGE_DIR,
    )
}

/// The SBD `dataset` folder under `sbd` (`sbd`, `sbd/dataset`,
/// `sbd/benchmark_RELEASE/dataset`).
pub fn sbd_root(sbd: &Path) -> Option<PathBuf> {
    find_root(
        &[
            sbd.to_path_buf(),
            sbd.join("dataset"),
            sbd.join("benchmark_RELEASE/dataset"),
        ],
        "cls",
    )
}

/// Prepares a VOC 2012 tree (see the module docs). Runs in parallel over images (rayon).
///
/// # Errors
/// No `JPEGImages` under `root`, no `cls` under `sbd`, a missing list, or any missing or
/// corrupt image or mask: every problem is listed, each naming its file, and no list or
/// label file is written. Masks converted before the error stay (each written atomically).
pub fn prepare_voc(root: &Path, sbd: Option<&Path>) -> Result<VocSummary> {
    let voc = voc_root(root).ok_or_else(|| crate::DataError::Layout {
        root: root.to_path_buf(),
        problems: vec![format!(
            "no {IMAGE_DIR}/ in {0}, {0}/VOC2012 or {0}/VOCdevkit/VOC2012",
            root.display()
        )],
    })?;
    let sbd = match sbd {
        Some(s) => Some(sbd_root(s).ok_or_else(|| crate::DataError::Layout {
            root: s.to_path_buf(),
            problems: vec![format!(
                "no cls/ in {0}, {0}/dataset or {0}/benchmark_RELEASE/dataset",
                s.display()
            )],
        })?),
        None => None,
    };
    let lists = voc.join(LIST_DIR);
    let train = read_list(&lists.join("train.txt"))?;
    let val = read_list(&lists.join("val.txt"))?;
    let val_set: BTreeSet<&String> = val.iter().collect();
    let mut aug: BTreeSet<String> = train.iter().cloned().collect();
    if let Some(s) = &sbd {
        aug.extend(read_list(&s.join("train.txt"))?);
        aug.extend(read_list(&s.join("val.txt"))?);
    }
    let train_aug: Vec<String> = aug.into_iter().filter(|n| !val_set.contains(n)).collect();
    let all: BTreeSet<&String> = train_aug.iter().chain(&val).chain(&train).collect();
    let all: Vec<&String> = all.into_iter().collect();

    let aug_dir = voc.join(MASK_AUG_DIR);
    create_dir(&aug_dir)?;
    let c = VOC_CLASSES.len();
    let results: Vec<std::result::Result<(String, ClassSet, MaskSource), String>> = all
        .par_iter()
        .map(|name| {
            let name = name.as_str();
            let image = voc.join(IMAGE_DIR).join(format!("{name}.jpg"));
            let (w, h) = image_size(&image)?;
            let out = aug_dir.join(format!("{name}.png"));
            let voc_mask = voc.join(MASK_DIR).join(format!("{name}.png"));
            let sbd_mask = sbd
                .as_ref()
                .map(|s| s.join("cls").join(format!("{name}.mat")));
            let (map, source) = if out.is_file() {
                (
                    read_label_png(&out).map_err(|e| e.to_string())?,
                    MaskSource::Kept,
                )
            } else if voc_mask.is_file() {
                (
                    read_label_png(&voc_mask).map_err(|e| e.to_string())?,
                    MaskSource::Voc,
                )
            } else if let Some(p) = sbd_mask.as_ref().filter(|p| p.is_file()) {
                (read_sbd_cls(p).map_err(|e| e.to_string())?, MaskSource::Sbd)
            } else {
                return Err(format!(
                    "{}: missing mask for {name} (also looked for {}{})",
                    out.display(),
                    voc_mask.display(),
                    sbd_mask
                        .map(|p| format!(" and {}", p.display()))
                        .unwrap_or_default()
                ));
            };
            let from = match source {
                MaskSource::Kept => out.clone(),
                MaskSource::Voc => voc_mask,
                MaskSource::Sbd => sbd_mask.unwrap_or_default(),
            };
            check_label_map(&from, &map, w, h, c).map_err(|e| e.to_string())?;
            if source != MaskSource::Kept {
                write_label_png(&out, &map, LabelFormat::Grey).map_err(|e| e.to_string())?;
            }
            Ok((name.to_string(), ClassSet::from_mask(&map.data), source))
        })
        .collect();
    let mut problems = Vec::new();
    let mut labels = ImageLabels {
        classes: VOC_CLASSES.iter().map(|s| s.to_string()).collect(),
        ..ImageLabels::default()
    };
    let mut summary = VocSummary {
        root: voc.clone(),
        sbd: sbd.clone(),
        train_aug: train_aug.len(),
        train: train.len(),
        val: val.len(),
        train_aug_images_per_class: vec![0; c],
        ..VocSummary::default()
    };
    for r in results {
        match r {
            Ok((name, classes, source)) => {
                match source {
                    MaskSource::Kept => summary.kept += 1,
                    MaskSource::Voc => summary.from_voc += 1,
                    MaskSource::Sbd => summary.from_sbd += 1,
                }
                labels.labels.insert(name, classes);
            }
            Err(p) => problems.push(p),
        }
    }
    check_problems(&voc, problems)?;
    for name in &train_aug {
        for &l in labels.labels[name].labels() {
            summary.train_aug_images_per_class[l as usize] += 1;
        }
    }
    summary.train_aug_images_per_class[0] = train_aug.len();
    write_list(&lists.join("train_aug.txt"), &train_aug)?;
    labels.write(&voc.join(LABEL_FILE))?;
    Ok(summary)
}

/// Width and height from the image header; a missing or undecodable file is a problem
/// naming it.
fn image_size(path: &Path) -> std::result::Result<(u32, u32), String> {
    if !path.is_file() {
        return Err(format!("{}: missing image", path.display()));
    }
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("{}: {e}", path.display()))?
        .into_dimensions()
        .map_err(|e| format!("{}: corrupt image: {e}", path.display()))
}
