//! Colour images: JPEG or PNG in, JPEG or PNG out.

use std::path::Path;

pub use image::RgbImage;

use crate::error::{io_err, DataError, Result};
use crate::palette::tmp_path;

/// Reads a JPEG or PNG (any colour type) as 8-bit RGB.
pub fn read_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let img = image::load_from_memory(&bytes).map_err(|e| DataError::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(img.to_rgb8())
}

/// Writes an RGB image; the format follows the extension (`.jpg`/`.jpeg` at quality 95,
/// else PNG). Atomic: temporary file, then rename.
pub fn write_image(path: &Path, img: &RgbImage) -> Result<()> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let tmp = tmp_path(path);
    let file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut out = std::io::BufWriter::new(file);
    let encode = |e: image::ImageError| DataError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };
    if ext == "jpg" || ext == "jpeg" {
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
            .encode_image(img)
            .map_err(encode)?;
    } else {
        img.write_to(&mut out, image::ImageFormat::Png)
            .map_err(encode)?;
    }
    drop(out);
    std::fs::rename(&tmp, path).map_err(io_err(path))
}
