//! `wsss cam` (split mode) and `wsss refine` end to end on a tiny VOC tree written here,
//! with a seeded tiny ViT: every generator, resumable runs, shards, bad input, and every
//! shipped config under configs/.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device, Tensor};
use wsss::data::image_io::{write_image, RgbImage};
use wsss::data::palette::{read_label_png, write_label_png, LabelFormat, LabelMap};
use wsss::vit::{init_weights, Config};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NAMES: [&str; 3] = ["a", "b", "c"];
/// Foreground labels of each image (dataset label values, 1..=3).
const LABELS: [&[u8]; 3] = [&[1], &[1, 3], &[]];
const H: u32 = 32;
const W: u32 = 40;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

/// A VOC-layout tree: 3 images with blocks of colour, masks, a train list, cls_labels.json.
fn write_tree(root: &Path) -> TestResult {
    for d in ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    for (i, name) in NAMES.iter().enumerate() {
        let labels = LABELS[i];
        let img = RgbImage::from_fn(W, H, |x, y| {
            let v = ((x * 7 + y * 3 + i as u32 * 50) % 255) as u8;
            if x < W / 2 {
                image::Rgb([v, 40, 200 - v / 2])
            } else {
                image::Rgb([20, v, 60])
            }
        });
        write_image(&root.join(format!("JPEGImages/{name}.png")), &img)?;
        let mask = LabelMap {
            width: W,
            height: H,
            data: (0..H * W)
                .map(|p| {
                    let x = p % W;
                    match labels {
                        [] => 0,
                        [l] => *l,
                        _ => labels[(x * labels.len() as u32 / W) as usize],
                    }
                })
                .collect(),
        };
        write_label_png(
            &root.join(format!("SegmentationClass/{name}.png")),
            &mask,
            LabelFormat::Palette,
        )?;
    }
    std::fs::write(
        root.join("ImageSets/Segmentation/train.txt"),
        NAMES.join("\n") + "\n",
    )?;
    let labels: serde_json::Map<String, serde_json::Value> = NAMES
        .iter()
        .zip(LABELS)
        .map(|(n, l)| (n.to_string(), serde_json::json!(l)))
        .collect();
    std::fs::write(
        root.join("cls_labels.json"),
        serde_json::json!({"classes": ["background", "one", "two", "three"], "labels": labels})
            .to_string(),
    )?;
    Ok(())
}

/// The tiny config with C class tokens and no final norm (WeakTr, MCTformer).
fn multi_token() -> Config {
    let mut cfg = Config::tiny_test();
    cfg.class_tokens = cfg.num_classes;
    cfg.final_norm = false;
    cfg
}

/// Seeded weights: for `tiny_test` the timm keys plus `classifier.weight` (classic CAM,
/// GETAM, rollout); for [`multi_token`] the WeakTr/MCTformer heads and AAF.
fn write_weights(path: &Path, cfg: &Config) -> TestResult {
    let mut tensors = init_weights(cfg, 7)?;
    let dev = Device::Cpu;
    let (c, d, l, h, hd) = (
        cfg.num_classes,
        cfg.embed_dim,
        cfg.depth,
        cfg.num_heads,
        cfg.head_dim(),
    );
    let mut extra: HashMap<String, Tensor> = HashMap::new();
    let mut add = |k: &str, shape: &[usize], seed: u64| -> candle_core::Result<()> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (((i as u64 * 2_654_435_761 + seed * 97) % 1000) as f32 / 1000.0 - 0.5) * 0.2)
            .collect();
        extra.insert(k.to_string(), Tensor::from_vec(v, shape, &dev)?);
        Ok(())
    };
    add("classifier.weight", &[c, d], 1)?;
    if cfg.class_tokens > 1 {
        add("head.weight", &[c, d, 3, 3], 2)?;
        add("head.bias", &[c], 3)?;
    }
    add(
        "adaptive_attention_fusion.attn_feat_ffn.0.weight",
        &[hd / 8, hd],
        4,
    )?;
    add(
        "adaptive_attention_fusion.attn_feat_ffn.0.bias",
        &[hd / 8],
        5,
    )?;
    add(
        "adaptive_attention_fusion.attn_feat_ffn.1.weight",
        &[1, hd / 8],
        6,
    )?;
    add("adaptive_attention_fusion.attn_feat_ffn.1.bias", &[1], 7)?;
    add(
        "adaptive_attention_fusion.attn_head_ffn.0.weight",
        &[l * h / 2, l * h],
        8,
    )?;
    add(
        "adaptive_attention_fusion.attn_head_ffn.2.weight",
        &[l * h, l * h / 2],
        9,
    )?;
    tensors.extend(extra);
    candle_core::safetensors::save(&tensors, path)?;
    Ok(())
}

