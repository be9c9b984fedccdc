//! Shapes, key names, finite-difference gradients and error cases of the heads.

use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use wsss_seg::{
    trainable, upsample, Decoder, DecoderConfig, FeatureHead, FeatureHeadConfig, HeadDims,
    LinearDecoderConfig, MaskTransformerConfig, MlpFusionConfig,
};
use wsss_vit::{init_weights, Config, Strictness, Taps, Vit, VitOutput};

const DIMS: HeadDims = HeadDims {
    encoder_dim: 32,
    num_classes: 4,
};

fn vit(dtype: DType) -> Result<(Config, Vit)> {
    let cfg = Config::tiny_test();
    let vit = Vit::from_state_dict(
        &cfg,
        init_weights(&cfg, 3)?,
        Strictness::Strict,
        dtype,
        &Device::Cpu,
    )
    .map_err(candle_core::Error::wrap)?;
    Ok((cfg, vit))
}

fn images(dtype: DType) -> Result<Tensor> {
    let v: Vec<f32> = (0..2 * 3 * 16 * 24)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    Tensor::from_vec(v, (2, 3, 16, 24), &Device::Cpu)?.to_dtype(dtype)
}

/// Central differences of `f` against `backward` for a few entries of every variable.
fn fd_check(vars: &[(String, Var)], f: impl Fn() -> Result<Tensor>) -> Result<f64> {
    let loss = f()?;
    let grads = loss.backward()?;
    let mut worst = 0f64;
    for (name, var) in vars {
        let Some(g) = grads.get(var.as_tensor()) else {
            candle_core::bail!("no gradient for {name}");
        };
        let g = g.flatten_all()?.to_vec1::<f64>()?;
        let base = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
        let n = base.len();
        for idx in [0, n / 3, n - 1] {
            let eps = 1e-5;
            let set = |delta: f64| -> Result<f64> {
                let mut v = base.clone();
                v[idx] += delta;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu)?)?;
                f()?.to_scalar::<f64>()
            };
            let fd = (set(eps)? - set(-eps)?) / (2.0 * eps);
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu)?)?;
            let err = (fd - g[idx]).abs() / (1.0 + fd.abs());
            assert!(err < 1e-5, "{name}[{idx}]: fd {fd} vs analytic {}", g[idx]);
            worst = worst.max(err);
        }
    }
    Ok(worst)
}

fn weighted_sum(masks: &Tensor) -> Result<Tensor> {
    let n = masks.elem_count();
    let w: Vec<f64> = (0..n).map(|i| ((i * 13 % 17) as f64 - 8.0) / 8.0).collect();
    let w = Tensor::from_vec(w, masks.shape(), &Device::Cpu)?;
    (masks * w)?.sum_all()
}

fn build(cfg: &DecoderConfig, depth: usize) -> Result<(Vec<(String, Var)>, Decoder)> {
    let weights = cfg.init_weights(DIMS, depth, "", 5)?;
    let (vars, vb) = trainable(&weights, DType::F64, &Device::Cpu)?;
    Ok((vars, Decoder::new(cfg, DIMS, depth, vb)?))
}

fn forward(vit: &Vit, cfg: &DecoderConfig) -> Result<VitOutput> {
    vit.forward_tapped(&images(DType::F64)?, cfg.taps())
}

