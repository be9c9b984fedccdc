//! [`RefineConfig`]: a chain of refinement steps, from an image's CAMs to its label map,
//! described in TOML (`wsss refine --config`).
//!
//! The chain carries either **scores** (the K CAMs of the image's classes, `[K, H, W]`) or
//! a **label** map (`[H, W]` u8: 0 background, `c + 1` for class `c`, 255 ignore). Steps:
//!
//! | `kind` | in → out | what |
//! |---|---|---|
//! | `par`, `pamr` | scores → scores | [`crate::par`] / [`crate::pamr`] on the maps at image size |
//! | `max_normalise` | scores → scores | each map divided by its maximum (GETAM after PAMR) |
//! | `threshold` | scores → label | background as a constant ([`crate::threshold::cam_to_label`]) |
//! | `reliable` | scores → label | two thresholds with an ignore band |
//! | `par_label` | scores → label | AFA/ToCo: `[t, cams]`, ½ size, softmax, PAR, argmax |
//! | `par_reliable` | scores → label | ToCo's `refine_cams_with_bkg_v2`: `par_label` at `high` and at `low`, ignore where they disagree on the background |
//! | `completion` | scores → label | GETAM label completion (saliency-free, or a saliency map) |
//! | `crf` | scores or label → label | dense CRF, CAM unary `[(1 − max)^p, cams]` or WeakTr's label unary |
//!
//! Every step's fields default to the paper preset (`kind = "par"` alone is AFA's PAR).
//!
//! ```
//! use wsss_refine::pipeline::RefineConfig;
//! let cfg: RefineConfig = toml::from_str(
//!     "[[steps]]\nkind = \"par_reliable\"\n", // ToCo's pseudo labels
//! ).unwrap();
//! cfg.check().unwrap();
//! let image = vec![128u8; 4 * 6 * 3];
//! let cams = vec![0.9f32; 4 * 6];
//! let label = cfg.run(&image, (4, 6), &cams, &[2], None).unwrap();
//! assert!(label.iter().all(|&l| l == 3));
//! ```

use candle_core::{bail, Result};
use serde::{Deserialize, Serialize};
use wsss_core::permutohedral::FilterKind;
use wsss_core::resize::{resize_planes, AlignCorners, ResizeMode};
use wsss_core::IGNORE;

use crate::completion::{complete_slice, CompletionConfig};
use crate::dense_crf::{
    argmax_labels, dense_crf, unary_from_labels, unary_from_softmax, BilateralKernel,
    DenseCrfConfig, GaussianKernel,
};
use crate::pamr::PamrConfig;
use crate::par::ParConfig;
use crate::threshold::{cam_to_label_slice, reliable_label_slice, ReliableConfig, ThresholdConfig};

fn default_down_scale() -> usize {
    2
}

/// AFA/ToCo's PAR labelling at one background score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParLabelStep {
    /// The constant background score `t` (AFA 0.45 … ToCo 0.5).
    #[serde(default = "default_background")]
    pub background: f32,
    /// PAR runs at `1/down_scale` of the image (ToCo: 2).
    #[serde(default = "default_down_scale")]
    pub down_scale: usize,
    /// PAR settings (default AFA's).
    #[serde(default)]
    pub par: ParConfig,
}

fn default_background() -> f32 {
    0.45
}

/// ToCo's reliable labels after PAR (`refine_cams_with_bkg_v2`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParReliableStep {
    /// Background score of the run whose background is trusted (ToCo 0.25).
    #[serde(default = "default_low")]
    pub low: f32,
    /// Background score of the run whose foreground is trusted (ToCo 0.7).
    #[serde(default = "default_high")]
    pub high: f32,
    /// PAR runs at `1/down_scale` of the image (ToCo: 2).
    #[serde(default = "default_down_scale")]
    pub down_scale: usize,
    /// PAR settings (default AFA's).
    #[serde(default)]
    pub par: ParConfig,
}

fn default_low() -> f32 {
    0.25
}

fn default_high() -> f32 {
    0.7
}

