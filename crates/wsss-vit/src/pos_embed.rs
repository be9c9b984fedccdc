//! Resampling the learned position embedding to another token grid.

use candle_core::{Result, Tensor};
use wsss_core::resize::{resize, resize_scale_factor, AlignCorners, ResizeMode};

use crate::{Config, PosEmbedInterp};

/// The position embedding for a `gh × gw` token grid from an `h × w` (pixel) input.
///
/// # Shapes
/// - `pos_embed`: `[1, T + gh0·gw0, D]` (T prefix rows, then the stored grid row-major).
/// - returns `[1, T + gh·gw, D]`; the T prefix rows are never resampled.
///
/// The grid part follows `cfg.pos_embed_interp`: timm's size-based bicubic (untouched when
/// the grid matches) or the DINO `scale_factor = (g + 0.1)/g0` form (untouched only when
/// the patch count matches and `h == w`). Both are bicubic, A = −0.75, `align_corners=False`,
/// no antialias. Cost: O(D·(gh·gh0·gw0 + gh·gw0·gw)) on the device, differentiable.
pub fn resample(
    cfg: &Config,
    pos_embed: &Tensor,
    (gh, gw): (usize, usize),
    (h, w): (usize, usize),
) -> Result<Tensor> {
    let t = cfg.class_tokens;
    let (gh0, gw0) = cfg.stored_grid();
    let unchanged = match cfg.pos_embed_interp {
        PosEmbedInterp::Size => (gh, gw) == (gh0, gw0),
        PosEmbedInterp::DinoScaleFactor => gh * gw == gh0 * gw0 && h == w,
    };
    if unchanged {
        return Ok(pos_embed.clone());
    }
    let dim = pos_embed.dim(2)?;
    let prefix = pos_embed.narrow(1, 0, t)?;
    let grid = pos_embed
        .narrow(1, t, gh0 * gw0)?
        .reshape((1, gh0, gw0, dim))?
        .permute((0, 3, 1, 2))?;
    let grid = match cfg.pos_embed_interp {
        PosEmbedInterp::Size => resize(&grid, (gh, gw), ResizeMode::Bicubic, AlignCorners::No)?,
        PosEmbedInterp::DinoScaleFactor => {
            let scale = (
                (gh as f64 + 0.1) / gh0 as f64,
                (gw as f64 + 0.1) / gw0 as f64,
            );
            resize_scale_factor(&grid, scale, ResizeMode::Bicubic)?
        }
    };
    let (_, _, rh, rw) = grid.dims4()?;
    if (rh, rw) != (gh, gw) {
        candle_core::bail!("position grid resampled to {rh}x{rw}, expected {gh}x{gw}");
    }
    let grid = grid.permute((0, 2, 3, 1))?.reshape((1, gh * gw, dim))?;
    Tensor::cat(&[&prefix, &grid], 1)
}