#[test]
fn mask_transformer_keys_are_segmenters() {
    let cfg = MaskTransformerConfig {
        layers: 1,
        ..MaskTransformerConfig::weaktr()
    };
    let keys: BTreeSet<String> = cfg.params(DIMS).into_iter().map(|p| p.key).collect();
    let mut want: BTreeSet<String> = [
        "cls_emb",
        "proj_patch",
        "proj_classes",
        "proj_dec.weight",
        "proj_dec.bias",
        "decoder_norm.weight",
        "decoder_norm.bias",
        "mask_norm.weight",
        "mask_norm.bias",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for k in [
        "norm1",
        "norm2",
        "attn.qkv",
        "attn.proj",
        "mlp.fc1",
        "mlp.fc2",
    ] {
        want.insert(format!("blocks.0.{k}.weight"));
        want.insert(format!("blocks.0.{k}.bias"));
    }
    assert_eq!(keys, want);
    // WeakTr: width = encoder width, heads = width / 64, feed-forward 4·width.
    assert_eq!(cfg.resolved(384), (384, 6, 1536));
    let p = cfg.params(DIMS);
    let mlp = p
        .iter()
        .find(|p| p.key == "blocks.0.mlp.fc1.weight")
        .unwrap();
    assert_eq!(mlp.shape, vec![128, 32]);
}

#[test]
fn mask_transformer_gradients_match_finite_differences() -> Result<()> {
    let (vcfg, vit) = vit(DType::F64)?;
    let cfg = DecoderConfig::MaskTransformer(MaskTransformerConfig {
        dropout: 0.0,
        ..MaskTransformerConfig::weaktr()
    });
    let (vars, dec) = build(&cfg, vcfg.depth)?;
    let out = forward(&vit, &cfg)?;
    let masks = dec.forward(&out, vcfg.class_tokens, None)?;
    assert_eq!(masks.dims(), &[2, 4, 2, 3]);
    // mask_norm (weight 1, bias 0 at init) centres the K logits of every patch.
    let mean = masks.mean(1)?.abs()?.max_all()?.to_scalar::<f64>()?;
    assert!(mean < 1e-9, "{mean}");
    fd_check(&vars, || {
        weighted_sum(&upsample(
            &dec.forward(&out, vcfg.class_tokens, None)?,
            8,
            (16, 24),
        )?)
    })?;
    Ok(())
}

#[test]
fn light_decoders_gradients_match_finite_differences() -> Result<()> {
    let (vcfg, vit) = vit(DType::F64)?;
    for cfg in [
        DecoderConfig::Linear(LinearDecoderConfig {}),
        DecoderConfig::MlpFusion(MlpFusionConfig {
            levels: Some(vec![0, 1]),
            embed_dim: 8,
            dropout: 0.0,
        }),
    ] {
        let (vars, dec) = build(&cfg, vcfg.depth)?;
        let out = forward(&vit, &cfg)?;
        let masks = dec.forward(&out, vcfg.class_tokens, None)?;
        assert_eq!(masks.dims(), &[2, 4, 2, 3]);
        fd_check(&vars, || {
            weighted_sum(&dec.forward(&out, vcfg.class_tokens, None)?)
        })?;
    }
    Ok(())
}

#[test]
fn gradients_reach_the_encoder() -> Result<()> {
    // Through a trainable ViT too: every encoder and decoder variable gets a gradient.
    let vcfg = Config::tiny_test();
    let (evars, evb) = trainable(&init_weights(&vcfg, 1)?, DType::F32, &Device::Cpu)?;
    let vit = Vit::new(&vcfg, evb)?;
    let cfg = DecoderConfig::default();
    let weights = cfg.init_weights(DIMS, vcfg.depth, "", 5)?;
    let (dvars, dvb) = trainable(&weights, DType::F32, &Device::Cpu)?;
    let dec = Decoder::new(&cfg, DIMS, vcfg.depth, dvb)?;
    let out = vit.forward_tapped(&images(DType::F32)?, cfg.taps())?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let masks = dec.forward(&out, vcfg.class_tokens, Some(&mut rng))?;
    let grads = masks.sqr()?.sum_all()?.backward()?;
    for (name, var) in evars.iter().chain(&dvars) {
        if name.starts_with("head.") {
            continue; // the classifier head is not on the path
        }
        assert!(
            grads.get(var.as_tensor()).is_some(),
            "no gradient for {name}"
        );
    }
    Ok(())
}

#[test]
fn dropout_is_seeded_and_off_without_rng() -> Result<()> {
    let (vcfg, vit) = vit(DType::F32)?;
    let cfg = DecoderConfig::default();
    let weights = cfg.init_weights(DIMS, vcfg.depth, "", 5)?;
    let (_, vb) = trainable(&weights, DType::F32, &Device::Cpu)?;
    let dec = Decoder::new(&cfg, DIMS, vcfg.depth, vb)?;
    let out = vit.forward_tapped(&images(DType::F32)?, Taps::default())?;
    let run = |seed: Option<u64>| -> Result<Vec<f32>> {
        let mut rng = seed.map(ChaCha8Rng::seed_from_u64);
        let r = rng.as_mut().map(|r| r as &mut dyn rand::RngCore);
        dec.forward(&out, 1, r)?.flatten_all()?.to_vec1::<f32>()
    };
    assert_eq!(run(Some(1))?, run(Some(1))?);
    assert_ne!(run(Some(1))?, run(Some(2))?);
    assert_eq!(run(None)?, run(None)?);
    assert_ne!(run(None)?, run(Some(1))?);
    Ok(())
}

#[test]
fn feature_head_is_unit_norm_and_differentiable() -> Result<()> {
    let cfg = FeatureHeadConfig {
        hidden_dim: 16,
        feature_dim: 6,
        normalize: true,
    };
    let weights: HashMap<String, Tensor> = wsss_seg::init_params(&cfg.params(32), "", 2)?;
    let (vars, vb) = trainable(&weights, DType::F64, &Device::Cpu)?;
    let head = FeatureHead::new(&cfg, 32, vb)?;
    let (vcfg, vit) = vit(DType::F64)?;
    let out = vit.forward_tapped(&images(DType::F64)?, Taps::default())?;
    let patches = out.patch_tokens(vcfg.class_tokens)?;
    let f = head.forward(&patches, out.grid)?;
    assert_eq!(f.dims(), &[2, 6, 2, 3]);
    let norms = f.sqr()?.sum(1)?.flatten_all()?.to_vec1::<f64>()?;
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-12));
    fd_check(&vars, || weighted_sum(&head.forward(&patches, out.grid)?))?;
    assert!(head.forward(&patches, (3, 3)).is_err());
    Ok(())
}

