//! `metrics.confusion`: confusion matrix and scores over a batch of label maps.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use wsss_metrics::{ConfusionMatrix, IGNORE};

use super::{Case, Outputs};

pub fn confusion(case: &Case) -> Result<Outputs> {
    let num_classes: usize = case.param("num_classes")?;
    let pred_ignore: Option<u8> = case.param_or("pred_ignore_index", None)?;
    let pred = case
        .input(0)?
        .flatten_all()?
        .to_dtype(DType::U8)?
        .to_vec1::<u8>()?;
    let gt = case
        .input(1)?
        .flatten_all()?
        .to_dtype(DType::U8)?
        .to_vec1::<u8>()?;
    match pred_ignore {
        None | Some(IGNORE) => {}
        Some(other) => bail!("pred_ignore_index {other} unsupported (only 255)"),
    }
    let mut m = ConfusionMatrix::new(num_classes);
    m.update(&pred, &gt)?;
    if pred_ignore.is_none() && m.unlabelled().iter().any(|&u| u > 0) {
        bail!("pred has 255 at counted pixels but pred_ignore_index is null");
    }
    let s = m.scores();
    let counts: Vec<i64> = m.counts().iter().map(|&v| v as i64).collect();
    let dev = &Device::Cpu;
    let scalar = |v: f64| Tensor::from_vec(vec![v], 1, dev);
    Ok([
        (
            "confusion".to_string(),
            Tensor::from_vec(counts, (num_classes, num_classes), dev)?,
        ),
        (
            "iou".to_string(),
            Tensor::from_vec(s.iou.clone(), num_classes, dev)?,
        ),
        ("miou".to_string(), scalar(s.miou)?),
        ("pixel_acc".to_string(), scalar(s.pixel_acc)?),
        ("mean_acc".to_string(), scalar(s.mean_acc)?),
    ]
    .into())
}
