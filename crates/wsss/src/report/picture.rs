//! Pictures for people: CAM heat maps over the image, label maps in VOC colours, and
//! grids of equally sized tiles.

use image::{imageops::FilterType, Rgb, RgbImage};
use wsss_data::palette::{voc_colormap, LabelMap};

use super::error::{ReportError, Result};

/// The heat-map colour of `v` in [0, 1] (blue → cyan → yellow → red, "jet").
pub fn jet(v: f32) -> [u8; 3] {
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let channel = |centre: f32| {
        let c = (1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0);
        (c * 255.0).round() as u8
    };
    [channel(3.0), channel(2.0), channel(1.0)]
}

fn blend(a: [u8; 3], b: [u8; 3], alpha: f32) -> Rgb<u8> {
    let mix = |x: u8, y: u8| ((1.0 - alpha) * x as f32 + alpha * y as f32).round() as u8;
    Rgb([mix(a[0], b[0]), mix(a[1], b[1]), mix(a[2], b[2])])
}

/// `image` with the heat map `heat` (row-major, `height * width` values in [0, 1]) blended
/// in with weight `alpha`.
///
/// Cost: O(pixels).
pub fn heat_overlay(image: &RgbImage, heat: &[f32], alpha: f32) -> Result<RgbImage> {
    let (w, h) = image.dimensions();
    if heat.len() != (w * h) as usize {
        return Err(ReportError::Picture(format!(
            "heat map has {} values, the image {w}x{h} has {} pixels",
            heat.len(),
            w * h
        )));
    }
    Ok(RgbImage::from_fn(w, h, |x, y| {
        let v = heat[(y * w + x) as usize];
        blend(image.get_pixel(x, y).0, jet(v), alpha)
    }))
}

/// A label map in VOC colours, blended over `image` with weight `alpha` when given
/// (ignore = 255 keeps its VOC cream colour).
///
/// Cost: O(pixels).
pub fn label_picture(labels: &LabelMap, image: Option<(&RgbImage, f32)>) -> Result<RgbImage> {
    let map = voc_colormap();
    if let Some((img, _)) = image {
        if img.dimensions() != (labels.width, labels.height) {
            return Err(ReportError::Picture(format!(
                "label map is {}x{}, the image {}x{}",
                labels.width,
                labels.height,
                img.width(),
                img.height()
            )));
        }
    }
    Ok(RgbImage::from_fn(labels.width, labels.height, |x, y| {
        let colour = map[labels.get(x, y) as usize];
        match image {
            Some((img, alpha)) => blend(img.get_pixel(x, y).0, colour, alpha),
            None => Rgb(colour),
        }
    }))
}

/// Tiles laid out in rows, each resized to `tile` x `tile` (nearest neighbour, so labels
/// stay crisp), separated by `gap` white pixels; a missing tile is drawn light grey.
///
/// Cost: O(rows * columns * tile²).
pub fn grid(rows: &[Vec<Option<RgbImage>>], tile: u32, gap: u32) -> Result<RgbImage> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    if rows.is_empty() || columns == 0 || tile == 0 {
        return Err(ReportError::Picture("an empty grid".into()));
    }
    let width = columns * tile + (columns + 1) * gap;
    let height = rows.len() as u32 * tile + (rows.len() as u32 + 1) * gap;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for c in 0..columns as usize {
            let x0 = gap + c as u32 * (tile + gap);
            let y0 = gap + r as u32 * (tile + gap);
            match row.get(c).and_then(Option::as_ref) {
                Some(img) => {
                    let scaled = image::imageops::resize(img, tile, tile, FilterType::Nearest);
                    image::imageops::replace(&mut canvas, &scaled, x0 as i64, y0 as i64);
                }
                None => {
                    for y in y0..y0 + tile {
                        for x in x0..x0 + tile {
                            canvas.put_pixel(x, y, Rgb([220, 220, 220]));
                        }
                    }
                }
            }
        }
    }
    Ok(canvas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_runs_blue_to_red_and_tolerates_nan() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        assert_eq!(jet(0.5)[1], 255);
        assert_eq!(jet(f32::NAN), jet(0.0));
    }

    #[test]
    fn heat_overlay_blends_and_checks_sizes() {
        let img = RgbImage::from_pixel(2, 1, Rgb([0, 0, 0]));
        let out = heat_overlay(&img, &[0.0, 1.0], 1.0).unwrap();
        assert_eq!(out.get_pixel(1, 0).0, jet(1.0));
        let half = heat_overlay(&img, &[1.0, 1.0], 0.5).unwrap();
        assert_eq!(half.get_pixel(0, 0).0, [64, 0, 0]);
        assert!(heat_overlay(&img, &[0.0], 0.5).is_err());
    }

    #[test]
    fn label_picture_uses_voc_colours() {
        let labels = LabelMap {
            width: 3,
            height: 1,
            data: vec![0, 1, 255],
        };
        let out = label_picture(&labels, None).unwrap();
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(1, 0).0, [128, 0, 0]);
        assert_eq!(out.get_pixel(2, 0).0, [224, 224, 192]);
        let wrong = RgbImage::new(2, 2);
        assert!(label_picture(&labels, Some((&wrong, 0.5))).is_err());
    }

    #[test]
    fn grid_places_tiles_and_greys_missing_ones() {
        let red = RgbImage::from_pixel(4, 4, Rgb([255, 0, 0]));
        let rows = vec![vec![Some(red.clone()), None], vec![Some(red)]];
        let out = grid(&rows, 8, 2).unwrap();
        assert_eq!(out.dimensions(), (2 * 8 + 3 * 2, 2 * 8 + 3 * 2));
        assert_eq!(out.get_pixel(2, 2).0, [255, 0, 0]);
        assert_eq!(out.get_pixel(12, 2).0, [220, 220, 220]);
        assert_eq!(out.get_pixel(12, 12).0, [220, 220, 220]);
        assert_eq!(out.get_pixel(0, 0).0, [255, 255, 255]);
        assert!(grid(&[], 8, 2).is_err());
    }
}
