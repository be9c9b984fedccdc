//! `wsss eval`: confusion matrix and scores of predicted label maps against ground truth.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use wsss::data::palette::read_label_png;
use wsss::data::voc::{read_list, ImageLabels, LABEL_FILE};
use wsss::data::{SCENES_CLASSES, VOC_CLASSES};
use wsss::metrics::{ConfusionMatrix, MetricsReport};

/// Score predictions (PNG label maps, same names as the ground truth) and print the table.
#[derive(Args)]
pub struct EvalArgs {
    /// Folder of predicted label PNGs (`<name>.png`; 255 = unlabelled).
    #[arg(long, required_unless_present = "merge")]
    pred: Option<PathBuf>,
    /// Folder of ground-truth label PNGs (255 = ignore).
    #[arg(long, required_unless_present = "merge")]
    gt: Option<PathBuf>,
    /// Image list (one name per line); default: every PNG in --gt.
    #[arg(long)]
    list: Option<PathBuf>,
    /// Class names: `voc`, `scenes`, or a dataset root with cls_labels.json; default:
    /// the cls_labels.json beside --gt if any, else `voc`.
    #[arg(long)]
    classes: Option<String>,
    /// Where to write metrics.json.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Merge these metrics.json / confusion JSON files (sharded runs) instead of scoring.
    #[arg(long, num_args = 1.., conflicts_with_all = ["pred", "gt"])]
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

impl EvalArgs {
    pub fn run(self) -> Result<()> {
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
                None => {
                    let mut names: Vec<String> = std::fs::read_dir(&gt)
                        .with_context(|| format!("reading {}", gt.display()))?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "png"))
                        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                        .collect();
                    names.sort();
                    names
                }
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
