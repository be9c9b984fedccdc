//! `wsss eval`: confusion matrix and scores of predicted label maps against ground truth,
//! merging of sharded `metrics.json` files, and the background-threshold sweep over CAM
//! files (`--cams`), with the GT-free Otsu threshold beside the GT-tuned best.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use wsss::data::palette::read_label_png;
use wsss::data::voc::{read_list, ImageLabels, LABEL_FILE};
use wsss::data::{SCENES_CLASSES, VOC_CLASSES};
use wsss::metrics::{ConfusionMatrix, MetricsReport, ThresholdSweep};

/// Score predictions (PNG label maps, same names as the ground truth) and print the table;
/// or sweep the background threshold over CAM files (`--cams`); or merge shards (`--merge`).
#[derive(Args)]
pub struct EvalArgs {
    /// Folder of predicted label PNGs (`<name>.png`; 255 = unlabelled).
    #[arg(long, required_unless_present_any = ["merge", "cams"], conflicts_with = "cams")]
    pred: Option<PathBuf>,
    /// Folder of per-image CAM safetensors (`<name>.safetensors` with `scores` (K, H, W)
    /// f32/f16 and `classes` (K)): sweep the background threshold instead of scoring PNGs.
    #[arg(long)]
    cams: Option<PathBuf>,
    /// Thresholds of the sweep, `START:END:STEP` (END included).
    #[arg(long, default_value = "0:1:0.01", requires = "cams")]
    sweep: String,
    /// Label value of CAM class id `c` is `c + class_offset` (1: the model's foreground
    /// class ids, as `wsss cam` writes them; 0: the file stores label values).
    #[arg(long, default_value_t = 1, requires = "cams")]
    class_offset: u8,
    /// Folder of ground-truth label PNGs (255 = ignore).
    #[arg(long, required_unless_present = "merge")]
    gt: Option<PathBuf>,
    /// Image list (one name per line); default: every PNG in --gt (every CAM file in
    /// --cams for a sweep).
    #[arg(long)]
    list: Option<PathBuf>,
    /// Class names: `voc`, `scenes`, or a dataset root with cls_labels.json; default:
    /// the cls_labels.json beside --gt if any, else `voc`.
    #[arg(long)]
    classes: Option<String>,
    /// Where to write metrics.json (for a sweep: sweep.json, default `<cams>/sweep.json`).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Merge these metrics.json / confusion JSON files (sharded runs) instead of scoring.
    #[arg(long, num_args = 1.., conflicts_with_all = ["pred", "gt", "cams"])]
    merge: Vec<PathBuf>,
}

fn class_names(spec: Option<&str>, gt: Option<&Path>) -> Result<Vec<String>> {
    let from_root = |root: &Path| -> Result<Option<Vec<String>>> {
        let p = root.join(LABEL_FILE);
        if p.is_file() {
            Ok(Some(ImageLabels::read(&p)?.classes))
        } else {
            Ok(None)
        }
    };
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    Ok(match spec {
        Some("voc") => owned(&VOC_CLASSES),
        Some("scenes") => owned(&SCENES_CLASSES),
        Some(root) => from_root(Path::new(root))?
            .with_context(|| format!("--classes {root}: no {LABEL_FILE} there"))?,
        None => match gt.and_then(Path::parent) {
            Some(root) => from_root(root)?.unwrap_or_else(|| owned(&VOC_CLASSES)),
            None => owned(&VOC_CLASSES),
        },
    })
}

/// Every file in `dir` with extension `ext`, as sorted stems.
fn stems(dir: &Path, ext: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    Ok(names)
}

/// `START:END:STEP`, END included (up to a rounding tolerance).
fn parse_sweep(spec: &str) -> Result<Vec<f32>> {
    let parts: Vec<f64> = spec
        .split(':')
        .map(|p| p.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("--sweep {spec}: expected START:END:STEP numbers"))?;
    let [start, end, step] = parts[..] else {
        bail!("--sweep {spec}: expected START:END:STEP");
    };
    if !(step > 0.0 && start.is_finite() && end.is_finite() && end >= start) {
        bail!("--sweep {spec}: need STEP > 0 and END >= START");
    }
    let n = ((end - start) / step + 1e-6).floor() as usize + 1;
    if n > 100_000 {
        bail!("--sweep {spec}: {n} thresholds, at most 100000");
    }
    Ok((0..n).map(|i| (start + i as f64 * step) as f32).collect())
}

/// One CAM file: `(scores (K·H·W) f32, label values (K), H, W)`.
fn read_cam(path: &Path, class_offset: u8) -> Result<(Vec<f32>, Vec<u8>, usize, usize)> {
    use candle_core::{DType, Device};
    let tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("{}: cannot read CAM safetensors", path.display()))?;
    let get = |name: &str| {
        tensors
            .get(name)
            .with_context(|| format!("{}: no `{name}` tensor", path.display()))
    };
    let scores = get("scores")?;
    let (k, h, w) = scores
        .dims3()
        .with_context(|| format!("{}: `scores` must be (K, H, W)", path.display()))?;
    let scores = scores
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let classes = get("classes")?
        .flatten_all()?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    if classes.len() != k {
        bail!(
            "{}: {} classes for {k} score maps",
            path.display(),
            classes.len()
        );
    }
    let labels = classes
        .iter()
        .map(|&c| {
            let l = c + class_offset as f64;
            if c.fract() != 0.0 || !(0.0..255.0).contains(&l) {
                bail!("{}: class id {c} is not a valid label", path.display());
            }
            Ok(l as u8)
        })
        .collect::<Result<Vec<u8>>>()?;
    Ok((scores, labels, h, w))
}

