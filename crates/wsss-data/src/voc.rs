//! Datasets in the PASCAL VOC layout (VOC 2012, SBD-aug, COCO converted, the scenes
//! benchmark):
//!
//! ```text
//! ROOT/JPEGImages/<name>.jpg (or .png)
//! ROOT/SegmentationClassAug/<name>.png   (preferred when present; grey or palette)
//! ROOT/SegmentationClass/<name>.png      (palette)
//! ROOT/Scribbles/<name>.png              (optional; 255 = unlabelled)
//! ROOT/ImageSets/Segmentation/<split>.txt
//! ROOT/cls_labels.json                   (optional image-level labels and class names)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::classes::{ClassSet, VOC_CLASSES};
use crate::error::{io_err, DataError, Result};
use crate::image_io::{read_image, RgbImage};
use crate::palette::{read_label_png, LabelMap};

/// Folder of the images.
pub const IMAGE_DIR: &str = "JPEGImages";
/// Folder of the SBD-augmented masks.
pub const MASK_AUG_DIR: &str = "SegmentationClassAug";
/// Folder of the VOC masks.
pub const MASK_DIR: &str = "SegmentationClass";
/// Folder of the scribble label maps.
pub const SCRIBBLE_DIR: &str = "Scribbles";
/// Folder of the image lists.
pub const LIST_DIR: &str = "ImageSets/Segmentation";
/// The image-level label file.
pub const LABEL_FILE: &str = "cls_labels.json";

/// One image with what is known about it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Image name (file stem).
    pub name: String,
    /// The RGB image.
    pub image: RgbImage,
    /// Image-level labels (foreground classes present).
    pub classes: ClassSet,
    /// Full mask, when the dataset has one for this image (255 = ignore).
    pub mask: Option<LabelMap>,
    /// Scribble labels, when present (255 = unlabelled).
    pub scribble: Option<LabelMap>,
}

/// `cls_labels.json`: class names and the image-level labels of every image.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageLabels {
    /// Class names, index = label value (background first).
    pub classes: Vec<String>,
    /// Labels per image name.
    pub labels: BTreeMap<String, ClassSet>,
}

impl ImageLabels {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let labels: Self = serde_json::from_str(&text).map_err(|e| DataError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let c = labels.classes.len();
        for set in labels.labels.values() {
            if let Some(&l) = set.labels().iter().find(|&&l| l as usize >= c) {
                return Err(DataError::ClassOutOfRange {
                    path: path.to_path_buf(),
                    value: l as u32,
                    num_classes: c,
                });
            }
        }
        Ok(labels)
    }

    /// Writes `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string(self).map_err(|e| DataError::Invalid(e.to_string()))?;
        let tmp = crate::palette::tmp_path(path);
        std::fs::write(&tmp, json).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))
    }
}

/// Reads an image list: the first whitespace-separated token of each non-empty line.
pub fn read_list(path: &Path) -> Result<Vec<String>> {
    if !path.is_file() {
        return Err(DataError::MissingList {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

/// Writes an image list atomically, one name per line.
pub fn write_list(path: &Path, names: &[String]) -> Result<()> {
    let mut text = names.join("\n");
    text.push('\n');
    let tmp = crate::palette::tmp_path(path);
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// A split of a VOC-layout dataset. Loading is lazy: [`VocDataset::load`] reads one sample.
#[derive(Debug, Clone)]
pub struct VocDataset {
    root: PathBuf,
    names: Vec<String>,
    class_names: Vec<String>,
    labels: Option<ImageLabels>,
    mask_dir: Option<PathBuf>,
    scribble_dir: Option<PathBuf>,
}

impl VocDataset {
    /// Opens `root` with the image list `ImageSets/Segmentation/<split>.txt`.
    pub fn open(root: &Path, split: &str) -> Result<Self> {
        let names = read_list(&root.join(LIST_DIR).join(format!("{split}.txt")))?;
        let label_path = root.join(LABEL_FILE);
        let labels = if label_path.is_file() {
            Some(ImageLabels::read(&label_path)?)
        } else {
            None
        };
        let class_names = match &labels {
            Some(l) if !l.classes.is_empty() => l.classes.clone(),
            _ => VOC_CLASSES.iter().map(|s| s.to_string()).collect(),
        };
        let dir = |d: &str| Some(root.join(d)).filter(|p| p.is_dir());
        Ok(Self {
            root: root.to_path_buf(),
            names,
            class_names,
            labels,
            mask_dir: dir(MASK_AUG_DIR).or_else(|| dir(MASK_DIR)),
            scribble_dir: dir(SCRIBBLE_DIR),
        })
    }

    /// Root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Image names of the split.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Class names (background first).
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of classes C (background included).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The image file of `name` (`.jpg`, else `.png`).
    pub fn image_path(&self, name: &str) -> PathBuf {
        let jpg = self.root.join(IMAGE_DIR).join(format!("{name}.jpg"));
        if jpg.is_file() {
            return jpg;
        }
        let png = self.root.join(IMAGE_DIR).join(format!("{name}.png"));
        if png.is_file() {
            png
        } else {
            jpg
        }
    }

    /// The mask file of `name`, when the dataset has a mask folder.
    pub fn mask_path(&self, name: &str) -> Option<PathBuf> {
        self.mask_dir
            .as_ref()
            .map(|d| d.join(format!("{name}.png")))
    }

    /// Loads sample `index`: the image, its mask and scribble when present (each checked:
    /// same size as the image, values `< C` or 255), and its image-level labels (from
    /// `cls_labels.json`, else derived from the mask).
    pub fn load(&self, index: usize) -> Result<Sample> {
        let name = self
            .names
            .get(index)
            .ok_or_else(|| DataError::Invalid(format!("sample {index} out of {}", self.len())))?
            .clone();
        let image = read_image(&self.image_path(&name))?;
        let c = self.num_classes();
        let read_checked = |path: PathBuf| -> Result<Option<LabelMap>> {
            if !path.is_file() {
                return Ok(None);
            }
            let map = read_label_png(&path)?;
            check_label_map(&path, &map, image.width(), image.height(), c)?;
            Ok(Some(map))
        };
        let mask = match self.mask_path(&name) {
            Some(p) => read_checked(p)?,
            None => None,
        };
        let scribble = match &self.scribble_dir {
            Some(d) => read_checked(d.join(format!("{name}.png")))?,
            None => None,
        };
        let classes = match (&self.labels, &mask) {
            (Some(l), _) if l.labels.contains_key(&name) => l.labels[&name].clone(),
            (_, Some(m)) => ClassSet::from_mask(&m.data),
            _ => ClassSet::default(),
        };
        Ok(Sample {
            name,
            image,
            classes,
            mask,
            scribble,
        })
    }
}

/// Checks that `map` (read from `path`) is `width`x`height` with values `< C` or 255.
pub fn check_label_map(
    path: &Path,
    map: &LabelMap,
    width: u32,
    height: u32,
    num_classes: usize,
) -> Result<()> {
    if (map.width, map.height) != (width, height) {
        return Err(DataError::SizeMismatch {
            path: path.to_path_buf(),
            got_width: map.width,
            got_height: map.height,
            width,
            height,
        });
    }
    if let Some(v) = map.out_of_range(num_classes) {
        return Err(DataError::ClassOutOfRange {
            path: path.to_path_buf(),
            value: v as u32,
            num_classes,
        });
    }
    Ok(())
}
