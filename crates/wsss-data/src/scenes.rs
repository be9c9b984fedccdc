//! The embedded `scenes` benchmark: real Fashion-MNIST objects (Xiao et al.,
//! arXiv:1708.07747, MIT licence) composed on real CC0/public-domain photo textures, written
//! in the VOC layout with exact masks, image-level labels and ScribbleSup-style scribbles
//! (Lin et al., arXiv:1604.05144). The object subset and the textures are compiled into the
//! binary (`datasets/scenes/`), so the benchmark needs no download.
//!
//! Per image, from a seeded RNG of its own (deterministic whatever the thread count):
//! a random crop of a random texture with a random colour tint fills the background; 1 to
//! 3 objects of random classes (uniform over the 10) are scaled to a random side, tinted
//! with a random colour (independent of the class), shaded by their own intensity and
//! pasted at random positions in order (later objects occlude earlier ones). The mask is
//! exact: a pixel belongs to the object where its resized Fashion-MNIST intensity exceeds
//! [`ScenesConfig::mask_threshold`]. Scribbles follow each visible object's skeleton (ridge
//! of its distance transform) and a few random background strokes, width 3, 255 elsewhere.

use std::collections::BTreeMap;
use std::path::Path;

use image::{imageops::FilterType, GrayImage, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::classes::{ClassSet, SCENES_CLASSES};
use crate::error::{io_err, DataError, Result};
use crate::image_io::write_image;
use crate::palette::{write_label_png, LabelFormat, LabelMap};
use crate::voc::{
    write_list, ImageLabels, IMAGE_DIR, LABEL_FILE, LIST_DIR, MASK_DIR, SCRIBBLE_DIR,
};

macro_rules! atlases {
    ($split:literal) => {
        [
            include_bytes!(concat!(
                "../../../datasets/scenes/objects/",
                $split,
                "_0.png"
            ))
            .as_slice(),
            include_bytes!(concat!(
                "../../../datasets/scenes/objects/",
                $split,
                "_1.png"
            ))
            .as_slice(),
            include_bytes!(concat!(
                "../../../datasets/scenes/objects/",
                $split,
                "_2.png"
            ))
            .as_slice(),
            include_bytes!(concat!(
                "../../../datasets/scenes/objects/",
                $split,
                "_3.png"
            ))
            .as_slice(),
            include_bytes!(concat!(
                "../../../datasets/scenes/objects/",
                $split,
                "_4.png"
            ))
            .as_slice(),
            include_bytes!(concat!(
                "../../../datasets/scenes/objects/",
                $split,
                "_5.png"
            ))
            .as_slice(),
            include_bytes!(concat!(
                "../../../datasets/scenes/objects/",
                $split,
                "_6.png"
            ))
            .as_slice(),
            include_bytes!(concat!(
                "../../../datasets/scenes/objects/",
                $split,
                "_7.png"
            ))
            .as_slice(),
            include_bytes!(concat!(
                "../../../datasets/scenes/objects/",
                $split,
                "_8.png"
            ))
            .as_slice(),
            include_bytes!(concat!(
                "../../../datasets/scenes/objects/",
                $split,
                "_9.png"
            ))
            .as_slice(),
        ]
    };
}

const TRAIN_ATLASES: [&[u8]; 10] = atlases!("train");
const VAL_ATLASES: [&[u8]; 10] = atlases!("val");
const TEXTURES: [(&str, &[u8]); 5] = [
    (
        "brick",
        include_bytes!("../../../datasets/scenes/textures/brick.jpg"),
    ),
    (
        "grass",
        include_bytes!("../../../datasets/scenes/textures/grass.jpg"),
    ),
    (
        "gravel",
        include_bytes!("../../../datasets/scenes/textures/gravel.jpg"),
    ),
    (
        "coffee",
        include_bytes!("../../../datasets/scenes/textures/coffee.jpg"),
    ),
    (
        "rocket",
        include_bytes!("../../../datasets/scenes/textures/rocket.jpg"),
    ),
];
const TILE: u32 = 28;

/// Generator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenesConfig {
    /// Training images.
    pub train: usize,
    /// Validation images (objects from the Fashion-MNIST test file).
    pub val: usize,
    /// Image side in pixels.
    pub size: u32,
    /// Seed of everything.
    pub seed: u64,
    /// Objects per image, inclusive range.
    pub objects: (usize, usize),
    /// Object side as a fraction of the image side, range.
    pub object_scale: (f32, f32),
    /// Intensity (0..255) above which a resized object pixel belongs to the object.
    pub mask_threshold: u8,
    /// Background strokes per image.
    pub background_strokes: usize,
    /// Background stroke length as a fraction of the image side, range.
    pub background_length: (f32, f32),
    /// Fraction of the longest skeleton path an object's scribble covers (its middle).
    pub scribble_length: f32,
}

