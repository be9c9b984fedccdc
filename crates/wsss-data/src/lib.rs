//! Data for weakly supervised semantic segmentation: label maps as VOC palette or grey
//! PNGs ([`palette`]), JPEG/PNG images, image-level labels ([`ClassSet`]), datasets in the
//! PASCAL VOC layout ([`VocDataset`], VOC 2012 / SBD-aug, Everingham et al. IJCV 2010;
//! Hariharan et al. ICCV 2011), training augmentations with an explicit RNG
//! ([`transform`]), a batcher to candle tensors ([`batch`]), and the embedded `scenes`
//! benchmark built from Fashion-MNIST objects (Xiao et al., arXiv:1708.07747) on real photo
//! textures ([`scenes`]), with ScribbleSup-style scribbles (Lin et al., arXiv:1604.05144),
//! and converters of the public datasets into that layout ([`prepare`]: VOC 2012 + SBD
//! `cls/*.mat`, COCO 2014 instances JSON streamed, ScribbleSup XML).
//!
//! ```
//! use wsss_data::{palette::{read_label_png, write_label_png, LabelFormat, LabelMap}, ClassSet};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("mask.png");
//! let mask = LabelMap { width: 3, height: 2, data: vec![0, 1, 1, 255, 15, 0] };
//! write_label_png(&path, &mask, LabelFormat::Palette).unwrap();
//! let back = read_label_png(&path).unwrap();
//! assert_eq!(back, mask);
//! assert_eq!(ClassSet::from_mask(&back.data).labels(), &[1, 15]);
//! ```

pub mod batch;
mod classes;
mod error;
pub mod image_io;
pub mod palette;
pub mod prepare;
pub mod scenes;
pub mod transform;
pub mod voc;

pub use classes::{ClassSet, SCENES_CLASSES, VOC_CLASSES};
pub use error::{DataError, Result};
pub use voc::{Sample, VocDataset};
