//! `crf.dense_inference`, `crf.dense_labels` (wsss-refine) and `loss.dense_crf`,
//! `loss.gated_crf` (wsss-loss).

use anyhow::{bail, Result};
use candle_core::Tensor;
use serde::Deserialize;
use wsss_core::permutohedral::FilterKind;
use wsss_refine::dense_crf::{
    argmax_labels, dense_crf_labels, dense_crf_softmax, BilateralKernel, DenseCrfConfig,
    GaussianKernel,
};

use super::{Case, Outputs};

#[derive(Deserialize)]
struct GaussianParam {
    sxy: f32,
    compat: f32,
}

#[derive(Deserialize)]
struct BilateralParam {
    sxy: f32,
    srgb: f32,
    compat: f32,
}

/// The CRF config of a case, with the given filter.
fn crf_config(case: &Case, filter: FilterKind) -> Result<DenseCrfConfig> {
    let gaussian: Option<GaussianParam> = case.param_or("gaussian", None)?;
    let bilateral: Option<BilateralParam> = case.param_or("bilateral", None)?;
    Ok(DenseCrfConfig {
        iterations: case.param("n_iters")?,
        gaussian: gaussian.map(|g| GaussianKernel {
            sxy: g.sxy,
            compat: g.compat,
        }),
        bilateral: bilateral.map(|b| BilateralKernel {
            sxy: b.sxy,
            srgb: b.srgb,
            compat: b.compat,
        }),
        filter,
    })
}

/// Runs `infer` with the lattice and with the exact filter; names the four outputs.
fn both_filters(
    case: &Case,
    infer: impl Fn(&DenseCrfConfig) -> candle_core::Result<Tensor>,
) -> Result<Outputs> {
    let mut out = Outputs::new();
    for (filter, suffix) in [
        (FilterKind::Permutohedral, ""),
        (FilterKind::Exact, "_exact"),
    ] {
        let q = infer(&crf_config(case, filter)?)?;
        let (k, h, w) = q.dims3()?;
        let labels = argmax_labels(&q.flatten_all()?.to_vec1::<f32>()?, k)?;
        out.insert(
            format!("label{suffix}"),
            Tensor::from_vec(labels, (h, w), q.device())?,
        );
        out.insert(format!("q{suffix}"), q);
    }
    Ok(out)
}

pub fn dense_inference(case: &Case) -> Result<Outputs> {
    let unary: String = case.param_or("unary", "softmax".to_string())?;
    if unary != "softmax" {
        bail!("crf.dense_inference: unary `{unary}` (expected `softmax`)");
    }
    let clip: f32 = case.param_or("clip", 1e-5)?;
    let (image, prob) = (case.tensor("image")?, case.tensor("prob")?);
    both_filters(case, |cfg| dense_crf_softmax(image, prob, clip, cfg))
}

pub fn dense_labels(case: &Case) -> Result<Outputs> {
    let n_labels: usize = case.param("n_labels")?;
    let gt_prob: f32 = case.param("gt_prob")?;
    let (image, labels) = (case.tensor("image")?, case.tensor("labels")?);
    both_filters(case, |cfg| {
        dense_crf_labels(image, labels, n_labels, gt_prob, cfg)
    })
}