impl Default for ScenesConfig {
    /// 1000 train + 200 val images of 96x96, 1-3 objects, seed 0.
    fn default() -> Self {
        Self {
            train: 1000,
            val: 200,
            size: 96,
            seed: 0,
            objects: (1, 3),
            object_scale: (0.35, 0.65),
            mask_threshold: 24,
            background_strokes: 1,
            background_length: (0.2, 0.4),
            scribble_length: 0.6,
        }
    }
}

/// Statistics of a generated split.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SplitStats {
    /// Images.
    pub images: usize,
    /// Histogram of objects pasted per image (index = count).
    pub objects_per_image: Vec<usize>,
    /// Histogram of classes visible per image (index = count).
    pub classes_per_image: Vec<usize>,
    /// Images in which each class (1..=10) is visible.
    pub images_per_class: Vec<usize>,
    /// Pixels per class (index = label, 0 = background).
    pub pixels_per_class: Vec<u64>,
    /// Fraction of foreground pixels.
    pub foreground_fraction: f64,
    /// Fraction of pixels carrying a scribble label.
    pub scribble_fraction: f64,
}

/// Statistics of a generation run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScenesStats {
    /// The config used.
    pub config: Option<ScenesConfig>,
    /// Per split.
    pub splits: BTreeMap<String, SplitStats>,
}

struct Assets {
    train: Vec<GrayImage>,
    val: Vec<GrayImage>,
    textures: Vec<RgbImage>,
}

fn decode(name: &str, bytes: &[u8]) -> Result<image::DynamicImage> {
    image::load_from_memory(bytes).map_err(|e| DataError::Decode {
        path: name.into(),
        message: e.to_string(),
    })
}

impl Assets {
    fn load() -> Result<Self> {
        let gray = |split: &str, list: &[&[u8]; 10]| -> Result<Vec<GrayImage>> {
            list.iter()
                .enumerate()
                .map(|(k, b)| {
                    Ok(decode(&format!("embedded objects/{split}_{k}.png"), b)?.to_luma8())
                })
                .collect()
        };
        Ok(Self {
            train: gray("train", &TRAIN_ATLASES)?,
            val: gray("val", &VAL_ATLASES)?,
            textures: TEXTURES
                .iter()
                .map(|(n, b)| Ok(decode(&format!("embedded textures/{n}.jpg"), b)?.to_rgb8()))
                .collect::<Result<_>>()?,
        })
    }

    /// Tile `j` of class `k`'s atlas.
    fn tile(atlas: &GrayImage, j: u32) -> GrayImage {
        let per_row = atlas.width() / TILE;
        image::imageops::crop_imm(
            atlas,
            (j % per_row) * TILE,
            (j / per_row) * TILE,
            TILE,
            TILE,
        )
        .to_image()
    }
}

/// One generated scene.
pub struct Scene {
    /// RGB image.
    pub image: RgbImage,
    /// Exact mask (0 background, 1..=10 classes).
    pub mask: LabelMap,
    /// Scribbles (255 unlabelled).
    pub scribble: LabelMap,
    /// Objects pasted (some may end fully occluded).
    pub objects: usize,
}

fn tinted(rng: &mut ChaCha8Rng, lo: f32) -> [f32; 3] {
    [
        rng.random_range(lo..=1.0),
        rng.random_range(lo..=1.0),
        rng.random_range(lo..=1.0),
    ]
}

fn background(assets: &Assets, size: u32, rng: &mut ChaCha8Rng) -> RgbImage {
    let tex = &assets.textures[rng.random_range(0..assets.textures.len())];
    let side_max = tex.width().min(tex.height());
    let side = rng.random_range(side_max / 2..=side_max).max(8);
    let x = rng.random_range(0..=tex.width() - side);
    let y = rng.random_range(0..=tex.height() - side);
    let crop = image::imageops::crop_imm(tex, x, y, side, side).to_image();
    let mut img = image::imageops::resize(&crop, size, size, FilterType::Triangle);
    let tint = tinted(rng, 0.3);
    let gain = rng.random_range(0.6..=1.2f32);
    for p in img.pixels_mut() {
        for c in 0..3 {
            p[c] = (p[c] as f32 * tint[c] * gain).round().clamp(0.0, 255.0) as u8;
        }
    }
    img
}

