//! Pairwise affinity targets from label maps and AFA's affinity loss.

use candle_core::{bail, DType, Device, Result, Tensor};

/// Nearest downsampling of `[B, H, W]` labels to the token grid `(gh, gw)`, PyTorch's
/// `F.interpolate(mode="nearest", size=...)`: source row `floor(i · fl32(H/gh))` (the scale
/// and product in f32 as PyTorch computes them; for `H = 16·gh` the top-left pixel of each
/// patch).
///
/// # Shapes
/// - `labels`: `b·h·w` bytes; returns `b·gh·gw` bytes.
///
/// Cost: O(B·gh·gw).
pub fn downsample_nearest(
    labels: &[u8],
    (b, h, w): (usize, usize, usize),
    (gh, gw): (usize, usize),
) -> Result<Vec<u8>> {
    if labels.len() != b * h * w {
        bail!("{} label values for [{b}, {h}, {w}]", labels.len());
    }
    if gh == 0 || gw == 0 || h == 0 || w == 0 {
        bail!("cannot downsample {h}x{w} labels to {gh}x{gw}");
    }
    let source = |i: usize, n: usize, g: usize| {
        let scale = n as f32 / g as f32;
        ((i as f32 * scale).floor() as usize).min(n - 1)
    };
    let mut out = Vec::with_capacity(b * gh * gw);
    for bi in 0..b {
        for i in 0..gh {
            let y = source(i, h, gh);
            for j in 0..gw {
                out.push(labels[(bi * h + y) * w + source(j, w, gw)]);
            }
        }
    }
    Ok(out)
}

/// Pairwise affinity target of a token-grid label (AFA/ToCo/AReAM `seg_to_aff`):
/// `T[b, i, j] = 1` if `l_i == l_j` else 0, and `ignore_index` on every row and column of
/// an ignored token. The diagonal is kept (AFA/AReAM; ToCo also ignores it).
///
/// # Shapes
/// - `label`: `[B, gh, gw]` u8 (0 background, classes, `ignore_index`), or `[B, H, W]`
///   pixels when `downsample_to = Some((gh, gw))` (see [`downsample_nearest`]).
/// - returns `[B, P, P]` u8 with P = gh·gw (row-major tokens), values 0, 1, `ignore_index`.
///
/// Cost: O(B·P²) time and memory.
pub fn affinity_target(
    label: &Tensor,
    downsample_to: Option<(usize, usize)>,
    ignore_index: u8,
) -> Result<Tensor> {
    let Ok((b, h, w)) = label.dims3() else {
        bail!(
            "affinity target needs [B, H, W] labels, got {:?}",
            label.dims()
        )
    };
    let values = label
        .to_device(&Device::Cpu)?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    let (values, (gh, gw)) = match downsample_to {
        Some(grid) => (downsample_nearest(&values, (b, h, w), grid)?, grid),
        None => (values, (h, w)),
    };
    let p = gh * gw;
    let mut target = vec![0u8; b * p * p];
    for bi in 0..b {
        let l = &values[bi * p..(bi + 1) * p];
        let t = &mut target[bi * p * p..(bi + 1) * p * p];
        for i in 0..p {
            for j in 0..p {
                t[i * p + j] = if l[i] == ignore_index || l[j] == ignore_index {
                    ignore_index
                } else {
                    u8::from(l[i] == l[j])
                };
            }
        }
    }
    Tensor::from_vec(target, (b, p, p), &Device::Cpu)?.to_device(label.device())
}

/// AFA's affinity loss (Ru et al., arXiv 2203.02664, Eq. 6; `get_aff_loss`), also AReAM's
/// per-layer loss:
/// `0.5 · Σ_{T=1} (1 − S) / n⁺ + 0.5 · Σ_{T=0} S / n⁻`, with `n⁺ = #{T = 1} + 1` and
/// `n⁻ = #{T = 0} + 1` counted over the whole batch; other target values are ignored.
///
/// # Shapes
/// - `predicted`: `[..]` float affinities in [0, 1] (e.g. sigmoid of attention logits).
/// - `target`: same shape, u8 with 0, 1 and an ignore value.
/// - returns a scalar tensor.
///
/// Cost: O(numel).
pub fn affinity_loss(predicted: &Tensor, target: &Tensor) -> Result<Tensor> {
    if predicted.dims() != target.dims() {
        bail!(
            "affinity prediction {:?} and target {:?} differ in shape",
            predicted.dims(),
            target.dims()
        );
    }
    let target = target.to_dtype(DType::U8)?;
    let positive = target.eq(1u8)?.to_dtype(predicted.dtype())?;
    let negative = target.eq(0u8)?.to_dtype(predicted.dtype())?;
    let n_pos = positive
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?
        + 1.0;
    let n_neg = negative
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?
        + 1.0;
    let pos_loss = ((positive.clone() - (&positive * predicted)?)?.sum_all()? / n_pos)?;
    let neg_loss = ((&negative * predicted)?.sum_all()? / n_neg)?;
    (pos_loss + neg_loss)? * 0.5
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finite_difference::{check, values};

    #[test]
    fn target_of_a_tiny_grid() -> Result<()> {
        let label = Tensor::new(&[[[1u8, 1], [0, 255]]], &Device::Cpu)?;
        let t = affinity_target(&label, None, 255)?;
        let want = [
            [1u8, 1, 0, 255],
            [1, 1, 0, 255],
            [0, 0, 1, 255],
            [255, 255, 255, 255],
        ];
        assert_eq!(
            t.squeeze(0)?.to_vec2::<u8>()?,
            want.map(|r| r.to_vec()).to_vec()
        );
        Ok(())
    }

    #[test]
    fn downsampling_takes_the_top_left_pixel_and_pytorch_rounding() -> Result<()> {
        let labels: Vec<u8> = (0..16).collect();
        assert_eq!(
            downsample_nearest(&labels, (1, 4, 4), (2, 2))?,
            vec![0, 2, 8, 10]
        );
        // F.interpolate(arange(100), size=6, mode="nearest") gives 0 16 33 50 66 83 with
        // PyTorch 2.x on the CPU: fl32(100/6)·3 rounds to 50.0 in f32.
        let row: Vec<u8> = (0..100).collect();
        assert_eq!(
            downsample_nearest(&row, (1, 1, 100), (1, 6))?,
            vec![0, 16, 33, 50, 66, 83]
        );
        assert!(downsample_nearest(&labels, (1, 4, 4), (0, 2)).is_err());
        Ok(())
    }

    #[test]
    fn loss_gradient_matches_finite_differences() -> Result<()> {
        let target = Tensor::new(&[[1u8, 0, 255], [0, 1, 1]], &Device::Cpu)?;
        let x = values(6, 11, (0.0, 1.0));
        let worst = check(&x, &[2, 3], |s| affinity_loss(s, &target))?;
        assert!(worst < 1e-7, "{worst}");
        // Value: n+ = 4, n- = 3.
        let s = Tensor::from_vec(x.clone(), (2, 3), &Device::Cpu)?;
        let got = affinity_loss(&s, &target)?.to_scalar::<f64>()?;
        let want =
            0.5 * ((1.0 - x[0]) + (1.0 - x[4]) + (1.0 - x[5])) / 4.0 + 0.5 * (x[1] + x[3]) / 3.0;
        assert!((got - want).abs() < 1e-12);
        Ok(())
    }
}
