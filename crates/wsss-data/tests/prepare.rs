//! `prepare` converters on the committed fixtures (`tests/fixtures/`, written by
//! `make_fixtures.py`; the COCO reference masks come from pycocotools).

use std::path::{Path, PathBuf};

use wsss_data::palette::{read_label_png, write_label_png, LabelFormat, LabelMap};
use wsss_data::prepare::coco::{prepare_coco, CocoConfig, CocoLayout};
use wsss_data::prepare::sbd::read_sbd_cls;
use wsss_data::prepare::scribble::{prepare_scribble, read_scribble_xml};
use wsss_data::prepare::voc::prepare_voc;
use wsss_data::voc::{read_list, ImageLabels};
use wsss_data::{DataError, VocDataset};

type R = Result<(), Box<dyn std::error::Error>>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copies a fixture tree into a temporary folder (the tests write into it).
fn copy_fixture(name: &str) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    copy_dir(&fixture(name), dir.path())?;
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

#[test]
fn sbd_mat_reads_row_major() -> R {
    let m = read_sbd_cls(&fixture(
        "voc/benchmark_RELEASE/dataset/cls/2008_000002.mat",
    ))?;
    assert_eq!((m.width, m.height), (11, 7));
    assert_eq!(m.get(10, 0), 3);
    assert_eq!(m.get(2, 1), 12);
    assert_eq!(m.get(8, 3), 12);
    assert_eq!(m.get(9, 3), 0);
    assert_eq!(m.get(0, 6), 20);
    assert_eq!(m.data.iter().filter(|&&v| v == 12).count(), 21);
    Ok(())
}

#[test]
fn corrupt_mat_names_the_file() -> R {
    let dir = tempfile::tempdir()?;
    let p = dir.path().join("x.mat");
    let mut bytes = std::fs::read(fixture("voc/benchmark_RELEASE/dataset/cls/2008_000002.mat"))?;
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&p, &bytes)?;
    let err = read_sbd_cls(&p).unwrap_err();
    assert!(err.to_string().contains("x.mat"), "{err}");
    std::fs::write(&p, b"not a mat file")?;
    let err = read_sbd_cls(&p).unwrap_err();
    assert!(err.to_string().contains("x.mat"), "{err}");
    Ok(())
}

#[test]
fn voc_prepare_builds_aug_lists_and_labels() -> R {
    let dir = copy_fixture("voc")?;
    let s = prepare_voc(
        &dir.path().join("VOCdevkit"),
        Some(&dir.path().join("benchmark_RELEASE")),
    )?;
    // SBD train {2008_000002, 2007_000033} ∪ SBD val {2007_000032} ∪ VOC train
    // {2007_000032} − VOC val {2007_000033}.
    let voc = dir.path().join("VOCdevkit/VOC2012");
    let aug = read_list(&voc.join("ImageSets/Segmentation/train_aug.txt"))?;
    assert_eq!(aug, vec!["2007_000032", "2008_000002"]);
    assert_eq!((s.train_aug, s.train, s.val), (2, 1, 1));
    assert_eq!((s.kept, s.from_voc, s.from_sbd), (0, 2, 1));
    // VOC's own mask wins over the SBD file of the same image.
    let m = read_label_png(&voc.join("SegmentationClassAug/2007_000032.png"))?;
    assert_eq!(m.get(0, 1), 255);
    assert_eq!(m.get(3, 2), 1);
    let m = read_label_png(&voc.join("SegmentationClassAug/2008_000002.png"))?;
    assert_eq!(m.get(10, 0), 3);
    let labels = ImageLabels::read(&voc.join("cls_labels.json"))?;
    assert_eq!(labels.labels["2008_000002"].labels(), &[3, 12, 20]);
    assert_eq!(labels.labels["2007_000033"].labels(), &[7, 15]);
    let ds = VocDataset::open(&voc, "train_aug")?;
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.load(1)?.classes.labels(), &[3, 12, 20]);
    // A rerun keeps what is there.
    let s = prepare_voc(&voc, Some(&dir.path().join("benchmark_RELEASE/dataset")))?;
    assert_eq!((s.kept, s.from_voc, s.from_sbd), (3, 0, 0));
    Ok(())
}

