//! Line plots rendered to PNG with plotters (bitmap backend, the bundled DejaVu Sans font),
//! so reports need no system fonts; and column headings over picture grids.

use std::path::Path;
use std::sync::OnceLock;

use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use super::error::{ReportError, Result};

/// DejaVu Sans (Bitstream Vera licence, see `assets/fonts/LICENSE-DejaVu.txt`).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// One named line of (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points in drawing order; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
}

/// A labelled point drawn on top of the lines (e.g. the chosen threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Index of the series whose colour the marker takes.
    pub series: usize,
    /// Position.
    pub x: f64,
    /// Position.
    pub y: f64,
    /// Short text drawn beside it.
    pub label: String,
}

/// What a plot shows.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot<'a> {
    /// Caption above the plot.
    pub title: &'a str,
    /// Horizontal axis description.
    pub x_label: &'a str,
    /// Vertical axis description.
    pub y_label: &'a str,
    /// The lines.
    pub series: &'a [Series],
    /// Highlighted points.
    pub markers: &'a [Marker],
}

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ReportError::Plot(
            "the bundled font could not be loaded".into(),
        ))
    }
}

/// Colour of series `i` (a fixed, colour-blind-friendly cycle).
pub fn series_colour(i: usize) -> RGBColor {
    const CYCLE: [RGBColor; 8] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(120, 120, 120),
        RGBColor(0, 0, 0),
    ];
    CYCLE[i % CYCLE.len()]
}

/// The smallest range holding every finite coordinate, widened when degenerate.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// Draws with plotters (`draw`) into a white `width` x `height` RGB buffer and returns it as
/// an image; `what` names the picture in errors.
///
/// Cost: O(width · height) plus the drawing.
fn rasterise(
    width: u32,
    height: u32,
    what: &str,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<RgbImage> {
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present()
            .map_err(|e| ReportError::Plot(format!("{what}: {e}")))?;
    }
    RgbImage::from_raw(width, height, pixels).ok_or_else(|| {
        ReportError::Plot(format!(
            "{what}: {width}x{height} buffer has the wrong size"
        ))
    })
}

/// Draws `plot` into a `width` x `height` PNG at `path`.
///
/// Cost: O(total points) drawing work; the bitmap is O(width * height).
pub fn draw_line_plot(plot: &LinePlot<'_>, path: &Path, width: u32, height: u32) -> Result<()> {
    register_font()?;
    if plot.series.iter().all(|s| s.points.is_empty()) {
        return Err(ReportError::Plot(format!(
            "plot `{}` has no points to draw",
            plot.title
        )));
    }
    let err = |e: &dyn std::fmt::Display| ReportError::Plot(format!("{}: {e}", path.display()));
    let points = || plot.series.iter().flat_map(|s| s.points.iter().copied());
    let (x0, x1) = bounds(
        points()
            .map(|p| p.0)
            .chain(plot.markers.iter().map(|m| m.x)),
    );
    let (y0, y1) = bounds(
        points()
            .map(|p| p.1)
            .chain(plot.markers.iter().map(|m| m.y)),
    );

    // Drawn into memory and saved by `image` (plotters' own PNG encoder would pull in a
    // second, older `image`).
    let image = rasterise(width, height, &path.display().to_string(), |root| {
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(root)
            .caption(plot.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(plot.x_label)
            .y_desc(plot.y_label)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, series) in plot.series.iter().enumerate() {
            let colour = series_colour(i);
            let finite = series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite());
            chart
                .draw_series(LineSeries::new(finite, colour.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(series.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        for marker in plot.markers {
            let colour = series_colour(marker.series);
            chart
                .draw_series(std::iter::once(Circle::new(
                    (marker.x, marker.y),
                    5,
                    colour.filled(),
                )))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    marker.label.clone(),
                    (marker.x, marker.y),
                    ("sans-serif", 12).into_font().color(&colour),
                )))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| err(&e))?;
        Ok(())
    })?;
    image.save(path).map_err(|e| err(&e))
}

/// Height of the heading band of [`with_column_headings`]: two lines of text.
const HEADING_HEIGHT: u32 = 34;