impl EvalArgs {
    fn run_sweep(&self, cams: &Path, gt: &Path) -> Result<()> {
        let names = match &self.list {
            Some(list) => read_list(list)?,
            None => stems(cams, "safetensors")?,
        };
        if names.is_empty() {
            bail!("no CAM files to evaluate in {}", cams.display());
        }
        let classes = class_names(self.classes.as_deref(), Some(gt))?;
        let thresholds = parse_sweep(&self.sweep)?;
        let mut sweep = ThresholdSweep::new(classes.len(), thresholds)?;
        let start = std::time::Instant::now();
        sweep.par_accumulate(&names, |name| -> Result<_> {
            let c = cams.join(format!("{name}.safetensors"));
            let g = gt.join(format!("{name}.png"));
            let (scores, labels, h, w) = read_cam(&c, self.class_offset)?;
            let gm = read_label_png(&g)?;
            if (gm.width as usize, gm.height as usize) != (w, h) {
                bail!(
                    "{}: CAM is {w}x{h} but ground truth {} is {}x{}",
                    c.display(),
                    g.display(),
                    gm.width,
                    gm.height
                );
            }
            Ok((scores, labels, gm.data))
        })?;
        let report = sweep.report();
        let mut best_table = None;
        if let Some(j) = sweep
            .thresholds()
            .iter()
            .position(|&t| t == report.best.threshold)
        {
            best_table = Some(MetricsReport::new(
                sweep.confusion_at(j),
                classes.clone(),
                names.len(),
            ));
        }
        if let Some(t) = &best_table {
            print!("{}", t.table());
        }
        println!(
            "{} images, {} thresholds in {:.2} s",
            names.len(),
            sweep.thresholds().len(),
            start.elapsed().as_secs_f64()
        );
        println!(
            "best (GT-tuned) threshold {:.3}: mIoU {:.2}%",
            report.best.threshold,
            100.0 * report.best.miou
        );
        println!(
            "Otsu (GT-free)  threshold {:.3}: mIoU {:.2}%",
            report.otsu.threshold,
            100.0 * report.otsu.miou
        );
        let path = self.json.clone().unwrap_or_else(|| cams.join("sweep.json"));
        let json = serde_json::json!({
            "images": names.len(),
            "class_names": classes,
            "best": report.best,
            "otsu": report.otsu,
            "thresholds": report.thresholds,
            "best_metrics": best_table,
        });
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
        Ok(())
    }

    pub fn run(self) -> Result<()> {
        if let (Some(cams), Some(gt)) = (&self.cams, &self.gt) {
            return self.run_sweep(cams, gt);
        }
        let report = if !self.merge.is_empty() {
            let mut total: Option<ConfusionMatrix> = None;
            for path in &self.merge {
                let m = ConfusionMatrix::read_json(path)?;
                match &mut total {
                    None => total = Some(m),
                    Some(t) => t
                        .merge(&m)
                        .with_context(|| format!("merging {}", path.display()))?,
                }
            }
            let m = total.context("nothing to merge")?;
            let mut names = class_names(self.classes.as_deref(), None)?;
            if names.len() != m.num_classes() {
                names = (0..m.num_classes()).map(|i| format!("class{i}")).collect();
            }
            MetricsReport::new(m, names, 0)
        } else {
            let (pred, gt) = (self.pred.unwrap(), self.gt.unwrap());
            let names = match &self.list {
                Some(list) => read_list(list)?,
                None => stems(&gt, "png")?,
            };
            if names.is_empty() {
                bail!("no images to evaluate in {}", gt.display());
            }
            let classes = class_names(self.classes.as_deref(), Some(&gt))?;
            let m = ConfusionMatrix::par_accumulate(classes.len(), &names, |name| -> Result<_> {
                let p = pred.join(format!("{name}.png"));
                let g = gt.join(format!("{name}.png"));
                let pm = read_label_png(&p)?;
                let gm = read_label_png(&g)?;
                if (pm.width, pm.height) != (gm.width, gm.height) {
                    bail!(
                        "{}: prediction is {}x{} but ground truth {} is {}x{}",
                        p.display(),
                        pm.width,
                        pm.height,
                        g.display(),
                        gm.width,
                        gm.height
                    );
                }
                Ok((pm.data, gm.data))
            })?;
            MetricsReport::new(m, classes, names.len())
        };
        print!("{}", report.table());
        if let Some(path) = &self.json {
            report.write_json(path)?;
            println!("wrote {}", path.display());
        }
        Ok(())
    }
}