#[test]
fn voc_prepare_reports_missing_and_corrupt_files_by_name() -> R {
    let dir = copy_fixture("voc")?;
    let voc = dir.path().join("VOCdevkit/VOC2012");
    std::fs::remove_file(voc.join("JPEGImages/2008_000002.jpg"))?;
    std::fs::write(
        voc.join("SegmentationClass/2007_000033.png"),
        b"\x89PNG\r\n\x1a\nbroken",
    )?;
    let err = prepare_voc(&voc, Some(&dir.path().join("benchmark_RELEASE"))).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DataError::Layout { .. }), "{text}");
    assert!(text.contains("JPEGImages/2008_000002.jpg"), "{text}");
    assert!(text.contains("SegmentationClass/2007_000033.png"), "{text}");
    // Nothing is half-written: no list, no labels.
    assert!(!voc.join("ImageSets/Segmentation/train_aug.txt").exists());
    assert!(!voc.join("cls_labels.json").exists());
    Ok(())
}

#[test]
fn voc_prepare_mask_size_and_class_checked() -> R {
    let dir = copy_fixture("voc")?;
    let voc = dir.path().join("VOCdevkit/VOC2012");
    write_label_png(
        &voc.join("SegmentationClass/2007_000032.png"),
        &LabelMap::filled(5, 5, 0),
        LabelFormat::Palette,
    )?;
    write_label_png(
        &voc.join("SegmentationClass/2007_000033.png"),
        &LabelMap::filled(10, 9, 42),
        LabelFormat::Palette,
    )?;
    let text = prepare_voc(&voc, None).unwrap_err().to_string();
    assert!(text.contains("2007_000032.png: label map is 5x5"), "{text}");
    assert!(text.contains("2007_000033.png: class index 42"), "{text}");
    Ok(())
}

#[test]
fn voc_prepare_missing_list_names_it() -> R {
    let dir = copy_fixture("voc")?;
    let voc = dir.path().join("VOCdevkit/VOC2012");
    std::fs::remove_file(voc.join("ImageSets/Segmentation/val.txt"))?;
    let err = prepare_voc(&voc, None).unwrap_err();
    assert!(matches!(err, DataError::MissingList { .. }), "{err}");
    assert!(err.to_string().contains("val.txt"), "{err}");
    let err = prepare_voc(&dir.path().join("nowhere"), None).unwrap_err();
    assert!(err.to_string().contains("JPEGImages"), "{err}");
    Ok(())
}

fn check_coco(layout: CocoLayout, dir_name: &str, buckets: usize) -> R {
    let dir = copy_fixture("coco")?;
    let s = prepare_coco(dir.path(), &CocoConfig { layout, buckets })?;
    assert_eq!(s.splits["train"], (2, 5, 1));
    assert_eq!(s.splits["val"], (1, 1, 0));
    let expected = fixture("coco/expected").join(dir_name);
    let mut compared = 0;
    for e in std::fs::read_dir(&expected)? {
        let p = e?.path();
        let want = read_label_png(&p)?;
        let got = read_label_png(
            &dir.path()
                .join("SegmentationClass")
                .join(p.file_name().unwrap()),
        )?;
        assert_eq!((got.width, got.height), (want.width, want.height));
        let differ = got
            .data
            .iter()
            .zip(&want.data)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differ,
            0,
            "{}: {differ} pixels differ from pycocotools",
            p.display()
        );
        compared += 1;
    }
    assert_eq!(compared, 3);
    let ds = VocDataset::open(dir.path(), "train")?;
    assert_eq!(
        ds.num_classes(),
        if layout == CocoLayout::Coco80 { 5 } else { 91 }
    );
    let sample = ds.load(0)?;
    assert_eq!(sample.name, "COCO_train2014_000000000009");
    let want: &[u8] = if layout == CocoLayout::Coco80 {
        &[1, 2, 3]
    } else {
        &[1, 3, 18]
    };
    assert_eq!(sample.classes.labels(), want);
    Ok(())
}

