//! GETAM's activation-aware label completion (Sun et al., "GETAM: Gradient-weighted
//! Element-wise Transformer Attention Map for Weakly-supervised Semantic Segmentation",
//! arXiv 2112.02841, Sec. 3.3; released code `myTool.py: compute_seg_label_3`).
//!
//! The CAM decides the classes, an external saliency map decides the background, and the
//! most confident CAM pixels (above the `percentile` of each class's positive values) that
//! the saliency map missed are completed with their class. A `k × k` morphological opening
//! then removes small foreground specks.
//!
//! 1. `m = max(0, max_k cams_k)`, `bg = (1 − m)^p`, `L0 = argmax([bg, cams…])` (maps in
//!    ascending class order, ties to the earlier entry).
//! 2. `L = 255` where `L0 = 0`; then `L = 0` wherever the pixel is not salient.
//! 3. With `B = {L = 0}`: class `k` claims `cams_k > τ_k` inside `B`, `τ_k = P[floor(n·q)]`
//!    of the sorted positive values `P` (nothing when the index is 0). A pixel claimed by
//!    several classes becomes 255 ([`Conflict::Ignore`], the described method) or goes to
//!    the smallest class ([`Conflict::First`], what the released code does).
//! 4. Opening of `F = (L ≠ 0)` with OpenCV's anchor (window rows `y − a … y − a + k − 1`,
//!    `a = floor(k/2)`, the same window for erosion and dilation, out-of-image pixels left
//!    out); `L = 0` where the opening is 0.
//!
//! **Saliency-free mode** (`saliency = None`): the saliency map is taken from the CAM
//! itself, salient iff `L0 ≠ 0`. Step 2 then keeps the CAM label, `B` is the CAM
//! background, and step 3 only completes pixels whose map exceeds its percentile while
//! the background score still wins; the opening is applied as usual.

use candle_core::{bail, DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};
use wsss_core::IGNORE;

use crate::util::{planes3, sorted_class_order};

/// What a pixel claimed by several classes becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Conflict {
    /// 255: the intended behaviour (contested pixels are not trusted).
    Ignore,
    /// The smallest claiming class index: what the released code does.
    First,
}

impl std::str::FromStr for Conflict {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "ignore" => Ok(Self::Ignore),
            "first" => Ok(Self::First),
            other => Err(format!(
                "unknown conflict rule `{other}` (expected `ignore` or `first`)"
            )),
        }
    }
}

/// GETAM label-completion hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompletionConfig {
    /// Exponent `p` of the CAM background score `(1 − m)^p`.
    pub background_power: f32,
    /// Percentile `q` in [0, 1) of each class's positive CAM values above which it
    /// completes background pixels (`cut_threshold`).
    pub percentile: f64,
    /// Side of the square structuring element of the final opening (0 or 1: none).
    pub opening: usize,
    /// A pixel is salient iff `saliency > saliency_threshold`.
    pub saliency_threshold: f32,
    /// What contested pixels become.
    pub conflict: Conflict,
}

impl CompletionConfig {
    /// GETAM on VOC: power 32, percentile 0.9, 10×10 opening, salient iff > 0, contested
    /// pixels ignored.
    pub fn getam() -> Self {
        Self {
            background_power: 32.0,
            percentile: 0.9,
            opening: 10,
            saliency_threshold: 0.0,
            conflict: Conflict::Ignore,
        }
    }

    /// GETAM on COCO: the released COCO function hard-codes the percentile 0.95.
    pub fn getam_coco() -> Self {
        Self {
            percentile: 0.95,
            ..Self::getam()
        }
    }

    fn check(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.percentile) {
            bail!(
                "completion percentile must be in [0, 1), got {}",
                self.percentile
            );
        }
        if !self.background_power.is_finite() || self.background_power < 0.0 {
            bail!(
                "completion background power must be finite and >= 0, got {}",
                self.background_power
            );
        }
        Ok(())
    }
}

impl Default for CompletionConfig {
    fn default() -> Self {
        Self::getam()
    }
}

