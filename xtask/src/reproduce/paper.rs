//! `cargo xtask reproduce voc|coco --root DIR [--weights DIR]`: the scenes stages with the
//! paper configs (configs/*_voc.toml, *_coco.toml, no `--quick` shrinking) on a prepared
//! data root, each training starting from the ImageNet weights its config names.
//!
//! Before anything runs, the data root and the weights are checked; what is missing stops
//! the run with the exact command that gets it (`wsss data prepare …`,
//! `wsss weights fetch …`). Nothing is downloaded here.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::methods::{CamMethod, RunPaths};
use super::stage::Pipeline;
use super::{wsss_binary, MethodName, Recipe, ReproduceOptions};

/// A paper data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// PASCAL VOC 2012 + SBD (`train_aug`, `val`).
    Voc,
    /// MS COCO 2014 (`train`, `val`).
    Coco,
}

impl Dataset {
    /// `voc` or `coco`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "voc" => Some(Self::Voc),
            "coco" => Some(Self::Coco),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Voc => "voc",
            Self::Coco => "coco",
        }
    }

    fn train_split(self) -> &'static str {
        match self {
            Self::Voc => "train_aug",
            Self::Coco => "train",
        }
    }

    /// The command that prepares a root.
    fn prepare_command(self, root: &Path) -> String {
        match self {
            Self::Voc => format!(
                "wsss data prepare voc --root {} --sbd PATH/TO/benchmark_RELEASE   \
                 (VOC 2012 trainval from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/, \
                 SBD from https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz)",
                root.display()
            ),
            Self::Coco => format!(
                "wsss data prepare coco --root {}   (the folder with annotations/instances_{{train,val}}2014.json \
                 and {{train,val}}2014/ from https://cocodataset.org)",
                root.display()
            ),
        }
    }

    /// The paper configs.
    pub fn recipe(self) -> Recipe {
        const fn cam(
            name: &'static str,
            train_config: &'static str,
            cam_method: &'static str,
        ) -> CamMethod {
            CamMethod {
                name,
                train_config,
                cam_method,
                refine_config: "configs/refine/par_reliable_toco.toml",
                quick_overrides: &[],
            }
        }
        const VOC: [CamMethod; 3] = [
            cam(
                "classic",
                "configs/classic_voc.toml",
                "kind = \"classic\"\n",
            ),
            cam(
                "weaktr",
                "configs/weaktr_voc.toml",
                "kind = \"weaktr\"\nmap = \"fine\"\n",
            ),
            cam("aream", "configs/aream_voc.toml", "kind = \"aream\"\n"),
        ];
        const COCO: [CamMethod; 3] = [
            cam(
                "classic",
                "configs/classic_coco.toml",
                "kind = \"classic\"\n",
            ),
            cam(
                "weaktr",
                "configs/weaktr_coco.toml",
                "kind = \"weaktr\"\nmap = \"fine\"\n",
            ),
            cam("aream", "configs/aream_coco.toml", "kind = \"aream\"\n"),
        ];
        // GETAM's official start layer: 6 of 12 blocks.
        let getam = |config| CamMethod {
            name: "getam",
            train_config: config,
            cam_method: "kind = \"getam\"\nstart_layer = 6\n",
            refine_config: "configs/refine/pamr_completion_getam.toml",
            quick_overrides: &[],
        };
        match self {
            Self::Voc => Recipe {
                cam_methods: &VOC,
                getam: getam("configs/getam_voc.toml"),
                weaktr_stage2: "configs/weaktr_stage2_voc.toml",
                dfr: Some("configs/dfr_scribblesup_voc.toml"),
            },
            Self::Coco => Recipe {
                cam_methods: &COCO,
                getam: getam("configs/getam_coco.toml"),
                weaktr_stage2: "configs/weaktr_stage2_coco.toml",
                dfr: None,
            },
        }
    }
}

