//! The report stage: writes the report spec (which files the stages produced, their costs),
//! renders it with `wsss report`, and refreshes the README's results section.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use wsss::report::{MethodSpec, OverlaySpec, ReportSpec, StageRecord};

use super::stage::Pipeline;
use super::ReproduceOptions;

/// How many validation images the overlay grid shows.
const OVERLAY_IMAGES: usize = 4;

const README_BEGIN: &str = "<!-- scenes-report:begin (written by `cargo xtask reproduce`) -->";
const README_END: &str = "<!-- scenes-report:end -->";

/// The image file of `id` in a VOC-layout root (JPEG or PNG).
fn image_path(data: &Path, id: &str) -> Option<PathBuf> {
    ["jpg", "png"]
        .iter()
        .map(|ext| data.join("JPEGImages").join(format!("{id}.{ext}")))
        .find(|p| p.is_file())
}

/// The overlay rows: the first val images of `data`, with their ground truth.
pub(crate) fn overlays(data: &Path) -> Result<Vec<OverlaySpec>> {
    let list = data.join("ImageSets/Segmentation/val.txt");
    let text =
        std::fs::read_to_string(&list).with_context(|| format!("reading {}", list.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(OVERLAY_IMAGES)
        .filter_map(|id| {
            Some(OverlaySpec {
                name: id.to_string(),
                image: image_path(data, id)?,
                gt: data.join("SegmentationClass").join(format!("{id}.png")),
            })
        })
        .collect())
}

/// Writes `report.json`, renders the report into `out/report` and returns that folder.
pub fn render(
    wsss: &Path,
    out: &Path,
    data: &Path,
    pipeline: &Pipeline,
    methods: &[MethodSpec],
    options: &ReproduceOptions,
) -> Result<PathBuf> {
    let stages = pipeline
        .outcomes()
        .iter()
        .map(|o| StageRecord {
            name: o.name.clone(),
            wall_s: o.record.wall_s,
            peak_rss_mib: o.record.peak_rss_mib,
            cached: o.cached,
        })
        .collect();
    let spec = ReportSpec {
        title: format!(
            "wsss on the embedded scenes benchmark{}",
            if options.quick { " (quick)" } else { "" }
        ),
        dataset: "scenes".into(),
        summary: vec![format!(
            "Made by `cargo xtask reproduce{}` (seed {}): every number below comes from the \
             files the stages wrote under `{}`.",
            if options.quick { " --quick" } else { "" },
            options.seed,
            out.display()
        )],
        class_names: wsss::data::SCENES_CLASSES
            .iter()
            .map(|c| c.to_string())
            .collect(),
        methods: methods.to_vec(),
        stages,
        overlays: overlays(data)?,
    };
    let spec_path = out.join("report.json");
    spec.write(&spec_path)?;
    let report_dir = out.join("report");
    let status = Command::new(wsss)
        .args(["report", "--spec"])
        .arg(&spec_path)
        .arg("--out")
        .arg(&report_dir)
        .status()
        .context("running wsss report")?;
    if !status.success() {
        bail!("wsss report failed ({status})");
    }
    if options.update_readme {
        update_readme(&report_dir)?;
    }
    Ok(report_dir)
}

/// The `## Results` section of a rendered report.md.
fn results_section(markdown: &str) -> Option<String> {
    let start = markdown.find("## Results")?;
    let rest = &markdown[start..];
    let end = rest[2..].find("\n## ").map_or(rest.len(), |i| i + 3);
    Some(rest[..end].trim_end().to_string())
}

/// Replaces the README's scenes-report section with the report's results table and the
/// overlay grid (copied to docs/results/scenes-overlays.png).
fn update_readme(report_dir: &Path) -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme_path = root.join("README.md");
    let readme = std::fs::read_to_string(&readme_path).context("reading README.md")?;
    let (Some(begin), Some(end)) = (readme.find(README_BEGIN), readme.find(README_END)) else {
        println!("README.md has no scenes-report markers; not updated");
        return Ok(());
    };
    let markdown = std::fs::read_to_string(report_dir.join("report.md"))?;
    let mut section =
        results_section(&markdown)
            .unwrap_or_default()
            .replacen("## Results", "### Results", 1);
    let grid = report_dir.join("overlays.png");
    if grid.is_file() {
        let dest = root.join("docs/results/scenes-overlays.png");
        std::fs::create_dir_all(dest.parent().unwrap_or(&root))?;
        std::fs::copy(&grid, &dest).with_context(|| format!("copying {}", grid.display()))?;
        section.push_str("\n\n![scenes overlays](docs/results/scenes-overlays.png)");
    }
    let updated = format!(
        "{}{README_BEGIN}\n{section}\n{}",
        &readme[..begin],
        &readme[end..]
    );
    if updated != readme {
        let tmp = root.join("README.md.tmp");
        std::fs::write(&tmp, updated)?;
        std::fs::rename(&tmp, &readme_path)?;
        println!("README.md results section updated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_section_stops_at_the_next_heading() {
        let md = "# T\n\n## Results (mIoU, %)\n\n| a |\n\n## Per-class\n\nx\n";
        assert_eq!(
            results_section(md).unwrap(),
            "## Results (mIoU, %)\n\n| a |"
        );
        assert_eq!(
            results_section("## Results\nonly").unwrap(),
            "## Results\nonly"
        );
        assert!(results_section("# nothing").is_none());
    }
}
