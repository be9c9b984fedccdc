//! `cargo xtask screenshot REPORT.html`: opens a report in headless Chromium, saves a
//! screenshot and checks that it shows the tables and the pictures (not a blank or broken
//! page). The check for `report.html` files that must open with no server.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Browsers tried in order.
const BROWSERS: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "headless_shell",
];

/// The first plot series colour (see `wsss::report::plot::series_colour(0)`).
const PLOT_BLUE: [u8; 3] = [0, 114, 178];

fn find_browser() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in BROWSERS {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!("no headless browser found (tried {BROWSERS:?}); on Debian: apt-get install chromium")
}

/// What the screenshot shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScreenshotCheck {
    /// Screenshot file.
    pub png: PathBuf,
    /// Fraction of pixels that are not white.
    pub ink: f64,
    /// Pixels in the first plot colour (the threshold sweep plot rendered).
    pub plot_pixels: usize,
}

/// Screenshots `html` into `png` (width x height) and measures it.
pub fn screenshot(html: &Path, png: &Path, width: u32, height: u32) -> Result<ScreenshotCheck> {
    let browser = find_browser()?;
    let html = html
        .canonicalize()
        .with_context(|| format!("{} not found", html.display()))?;
    let png_abs = std::env::current_dir()?.join(png);
    let status = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--allow-file-access-from-files",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png_abs.display()))
        .arg(format!("file://{}", html.display()))
        .status()
        .with_context(|| format!("running {}", browser.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", browser.display());
    }
    let shot = image::open(&png_abs)
        .with_context(|| format!("reading the screenshot {}", png_abs.display()))?
        .to_rgb8();
    let total = (shot.width() * shot.height()) as f64;
    let ink = shot.pixels().filter(|p| p.0 != [255, 255, 255]).count() as f64 / total;
    let plot_pixels = shot.pixels().filter(|p| p.0 == PLOT_BLUE).count();
    Ok(ScreenshotCheck {
        png: png_abs,
        ink,
        plot_pixels,
    })
}
