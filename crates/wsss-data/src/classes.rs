//! Class names and image-level label sets.

use serde::{Deserialize, Serialize};

/// The 21 PASCAL VOC classes, background first.
pub const VOC_CLASSES: [&str; 21] = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// The 11 classes of the embedded `scenes` benchmark: background and the 10
/// Fashion-MNIST classes.
pub const SCENES_CLASSES: [&str; 11] = [
    "background",
    "tshirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "boot",
];

/// The image-level labels of one image: the sorted, distinct foreground label values
/// (`1..C`) present in it. Background (0) and 255 are never members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClassSet(Vec<u8>);

impl ClassSet {
    /// From any label values; 0 and 255 are dropped, the rest sorted and deduplicated.
    pub fn new(labels: impl IntoIterator<Item = u8>) -> Self {
        let mut v: Vec<u8> = labels.into_iter().filter(|&l| l != 0 && l != 255).collect();
        v.sort_unstable();
        v.dedup();
        Self(v)
    }

    /// The classes present in a label map.
    pub fn from_mask(labels: &[u8]) -> Self {
        let mut seen = [false; 256];
        for &l in labels {
            seen[l as usize] = true;
        }
        Self::new((0..=255u8).filter(|&l| seen[l as usize]))
    }

    /// The label values, ascending.
    pub fn labels(&self) -> &[u8] {
        &self.0
    }

    /// Whether `label` is present.
    pub fn contains(&self, label: u8) -> bool {
        self.0.binary_search(&label).is_ok()
    }

    /// Number of classes present.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no foreground class is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Multi-hot vector over the `num_classes - 1` foreground classes (index `l - 1`), as
    /// used by the multi-label classification loss.
    pub fn multi_hot(&self, num_classes: usize) -> Vec<f32> {
        let mut v = vec![0f32; num_classes.saturating_sub(1)];
        for &l in &self.0 {
            if let Some(x) = v.get_mut(l as usize - 1) {
                *x = 1.0;
            }
        }
        v
    }
}