/// Chessboard distance to the nearest pixel outside `inside` (two passes). O(N).
fn distance(inside: &[bool], w: usize, h: usize) -> Vec<u32> {
    let big = (w + h) as u32;
    let mut d: Vec<u32> = inside.iter().map(|&b| if b { big } else { 0 }).collect();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if d[i] == 0 {
                continue;
            }
            let mut m = d[i];
            // Pixels outside the image count as outside the object.
            let get = |xx: isize, yy: isize| -> u32 {
                if xx < 0 || yy < 0 || xx >= w as isize || yy >= h as isize {
                    0
                } else {
                    d[yy as usize * w + xx as usize]
                }
            };
            for (dx, dy) in [(-1, 0), (-1, -1), (0, -1), (1, -1)] {
                m = m.min(get(x as isize + dx, y as isize + dy) + 1);
            }
            d[i] = m;
        }
    }
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            let i = y * w + x;
            if d[i] == 0 {
                continue;
            }
            let get = |xx: isize, yy: isize| -> u32 {
                if xx < 0 || yy < 0 || xx >= w as isize || yy >= h as isize {
                    0
                } else {
                    d[yy as usize * w + xx as usize]
                }
            };
            let mut m = d[i];
            for (dx, dy) in [(1, 0), (1, 1), (0, 1), (-1, 1)] {
                m = m.min(get(x as isize + dx, y as isize + dy) + 1);
            }
            d[i] = m;
        }
    }
    d
}

/// Paints a 3x3 brush at `(x, y)` where `allowed` holds.
fn brush(scribble: &mut LabelMap, allowed: &dyn Fn(usize) -> bool, x: i64, y: i64, value: u8) {
    let (w, h) = (scribble.width as i64, scribble.height as i64);
    for dy in -1..=1 {
        for dx in -1..=1 {
            let (xx, yy) = (x + dx, y + dy);
            if xx >= 0 && yy >= 0 && xx < w && yy < h {
                let i = (yy * w + xx) as usize;
                if allowed(i) {
                    scribble.data[i] = value;
                }
            }
        }
    }
}

/// Zhang-Suen thinning (Zhang & Suen, CACM 1984) of a binary image: a one-pixel-wide,
/// 8-connected skeleton. Cost O(N · iterations).
fn thin(mut img: Vec<bool>, w: usize, h: usize) -> Vec<bool> {
    let at = |img: &[bool], x: isize, y: isize| -> bool {
        x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h && img[y as usize * w + x as usize]
    };
    loop {
        let mut changed = false;
        for pass in 0..2 {
            let mut remove = Vec::new();
            for y in 0..h as isize {
                for x in 0..w as isize {
                    if !img[y as usize * w + x as usize] {
                        continue;
                    }
                    // P2..P9 clockwise from north.
                    let p = [
                        at(&img, x, y - 1),
                        at(&img, x + 1, y - 1),
                        at(&img, x + 1, y),
                        at(&img, x + 1, y + 1),
                        at(&img, x, y + 1),
                        at(&img, x - 1, y + 1),
                        at(&img, x - 1, y),
                        at(&img, x - 1, y - 1),
                    ];
                    let b = p.iter().filter(|&&v| v).count();
                    let a = (0..8).filter(|&i| !p[i] && p[(i + 1) % 8]).count();
                    let (c1, c2) = if pass == 0 {
                        (!(p[0] && p[2] && p[4]), !(p[2] && p[4] && p[6]))
                    } else {
                        (!(p[0] && p[2] && p[6]), !(p[0] && p[4] && p[6]))
                    };
                    if (2..=6).contains(&b) && a == 1 && c1 && c2 {
                        remove.push(y as usize * w + x as usize);
                    }
                }
            }
            changed |= !remove.is_empty();
            for i in remove {
                img[i] = false;
            }
        }
        if !changed {
            return img;
        }
    }
}

