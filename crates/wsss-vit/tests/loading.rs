//! Weight loading: PyTorch `.pth` (plain and nested) and `.safetensors` give the same model,
//! which reproduces timm's logits; bad files and inputs give clear errors.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use wsss_vit::{init_weights, read_state_dict, Config, Strictness, Vit, VitError};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn logits(vit: &Vit, image: &Tensor) -> Vec<f32> {
    vit.forward(image)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn pth_nested_pth_and_safetensors_agree_with_timm() -> anyhow::Result<()> {
    let cfg = Config::tiny_test();
    let io = candle_core::safetensors::load(fixture("tiny_vit_io.safetensors"), &Device::Cpu)?;
    let (image, want) = (&io["image"], io["logits"].flatten_all()?.to_vec1::<f32>()?);
    let from_pth = Vit::from_file(
        &cfg,
        fixture("tiny_vit.pth"),
        Strictness::Strict,
        &Device::Cpu,
    )?;
    let from_nested = Vit::from_file(
        &cfg,
        fixture("tiny_vit_nested.pth"),
        Strictness::Strict,
        &Device::Cpu,
    )?;
    let from_st = Vit::from_file(
        &cfg,
        fixture("tiny_vit.safetensors"),
        Strictness::Strict,
        &Device::Cpu,
    )?;
    let (a, b, c) = (
        logits(&from_pth, image),
        logits(&from_nested, image),
        logits(&from_st, image),
    );
    assert_eq!(a, c, "pth and safetensors differ");
    assert_eq!(b, c, "nested pth and safetensors differ");
    for (got, want) in c.iter().zip(&want) {
        assert!((got - want).abs() < 1e-4, "logit {got} vs timm {want}");
    }
    Ok(())
}

#[test]
fn missing_and_misshaped_keys_are_listed() {
    let cfg = Config::tiny_test();
    let mut weights = init_weights(&cfg, 0).unwrap();
    weights.remove("blocks.1.mlp.fc2.bias");
    weights.insert(
        "pos_embed".into(),
        Tensor::zeros((1, 5, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    weights.insert(
        "decoder.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = Vit::from_state_dict(
        &cfg,
        weights.clone(),
        Strictness::Strict,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap_err();
    let VitError::Mismatch(report) = &err else {
        panic!("expected a mismatch, got {err}")
    };
    assert_eq!(report.missing, vec!["blocks.1.mlp.fc2.bias".to_string()]);
    assert_eq!(report.unexpected, vec!["decoder.weight".to_string()]);
    assert_eq!(
        report.wrong_shape,
        vec![("pos_embed".to_string(), vec![1, 5, 32], vec![1, 17, 32])]
    );
    let text = err.to_string();
    assert!(
        text.contains("missing keys (1): blocks.1.mlp.fc2.bias"),
        "{text}"
    );
    assert!(
        text.contains("`pos_embed` is [1, 5, 32] in the file, the config needs [1, 17, 32]"),
        "{text}"
    );
    // Unexpected keys alone are fine when allowed.
    let mut weights = init_weights(&cfg, 0).unwrap();
    weights.insert(
        "decoder.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(Vit::from_state_dict(
        &cfg,
        weights,
        Strictness::AllowUnexpected,
        DType::F32,
        &Device::Cpu
    )
    .is_ok());
}

#[test]
fn truncated_and_unknown_files_name_the_path() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for name in ["tiny_vit.safetensors", "tiny_vit.pth"] {
        let bytes = std::fs::read(fixture(name))?;
        let cut = dir.path().join(name);
        std::fs::write(&cut, &bytes[..bytes.len() / 2])?;
        let err = read_state_dict(&cut).unwrap_err();
        assert!(matches!(err, VitError::Read { .. }), "{name}: {err}");
        assert!(
            err.to_string().contains(&cut.display().to_string()),
            "{err}"
        );
    }
    let odd = dir.path().join("weights.onnx");
    std::fs::write(&odd, b"x")?;
    assert!(matches!(
        read_state_dict(&odd),
        Err(VitError::UnknownFormat { .. })
    ));
    let absent = dir.path().join("absent.pth");
    assert!(matches!(
        read_state_dict(&absent),
        Err(VitError::Read { .. })
    ));
    Ok(())
}

#[test]
fn images_below_one_patch_and_zero_classes_are_errors() -> anyhow::Result<()> {
    let cfg = Config::tiny_test();
    let vit = Vit::from_state_dict(
        &cfg,
        init_weights(&cfg, 0)?,
        Strictness::Strict,
        DType::F32,
        &Device::Cpu,
    )?;
    let small = Tensor::zeros((1, 3, 7, 40), DType::F32, &Device::Cpu)?;
    let err = vit.forward(&small).unwrap_err().to_string();
    assert!(err.contains("smaller than one 8x8 patch"), "{err}");
    let grey = Tensor::zeros((1, 1, 32, 32), DType::F32, &Device::Cpu)?;
    assert!(vit
        .forward(&grey)
        .unwrap_err()
        .to_string()
        .contains("3 channels"));

    let headless = cfg.clone().with_classes(0);
    let vit = Vit::from_state_dict(
        &headless,
        init_weights(&headless, 0)?,
        Strictness::Strict,
        DType::F32,
        &Device::Cpu,
    )?;
    let image = Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu)?;
    let err = vit.forward(&image).unwrap_err().to_string();
    assert!(err.contains("num_classes = 0"), "{err}");
    assert!(vit
        .forward_tapped(&image, Default::default())?
        .logits
        .is_none());

    let mut multi = cfg.with_classes(0);
    multi.class_tokens = 3;
    let err = multi.validate().unwrap_err().to_string();
    assert!(err.contains("num_classes must be 3"), "{err}");
    Ok(())
}