fn wsss(args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::io::Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsss"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One CAM method's TOML on the tiny config.
fn cam_config(method: &str, multiscale: &str) -> String {
    let tokens = if method.contains("weaktr") || method.contains("aream") {
        "class_tokens = 3\nfinal_norm = false\n"
    } else {
        ""
    };
    let aaf = if method.contains("weaktr") {
        "aaf = { reduction = 2, feat_reduction = 8, pool = \"max\" }\n"
    } else {
        ""
    };
    format!(
        "multiscale = \"{multiscale}\"\n[model]\npreset = \"tiny_test\"\n{tokens}\
         [method]\n{method}\n{aaf}"
    )
}

fn read_cam(path: &Path) -> Result<(Vec<usize>, Vec<i64>), Box<dyn std::error::Error>> {
    let t = candle_core::safetensors::load(path, &Device::Cpu)?;
    let scores = &t["scores"];
    let classes = t["classes"].to_vec1::<i64>()?;
    let v = scores.flatten_all()?.to_vec1::<f32>()?;
    assert!(v.iter().all(|x| x.is_finite() && (-1e-6..=1.0).contains(x)));
    assert_eq!(scores.dtype(), DType::F32);
    Ok((scores.dims().to_vec(), classes))
}

#[test]
fn cam_then_refine_then_eval() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("voc");
    write_tree(&root)?;
    let weights = dir.path().join("w.safetensors");
    write_weights(&weights, &Config::tiny_test())?;
    let weights_multi = dir.path().join("w_multi.safetensors");
    write_weights(&weights_multi, &multi_token())?;

    let methods = [
        "kind = \"classic\"",
        "kind = \"getam\"\nstart_layer = 1",
        "kind = \"rollout\"",
        "kind = \"weaktr\"\nmap = \"fine\"",
        "kind = \"weaktr\"\nmap = \"coarse\"",
        "kind = \"weaktr\"\nmap = \"fused\"",
        "kind = \"aream\"",
    ];
    let mut first_cams = None;
    for (m, method) in methods.iter().enumerate() {
        let multiscale = if m == 1 { "weaktr" } else { "single" };
        let cfg = dir.path().join(format!("cam{m}.toml"));
        std::fs::write(&cfg, cam_config(method, multiscale))?;
        let out = dir.path().join(format!("cams{m}"));
        let weights = if m >= 3 { &weights_multi } else { &weights };
        let args: [&dyn AsRef<std::ffi::OsStr>; 11] = [
            &"cam",
            &"--config",
            &cfg,
            &"--weights",
            weights,
            &"--data",
            &root,
            &"--split",
            &"train",
            &"--out",
            &out,
        ];
        let log = ok(&wsss(&args)?);
        assert!(log.contains("3 images"), "{method}: {log}");
        for (i, name) in NAMES.iter().enumerate() {
            let (dims, classes) = read_cam(&out.join(format!("{name}.safetensors")))?;
            let want: Vec<i64> = LABELS[i].iter().map(|&l| l as i64 - 1).collect();
            assert_eq!(classes, want, "{method} {name}");
            assert_eq!(dims, vec![want.len(), H as usize, W as usize]);
        }
        // Resume: nothing to do, files unchanged; a deleted file comes back identical.
        let before = std::fs::read(out.join("b.safetensors"))?;
        let log = ok(&wsss(&args)?);
        assert!(
            log.contains("0 images") && log.contains("3 already done"),
            "{log}"
        );
        std::fs::remove_file(out.join("b.safetensors"))?;
        let log = ok(&wsss(&args)?);
        assert!(
            log.contains("1 images") && log.contains("2 already done"),
            "{log}"
        );
        assert_eq!(std::fs::read(out.join("b.safetensors"))?, before);
        if m == 0 {
            first_cams = Some(out);
        }
    }
    let cams = first_cams.unwrap();

    // Shards split the sorted list: 0/2 gets a and c, 1/2 gets b.
    let cfg0 = dir.path().join("cam0.toml");
    for (shard, want) in [("0/2", vec!["a", "c"]), ("1/2", vec!["b"])] {
        let out = dir.path().join(format!("shard{}", &shard[..1]));
        ok(&wsss(&[
            &"cam",
            &"--config",
            &cfg0,
            &"--weights",
            &weights,
            &"--data",
            &root,
            &"--split",
            &"train",
            &"--out",
            &out,
            &"--shard",
            &shard,
        ])?);
        let mut got: Vec<String> = std::fs::read_dir(&out)?
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .replace(".safetensors", "")
            })
            .collect();
        got.sort();
        assert_eq!(got, want);
    }

    // Every shipped refinement config: labels use only the image's classes, 0 and 255.
    let mut refine_configs: Vec<PathBuf> = std::fs::read_dir(configs_dir().join("refine"))?
        .map(|e| e.unwrap().path())
        .collect();
    refine_configs.sort();
    assert!(refine_configs.len() >= 5);
    for cfg in &refine_configs {
        let out = dir.path().join("labels").join(cfg.file_stem().unwrap());
        let args: [&dyn AsRef<std::ffi::OsStr>; 9] = [
            &"refine",
            &"--config",
            cfg,
            &"--cams",
            &cams,
            &"--data",
            &root,
            &"--out",
            &out,
        ];
        ok(&wsss(&args)?);
        let mut before = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            let map = read_label_png(&out.join(format!("{name}.png")))?;
            assert_eq!((map.width, map.height), (W, H));
            assert!(
                map.data
                    .iter()
                    .all(|&l| l == 0 || l == 255 || LABELS[i].contains(&l)),
                "{}: {name} has labels outside its classes",
                cfg.display()
            );
            before.push(std::fs::read(out.join(format!("{name}.png")))?);
        }
        let log = ok(&wsss(&args)?);
        assert!(log.contains("3 already done"), "{log}");
        for (name, b) in NAMES.iter().zip(&before) {
            assert_eq!(&std::fs::read(out.join(format!("{name}.png")))?, b);
        }
        // The labels score with `wsss eval`.
        let eval = wsss(&[
            &"eval",
            &"--pred",
            &out,
            &"--gt",
            &root.join("SegmentationClass"),
        ])?;
        ok(&eval);
        assert!(String::from_utf8_lossy(&eval.stdout).contains("mIoU"));
    }
    Ok(())
}