/// [`getam`] on plain buffers: `cams` holds `classes.len()` planes of `h·w`, `saliency`
/// (optional) `h·w` bytes.
///
/// # Errors
/// On size mismatches, repeated or too large classes, a percentile outside [0, 1).
pub fn complete_slice(
    cams: &[f32],
    classes: &[usize],
    saliency: Option<&[u8]>,
    (h, w): (usize, usize),
    cfg: &CompletionConfig,
) -> Result<Vec<u8>> {
    cfg.check()?;
    let pixels = h * w;
    if cams.len() != classes.len() * pixels {
        bail!(
            "{} CAM values for {} classes of {h}x{w}",
            cams.len(),
            classes.len()
        );
    }
    if let Some(s) = saliency {
        if s.len() != pixels {
            bail!("saliency holds {} values, expected {h}x{w}", s.len());
        }
    }
    let order = sorted_class_order(classes)?;
    let plane = |k: usize| &cams[k * pixels..(k + 1) * pixels];

    // 1. CAM label.
    let mut label = vec![0u8; pixels];
    let mut best = vec![0f64; pixels];
    for (p, (l, b)) in label.iter_mut().zip(best.iter_mut()).enumerate() {
        let m = order.iter().map(|&k| plane(k)[p]).fold(0f32, f32::max) as f64;
        *b = (1.0 - m).powf(cfg.background_power as f64);
        for &k in &order {
            let v = plane(k)[p] as f64;
            if v > *b {
                *b = v;
                *l = (classes[k] + 1) as u8;
            }
        }
    }
    // 2. Saliency decides the background.
    for (p, l) in label.iter_mut().enumerate() {
        let salient = match saliency {
            Some(s) => s[p] as f32 > cfg.saliency_threshold,
            None => *l != 0,
        };
        if !salient {
            *l = 0;
        } else if *l == 0 {
            *l = IGNORE;
        }
    }
    // 3. Completion of confident CAM pixels inside the background.
    let background: Vec<bool> = label.iter().map(|&l| l == 0).collect();
    let mut claims = vec![0u8; pixels];
    for &k in &order {
        let values = plane(k);
        let mut positive: Vec<f32> = values.iter().copied().filter(|&v| v > 0.0).collect();
        let index = (positive.len() as f64 * cfg.percentile).floor() as usize;
        if index == 0 {
            continue;
        }
        positive.sort_by(f32::total_cmp);
        let tau = positive[index];
        let id = (classes[k] + 1) as u8;
        for p in 0..pixels {
            if background[p] && values[p] > tau {
                claims[p] = claims[p].saturating_add(1);
                match cfg.conflict {
                    Conflict::First if claims[p] > 1 => {}
                    Conflict::Ignore if claims[p] > 1 => label[p] = IGNORE,
                    _ => label[p] = id,
                }
            }
        }
    }
    // 4. Opening.
    if cfg.opening > 1 {
        let foreground: Vec<bool> = label.iter().map(|&l| l != 0).collect();
        let opened = opening(&foreground, (h, w), cfg.opening);
        for (l, o) in label.iter_mut().zip(opened) {
            if !o {
                *l = 0;
            }
        }
    }
    Ok(label)
}

/// Min (`erode = true`) or max filter of a binary map along one axis over the window
/// `i − a … i − a + k − 1`, clipped to the image.
fn filter_1d(
    src: &[bool],
    (h, w): (usize, usize),
    k: usize,
    along_rows: bool,
    erode: bool,
) -> Vec<bool> {
    let a = k / 2;
    let mut out = vec![false; src.len()];
    let n = if along_rows { h } else { w };
    for y in 0..h {
        for x in 0..w {
            let i = if along_rows { y } else { x };
            let lo = i.saturating_sub(a);
            let hi = (i + k - a).min(n); // exclusive: i − a + k
            let mut acc = erode;
            for t in lo..hi {
                let v = if along_rows {
                    src[t * w + x]
                } else {
                    src[y * w + t]
                };
                if erode {
                    acc &= v;
                } else {
                    acc |= v;
                }
            }
            out[y * w + x] = acc;
        }
    }
    out
}

