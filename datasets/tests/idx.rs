use qfhe_datasets::idx::{encode_images, encode_labels};
use qfhe_datasets::{DataError, Dataset, ImageSet, IDX_FILES};
use std::path::Path;

/// A tiny IDX dataset: 5 training and 3 test images of 2x3 pixels, labels over 4 classes.
fn write_fixture(dir: &Path) {
    let train: Vec<u8> = (0..30).map(|i| (i * 8) as u8).collect();
    let test: Vec<u8> = (0..18).map(|i| 255 - i as u8).collect();
    std::fs::write(dir.join(IDX_FILES[0]), encode_images(&train, 5, 2, 3)).unwrap();
    std::fs::write(dir.join(IDX_FILES[1]), encode_labels(&[0, 1, 2, 3, 1])).unwrap();
    std::fs::write(dir.join(IDX_FILES[2]), encode_images(&test, 3, 2, 3)).unwrap();
    std::fs::write(dir.join(IDX_FILES[3]), encode_labels(&[2, 0, 1])).unwrap();
}

#[test]
fn loads_a_tiny_idx_dataset() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    let ds = Dataset::from_dir(dir.path()).unwrap();
    assert_eq!(ds.train.len(), 5);
    assert_eq!(ds.test.len(), 3);
    assert_eq!((ds.train.rows, ds.train.cols), (2, 3));
    assert_eq!(ds.num_classes, 4);
    assert_eq!(ds.train.image(1), &[48, 56, 64, 72, 80, 88]);
    assert_eq!(ds.test.labels, vec![2, 0, 1]);
}

#[test]
fn truncated_image_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    let path = dir.path().join(IDX_FILES[0]);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    let err = Dataset::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn truncated_header_and_wrong_magic_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    std::fs::write(dir.path().join(IDX_FILES[1]), [0u8, 0, 8]).unwrap();
    let msg = Dataset::from_dir(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("header"), "{msg}");
    // A gzip file left compressed has the wrong magic.
    std::fs::write(
        dir.path().join(IDX_FILES[1]),
        [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 1],
    )
    .unwrap();
    let msg = Dataset::from_dir(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("magic"), "{msg}");
}

#[test]
fn label_count_mismatch_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    std::fs::write(dir.path().join(IDX_FILES[3]), encode_labels(&[1, 2])).unwrap();
    let msg = Dataset::from_dir(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("2 labels for 3 images"), "{msg}");
}

#[test]
fn missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    std::fs::remove_file(dir.path().join(IDX_FILES[2])).unwrap();
    let err = Dataset::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }));
    assert!(err.to_string().contains("t10k-images-idx3-ubyte"));
}

#[test]
fn corrupt_mnist_file_fails_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    // The fixture has MNIST's file names but not its bytes: verification must refuse it.
    let err = qfhe_datasets::mnist::verify(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Checksum { .. }));
    assert!(err.to_string().contains("re-fetch"));
}

#[test]
fn translation_moves_pixels_and_fills_the_border_with_zero() {
    // 3×4 image with pixel (y, x) = 10·y + x + 1, so every pixel is distinct and non-zero.
    let img: Vec<u8> = (0..3u8)
        .flat_map(|y| (0..4u8).map(move |x| 10 * y + x + 1))
        .collect();
    let set = ImageSet {
        images: img.clone(),
        labels: vec![0],
        rows: 3,
        cols: 4,
    };
    assert_eq!(set.translated(0, 0, 0), img);
    let right_down = set.translated(0, 1, 1);
    for y in 0..3 {
        for x in 0..4 {
            let want = if y == 0 || x == 0 {
                0
            } else {
                img[(y - 1) * 4 + (x - 1)]
            };
            assert_eq!(right_down[y * 4 + x], want, "pixel ({y}, {x})");
        }
    }
    let left_up = set.translated(0, -2, -1);
    assert_eq!(left_up, vec![13, 14, 0, 0, 23, 24, 0, 0, 0, 0, 0, 0]);
    assert!(set.translated(0, 4, 0).iter().all(|&p| p == 0));
    assert!(set.translated(0, 0, -3).iter().all(|&p| p == 0));
}