#[test]
fn upsample_crops_the_padded_grid() -> Result<()> {
    let m = Tensor::arange(0f32, 6.0, &Device::Cpu)?.reshape((1, 1, 2, 3))?;
    let padded = upsample(&m, 4, (8, 12))?;
    let cropped = upsample(&m, 4, (7, 10))?;
    assert_eq!(cropped.dims(), &[1, 1, 7, 10]);
    let want = padded.narrow(2, 0, 7)?.narrow(3, 0, 10)?;
    let diff = (cropped - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert_eq!(diff, 0.0);
    assert_eq!(upsample(&m, 4, (9, 13))?.dims(), &[1, 1, 9, 13]);
    assert!(upsample(&m, 0, (8, 12)).is_err());
    Ok(())
}

#[test]
fn configs_parse_and_bad_ones_are_errors() -> Result<()> {
    let c: DecoderConfig = toml::from_str("kind = \"mlp_fusion\"\nembed_dim = 16").unwrap();
    assert!(matches!(c, DecoderConfig::MlpFusion(ref m) if m.embed_dim == 16));
    let c: DecoderConfig = toml::from_str("kind = \"linear\"").unwrap();
    assert!(matches!(c, DecoderConfig::Linear(_)));
    assert!(toml::from_str::<DecoderConfig>("kind = \"mask_transformer\"\nlayerz = 2").is_err());
    assert!(toml::from_str::<DecoderConfig>("kind = \"deeplab\"").is_err());
    let (vcfg, _) = vit(DType::F32)?;
    let bad = DecoderConfig::MaskTransformer(MaskTransformerConfig {
        heads: Some(5),
        ..MaskTransformerConfig::weaktr()
    });
    let weights = DecoderConfig::default().init_weights(DIMS, vcfg.depth, "", 0)?;
    let (_, vb) = trainable(&weights, DType::F32, &Device::Cpu)?;
    assert!(Decoder::new(&bad, DIMS, vcfg.depth, vb.clone()).is_err());
    let bad = DecoderConfig::MlpFusion(MlpFusionConfig {
        levels: Some(vec![7]),
        ..MlpFusionConfig::default()
    });
    assert!(Decoder::new(&bad, DIMS, vcfg.depth, vb).is_err());
    // Token count and grid disagree.
    let good = DecoderConfig::default();
    let (_, dec) = build(&good, vcfg.depth)?;
    let (_, vit64) = vit(DType::F64)?;
    let mut out = forward(&vit64, &good)?;
    out.grid = (3, 3);
    assert!(dec.forward(&out, 1, None).is_err());
    Ok(())
}