#[test]
fn coco_matches_pycocotools_coco80() -> R {
    check_coco(CocoLayout::Coco80, "coco80", 2)
}

#[test]
fn coco_matches_pycocotools_weaktr91() -> R {
    check_coco(CocoLayout::Weaktr91, "weaktr91", 0)
}

#[test]
fn coco_bad_json_names_the_file() -> R {
    let dir = copy_fixture("coco")?;
    let p = dir.path().join("annotations/instances_val2014.json");
    let text = std::fs::read_to_string(&p)?;
    std::fs::write(
        &p,
        text.replace("\"category_id\": 3", "\"category_id\": 77"),
    )?;
    let err = prepare_coco(dir.path(), &CocoConfig::default()).unwrap_err();
    assert!(err.to_string().contains("instances_val2014.json"), "{err}");
    assert!(err.to_string().contains("unknown category 77"), "{err}");
    std::fs::write(&p, &text[..text.len() / 2])?;
    let err = prepare_coco(dir.path(), &CocoConfig::default()).unwrap_err();
    assert!(err.to_string().contains("instances_val2014.json"), "{err}");
    let empty = tempfile::tempdir()?;
    let err = prepare_coco(empty.path(), &CocoConfig::default()).unwrap_err();
    assert!(
        err.to_string().contains("instances_train2014.json"),
        "{err}"
    );
    Ok(())
}

#[test]
fn scribbles_drawn_width_three() -> R {
    let dir = copy_fixture("scribble")?;
    let s = prepare_scribble(dir.path(), None)?;
    assert_eq!((s.files, s.scribbles), (2, 5));
    let m = read_label_png(&dir.path().join("Scribbles/2007_000032.png"))?;
    assert_eq!((m.width, m.height), (20, 14));
    // background along the top: rows 0 and 1 (the 3 px brush clipped at the border).
    assert_eq!(m.get(7, 0), 0);
    assert_eq!(m.get(7, 1), 0);
    assert_eq!(m.get(7, 2), 255);
    // plane (1) from (3,5) to (10,5) to (10,9): rows 4..=6 around the first segment.
    assert_eq!(m.get(5, 4), 1);
    assert_eq!(m.get(5, 6), 1);
    assert_eq!(m.get(5, 7), 255);
    assert_eq!(m.get(11, 9), 1);
    // person (15) clipped at the right border.
    assert_eq!(m.get(19, 13), 15);
    let m = read_label_png(&dir.path().join("Scribbles/2007_000033.png"))?;
    let dot: usize = m.data.iter().filter(|&&v| v == 20).count();
    assert_eq!(dot, 9);
    assert_eq!(m.get(4, 8), 0);
    Ok(())
}

#[test]
fn scribble_unknown_class_names_the_file() -> R {
    let dir = copy_fixture("scribble")?;
    let p = dir.path().join("pascal_2012/2007_000033.xml");
    let text = std::fs::read_to_string(&p)?;
    std::fs::write(&p, text.replace("<tag>monitor</tag>", "<tag>unicorn</tag>"))?;
    let err = read_scribble_xml(&p).unwrap_err();
    assert!(err.to_string().contains("2007_000033.xml"), "{err}");
    assert!(err.to_string().contains("unknown class `unicorn`"), "{err}");
    let err = prepare_scribble(dir.path(), None).unwrap_err();
    assert!(err.to_string().contains("2007_000033.xml"), "{err}");
    std::fs::write(&p, "<annotation><size><width>3</width></size>")?;
    let err = read_scribble_xml(&p).unwrap_err();
    assert!(err.to_string().contains("2007_000033.xml"), "{err}");
    Ok(())
}