/// The file name of a training config's `[model] init` (None: trained from scratch).
pub fn init_file(config: &Path) -> Result<Option<String>> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
    let init = table
        .get("model")
        .and_then(|m| m.get("init"))
        .and_then(|i| i.as_str());
    Ok(init.and_then(|i| {
        Path::new(i)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
    }))
}

/// The Hub repository of a timm weight file name (`deit_small_patch16_224.safetensors`).
fn hub_repo(file: &str) -> String {
    let stem = file
        .trim_end_matches(".safetensors")
        .trim_end_matches(".pth");
    match stem {
        "deit_small_patch16_224" | "deit_tiny_patch16_224" | "deit_base_patch16_224" => {
            format!("timm/{stem}.fb_in1k")
        }
        "vit_base_patch16_224" | "vit_small_patch16_224" => {
            format!("timm/{stem}.augreg2_in21k_ft_in1k")
        }
        other => format!("timm/{other}"),
    }
}

/// Checks a prepared root: lists of the two splits, cls_labels.json, JPEGImages, masks
/// (and, for DFR, Scribbles). The error names everything missing and the command that
/// makes it.
pub fn check_data(dataset: Dataset, root: &Path, scribbles: bool) -> Result<()> {
    if !root.is_dir() {
        bail!(
            "{} data root {} does not exist; prepare it with:\n  {}",
            dataset.name(),
            root.display(),
            dataset.prepare_command(root)
        );
    }
    let mut missing = Vec::new();
    for split in [dataset.train_split(), "val"] {
        let list = root.join(format!("ImageSets/Segmentation/{split}.txt"));
        if !list.is_file() {
            missing.push(list);
        }
    }
    for file in ["cls_labels.json"] {
        if !root.join(file).is_file() {
            missing.push(root.join(file));
        }
    }
    if !root.join("JPEGImages").is_dir() {
        missing.push(root.join("JPEGImages"));
    }
    let masks = match dataset {
        Dataset::Voc => "SegmentationClassAug",
        Dataset::Coco => "SegmentationClass",
    };
    if !root.join(masks).is_dir() {
        missing.push(root.join(masks));
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "{} is not a prepared {} root; missing:\n  {}\nprepare it with:\n  {}",
            root.display(),
            dataset.name(),
            list.join("\n  "),
            dataset.prepare_command(root)
        );
    }
    if scribbles && !root.join("Scribbles").is_dir() {
        bail!(
            "DFR needs scribbles: {} is missing; make it with:\n  wsss data prepare scribble --root {}   \
             (ScribbleSup's pascal_2012/*.xml beside or under the root), or leave dfr out with \
             --method classic,weaktr,aream,getam",
            root.join("Scribbles").display(),
            root.display()
        );
    }
    Ok(())
}

/// The weight files the selected configs need, checked in `dir`; the error names each
/// missing file and the `wsss weights fetch` command that gets it.
pub fn check_weights(configs: &[PathBuf], dir: &Path) -> Result<Vec<PathBuf>> {
    let mut needed = Vec::new();
    for config in configs {
        if let Some(file) = init_file(config)? {
            let path = dir.join(&file);
            if !needed.contains(&path) {
                needed.push(path);
            }
        }
    }
    let missing: Vec<&PathBuf> = needed.iter().filter(|p| !p.is_file()).collect();
    if !missing.is_empty() {
        let help: Vec<String> = missing
            .iter()
            .map(|p| {
                let file = p.file_name().unwrap_or_default().to_string_lossy();
                format!(
                    "{}: ln -s \"$(wsss weights fetch {})\" {}",
                    p.display(),
                    hub_repo(&file),
                    p.display()
                )
            })
            .collect();
        bail!(
            "missing ImageNet weights in {} (--weights DIR); `wsss weights fetch REPO` downloads \
             into the Hugging Face cache and prints the path:\n  {}",
            dir.display(),
            help.join("\n  ")
        );
    }
    Ok(needed)
}

