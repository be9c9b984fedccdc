//! Label maps as PNG files: VOC palette PNGs (indexed, 8 bit) and plain grey PNGs.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use crate::error::{io_err, DataError, Result};

/// A single-channel u8 label map, row-major: class indices, 255 = ignore/unlabelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `height * width` labels.
    pub data: Vec<u8>,
}

impl LabelMap {
    /// A map filled with `value`.
    pub fn filled(width: u32, height: u32, value: u8) -> Self {
        Self {
            width,
            height,
            data: vec![value; width as usize * height as usize],
        }
    }

    /// The label at `(x, y)`.
    pub fn get(&self, x: u32, y: u32) -> u8 {
        self.data[y as usize * self.width as usize + x as usize]
    }

    /// Sets the label at `(x, y)`.
    pub fn set(&mut self, x: u32, y: u32, value: u8) {
        self.data[y as usize * self.width as usize + x as usize] = value;
    }

    /// The first value that is neither `< num_classes` nor 255, if any.
    pub fn out_of_range(&self, num_classes: usize) -> Option<u8> {
        self.data
            .iter()
            .copied()
            .find(|&v| v != 255 && v as usize >= num_classes)
    }
}

/// The PASCAL VOC colour map (`bitget` construction of the VOC devkit): entry `i` is the
/// RGB colour of label `i`; 255 is (224, 224, 192).
pub fn voc_colormap() -> [[u8; 3]; 256] {
    let mut map = [[0u8; 3]; 256];
    for (i, entry) in map.iter_mut().enumerate() {
        let mut c = i;
        let (mut r, mut g, mut b) = (0u8, 0u8, 0u8);
        for j in 0..8 {
            r |= ((c & 1) as u8) << (7 - j);
            g |= (((c >> 1) & 1) as u8) << (7 - j);
            b |= (((c >> 2) & 1) as u8) << (7 - j);
            c >>= 3;
        }
        *entry = [r, g, b];
    }
    map
}

/// Reads a label PNG: indexed (the palette indices are the labels, whatever the
/// palette), grey (the grey values are the labels), or RGB/RGBA coloured with the VOC
/// colour map (mapped back to indices). Bit depths 1, 2, 4 and 8.
pub fn read_label_png(path: &Path) -> Result<LabelMap> {
    let file = File::open(path).map_err(io_err(path))?;
    let decode = |message: String| DataError::Decode {
        path: path.to_path_buf(),
        message,
    };
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| decode(e.to_string()))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| decode("image too large".into()))?;
    let mut buf = vec![0u8; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| decode(e.to_string()))?;
    let (width, height) = (info.width, info.height);
    let n = width as usize * height as usize;
    let depth = info.bit_depth as u8;
    use png::ColorType::*;
    let data = match (info.color_type, depth) {
        (Indexed | Grayscale, 8) => {
            let stride = info.line_size;
            (0..height as usize)
                .flat_map(|y| buf[y * stride..y * stride + width as usize].iter().copied())
                .collect()
        }
        (Indexed | Grayscale, 1 | 2 | 4) => {
            let stride = info.line_size;
            let per_byte = 8 / depth as usize;
            let mask = (1u8 << depth) - 1;
            let mut out = Vec::with_capacity(n);
            for y in 0..height as usize {
                let row = &buf[y * stride..(y + 1) * stride];
                for x in 0..width as usize {
                    let byte = row[x / per_byte];
                    let shift = 8 - depth as usize * (x % per_byte + 1);
                    out.push((byte >> shift) & mask);
                }
            }
            out
        }
        (Rgb | Rgba, 8) => {
            let channels = if info.color_type == Rgb { 3 } else { 4 };
            let lookup: std::collections::HashMap<[u8; 3], u8> = voc_colormap()
                .iter()
                .enumerate()
                .map(|(i, c)| (*c, i as u8))
                .collect();
            let stride = info.line_size;
            let mut out = Vec::with_capacity(n);
            for y in 0..height as usize {
                let row = &buf[y * stride..];
                for x in 0..width as usize {
                    let px = [
                        row[x * channels],
                        row[x * channels + 1],
                        row[x * channels + 2],
                    ];
                    let label = lookup.get(&px).ok_or_else(|| {
                        decode(format!(
                            "colour {px:?} at ({x}, {y}) is not in the VOC colour map"
                        ))
                    })?;
                    out.push(*label);
                }
            }
            out
        }
        (color, depth) => {
            return Err(decode(format!(
                "unsupported label PNG: {color:?} at {depth} bits"
            )))
        }
    };
    Ok(LabelMap {
        width,
        height,
        data,
    })
}

/// How a label map is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelFormat {
    /// Indexed PNG with the VOC colour map (viewable, the VOC `SegmentationClass` format).
    Palette,
    /// 8-bit grey PNG (the SBD-aug / ToCo `SegmentationClassAug` format).
    Grey,
}

/// Writes `map` as a PNG, atomically (temporary file, then rename).
pub fn write_label_png(path: &Path, map: &LabelMap, format: LabelFormat) -> Result<()> {
    if map.data.len() != map.width as usize * map.height as usize {
        return Err(DataError::Invalid(format!(
            "label map for {} has {} values, expected {}x{}",
            path.display(),
            map.data.len(),
            map.width,
            map.height
        )));
    }
    let tmp = tmp_path(path);
    {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut encoder = png::Encoder::new(BufWriter::new(file), map.width, map.height);
        encoder.set_depth(png::BitDepth::Eight);
        match format {
            LabelFormat::Palette => {
                encoder.set_color(png::ColorType::Indexed);
                encoder.set_palette(voc_colormap().concat());
            }
            LabelFormat::Grey => encoder.set_color(png::ColorType::Grayscale),
        }
        let encode = |e: png::EncodingError| DataError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        };
        let mut writer = encoder.write_header().map_err(encode)?;
        writer.write_image_data(&map.data).map_err(encode)?;
        writer.finish().map_err(encode)?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// `dir/.name.tmp`: a sibling temporary path for atomic writes.
pub(crate) fn tmp_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}