#[test]
fn bad_input_names_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("voc");
    write_tree(&root)?;
    let cams = dir.path().join("cams");
    std::fs::create_dir_all(&cams)?;
    let cfg = configs_dir().join("refine/threshold_toco.toml");
    let save = |name: &str, h: usize| -> candle_core::Result<()> {
        let scores = Tensor::zeros((1, h, W as usize), DType::F32, &Device::Cpu)?;
        let classes = Tensor::new(&[0i64], &Device::Cpu)?;
        candle_core::safetensors::save(
            &[("scores", scores), ("classes", classes)]
                .into_iter()
                .collect(),
            cams.join(format!("{name}.safetensors")),
        )
    };
    save("a", H as usize)?;
    save("b", H as usize - 2)?;
    // b's maps are smaller than its image.
    let out = dir.path().join("out");
    let err = failed(&wsss(&[
        &"refine",
        &"--config",
        &cfg,
        &"--cams",
        &cams,
        &"--data",
        &root,
        &"--out",
        &out,
    ])?);
    assert!(
        err.contains("b.safetensors") && err.contains("30x40"),
        "{err}"
    );
    // c is in the split but has no CAM file.
    save("b", H as usize)?;
    let err = failed(&wsss(&[
        &"refine",
        &"--config",
        &cfg,
        &"--cams",
        &cams,
        &"--data",
        &root,
        &"--split",
        &"train",
        &"--out",
        &out,
    ])?);
    assert!(
        err.contains("missing CAM file") && err.contains("c.safetensors"),
        "{err}"
    );
    // A config that does not end with labels.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[steps]]\nkind = \"par\"\n")?;
    let err = failed(&wsss(&[
        &"refine",
        &"--config",
        &bad,
        &"--cams",
        &cams,
        &"--data",
        &root,
        &"--out",
        &out,
    ])?);
    assert!(
        err.contains("bad.toml") && err.contains("produces scores"),
        "{err}"
    );
    // A CAM config with an unknown method.
    std::fs::write(
        &bad,
        "[model]\npreset = \"tiny_test\"\n[method]\nkind = \"gradcam\"\n",
    )?;
    let weights = dir.path().join("w.safetensors");
    write_weights(&weights, &Config::tiny_test())?;
    let err = failed(&wsss(&[
        &"cam",
        &"--config",
        &bad,
        &"--weights",
        &weights,
        &"--data",
        &root,
        &"--split",
        &"train",
        &"--out",
        &out,
    ])?);
    assert!(err.contains("bad.toml"), "{err}");
    // A bad shard.
    let err = failed(&wsss(&[
        &"refine",
        &"--config",
        &cfg,
        &"--cams",
        &cams,
        &"--data",
        &root,
        &"--out",
        &out,
        &"--shard",
        &"3/2",
    ])?);
    assert!(err.contains("k/n"), "{err}");
    Ok(())
}

#[test]
fn shipped_cam_configs_parse() -> TestResult {
    let mut n = 0;
    for entry in std::fs::read_dir(configs_dir().join("cam"))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let cfg: wsss::cam::CamConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.backbone()?;
        n += 1;
    }
    assert!(n >= 5);
    Ok(())
}