/// Named dense CRF kernel settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrfPreset {
    /// [`DenseCrfConfig::weaktr`].
    #[default]
    Weaktr,
    /// [`DenseCrfConfig::weaktr_labels_voc`].
    WeaktrLabelsVoc,
    /// [`DenseCrfConfig::weaktr_labels_coco`].
    WeaktrLabelsCoco,
    /// [`DenseCrfConfig::afa`].
    Afa,
}

/// Dense CRF step: the preset's kernels, optionally overridden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrfStep {
    /// Kernel preset.
    #[serde(default)]
    pub preset: CrfPreset,
    /// Mean-field iterations (default the preset's 10).
    #[serde(default)]
    pub iterations: Option<usize>,
    /// Gaussian kernel `[sxy, compat]` override.
    #[serde(default)]
    pub gaussian: Option<[f32; 2]>,
    /// Bilateral kernel `[sxy, srgb, compat]` override.
    #[serde(default)]
    pub bilateral: Option<[f32; 3]>,
    /// On scores: background probability `(1 − max_k cam_k)^p` (PSA/IRN's `alpha`).
    #[serde(default = "default_power")]
    pub background_power: f32,
    /// On scores: probabilities are clipped below at this value (pydensecrf 1e-5).
    #[serde(default = "default_clip")]
    pub clip: f32,
    /// On labels: the probability of the given label (WeakTr 0.7).
    #[serde(default = "default_gt_prob")]
    pub gt_prob: f32,
}

fn default_power() -> f32 {
    1.0
}

fn default_clip() -> f32 {
    1e-5
}

fn default_gt_prob() -> f32 {
    0.7
}

impl CrfStep {
    /// The resolved kernel settings.
    pub fn config(&self) -> DenseCrfConfig {
        let mut cfg = match self.preset {
            CrfPreset::Weaktr => DenseCrfConfig::weaktr(),
            CrfPreset::WeaktrLabelsVoc => DenseCrfConfig::weaktr_labels_voc(),
            CrfPreset::WeaktrLabelsCoco => DenseCrfConfig::weaktr_labels_coco(),
            CrfPreset::Afa => DenseCrfConfig::afa(),
        };
        if let Some(t) = self.iterations {
            cfg.iterations = t;
        }
        if let Some([sxy, compat]) = self.gaussian {
            cfg.gaussian = Some(GaussianKernel { sxy, compat });
        }
        if let Some([sxy, srgb, compat]) = self.bilateral {
            cfg.bilateral = Some(BilateralKernel { sxy, srgb, compat });
        }
        cfg.filter = FilterKind::Permutohedral;
        cfg
    }
}

/// One refinement step (`kind = "…"`; see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RefineStep {
    /// PAR on the maps (scores → scores).
    Par(ParConfig),
    /// PAMR on the maps (scores → scores); the image is passed as RGB 0–255.
    Pamr(PamrConfig),
    /// Each map divided by its maximum (+1e-5).
    MaxNormalise {},
    /// Background as a constant (scores → label).
    Threshold(ThresholdConfig),
    /// Two thresholds with an ignore band (scores → label).
    Reliable(ReliableConfig),
    /// AFA's PAR labelling (scores → label).
    ParLabel(ParLabelStep),
    /// ToCo's PAR reliable labels (scores → label).
    ParReliable(ParReliableStep),
    /// GETAM label completion (scores → label), saliency-free unless the CLI passes maps.
    Completion(CompletionConfig),
    /// Dense CRF (scores or label → label).
    Crf(CrfStep),
}

/// What the chain carries between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carried {
    Scores,
    Label,
}

impl RefineStep {
    fn name(&self) -> &'static str {
        match self {
            Self::Par(_) => "par",
            Self::Pamr(_) => "pamr",
            Self::MaxNormalise {} => "max_normalise",
            Self::Threshold(_) => "threshold",
            Self::Reliable(_) => "reliable",
            Self::ParLabel(_) => "par_label",
            Self::ParReliable(_) => "par_reliable",
            Self::Completion(_) => "completion",
            Self::Crf(_) => "crf",
        }
    }

    /// The carried value after this step, or an error when the step cannot take `input`.
    fn after(&self, input: Carried) -> Result<Carried> {
        match (self, input) {
            (Self::Crf(_), _) => Ok(Carried::Label),
            (Self::Par(_) | Self::Pamr(_) | Self::MaxNormalise {}, Carried::Scores) => {
                Ok(Carried::Scores)
            }
            (_, Carried::Scores) => Ok(Carried::Label),
            (step, Carried::Label) => bail!(
                "step `{}` needs CAM scores but follows a step that produced labels",
                step.name()
            ),
        }
    }
}

