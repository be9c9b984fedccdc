//! The gradient probes give ∂score/∂A_l: checked against central finite differences, where
//! the perturbation of A_l is made through the probe itself (A_l + P_l).

use candle_core::{DType, Device, IndexOp, Result, Tensor};
use wsss_core::random::{normal, rng};
use wsss_vit::{init_weights, Config, Strictness, Taps, Vit};

fn tiny_vit(dtype: DType) -> Result<Vit> {
    // Weights 20x timm's init scale make the attention far from uniform.
    let weights = init_weights(&Config::tiny_test(), 7)?
        .into_iter()
        .map(|(k, v)| Ok((k, (v * 20.0)?)))
        .collect::<Result<_>>()?;
    Vit::from_state_dict(
        &Config::tiny_test(),
        weights,
        Strictness::Strict,
        dtype,
        &Device::Cpu,
    )
    .map_err(candle_core::Error::wrap)
}

fn images(shape: (usize, usize, usize, usize), dtype: DType) -> Result<Tensor> {
    normal(shape, 0.0, 1.0, &mut rng(11), &Device::Cpu)?.to_dtype(dtype)
}

fn score(
    vit: &Vit,
    images: &Tensor,
    probes: &wsss_vit::GradientProbes,
    class: usize,
) -> Result<f64> {
    let out = vit.forward_with_probes(images, Taps::default(), probes)?;
    out.logits.unwrap().i((0, class))?.to_scalar::<f64>()
}

#[test]
fn probe_gradients_match_central_differences() -> Result<()> {
    let vit = tiny_vit(DType::F64)?;
    let images = images((1, 3, 24, 32), DType::F64)?;
    let class = 1;
    let out = vit.forward_tapped(&images, Taps::attention_with_probes(0))?;
    let logit = out.logits.as_ref().unwrap().i((0, class))?;
    let grads = out.probes.gradients(&logit.backward()?)?;
    assert_eq!(grads.len(), 2);

    let eps = 1e-5;
    let mut checked = 0;
    for (layer, grad) in &grads {
        let (_, heads, n, _) = grad.dims4()?;
        let analytic = grad.flatten_all()?.to_vec1::<f64>()?;
        let probe = out.probes.probe(*layer).unwrap();
        // A spread of entries: class-token row, patch rows, first and last heads.
        for &(head, row, col) in &[
            (0, 0, 1),
            (heads - 1, 0, n - 1),
            (0, 3, 0),
            (heads - 1, n - 1, 2),
            (1, 5, 5),
        ] {
            let idx = (head * n + row) * n + col;
            let mut bump = vec![0f64; heads * n * n];
            bump[idx] = eps;
            let plus = Tensor::from_vec(bump.clone(), (1, heads, n, n), &Device::Cpu)?;
            probe.set(&plus)?;
            let f_plus = score(&vit, &images, &out.probes, class)?;
            probe.set(&plus.neg()?)?;
            let f_minus = score(&vit, &images, &out.probes, class)?;
            probe.set(&plus.zeros_like()?)?;
            let numeric = (f_plus - f_minus) / (2.0 * eps);
            let want = analytic[idx];
            assert!(
                (numeric - want).abs() <= 1e-6 + 1e-4 * want.abs(),
                "layer {layer} head {head} ({row},{col}): numeric {numeric} vs probe {want}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 10);
    Ok(())
}

#[test]
fn probes_change_no_value_and_skip_layers_below_start() -> Result<()> {
    let vit = tiny_vit(DType::F32)?;
    let images = images((2, 3, 32, 32), DType::F32)?;
    let plain = vit.forward_tapped(&images, Taps::attention())?;
    let probed = vit.forward_tapped(&images, Taps::attention_with_probes(1))?;
    let plain_scale = plain.tokens.abs()?.max_all()?.to_scalar::<f32>()?;
    let diff = (plain.tokens - &probed.tokens)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    // Equal up to the rounding of the fused vs. differentiable LayerNorm after the probe.
    let scale = plain_scale;
    assert!(
        diff <= 1e-6 * scale,
        "probes changed the tokens by {diff} (scale {scale})"
    );
    assert_eq!(probed.probes.layers().collect::<Vec<_>>(), vec![1]);
    let score = probed.logits.unwrap().sum_all()?;
    let grads = score.backward()?;
    // Layer 0 carries no probe: nothing below the first probe is differentiated.
    assert!(grads.get(&probed.attention[0]).is_none());
    let g = probed.probes.gradients(&grads)?;
    assert_eq!(g[0].1.dims(), &[2, 2, 17, 17]);
    assert!(g[0].1.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
    Ok(())
}