/// The longest shortest path (8-connected) in the largest component of `pixels`, as
/// flat indices in order: two breadth-first searches (exact on trees, a good
/// approximation on skeletons with small loops). Cost O(N).
fn longest_path(pixels: &[bool], w: usize, h: usize) -> Vec<usize> {
    let neighbours = |i: usize| {
        let (x, y) = ((i % w) as isize, (i / w) as isize);
        (-1isize..=1)
            .flat_map(move |dy| (-1isize..=1).map(move |dx| (dx, dy)))
            .filter(|&d| d != (0, 0))
            .map(move |(dx, dy)| (x + dx, y + dy))
            .filter(|&(xx, yy)| xx >= 0 && yy >= 0 && (xx as usize) < w && (yy as usize) < h)
            .map(move |(xx, yy)| yy as usize * w + xx as usize)
    };
    let bfs = |start: usize| -> (usize, Vec<usize>, usize) {
        let mut parent = vec![usize::MAX; w * h];
        let mut queue = std::collections::VecDeque::from([start]);
        parent[start] = start;
        let (mut last, mut count) = (start, 0);
        while let Some(i) = queue.pop_front() {
            last = i;
            count += 1;
            for j in neighbours(i) {
                if pixels[j] && parent[j] == usize::MAX {
                    parent[j] = i;
                    queue.push_back(j);
                }
            }
        }
        (last, parent, count)
    };
    // The largest component: try each unvisited pixel once.
    let mut seen = vec![false; w * h];
    let mut best: Option<(usize, usize)> = None;
    for i in 0..w * h {
        if pixels[i] && !seen[i] {
            let (_, parent, count) = bfs(i);
            for (j, &p) in parent.iter().enumerate() {
                if p != usize::MAX {
                    seen[j] = true;
                }
            }
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((i, count));
            }
        }
    }
    let Some((seed, _)) = best else {
        return Vec::new();
    };
    let (a, _, _) = bfs(seed);
    let (b, parent, _) = bfs(a);
    let mut path = vec![b];
    let mut i = b;
    while i != a {
        i = parent[i];
        path.push(i);
    }
    path
}

/// Composes one scene.
fn compose(assets: &Assets, cfg: &ScenesConfig, val: bool, rng: &mut ChaCha8Rng) -> Scene {
    let size = cfg.size;
    let (w, h) = (size as usize, size as usize);
    let mut image = background(assets, size, rng);
    let mut mask = LabelMap::filled(size, size, 0);
    let mut instance = vec![0u8; w * h];
    let n_objects = rng.random_range(cfg.objects.0..=cfg.objects.1.max(cfg.objects.0));
    let atlases = if val { &assets.val } else { &assets.train };
    for obj in 0..n_objects {
        let class = rng.random_range(0..10usize);
        let atlas = &atlases[class];
        let count = (atlas.width() / TILE) * (atlas.height() / TILE);
        let tile = Assets::tile(atlas, rng.random_range(0..count));
        let side = ((size as f32 * rng.random_range(cfg.object_scale.0..=cfg.object_scale.1))
            .round() as u32)
            .clamp(4, size);
        let obj_img = image::imageops::resize(&tile, side, side, FilterType::Triangle);
        let x0 = rng.random_range(0..=size - side);
        let y0 = rng.random_range(0..=size - side);
        let tint = tinted(rng, 0.15);
        for (ox, oy, p) in obj_img.enumerate_pixels() {
            let v = p[0];
            if v <= cfg.mask_threshold {
                continue;
            }
            let (x, y) = (x0 + ox, y0 + oy);
            let shade = 0.35 + 0.65 * v as f32 / 255.0;
            let px = Rgb([
                (255.0 * tint[0] * shade).round() as u8,
                (255.0 * tint[1] * shade).round() as u8,
                (255.0 * tint[2] * shade).round() as u8,
            ]);
            image.put_pixel(x, y, px);
            mask.set(x, y, class as u8 + 1);
            instance[y as usize * w + x as usize] = obj as u8 + 1;
        }
    }
    // Scribbles: one stroke per visible instance, along the central part of the longest
    // path of its skeleton (Zhang-Suen thinning of the instance eroded by 1 px, so that the
    // 3 px brush stays inside), like a ScribbleSup annotator's single stroke.
    let mut scribble = LabelMap::filled(size, size, 255);
    for obj in 1..=n_objects as u8 {
        let inside: Vec<bool> = instance.iter().map(|&i| i == obj).collect();
        let Some(first) = inside.iter().position(|&b| b) else {
            continue;
        };
        let label = mask.data[first];
        let d = distance(&inside, w, h);
        let core: Vec<bool> = d.iter().map(|&v| v >= 2).collect();
        let allowed = |i: usize| inside[i];
        let skeleton_path = if core.iter().any(|&b| b) {
            longest_path(&thin(core, w, h), w, h)
        } else {
            Vec::new()
        };
        let path = if skeleton_path.is_empty() {
            // A sliver (or a core that thins away): one dot at its deepest pixel, so every
            // object gets a scribble.
            vec![(0..w * h).max_by_key(|&i| d[i]).unwrap_or(first)]
        } else {
            skeleton_path
        };
        let keep = ((path.len() as f32 * cfg.scribble_length).ceil() as usize).clamp(1, path.len());
        let skip = (path.len() - keep) / 2;
        for &i in &path[skip..skip + keep] {
            brush(
                &mut scribble,
                &allowed,
                (i % w) as i64,
                (i / w) as i64,
                label,
            );
        }
    }
    // Background strokes: random segments, kept on background pixels 2+ px from objects.
    let bg: Vec<bool> = mask.data.iter().map(|&l| l == 0).collect();
    let dbg = distance(&bg, w, h);
    let allowed_bg = |i: usize| bg[i] && dbg[i] >= 3;
    for _ in 0..cfg.background_strokes {
        let (x0, y0) = (
            rng.random_range(0..size) as f32,
            rng.random_range(0..size) as f32,
        );
        let angle = rng.random_range(0.0..std::f32::consts::TAU);
        let (lo, hi) = cfg.background_length;
        let len = size as f32 * rng.random_range(lo..=hi.max(lo));
        let steps = len.ceil() as usize;
        for s in 0..=steps {
            let t = s as f32;
            let (x, y) = (x0 + t * angle.cos(), y0 + t * angle.sin());
            brush(
                &mut scribble,
                &allowed_bg,
                x.round() as i64,
                y.round() as i64,
                0,
            );
        }
    }
    Scene {
        image,
        mask,
        scribble,
        objects: n_objects,
    }
}

