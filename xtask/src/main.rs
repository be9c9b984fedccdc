//! `cargo xtask`: developer tasks. Run without arguments for the list.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::reproduce::methods::Mode;
use xtask::reproduce::ReproduceOptions;

/// Where `cargo xtask reproduce` writes by default.
const DEFAULT_OUT: &str = "runs/scenes";

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "wsss developer tasks",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run golden reference cases (FORMAT.md) through the library and compare.
    Golden {
        /// Folder of `NAME.json` + `NAME.safetensors` cases.
        dir: PathBuf,
        /// Only cases whose op starts with this prefix (repeatable); others are excluded.
        #[arg(long = "op")]
        ops: Vec<String>,
        /// List the ops that have an adapter and exit.
        #[arg(long)]
        list: bool,
    },
    /// The main job on a data set (default: the embedded `scenes`), stage by stage.
    Reproduce {
        /// Data set: `scenes` (embedded, generated), `voc` or `coco` (a prepared --root).
        #[arg(default_value = "scenes")]
        dataset: String,
        /// voc/coco: the prepared data root (`wsss data prepare voc|coco --root DIR`).
        #[arg(long)]
        root: Option<PathBuf>,
        /// voc/coco: folder of ImageNet weights, named as the configs' `[model] init` files
        /// (`deit_small_patch16_224.safetensors`, …).
        #[arg(long, default_value = "weights")]
        weights: PathBuf,
        /// voc/coco: `--device` of training and segmentation (cuda, cuda:N, metal).
        #[arg(long)]
        device: Option<String>,
        /// Run folder.
        #[arg(long, default_value = DEFAULT_OUT)]
        out: PathBuf,
        /// The smallest meaningful run (CI smoke).
        #[arg(long)]
        quick: bool,
        /// Seed of the generated data.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Pre-train the scenes backbone (10,000 generated images) instead of starting from
        /// the shipped models/scenes/vit_scenes_pretrained.safetensors.
        #[arg(long)]
        pretrain: bool,
        /// Use the debug `wsss` binary (no release build; what `cargo test` builds), for CI.
        #[arg(long)]
        dev: bool,
        /// Cargo features of the `wsss` build, e.g. `cuda` (with `--device cuda`).
        #[arg(long)]
        features: Option<String>,
        /// Methods to run (repeatable or comma separated).
        #[arg(
            long = "method",
            value_enum,
            value_delimiter = ',',
            default_value = "all"
        )]
        methods: Vec<xtask::reproduce::MethodName>,
        /// Method chains run at once (each command then gets the cores divided among
        /// them). Default: one per core for scenes (CPU), 1 for voc/coco (one GPU).
        #[arg(long)]
        jobs: Option<usize>,
        /// Run only the data and the trainings (before a sharded run).
        #[arg(long, conflicts_with = "shard")]
        train_only: bool,
        /// Run only shard k/n (0 <= k < n) of the per-image stages (CAM, refine, segment) of
        /// finished trainings; a final run without --shard scores and reports.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<(usize, usize)>,
    },
    /// Open a report.html in headless Chromium, save a screenshot, check it shows content.
    Screenshot {
        /// The HTML file.
        html: PathBuf,
        /// Where the PNG goes.
        #[arg(long, default_value = "report-screenshot.png")]
        out: PathBuf,
        /// Window width.
        #[arg(long, default_value_t = 1400)]
        width: u32,
        /// Window height.
        #[arg(long, default_value_t = 2400)]
        height: u32,
    },
    /// Run the criterion benches and write docs/results/bench-<device>.md.
    Bench {
        /// Cargo features for the benches (`cuda` or `metal`).
        #[arg(long)]
        features: Option<String>,
        /// Only benchmarks whose id contains this.
        filter: Option<String>,
    },
}

/// `k/n` with 0 <= k < n (`wsss::shard::Shard`'s syntax and message).
fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let shard: wsss::shard::Shard = s.parse()?;
    Ok((shard.index, shard.count))
}

fn golden(dir: PathBuf, ops: Vec<String>, list: bool) -> Result<ExitCode> {
    if list {
        for op in xtask::golden::ops::KNOWN_OPS {
            println!("{op}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let reports = xtask::golden::run_dir(&dir, &ops)?;
    let passed = reports.iter().filter(|r| r.passed()).count();
    for report in &reports {
        println!("{}", report.line());
    }
    let failed = reports.len() - passed;
    println!("{passed} passed, {failed} failed");
    if reports.is_empty() {
        eprintln!("no case matched the --op prefixes {ops:?}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn main() -> Result<ExitCode> {
    match Cli::parse().task {
        Task::Golden { dir, ops, list } => golden(dir, ops, list),
        Task::Reproduce {
            dataset,
            out,
            quick,
            seed,
            pretrain,
            dev,
            methods,
            train_only,
            shard,
            jobs,
            root: data_root,
            weights,
            device,
            features,
        } => {
            let paper = match dataset.as_str() {
                "scenes" => None,
                name => {
                    let Some(dataset) = xtask::reproduce::paper::Dataset::parse(name) else {
                        anyhow::bail!("unknown data set `{name}`: scenes, voc or coco");
                    };
                    let Some(root) = data_root else {
                        anyhow::bail!("`{name}` needs --root DIR, the prepared data root");
                    };
                    Some(xtask::reproduce::paper::PaperOptions {
                        dataset,
                        root,
                        weights,
                        device,
                    })
                }
            };
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let mode = match (train_only, shard) {
                (true, _) => Mode::TrainOnly,
                (false, Some((index, count))) => Mode::Shard { index, count },
                (false, None) => Mode::All,
            };
            let mut options = ReproduceOptions {
                out,
                quick,
                seed,
                update_readme: false,
                dev,
                features,
                methods,
                mode,
                pretrain,
                jobs: jobs.unwrap_or(if paper.is_some() { 1 } else { 0 }),
            };
            options.update_readme = !quick
                && options.out == std::path::Path::new(DEFAULT_OUT)
                && options.all_methods()
                && mode == Mode::All;
            if paper.is_some() && options.out == std::path::Path::new(DEFAULT_OUT) {
                anyhow::bail!("give --out DIR for a voc/coco run");
            }
            if paper.is_some() && quick {
                anyhow::bail!("--quick is for the scenes set; voc/coco run the paper configs");
            }
            let start = std::time::Instant::now();
            let done = match &paper {
                Some(paper) => xtask::reproduce::paper::reproduce(&root, paper, &options)?,
                None => xtask::reproduce::scenes::scenes(&root, &options)?,
            };
            match done {
                Some(report) => println!(
                    "report: {} ({:.0} s)",
                    report.join("report.html").display(),
                    start.elapsed().as_secs_f64()
                ),
                None => println!(
                    "partial run done ({mode:?}); run without --train-only/--shard to finish"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Task::Screenshot {
            html,
            out,
            width,
            height,
        } => {
            let check = xtask::screenshot::screenshot(&html, &out, width, height)?;
            println!(
                "{}: {:.1} % of pixels inked, {} pixels of the sweep plot's first colour",
                check.png.display(),
                100.0 * check.ink,
                check.plot_pixels
            );
            let has_plot = std::fs::read_to_string(&html)?.contains("threshold_sweep");
            if check.ink < 0.02 || (has_plot && check.plot_pixels == 0) {
                eprintln!("the page looks blank or its plot did not render");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Task::Bench { features, filter } => {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let out = xtask::bench::run(&root, features.as_deref(), filter.as_deref())?;
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
