//! The gradient probes give ∂score/∂A_l: checked against central finite differences, where
//! the perturbation of A_l is made through the probe itself (A_l + P_l).

use candle_core::{DType, Device, IndexOp, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use wsss_vit::{Config, Taps, Vit};

fn tiny_vit(dtype: DType) -> Result<Vit> {
    Device::Cpu.set_seed(7)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu);
    let vit = Vit::new(&Config::tiny_test(), vb)?;
    // Larger weights than the default init make attention far from uniform.
    for var in varmap.all_vars() {
        let scaled = (var.as_tensor() * 3.0)?;
        var.set(&scaled)?;
    }
    Ok(vit)
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
    let images = Tensor::randn(0f64, 1.0, (1, 3, 24, 32), &Device::Cpu)?;
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
    let images = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu)?;
    let plain = vit.forward_tapped(&images, Taps::attention())?;
    let probed = vit.forward_tapped(&images, Taps::attention_with_probes(1))?;
    let diff = (plain.tokens - &probed.tokens)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    assert_eq!(diff, 0.0);
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