/// A scene, deterministic in `(seed, split, index)`.
fn scene_rng(seed: u64, val: bool, index: usize) -> ChaCha8Rng {
    let stream = (index as u64) << 1 | val as u64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Generates one scene of a split without writing anything (for tests and previews).
pub fn scene(cfg: &ScenesConfig, val: bool, index: usize) -> Result<Scene> {
    check(cfg)?;
    let assets = Assets::load()?;
    Ok(compose(
        &assets,
        cfg,
        val,
        &mut scene_rng(cfg.seed, val, index),
    ))
}

fn check(cfg: &ScenesConfig) -> Result<()> {
    if cfg.size < 16 || cfg.size > 4096 {
        return Err(DataError::Invalid(format!(
            "scenes size {} outside 16..=4096",
            cfg.size
        )));
    }
    if cfg.objects.0 == 0 || cfg.objects.1 < cfg.objects.0 || cfg.objects.1 > 254 {
        return Err(DataError::Invalid(format!(
            "objects range {:?} invalid",
            cfg.objects
        )));
    }
    let (a, b) = cfg.object_scale;
    if !(a > 0.0 && a <= b && b <= 1.0) {
        return Err(DataError::Invalid(format!(
            "object_scale {:?} must satisfy 0 < a <= b <= 1",
            cfg.object_scale
        )));
    }
    Ok(())
}

/// Writes the benchmark under `out` in the VOC layout (PNG images in `JPEGImages`,
/// palette masks in `SegmentationClass`, palette scribbles in `Scribbles`,
/// `ImageSets/Segmentation/{train,val}.txt`, `cls_labels.json`, `stats.json`), in
/// parallel (rayon). Returns the statistics. Cost O(images · size²).
pub fn generate(cfg: &ScenesConfig, out: &Path) -> Result<ScenesStats> {
    check(cfg)?;
    let assets = Assets::load()?;
    for d in [IMAGE_DIR, MASK_DIR, SCRIBBLE_DIR, LIST_DIR] {
        let p = out.join(d);
        std::fs::create_dir_all(&p).map_err(io_err(&p))?;
    }
    let mut stats = ScenesStats {
        config: Some(cfg.clone()),
        splits: BTreeMap::new(),
    };
    let mut labels = ImageLabels {
        classes: SCENES_CLASSES.iter().map(|s| s.to_string()).collect(),
        labels: BTreeMap::new(),
    };
    for (split, count, val) in [("train", cfg.train, false), ("val", cfg.val, true)] {
        let results: Vec<(String, ClassSet, usize, Vec<u64>, u64)> = (0..count)
            .into_par_iter()
            .map(|i| -> Result<_> {
                let name = format!("{split}_{i:06}");
                let s = compose(&assets, cfg, val, &mut scene_rng(cfg.seed, val, i));
                write_image(&out.join(IMAGE_DIR).join(format!("{name}.png")), &s.image)?;
                write_label_png(
                    &out.join(MASK_DIR).join(format!("{name}.png")),
                    &s.mask,
                    LabelFormat::Palette,
                )?;
                write_label_png(
                    &out.join(SCRIBBLE_DIR).join(format!("{name}.png")),
                    &s.scribble,
                    LabelFormat::Palette,
                )?;
                let mut pixels = vec![0u64; SCENES_CLASSES.len()];
                for &l in &s.mask.data {
                    pixels[l as usize] += 1;
                }
                let scribbled = s.scribble.data.iter().filter(|&&l| l != 255).count() as u64;
                Ok((
                    name,
                    ClassSet::from_mask(&s.mask.data),
                    s.objects,
                    pixels,
                    scribbled,
                ))
            })
            .collect::<Result<_>>()?;
        let mut st = SplitStats {
            images: count,
            objects_per_image: vec![0; cfg.objects.1 + 1],
            classes_per_image: vec![0; cfg.objects.1 + 1],
            images_per_class: vec![0; 10],
            pixels_per_class: vec![0; SCENES_CLASSES.len()],
            ..SplitStats::default()
        };
        let mut scribbled = 0u64;
        let mut names = Vec::with_capacity(count);
        for (name, classes, objects, pixels, scr) in results {
            st.objects_per_image[objects] += 1;
            st.classes_per_image[classes.len()] += 1;
            for &l in classes.labels() {
                st.images_per_class[l as usize - 1] += 1;
            }
            for (a, b) in st.pixels_per_class.iter_mut().zip(&pixels) {
                *a += b;
            }
            scribbled += scr;
            labels.labels.insert(name.clone(), classes);
            names.push(name);
        }
        let total: u64 = st.pixels_per_class.iter().sum();
        if total > 0 {
            st.foreground_fraction = 1.0 - st.pixels_per_class[0] as f64 / total as f64;
            st.scribble_fraction = scribbled as f64 / total as f64;
        }
        write_list(&out.join(LIST_DIR).join(format!("{split}.txt")), &names)?;
        stats.splits.insert(split.to_string(), st);
    }
    labels.write(&out.join(LABEL_FILE))?;
    let json =
        serde_json::to_string_pretty(&stats).map_err(|e| DataError::Invalid(e.to_string()))?;
    let p = out.join("stats.json");
    std::fs::write(&p, json).map_err(io_err(&p))?;
    Ok(stats)
}

/// A contact sheet of the first `count` training scenes of `cfg`: one column per scene,
/// rows image / mask (VOC colours) / scribbles over the darkened image, 4 px gaps.
pub fn contact_sheet(cfg: &ScenesConfig, count: usize) -> Result<RgbImage> {
    check(cfg)?;
    let assets = Assets::load()?;
    let (s, gap) = (cfg.size, 4u32);
    let count = count.max(1) as u32;
    let mut sheet = RgbImage::from_pixel(
        count * (s + gap) + gap,
        3 * (s + gap) + gap,
        Rgb([255, 255, 255]),
    );
    let colours = crate::palette::voc_colormap();
    for c in 0..count {
        let scene = compose(
            &assets,
            cfg,
            false,
            &mut scene_rng(cfg.seed, false, c as usize),
        );
        let x0 = gap + c * (s + gap);
        for (x, y, p) in scene.image.enumerate_pixels() {
            sheet.put_pixel(x0 + x, gap + y, *p);
            let m = colours[scene.mask.get(x, y) as usize];
            sheet.put_pixel(x0 + x, gap + (s + gap) + y, Rgb(m));
            let l = scene.scribble.get(x, y);
            let q = if l == 255 {
                Rgb([p[0] / 3, p[1] / 3, p[2] / 3])
            } else if l == 0 {
                Rgb([255, 255, 255])
            } else {
                Rgb(colours[l as usize])
            };
            sheet.put_pixel(x0 + x, gap + 2 * (s + gap) + y, q);
        }
    }
    Ok(sheet)
}