/// Binary opening with a `k × k` square, exactly `cv2.morphologyEx(F, MORPH_OPEN,
/// ones((k, k)))` with OpenCV's default anchor `(k/2, k/2)` and border (out-of-image pixels
/// left out of both the erosion's min and the dilation's max). For even `k` the window
/// `−a … a − 1` is off-centre and is the same for both steps (not reflected).
///
/// # Shapes
/// - `mask`: `h·w` row-major; returns the same.
///
/// Cost: O(H·W·k) time (separable), O(H·W) memory.
pub fn opening(mask: &[bool], (h, w): (usize, usize), k: usize) -> Vec<bool> {
    if k <= 1 {
        return mask.to_vec();
    }
    let eroded = filter_1d(
        &filter_1d(mask, (h, w), k, true, true),
        (h, w),
        k,
        false,
        true,
    );
    filter_1d(
        &filter_1d(&eroded, (h, w), k, true, false),
        (h, w),
        k,
        false,
        false,
    )
}

/// GETAM activation-aware label completion (arXiv 2112.02841, Sec. 3.3), with an external
/// saliency map or, when `saliency` is `None`, saliency-free (see the module docs).
///
/// # Shapes
/// - `cams`: `[K, H, W]` f32 in [0, 1] (GETAM: PAMR-refined maps divided by their max).
/// - `classes`: `K` distinct 0-based class indices (< 254), any order.
/// - `saliency`: `[H, W]` u8 (0–255), optional.
/// - returns `[H, W]` u8: 0 background, `c + 1` for class `c`, 255 ignore.
///
/// Cost: O(K·H·W·log(H·W)) time (the percentile sorts) plus O(H·W·k) for the opening;
/// O(H·W) memory beyond one class's sorted values.
pub fn getam(
    cams: &Tensor,
    classes: &[usize],
    saliency: Option<&Tensor>,
    cfg: &CompletionConfig,
) -> Result<Tensor> {
    let (data, (k, h, w)) = planes3(cams, "cams")?;
    if k != classes.len() {
        bail!("cams has {k} maps but {} classes are given", classes.len());
    }
    let saliency = match saliency {
        None => None,
        Some(s) => {
            if s.dims() != [h, w] {
                bail!("saliency must have shape [{h}, {w}], got {:?}", s.dims());
            }
            Some(
                s.to_device(&Device::Cpu)?
                    .to_dtype(DType::U8)?
                    .flatten_all()?
                    .to_vec1::<u8>()?,
            )
        }
    };
    let label = complete_slice(&data, classes, saliency.as_deref(), (h, w), cfg)?;
    Tensor::from_vec(label, (h, w), &Device::Cpu)?.to_device(cams.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_opening(mask: &[bool], (h, w): (usize, usize), k: usize) -> Vec<bool> {
        let a = k as isize / 2;
        let window = |src: &[bool], y: usize, x: usize, erode: bool| {
            let mut acc = erode;
            for dy in 0..k as isize {
                for dx in 0..k as isize {
                    let (yy, xx) = (y as isize - a + dy, x as isize - a + dx);
                    if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                        let v = src[yy as usize * w + xx as usize];
                        acc = if erode { acc && v } else { acc || v };
                    }
                }
            }
            acc
        };
        let e: Vec<bool> = (0..h * w)
            .map(|p| window(mask, p / w, p % w, true))
            .collect();
        (0..h * w)
            .map(|p| window(&e, p / w, p % w, false))
            .collect()
    }

    #[test]
    fn even_opening_is_off_centre() {
        // A 2x2 square survives a 2x2 opening (shifted: OpenCV's anchor); a lone pixel does not.
        let (h, w) = (5, 5);
        let mut mask = vec![false; h * w];
        for p in [6, 7, 11, 12, 24] {
            mask[p] = true;
        }
        let got = opening(&mask, (h, w), 2);
        // The erosion keeps only (2, 2); the same off-centre window dilates it to rows and
        // columns 2..=3, i.e. shifted by one from the input square.
        let want: Vec<bool> = (0..h * w).map(|p| [12, 13, 17, 18].contains(&p)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn hand_computed_completion() -> Result<()> {
        // 1x4, one class (5). Pixel 0: strong CAM, salient -> 6. Pixel 1: weak CAM (the
        // background score 0.99^32 wins), salient -> 255. Pixel 2: non-salient -> 0 unless
        // completed. Pixel 3: background.
        let cams = [0.9f32, 0.01, 0.5, 0.0];
        let sal = [255u8, 255, 0, 0];
        let cfg = CompletionConfig {
            percentile: 0.0,
            opening: 0,
            ..CompletionConfig::getam()
        };
        // Percentile index 0: nothing completed.
        assert_eq!(
            complete_slice(&cams, &[5], Some(&sal), (1, 4), &cfg)?,
            vec![6, 255, 0, 0]
        );
        // Positives 0.01, 0.5, 0.9; index floor(1.5) = 1 -> tau 0.5: pixel 2 equals tau,
        // not claimed.
        let half = CompletionConfig {
            percentile: 0.5,
            ..cfg
        };
        assert_eq!(
            complete_slice(&cams, &[5], Some(&sal), (1, 4), &half)?,
            vec![6, 255, 0, 0]
        );
        // Positives 0.01, 0.02, 0.6, 0.9; index 1 -> tau 0.02: pixel 2 (0.6) completed.
        let cams = [0.9f32, 0.01, 0.6, 0.02];
        let quarter = CompletionConfig {
            percentile: 0.25,
            ..cfg
        };
        assert_eq!(
            complete_slice(&cams, &[5], Some(&sal), (1, 4), &quarter)?,
            vec![6, 255, 6, 0]
        );
        Ok(())
    }

    #[test]
    fn contested_pixels() -> Result<()> {
        // Two classes both above their percentile on the non-salient pixel 3.
        let cams = [0.1f32, 0.2, 0.3, 0.9, 0.1, 0.2, 0.3, 0.8];
        let sal = [0u8; 4];
        let cfg = CompletionConfig {
            percentile: 0.5,
            opening: 0,
            ..CompletionConfig::getam()
        };
        assert_eq!(
            complete_slice(&cams, &[7, 2], Some(&sal), (1, 4), &cfg)?[3],
            IGNORE
        );
        let first = CompletionConfig {
            conflict: Conflict::First,
            ..cfg
        };
        assert_eq!(
            complete_slice(&cams, &[7, 2], Some(&sal), (1, 4), &first)?[3],
            3
        );
        Ok(())
    }

    #[test]
    fn saliency_free_keeps_the_cam_label() -> Result<()> {
        let cams = [0.95f32, 0.9, 0.05, 0.0];
        let cfg = CompletionConfig {
            opening: 0,
            ..CompletionConfig::getam()
        };
        assert_eq!(
            complete_slice(&cams, &[3], None, (2, 2), &cfg)?,
            vec![4, 4, 0, 0]
        );
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error() {
        let cfg = CompletionConfig::getam();
        assert!(complete_slice(&[0.0; 4], &[1], Some(&[0; 3]), (2, 2), &cfg).is_err());
        assert!(complete_slice(&[0.0; 3], &[1], None, (2, 2), &cfg).is_err());
        let bad = CompletionConfig {
            percentile: 1.0,
            ..cfg
        };
        assert!(complete_slice(&[0.0; 4], &[1], None, (2, 2), &bad).is_err());
        assert!("both".parse::<Conflict>().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn opening_matches_the_naive_window(
            h in 1usize..9, w in 1usize..9, k in 1usize..6,
            bits in proptest::collection::vec(any::<bool>(), 64),
        ) {
            let mask: Vec<bool> = bits[..h * w].to_vec();
            prop_assert_eq!(opening(&mask, (h, w), k), naive_opening(&mask, (h, w), k));
        }

        #[test]
        fn labels_use_only_present_classes(
            values in proptest::collection::vec(0f32..1.0, 2 * 36),
            sal in proptest::collection::vec(any::<u8>(), 36),
            use_saliency in any::<bool>(),
        ) {
            let cfg = CompletionConfig { opening: 3, ..CompletionConfig::getam() };
            let s = use_saliency.then_some(&sal[..]);
            let label = complete_slice(&values, &[12, 3], s, (6, 6), &cfg).unwrap();
            prop_assert!(label.iter().all(|v| [0u8, 13, 4, IGNORE].contains(v)));
        }
    }
}