/// What a paper run needs besides [`ReproduceOptions`].
#[derive(Debug, Clone)]
pub struct PaperOptions {
    /// VOC or COCO.
    pub dataset: Dataset,
    /// The prepared data root.
    pub root: PathBuf,
    /// Folder of ImageNet weights (`<preset>.safetensors`, the file names of the configs'
    /// `init`).
    pub weights: PathBuf,
    /// `--device` of training and segmentation (`cuda`, `cuda:1`, `metal`).
    pub device: Option<String>,
}

/// The training configs the selected methods use.
fn selected_configs(repo: &Path, recipe: &Recipe, options: &ReproduceOptions) -> Vec<PathBuf> {
    let mut configs = Vec::new();
    for m in recipe.cam_methods {
        let name = match m.name {
            "classic" => MethodName::Classic,
            "weaktr" => MethodName::Weaktr,
            _ => MethodName::Aream,
        };
        if options.wants(name) {
            configs.push(repo.join(m.train_config));
            if name == MethodName::Weaktr {
                configs.push(repo.join(recipe.weaktr_stage2));
            }
        }
    }
    if options.wants(MethodName::Getam) {
        configs.push(repo.join(recipe.getam.train_config));
    }
    if let (true, Some(dfr)) = (options.wants(MethodName::Dfr), recipe.dfr) {
        configs.push(repo.join(dfr));
    }
    configs
}

/// Checks data and weights, then runs the stages of the selected methods on `paper.root`
/// into `options.out`; returns the report folder (none for a partial run).
pub fn reproduce(
    repo: &Path,
    paper: &PaperOptions,
    options: &ReproduceOptions,
) -> Result<Option<PathBuf>> {
    let recipe = paper.dataset.recipe();
    let wants_dfr = options.wants(MethodName::Dfr) && recipe.dfr.is_some();
    check_data(paper.dataset, &paper.root, wants_dfr)?;
    let configs = selected_configs(repo, &recipe, options);
    check_weights(&configs, &paper.weights)?;
    let wsss = wsss_binary(repo, options.dev, options.features.as_deref())?;
    let mut pipeline = Pipeline::new();
    // The prepared root stands in for the scenes `data` stage.
    let data_stage = super::stage::StageSpec {
        name: "data".into(),
        dir: options.out.join("data"),
        program: "xtask".into(),
        args: vec!["use-root".into(), paper.root.display().to_string()],
        inputs: vec![paper.root.join("cls_labels.json")],
        after: vec![],
        resume_args: vec![],
    };
    pipeline.run_in_process(&data_stage, || Ok(()))?;
    let ctx = RunPaths {
        root: repo,
        wsss: &wsss,
        out: &options.out,
        data: &paper.root,
        quick: false,
        init: None,
        mode: options.mode,
        weights: Some(&paper.weights),
        device: paper.device.as_deref(),
        dataset: paper.dataset.name(),
    };
    let methods = super::run_methods(&ctx, &mut pipeline, options, &recipe)?;
    if options.mode != super::methods::Mode::All {
        return Ok(None);
    }
    render(&wsss, paper, options, &pipeline, methods).map(Some)
}

