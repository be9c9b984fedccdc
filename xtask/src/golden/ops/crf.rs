//! `crf.dense_inference`, `crf.dense_labels` (wsss-refine) and `loss.dense_crf`,
//! `loss.gated_crf` (wsss-loss).

use anyhow::{bail, Context, Result};
use candle_core::{Tensor, Var};
use serde::Deserialize;
use wsss_core::permutohedral::FilterKind;
use wsss_loss::dense_crf::{dense_crf_loss as dense_crf_loss_fn, DenseCrfLossConfig};
use wsss_loss::gated_crf::{gated_crf_loss as gated_crf_loss_fn, GatedCrfConfig, GatedCrfKernel};
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

pub fn dense_crf_loss(case: &Case) -> Result<Outputs> {
    let gate: String = case.param("gate")?;
    let filter: String = case.param("filter")?;
    let config = DenseCrfLossConfig {
        weight: case.param("weight")?,
        sigma_rgb: case.param("sigma_rgb")?,
        sigma_xy: case.param("sigma_xy")?,
        scale_factor: case.param("scale_factor")?,
        gate: gate.parse().map_err(anyhow::Error::msg)?,
        filter: filter.parse().map_err(anyhow::Error::msg)?,
    };
    let seg = Var::from_tensor(case.tensor("seg")?)?;
    let seg_label = case.tensors.get("seg_label");
    let out = dense_crf_loss_fn(
        case.tensor("image")?,
        seg.as_tensor(),
        case.tensor("roi")?,
        seg_label,
        &config,
    )?;
    let grads = out.loss.backward()?;
    let grad = grads
        .get(seg.as_tensor())
        .context("no gradient reached seg")?
        .clone();
    Ok([
        ("loss".to_string(), out.loss),
        ("grad_seg".to_string(), grad),
        ("filtered".to_string(), out.filtered),
    ]
    .into())
}

pub fn gated_crf_loss(case: &Case) -> Result<Outputs> {
    let kernels: Vec<serde_json::Map<String, serde_json::Value>> = case.param("kernels")?;
    let radius: usize = case.param("radius")?;
    let mut config = GatedCrfConfig {
        kernels: Vec::new(),
        radius,
    };
    for kernel in kernels {
        let mut k = GatedCrfKernel {
            weight: 1.0,
            sigma_xy: None,
            modalities: Vec::new(),
        };
        for (key, value) in kernel {
            let v = value
                .as_f64()
                .with_context(|| format!("kernel field `{key}` is not a number"))?
                as f32;
            match key.as_str() {
                "weight" => k.weight = v,
                "xy" => k.sigma_xy = Some(v),
                _ => k.modalities.push((key, v)),
            }
        }
        config.kernels.push(k);
    }
    let mut modalities = Vec::new();
    for name in &case.spec.inputs {
        if !matches!(name.as_str(), "prob" | "mask_src" | "mask_dst") {
            modalities.push((name.as_str(), case.tensor(name)?));
        }
    }
    let prob = Var::from_tensor(case.tensor("prob")?)?;
    let loss = gated_crf_loss_fn(
        prob.as_tensor(),
        &modalities,
        case.tensors.get("mask_src"),
        case.tensors.get("mask_dst"),
        &config,
    )?;
    let grads = loss.backward()?;
    let grad = grads
        .get(prob.as_tensor())
        .context("no gradient reached prob")?
        .clone();
    Ok([("loss".to_string(), loss), ("grad_prob".to_string(), grad)].into())
}
