//! File formats, the VOC loader's error reporting, transforms, batcher and scenes.

use rand::SeedableRng;
use wsss_data::palette::{read_label_png, write_label_png, LabelFormat, LabelMap};
use wsss_data::scenes::{generate, ScenesConfig};
use wsss_data::transform::{augment, AugmentConfig};
use wsss_data::{batch::collate, DataError, VocDataset};

type R = Result<(), Box<dyn std::error::Error>>;

fn tiny_voc(root: &std::path::Path, mask: &LabelMap) -> R {
    for d in ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    let img = image::RgbImage::from_pixel(4, 3, image::Rgb([10, 20, 30]));
    wsss_data::image_io::write_image(&root.join("JPEGImages/a.png"), &img)?;
    write_label_png(
        &root.join("SegmentationClass/a.png"),
        mask,
        LabelFormat::Palette,
    )?;
    std::fs::write(root.join("ImageSets/Segmentation/train.txt"), "a\n")?;
    Ok(())
}

#[test]
fn grey_round_trip_and_loader() -> R {
    let dir = tempfile::tempdir()?;
    let map = LabelMap {
        width: 4,
        height: 3,
        data: vec![0, 1, 2, 255, 20, 0, 0, 0, 1, 1, 1, 1],
    };
    let p = dir.path().join("g.png");
    write_label_png(&p, &map, LabelFormat::Grey)?;
    assert_eq!(read_label_png(&p)?, map);
    tiny_voc(dir.path(), &map)?;
    let ds = VocDataset::open(dir.path(), "train")?;
    let s = ds.load(0)?;
    assert_eq!(s.classes.labels(), &[1, 2, 20]);
    assert_eq!(s.mask.as_ref().unwrap(), &map);
    Ok(())
}

#[test]
fn corrupt_png_names_the_file() -> R {
    let dir = tempfile::tempdir()?;
    let p = dir.path().join("bad.png");
    std::fs::write(&p, b"\x89PNG\r\n\x1a\nnot really")?;
    let err = read_label_png(&p).unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }));
    assert!(err.to_string().contains("bad.png"), "{err}");
    Ok(())
}

#[test]
fn mask_size_mismatch_names_the_file() -> R {
    let dir = tempfile::tempdir()?;
    tiny_voc(dir.path(), &LabelMap::filled(5, 3, 0))?;
    let err = VocDataset::open(dir.path(), "train")?.load(0).unwrap_err();
    assert!(matches!(err, DataError::SizeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("SegmentationClass/a.png"), "{err}");
    Ok(())
}

#[test]
fn class_out_of_range_names_the_file() -> R {
    let dir = tempfile::tempdir()?;
    tiny_voc(dir.path(), &LabelMap::filled(4, 3, 77))?;
    let err = VocDataset::open(dir.path(), "train")?.load(0).unwrap_err();
    assert!(
        matches!(err, DataError::ClassOutOfRange { value: 77, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("a.png"), "{err}");
    Ok(())
}

#[test]
fn missing_list_names_the_file() -> R {
    let dir = tempfile::tempdir()?;
    let err = VocDataset::open(dir.path(), "val").unwrap_err();
    assert!(matches!(err, DataError::MissingList { .. }));
    assert!(
        err.to_string().contains("ImageSets/Segmentation/val.txt"),
        "{err}"
    );
    Ok(())
}

#[test]
fn scenes_open_in_the_voc_loader_and_batch() -> R {
    let dir = tempfile::tempdir()?;
    let cfg = ScenesConfig {
        train: 6,
        val: 2,
        size: 32,
        seed: 3,
        ..ScenesConfig::default()
    };
    let stats = generate(&cfg, dir.path())?;
    assert_eq!(stats.splits["train"].images, 6);
    let ds = VocDataset::open(dir.path(), "train")?;
    assert_eq!(ds.len(), 6);
    assert_eq!(ds.num_classes(), 11);
    let s = ds.load(0)?;
    assert!(!s.classes.is_empty());
    assert!(s.scribble.is_some());
    // Deterministic: same seed, same bytes.
    let dir2 = tempfile::tempdir()?;
    generate(&cfg, dir2.path())?;
    let a = std::fs::read(dir.path().join("SegmentationClass/train_000003.png"))?;
    let b = std::fs::read(dir2.path().join("SegmentationClass/train_000003.png"))?;
    assert_eq!(a, b);
    // Augment + collate.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let cfg = AugmentConfig::toco(48);
    let samples: Vec<_> = (0..2)
        .map(|i| ds.load(i).map(|s| augment(&s, &cfg, &mut rng)))
        .collect::<Result<_, _>>()?;
    let batch = collate(&samples, 11, &candle_core::Device::Cpu)?;
    assert_eq!(batch.images.dims(), &[2, 3, 48, 48]);
    assert_eq!(batch.masks.dims(), &[2, 48, 48]);
    assert_eq!(batch.labels.dims(), &[2, 10]);
    Ok(())
}

#[test]
fn scenes_scribbles_are_sparse_correct_and_cover_every_object() -> R {
    let cfg = ScenesConfig::default();
    let (mut scribbled, mut total) = (0usize, 0usize);
    for i in 0..40 {
        let s = wsss_data::scenes::scene(&cfg, i % 2 == 1, i)?;
        let present = wsss_data::ClassSet::from_mask(&s.mask.data);
        for &l in present.labels() {
            assert!(
                s.scribble.data.contains(&l),
                "scene {i}: class {l} visible but not scribbled"
            );
        }
        for (k, (&sc, &m)) in s.scribble.data.iter().zip(&s.mask.data).enumerate() {
            assert!(
                sc == 255 || sc == m,
                "scene {i} pixel {k}: scribble {sc}, mask {m}"
            );
        }
        scribbled += s.scribble.data.iter().filter(|&&v| v != 255).count();
        total += s.scribble.data.len();
    }
    let fraction = scribbled as f64 / total as f64;
    assert!(
        (0.015..0.05).contains(&fraction),
        "scribble fraction {fraction}"
    );
    Ok(())
}