/// Writes `report.json` and renders it into `out/report` (the scenes report's sections,
/// with the data root's class names).
fn render(
    wsss: &Path,
    paper: &PaperOptions,
    options: &ReproduceOptions,
    pipeline: &Pipeline,
    methods: Vec<wsss::report::MethodSpec>,
) -> Result<PathBuf> {
    let dataset = wsss::data::VocDataset::open(&paper.root, "val")
        .with_context(|| format!("opening val of {}", paper.root.display()))?;
    let spec = wsss::report::ReportSpec {
        title: format!("wsss on {}", paper.dataset.name().to_uppercase()),
        dataset: paper.dataset.name().into(),
        summary: vec![format!(
            "Made by `cargo xtask reproduce {} --root {}` with the paper configs; every number \
             comes from the files the stages wrote under `{}`. Single-scale CAMs, no CRF at \
             inference.",
            paper.dataset.name(),
            paper.root.display(),
            options.out.display()
        )],
        class_names: dataset.class_names().to_vec(),
        methods,
        stages: pipeline
            .outcomes()
            .iter()
            .map(|o| wsss::report::StageRecord {
                name: o.name.clone(),
                wall_s: o.record.wall_s,
                peak_rss_mib: o.record.peak_rss_mib,
                cached: o.cached,
            })
            .collect(),
        overlays: super::report::overlays(&paper.root)?,
    };
    let spec_path = options.out.join("report.json");
    spec.write(&spec_path)?;
    let report_dir = options.out.join("report");
    let status = std::process::Command::new(wsss)
        .args(["report", "--spec"])
        .arg(&spec_path)
        .arg("--out")
        .arg(&report_dir)
        .status()
        .context("running wsss report")?;
    if !status.success() {
        bail!("wsss report failed ({status})");
    }
    Ok(report_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn options() -> ReproduceOptions {
        ReproduceOptions {
            out: PathBuf::from("/nonexistent/out"),
            quick: false,
            seed: 0,
            update_readme: false,
            dev: true,
            jobs: 1,
            features: None,
            methods: vec![MethodName::All],
            mode: super::super::methods::Mode::All,
            pretrain: false,
        }
    }

    fn paper(root: PathBuf, weights: PathBuf) -> PaperOptions {
        PaperOptions {
            dataset: Dataset::Voc,
            root,
            weights,
            device: None,
        }
    }

    #[test]
    fn a_missing_root_names_the_prepare_command() {
        let err = reproduce(
            &repo(),
            &paper("/nonexistent/VOC2012".into(), "/nonexistent/w".into()),
            &options(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(
            err.contains("wsss data prepare voc --root /nonexistent/VOC2012"),
            "{err}"
        );
        let coco = check_data(Dataset::Coco, Path::new("/nonexistent/coco"), false)
            .unwrap_err()
            .to_string();
        assert!(
            coco.contains("wsss data prepare coco --root /nonexistent/coco"),
            "{coco}"
        );
    }

    #[test]
    fn an_unprepared_voc_tree_lists_what_is_missing() {
        let voc = repo().join("crates/wsss-data/tests/fixtures/voc/VOCdevkit/VOC2012");
        let err = check_data(Dataset::Voc, &voc, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("train_aug.txt"), "{err}");
        assert!(err.contains("cls_labels.json"), "{err}");
        assert!(err.contains("SegmentationClassAug"), "{err}");
        assert!(err.contains("wsss data prepare voc --root"), "{err}");
    }

    #[test]
    fn the_prepared_fixture_without_weights_names_the_fetch_commands() {
        let fixtures = repo().join("crates/wsss-data/tests/fixtures/voc");
        let dir = tempfile::tempdir().unwrap();
        let voc = dir.path().join("VOC2012");
        copy_tree(&fixtures.join("VOCdevkit/VOC2012"), &voc);
        wsss::data::prepare::voc::prepare_voc(&voc, Some(&fixtures.join("benchmark_RELEASE")))
            .unwrap();
        // Data fine; DFR wants scribbles, which the fixture lacks.
        let err = reproduce(
            &repo(),
            &paper(voc.clone(), dir.path().join("w")),
            &options(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("wsss data prepare scribble --root"), "{err}");
        let mut opts = options();
        opts.methods = vec![MethodName::Weaktr, MethodName::Classic];
        let err = reproduce(&repo(), &paper(voc, dir.path().join("w")), &opts)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wsss weights fetch timm/deit_small_patch16_224.fb_in1k"),
            "{err}"
        );
        assert!(
            err.contains("wsss weights fetch timm/vit_base_patch16_224"),
            "{err}"
        );
        assert!(err.contains("deit_small_patch16_224.safetensors"), "{err}");
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let dst = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &dst);
            } else {
                std::fs::copy(entry.path(), dst).unwrap();
            }
        }
    }
}