/// A refinement chain (TOML: `[[steps]]` tables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefineConfig {
    /// The steps, in order.
    pub steps: Vec<RefineStep>,
}

/// The image's RGB planes in [0, 1] (`scale` = 1/255) or 0–255 (`scale` = 1).
fn rgb_planes(image: &[u8], pixels: usize, scale: f32) -> Vec<f32> {
    let mut planes = vec![0f32; 3 * pixels];
    for (p, px) in image.chunks_exact(3).enumerate() {
        for c in 0..3 {
            planes[c * pixels + p] = px[c] as f32 * scale;
        }
    }
    planes
}

/// Softmax over the planes (channels) of `k` planes of `pixels`, in place.
fn softmax_planes(xs: &mut [f32], k: usize, pixels: usize) {
    for p in 0..pixels {
        let max = (0..k).map(|c| xs[c * pixels + p]).fold(f32::MIN, f32::max);
        let mut sum = 0.0;
        for c in 0..k {
            let e = (xs[c * pixels + p] - max).exp();
            xs[c * pixels + p] = e;
            sum += e;
        }
        for c in 0..k {
            xs[c * pixels + p] /= sum;
        }
    }
}

/// AFA/ToCo `_refine_cams` on `[t, cams]`: downscale, softmax, PAR, upscale, argmax; returns
/// the labels (0 or `classes[k] + 1`).
fn par_label(
    image: &[u8],
    (h, w): (usize, usize),
    cams: &[f32],
    classes: &[usize],
    background: f32,
    down_scale: usize,
    par: &ParConfig,
) -> Result<Vec<u8>> {
    let (pixels, k) = (h * w, classes.len());
    if down_scale == 0 {
        bail!("par_label: down_scale must be at least 1");
    }
    let (hs, ws) = ((h / down_scale).max(1), (w / down_scale).max(1));
    let mut with_bg = vec![background; pixels];
    with_bg.extend_from_slice(cams);
    let planes = rgb_planes(image, pixels, 1.0 / 255.0);
    let small = |xs: &[f32], n: usize| {
        resize_planes(
            xs,
            n,
            (h, w),
            (hs, ws),
            ResizeMode::Bilinear,
            AlignCorners::No,
        )
    };
    let small_image = small(&planes, 3)?;
    let mut maps = small(&with_bg, k + 1)?;
    softmax_planes(&mut maps, k + 1, hs * ws);
    crate::par::refine_slice(&small_image, &mut maps, k + 1, (hs, ws), par)?;
    let maps = resize_planes(
        &maps,
        k + 1,
        (hs, ws),
        (h, w),
        ResizeMode::Bilinear,
        AlignCorners::No,
    )?;
    let best = argmax_labels(&maps, k + 1)?;
    Ok(best
        .into_iter()
        .map(|b| {
            if b == 0 {
                0
            } else {
                (classes[b as usize - 1] + 1) as u8
            }
        })
        .collect())
}