/// `grid` (a [`super::picture::grid`] of `tile`-pixel tiles and `gap`-pixel gaps) under a
/// white band naming its columns, each name centred over its column on up to two lines
/// (split at the last space when it does not fit one).
///
/// Cost: O(width · height) plus the text.
pub fn with_column_headings(
    grid: &RgbImage,
    headings: &[String],
    tile: u32,
    gap: u32,
) -> Result<RgbImage> {
    register_font()?;
    let (width, height) = grid.dimensions();
    let err = |e: &dyn std::fmt::Display| ReportError::Plot(format!("column headings: {e}"));
    let band = rasterise(width, HEADING_HEIGHT, "column headings", |root| {
        let font = ("sans-serif", 12)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        for (c, heading) in headings.iter().enumerate() {
            let centre = (gap + c as u32 * (tile + gap) + tile / 2) as i32;
            let lines = match heading.rsplit_once(' ') {
                Some((first, last)) if heading.chars().count() > 18 => vec![first, last],
                _ => vec![heading.as_str()],
            };
            for (i, line) in lines.iter().enumerate() {
                root.draw_text(line, &font, (centre, 3 + 15 * i as i32))
                    .map_err(|e| err(&e))?;
            }
        }
        Ok(())
    })?;
    let mut out = RgbImage::new(width, height + HEADING_HEIGHT);
    image::imageops::replace(&mut out, &band, 0, 0);
    image::imageops::replace(&mut out, grid, 0, i64::from(HEADING_HEIGHT));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn column_headings_put_ink_over_each_named_column_only() {
        // The report's tile size.
        let (tile, gap) = (128, 4);
        let grid = RgbImage::from_pixel(3 * tile + 4 * gap, tile + 2 * gap, Rgb([0, 0, 200]));
        let headings = [
            "image".to_string(),
            String::new(),
            "weaktr pseudo label".into(),
        ];
        let out = with_column_headings(&grid, &headings, tile, gap).unwrap();
        assert_eq!(
            out.dimensions(),
            (grid.width(), grid.height() + HEADING_HEIGHT)
        );
        // The grid is copied unchanged below the band.
        assert_eq!(out.get_pixel(5, HEADING_HEIGHT + 5), &Rgb([0, 0, 200]));
        let dark_in = |x0: u32, x1: u32, y0: u32, y1: u32| {
            (y0..y1)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| out.get_pixel(x, y).0.iter().all(|&v| v < 128))
                .count()
        };
        let column = |c: u32| (gap + c * (tile + gap), gap + c * (tile + gap) + tile);
        let (a0, a1) = column(0);
        let (b0, b1) = column(1);
        let (c0, c1) = column(2);
        assert!(dark_in(a0, a1, 0, 17) > 0, "first heading drawn");
        assert_eq!(
            dark_in(b0, b1, 0, HEADING_HEIGHT),
            0,
            "an empty heading draws nothing"
        );
        // The long heading wraps: ink on both lines of the third column.
        assert!(dark_in(c0, c1, 0, 17) > 0 && dark_in(c0, c1, 17, HEADING_HEIGHT) > 0);
    }

    #[test]
    fn draws_a_png_with_ink_in_each_series_colour() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.png");
        let series = [
            Series {
                name: "a".into(),
                points: (0..10).map(|i| (i as f64, (i * i) as f64)).collect(),
            },
            Series {
                name: "b".into(),
                points: (0..10).map(|i| (i as f64, 50.0 - i as f64)).collect(),
            },
        ];
        let markers = [Marker {
            series: 0,
            x: 3.0,
            y: 9.0,
            label: "best".into(),
        }];
        let plot = LinePlot {
            title: "test",
            x_label: "x",
            y_label: "y",
            series: &series,
            markers: &markers,
        };
        draw_line_plot(&plot, &path, 320, 240).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (320, 240));
        for i in 0..2 {
            let RGBColor(r, g, b) = series_colour(i);
            assert!(
                img.pixels().any(|p| p.0 == [r, g, b]),
                "no pixel in the colour of series {i}"
            );
        }
    }

    #[test]
    fn refuses_an_empty_plot() {
        let dir = tempfile::tempdir().unwrap();
        let plot = LinePlot {
            title: "empty",
            x_label: "x",
            y_label: "y",
            series: &[],
            markers: &[],
        };
        let err = draw_line_plot(&plot, &dir.path().join("p.png"), 100, 100).unwrap_err();
        assert!(err.to_string().contains("no points"));
    }

    #[test]
    fn bounds_pad_and_handle_degenerate_ranges() {
        assert_eq!(bounds([1.0, 1.0].into_iter()), (0.5, 1.5));
        assert_eq!(bounds([f64::NAN].into_iter()), (0.0, 1.0));
        let (lo, hi) = bounds([0.0, 10.0].into_iter());
        assert!(lo < 0.0 && hi > 10.0);
    }
}
