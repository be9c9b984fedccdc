//! SBD's `cls/<name>.mat` files (Hariharan et al., "Semantic contours from inverse
//! detectors", ICCV 2011): a MATLAB v5 MAT-file, usually compressed, holding one struct
//! `GTcls` with fields `Boundaries` (a 20×1 cell of sparse logical maps),
//! `Segmentation` (H×W uint8, column-major, class indices 0..20) and `CategoriesPresent`.
//!
//! Read with the `matrw` crate (pure Rust; MAT v5/v7 numeric, struct, cell and sparse
//! arrays, zlib-compressed elements). `matrw` 0.1 can panic on some malformed headers, so
//! the header is checked here first and the parse runs under `catch_unwind`: a corrupt file
//! is an error naming it, never a crash.

use std::path::Path;

use matrw::MatVariable;

use crate::error::{io_err, DataError, Result};
use crate::palette::LabelMap;

/// MAT-file header: 116 bytes of text, 8 of subsystem offset, version, endian marker.
const HEADER: usize = 128;

/// Reads the `GTcls.Segmentation` mask of an SBD `cls/*.mat` file, row-major.
///
/// # Errors
/// I/O, a file that is not a MAT v5 file, a missing `GTcls` or `Segmentation`, a
/// non-uint8 or non-2-D `Segmentation`: each names the file.
pub fn read_sbd_cls(path: &Path) -> Result<LabelMap> {
    let mut bytes = std::fs::read(path).map_err(io_err(path))?;
    let bad = |message: String| DataError::Parse {
        path: path.to_path_buf(),
        message,
    };
    if bytes.len() < HEADER || !bytes.starts_with(b"MATLAB 5.0 MAT-file") {
        return Err(bad(
            "not a MATLAB v5 MAT-file (SBD cls/*.mat expected)".into()
        ));
    }
    if &bytes[126..128] != b"IM" && &bytes[126..128] != b"MI" {
        return Err(bad("MAT-file header has no endian marker".into()));
    }
    // The first 116 bytes are free descriptive text. MATLAB writes "MATLAB 5.0 MAT-file,
    // Platform: …" and `matrw` insists on that comma; scipy writes "MATLAB 5.0 MAT-file
    // Platform: …". Normalise the text so both parse (the data is untouched).
    let text = b"MATLAB 5.0 MAT-file, ";
    bytes[..text.len()].copy_from_slice(text);
    bytes[text.len()..116].fill(b' ');
    let parsed = std::panic::catch_unwind(|| matrw::load_matfile_from_u8(&bytes));
    let mat = match parsed {
        Ok(Ok(mat)) => mat,
        Ok(Err(e)) => return Err(bad(format!("corrupt MAT-file: {e}"))),
        Err(_) => return Err(bad("corrupt MAT-file (the MAT reader gave up)".into())),
    };
    let gt = unwrap_struct(&mat["GTcls"]).ok_or_else(|| bad("no struct `GTcls`".into()))?;
    let seg = unwrap_struct_field(gt, "Segmentation")
        .ok_or_else(|| bad("`GTcls` has no field `Segmentation`".into()))?;
    let MatVariable::NumericArray(_) = seg else {
        return Err(bad("`GTcls.Segmentation` is not a numeric array".into()));
    };
    let dim = seg.dim();
    if dim.len() != 2 {
        return Err(bad(format!(
            "`GTcls.Segmentation` has dimensions {dim:?}, expected H×W"
        )));
    }
    let (h, w) = (dim[0], dim[1]);
    let data: Vec<u8> = seg
        .to_vec::<u8>()
        .or_else(|| {
            seg.to_vec::<f64>()
                .map(|v| v.into_iter().map(|x| x as u8).collect())
        })
        .ok_or_else(|| bad("`GTcls.Segmentation` is neither uint8 nor double".into()))?;
    if data.len() != h * w {
        return Err(bad(format!(
            "`GTcls.Segmentation` has {} values for {h}×{w}",
            data.len()
        )));
    }
    // MATLAB stores column-major: element (y, x) at x * h + y.
    let mut out = vec![0u8; h * w];
    for x in 0..w {
        for y in 0..h {
            out[y * w + x] = data[x * h + y];
        }
    }
    Ok(LabelMap {
        width: w as u32,
        height: h as u32,
        data: out,
    })
}

/// A struct, or the single element of a 1×1 struct array.
fn unwrap_struct(v: &MatVariable) -> Option<&MatVariable> {
    match v {
        MatVariable::Structure(_) => Some(v),
        MatVariable::StructureArray(_) => match &v[0usize] {
            s @ MatVariable::Structure(_) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn unwrap_struct_field<'a>(s: &'a MatVariable, name: &str) -> Option<&'a MatVariable> {
    match &s[name] {
        MatVariable::Null => None,
        v => Some(v),
    }
}