impl RefineConfig {
    /// Checks that the chain is non-empty, that every step can take what the previous one
    /// produces, and that it ends with a label map.
    pub fn check(&self) -> Result<()> {
        if self.steps.is_empty() {
            bail!("the refinement needs at least one [[steps]] entry");
        }
        let mut carried = Carried::Scores;
        for step in &self.steps {
            carried = step.after(carried)?;
        }
        if carried != Carried::Label {
            bail!(
                "the last step (`{}`) produces scores: end the chain with threshold, reliable, \
                 par_label, par_reliable, completion or crf",
                self.steps.last().map(|s| s.name()).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Runs the chain on one image.
    ///
    /// # Shapes
    /// - `image`: `[H, W, 3]` u8 RGB.
    /// - `cams`: `[K, H, W]` f32, one map per entry of `classes` (0-based class ids), at the
    ///   image size, usually in [0, 1].
    /// - `saliency`: `[H, W]` u8, used by `completion` when given.
    /// - returns `[H, W]` u8: 0 background, `c + 1` for class `c` (only the given classes),
    ///   255 ignore.
    ///
    /// Cost: the sum of the steps' (PAR/PAMR O(T·K·N·48), CRF O(T·K·N·(d+1)), thresholds
    /// O(K·N)); O(K·N) memory beyond the steps'.
    pub fn run(
        &self,
        image: &[u8],
        (h, w): (usize, usize),
        cams: &[f32],
        classes: &[usize],
        saliency: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        self.check()?;
        let (pixels, k) = (h * w, classes.len());
        if image.len() != 3 * pixels {
            bail!("image has {} values, expected {h}x{w}x3", image.len());
        }
        if cams.len() != k * pixels {
            bail!(
                "CAMs have {} values, expected {k} classes of {h}x{w}",
                cams.len()
            );
        }
        if let Some(s) = saliency {
            if s.len() != pixels {
                bail!("saliency has {} values, expected {h}x{w}", s.len());
            }
        }
        let mut scores = cams.to_vec();
        let mut label: Option<Vec<u8>> = None;
        for step in &self.steps {
            match step {
                RefineStep::Par(cfg) => {
                    let planes = rgb_planes(image, pixels, 1.0 / 255.0);
                    crate::par::refine_slice(&planes, &mut scores, k, (h, w), cfg)?;
                }
                RefineStep::Pamr(cfg) => {
                    let planes = rgb_planes(image, pixels, 1.0);
                    crate::pamr::refine_slice(&planes, &mut scores, k, (h, w), cfg)?;
                }
                RefineStep::MaxNormalise {} => {
                    for plane in scores.chunks_exact_mut(pixels.max(1)) {
                        let max = plane.iter().copied().fold(f32::MIN, f32::max);
                        plane.iter_mut().for_each(|v| *v /= max + 1e-5);
                    }
                }
                RefineStep::Threshold(cfg) => {
                    label = Some(cam_to_label_slice(&scores, classes, pixels, cfg)?);
                }
                RefineStep::Reliable(cfg) => {
                    label = Some(reliable_label_slice(&scores, classes, pixels, cfg)?);
                }
                RefineStep::ParLabel(s) => {
                    label = Some(par_label(
                        image,
                        (h, w),
                        &scores,
                        classes,
                        s.background,
                        s.down_scale,
                        &s.par,
                    )?);
                }
                RefineStep::ParReliable(s) => {
                    if s.low.partial_cmp(&s.high) != Some(std::cmp::Ordering::Less) {
                        bail!(
                            "par_reliable needs low < high, got {} and {}",
                            s.low,
                            s.high
                        );
                    }
                    let run =
                        |t| par_label(image, (h, w), &scores, classes, t, s.down_scale, &s.par);
                    let (high, low) = (run(s.high)?, run(s.low)?);
                    label = Some(
                        high.iter()
                            .zip(&low)
                            .map(|(&hi, &lo)| match (hi, lo) {
                                (0, 0) => 0,
                                (0, _) => IGNORE,
                                (hi, _) => hi,
                            })
                            .collect(),
                    );
                }
                RefineStep::Completion(cfg) => {
                    label = Some(complete_slice(&scores, classes, saliency, (h, w), cfg)?);
                }
                RefineStep::Crf(s) => {
                    label = Some(match label.take() {
                        None => crf_on_scores(image, (h, w), &scores, classes, s)?,
                        Some(l) => crf_on_label(image, (h, w), &l, classes, s)?,
                    });
                }
            }
        }
        label.ok_or_else(|| candle_core::Error::Msg("the chain produced no label".into()))
    }
}

/// Compact label index (0 = background, i = classes sorted[i−1]) ↔ label value.
fn label_values(classes: &[usize]) -> Vec<u8> {
    let mut sorted: Vec<usize> = classes.to_vec();
    sorted.sort_unstable();
    std::iter::once(0u8)
        .chain(sorted.iter().map(|&c| (c + 1) as u8))
        .collect()
}

fn crf_on_scores(
    image: &[u8],
    (h, w): (usize, usize),
    cams: &[f32],
    classes: &[usize],
    s: &CrfStep,
) -> Result<Vec<u8>> {
    let (pixels, k) = (h * w, classes.len());
    let mut prob = vec![0f32; (k + 1) * pixels];
    for p in 0..pixels {
        let max = (0..k)
            .map(|c| cams[c * pixels + p])
            .fold(0f32, f32::max)
            .min(1.0);
        prob[p] = (1.0 - max).powf(s.background_power);
    }
    prob[pixels..].copy_from_slice(cams);
    let q = dense_crf(
        image,
        h,
        w,
        &unary_from_softmax(&prob, s.clip),
        k + 1,
        &s.config(),
    )?;
    let best = argmax_labels(&q, k + 1)?;
    let values: Vec<u8> = std::iter::once(0u8)
        .chain(classes.iter().map(|&c| (c + 1) as u8))
        .collect();
    Ok(best.into_iter().map(|b| values[b as usize]).collect())
}

fn crf_on_label(
    image: &[u8],
    (h, w): (usize, usize),
    label: &[u8],
    classes: &[usize],
    s: &CrfStep,
) -> Result<Vec<u8>> {
    let values = label_values(classes);
    let mut compact = vec![0u8; label.len()];
    for (c, &l) in compact.iter_mut().zip(label) {
        if l == IGNORE {
            bail!("crf on labels needs labels without 255 (ignore): put it before `reliable`");
        }
        *c = values.iter().position(|&v| v == l).ok_or_else(|| {
            candle_core::Error::Msg(format!("label {l} is not one of the image's classes"))
        })? as u8;
    }
    if values.len() < 2 {
        return Ok(label.to_vec());
    }
    let unary = unary_from_labels(&compact, values.len(), s.gt_prob)?;
    let q = dense_crf(image, h, w, &unary, values.len(), &s.config())?;
    Ok(argmax_labels(&q, values.len())?
        .into_iter()
        .map(|b| values[b as usize])
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> RefineConfig {
        toml::from_str(text).unwrap()
    }

    /// Left half bright red (class 4), right half dark blue; a CAM that leaks over the edge.
    fn scene() -> (Vec<u8>, (usize, usize), Vec<f32>) {
        let (h, w) = (12usize, 16usize);
        let mut image = Vec::new();
        let mut cam = Vec::new();
        for _y in 0..h {
            for x in 0..w {
                image.extend_from_slice(if x < 8 { &[220, 30, 30] } else { &[20, 20, 90] });
                cam.push(match x {
                    0..8 => 0.9,
                    8..10 => 0.6,
                    _ => 0.1,
                });
            }
        }
        (image, (h, w), cam)
    }

    #[test]
    fn every_step_kind_parses_with_paper_defaults() {
        let cfg = parse(
            "[[steps]]\nkind = \"par\"\n[[steps]]\nkind = \"pamr\"\n\
             [[steps]]\nkind = \"max_normalise\"\n[[steps]]\nkind = \"threshold\"\n\
             [[steps]]\nkind = \"crf\"\npreset = \"afa\"\niterations = 3\n",
        );
        assert_eq!(cfg.steps[0], RefineStep::Par(ParConfig::afa()));
        assert_eq!(cfg.steps[3], RefineStep::Threshold(ThresholdConfig::toco()));
        cfg.check().unwrap();
        let cfg = parse("[[steps]]\nkind = \"reliable\"\nlow = 0.35\nhigh = 0.55\n");
        assert_eq!(cfg.steps[0], RefineStep::Reliable(ReliableConfig::afa()));
        for kind in ["par_label", "par_reliable", "completion", "crf"] {
            parse(&format!("[[steps]]\nkind = \"{kind}\"\n"))
                .check()
                .unwrap();
        }
    }

    #[test]
    fn bad_chains_are_rejected() {
        assert!(parse("steps = []\n").check().is_err());
        let err = parse("[[steps]]\nkind = \"par\"\n").check().unwrap_err();
        assert!(err.to_string().contains("produces scores"), "{err}");
        let err = parse("[[steps]]\nkind = \"threshold\"\n[[steps]]\nkind = \"par\"\n")
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("`par` needs CAM scores"), "{err}");
        assert!(toml::from_str::<RefineConfig>("[[steps]]\nkind = \"magic\"\n").is_err());
        assert!(
            toml::from_str::<RefineConfig>("[[steps]]\nkind = \"par\"\nitrations = 3\n").is_err()
        );
    }

    #[test]
    fn refinement_snaps_the_cam_to_the_edge() -> Result<()> {
        let (image, (h, w), cam) = scene();
        let plain =
            parse("[[steps]]\nkind = \"threshold\"\n").run(&image, (h, w), &cam, &[3], None)?;
        // The raw CAM leaks two columns past the edge.
        assert_eq!(plain[9], 4);
        for chain in [
            "[[steps]]\nkind = \"crf\"\npreset = \"weaktr\"\n",
            "[[steps]]\nkind = \"threshold\"\n[[steps]]\nkind = \"crf\"\n",
            "[[steps]]\nkind = \"par_label\"\nbackground = 0.5\ndown_scale = 1\n",
        ] {
            let label = parse(chain).run(&image, (h, w), &cam, &[3], None)?;
            for y in 0..h {
                for x in 0..w {
                    let want = if x < 8 { 4 } else { 0 };
                    assert_eq!(label[y * w + x], want, "{chain} at ({y}, {x})");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn reliable_par_ignores_the_uncertain_band() -> Result<()> {
        let (image, (h, w), _) = scene();
        // A medium-confidence CAM: foreground at the low background score, background at
        // the high one, so the whole object is ignored.
        let cam = vec![0.5f32; h * w];
        let label =
            parse("[[steps]]\nkind = \"par_reliable\"\n").run(&image, (h, w), &cam, &[0], None)?;
        assert!(label.iter().all(|&l| l == IGNORE));
        let label = parse("[[steps]]\nkind = \"par_reliable\"\n").run(
            &image,
            (h, w),
            &vec![0.9f32; h * w],
            &[0],
            None,
        )?;
        assert!(label.iter().all(|&l| l == 1));
        Ok(())
    }

    #[test]
    fn size_mismatches_are_errors() {
        let (image, (h, w), cam) = scene();
        let cfg = parse("[[steps]]\nkind = \"threshold\"\n");
        assert!(cfg.run(&image, (h, w - 1), &cam, &[3], None).is_err());
        assert!(cfg.run(&image, (h, w), &cam, &[3, 4], None).is_err());
        assert!(cfg
            .run(&image, (h, w), &cam, &[3], Some(&[0u8; 3]))
            .is_err());
    }

    /// Every kind of chain, with few iterations to keep the property test quick.
    const CHAINS: [&str; 7] = [
        "[[steps]]\nkind = \"threshold\"\n",
        "[[steps]]\nkind = \"reliable\"\n",
        "[[steps]]\nkind = \"par_label\"\n[steps.par]\niterations = 2\n",
        "[[steps]]\nkind = \"par_reliable\"\n[steps.par]\niterations = 2\n",
        "[[steps]]\nkind = \"pamr\"\niterations = 2\n[[steps]]\nkind = \"max_normalise\"\n\
         [[steps]]\nkind = \"completion\"\nopening = 3\n",
        "[[steps]]\nkind = \"crf\"\niterations = 2\n",
        "[[steps]]\nkind = \"threshold\"\n[[steps]]\nkind = \"crf\"\niterations = 2\n",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Labels only use the image's classes (as `c + 1`), 0 and 255.
        #[test]
        fn labels_only_use_the_image_classes(
            (h, w) in (3usize..10, 3usize..10),
            classes in proptest::sample::subsequence((0usize..20).collect::<Vec<_>>(), 0..4),
            seed in any::<u64>(),
            chain in 0usize..CHAINS.len(),
        ) {
            let mut state = seed | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let image: Vec<u8> = (0..h * w * 3).map(|_| next() as u8).collect();
            let cams: Vec<f32> = (0..classes.len() * h * w)
                .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32)
                .collect();
            let label = parse(CHAINS[chain]).run(&image, (h, w), &cams, &classes, None).unwrap();
            prop_assert_eq!(label.len(), h * w);
            for l in label {
                prop_assert!(
                    l == 0 || l == IGNORE || classes.contains(&(l as usize - 1)),
                    "label {} outside {:?} for chain {}", l, classes, chain
                );
            }
        }
    }
}
