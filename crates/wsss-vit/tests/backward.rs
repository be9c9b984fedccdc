//! The hand-written activation-only backward (`Vit::class_row_attention_gradients`):
//! checked against central finite differences (the attention perturbed through the
//! gradient probes) and against candle's autograd through the probes, for class-token
//! pooling, average pooling and multiple class tokens.

use candle_core::{DType, Device, IndexOp, Result, Tensor};
use wsss_core::random::{normal, rng};
use wsss_vit::{init_weights, Config, GlobalPool, Strictness, Taps, Vit};

fn vit(cfg: &Config, dtype: DType) -> Result<Vit> {
    // Weights 20x timm's init scale make the attention far from uniform.
    let weights = init_weights(cfg, 7)?
        .into_iter()
        .map(|(k, v)| Ok((k, (v * 20.0)?)))
        .collect::<Result<_>>()?;
    Vit::from_state_dict(cfg, weights, Strictness::Strict, dtype, &Device::Cpu)
        .map_err(candle_core::Error::wrap)
}

fn deeper(pool: GlobalPool, class_tokens: usize) -> Config {
    let mut cfg = Config::tiny_test();
    cfg.depth = 3;
    cfg.global_pool = pool;
    cfg.class_tokens = class_tokens;
    cfg
}

fn images(shape: (usize, usize, usize, usize), dtype: DType) -> Result<Tensor> {
    normal(shape, 0.0, 1.0, &mut rng(11), &Device::Cpu)?.to_dtype(dtype)
}

fn cotangents(k: usize, c: usize, dtype: DType) -> Result<Tensor> {
    normal((k, c), 0.0, 1.0, &mut rng(5), &Device::Cpu)?.to_dtype(dtype)
}

/// `g·y` with the probes' current values added to the attention.
fn score(vit: &Vit, images: &Tensor, probes: &wsss_vit::GradientProbes, g: &Tensor) -> Result<f64> {
    let out = vit.forward_with_probes(images, Taps::default(), probes)?;
    (out.logits.unwrap().squeeze(0)? * g)?
        .sum_all()?
        .to_scalar::<f64>()
}

#[test]
fn class_rows_match_central_differences() -> Result<()> {
    let vit = vit(&Config::tiny_test(), DType::F64)?;
    let images = images((1, 3, 24, 32), DType::F64)?;
    let g = cotangents(2, 3, DType::F64)?;
    let out = vit.class_row_attention_gradients(&images, &g, 0)?;
    assert_eq!(out.layers, vec![0, 1]);
    let probed = vit.forward_tapped(&images, Taps::attention_with_probes(0))?;
    let eps = 1e-5;
    let mut checked = 0;
    for (i, layer) in out.layers.iter().enumerate() {
        let (kk, heads, _, n) = out.gradients[i].dims4()?;
        let probe = probed.probes.probe(*layer).unwrap();
        for k in 0..kk {
            let analytic = out.gradients[i].i(k)?.flatten_all()?.to_vec1::<f64>()?;
            for &(head, col) in &[(0, 0), (0, 1), (heads - 1, n - 1), (1, 5)] {
                let mut bump = vec![0f64; heads * n * n];
                bump[head * n * n + col] = eps; // row 0 of head `head`
                let plus = Tensor::from_vec(bump, (1, heads, n, n), &Device::Cpu)?;
                probe.set(&plus)?;
                let f_plus = score(&vit, &images, &probed.probes, &g.i(k)?)?;
                probe.set(&plus.neg()?)?;
                let f_minus = score(&vit, &images, &probed.probes, &g.i(k)?)?;
                probe.set(&plus.zeros_like()?)?;
                let numeric = (f_plus - f_minus) / (2.0 * eps);
                let want = analytic[head * n + col];
                assert!(
                    (numeric - want).abs() <= 1e-6 + 1e-4 * want.abs(),
                    "layer {layer} cotangent {k} head {head} col {col}: numeric {numeric} vs {want}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 16);
    Ok(())
}

/// The autograd probes, one backward per cotangent: the oracle.
fn autograd_rows(
    vit: &Vit,
    images: &Tensor,
    g: &Tensor,
    from: usize,
    t: usize,
) -> Result<Vec<Tensor>> {
    let out = vit.forward_tapped(images, Taps::attention_with_probes(from))?;
    let logits = out.logits.unwrap();
    let mut per_layer: Vec<Vec<Tensor>> = vec![Vec::new(); vit.config().depth - from];
    for k in 0..g.dim(0)? {
        let score = (logits.squeeze(0)? * g.i(k)?)?.sum_all()?;
        for (i, (_, grad)) in out
            .probes
            .gradients(&score.backward()?)?
            .into_iter()
            .enumerate()
        {
            per_layer[i].push(grad.squeeze(0)?.narrow(1, 0, t)?);
        }
    }
    per_layer
        .iter()
        .map(|rows| Tensor::stack(rows, 0))
        .collect()
}

#[test]
fn hand_written_backward_equals_autograd() -> Result<()> {
    let cases = [
        (GlobalPool::Token, 1, 0),
        (GlobalPool::Token, 1, 2),
        (GlobalPool::Avg, 1, 1),
        (GlobalPool::Token, 3, 0),
    ];
    for (pool, t, from) in cases {
        let cfg = deeper(pool, t);
        let vit = vit(&cfg, DType::F32)?;
        let images = images((1, 3, 24, 40), DType::F32)?;
        let g = cotangents(3, cfg.num_classes, DType::F32)?;
        let ours = vit.class_row_attention_gradients(&images, &g, from)?;
        let oracle = autograd_rows(&vit, &images, &g, from, t)?;
        assert_eq!(ours.gradients.len(), oracle.len());
        let logits = vit.forward(&images)?;
        let diff = (&ours.logits - &logits)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-4, "logits differ by {diff}");
        // (With average pooling the last block's class-token row has a zero gradient.)
        let mut scale = 0f32;
        for b in &oracle {
            scale = scale.max(b.abs()?.max_all()?.to_scalar::<f32>()?);
        }
        assert!(scale > 0.0, "degenerate case: zero gradients");
        for (i, (a, b)) in ours.gradients.iter().zip(&oracle).enumerate() {
            assert_eq!(a.dims(), b.dims());
            let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(
                diff <= 1e-5 * scale.max(1.0),
                "{pool:?} T {t} from {from} layer {}: differs by {diff} (scale {scale})",
                from + i
            );
        }
        let full = vit.forward_tapped(&images, Taps::attention())?;
        let rows = full.attention[from].narrow(2, 0, t)?;
        let diff = (&ours.attention[0] - rows)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "attention rows differ by {diff}");
    }
    Ok(())
}

#[test]
fn bad_requests_are_errors() -> Result<()> {
    let vit = vit(&Config::tiny_test(), DType::F32)?;
    let one = images((1, 3, 16, 16), DType::F32)?;
    let two = images((2, 3, 16, 16), DType::F32)?;
    let g = cotangents(2, 3, DType::F32)?;
    assert!(vit.class_row_attention_gradients(&two, &g, 0).is_err());
    assert!(vit.class_row_attention_gradients(&one, &g, 2).is_err());
    let wrong = cotangents(2, 4, DType::F32)?;
    assert!(vit.class_row_attention_gradients(&one, &wrong, 0).is_err());
    assert!(wsss_vit::one_hot(&[0, 3], 3, DType::F32, &Device::Cpu).is_err());
    Ok(())
}
