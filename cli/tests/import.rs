//! `qfhe import`: a Brevitas model exported to ONNX, evaluated on images in an IDX folder: the
//! file's own model in floating point and the exact circuit agree sample for sample, and the
//! report has the keys of `qfhe run`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../onnx/tests/fixtures/brevitas")
        .join(name)
}

/// The committed test images as an IDX folder (the same 100 images for training and test).
fn idx_folder(dir: &Path) {
    let x: Vec<f32> = {
        let bytes = std::fs::read(fixture("mnist_test_x.npy")).unwrap();
        npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap()
    };
    let y: Vec<i64> = {
        let bytes = std::fs::read(fixture("mnist_test_y.npy")).unwrap();
        npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap()
    };
    let n = y.len() as u32;
    let mut images = vec![0, 0, 8, 3];
    for d in [n, 28, 28] {
        images.extend(d.to_be_bytes());
    }
    images.extend(x.iter().map(|&v| (v * 255.0).round() as u8));
    let mut labels = vec![0, 0, 8, 1];
    labels.extend(n.to_be_bytes());
    labels.extend(y.iter().map(|&l| l as u8));
    for split in ["train", "t10k"] {
        std::fs::write(dir.join(format!("{split}-images-idx3-ubyte")), &images).unwrap();
        std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), &labels).unwrap();
    }
}

fn qfhe_import(model: &str, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qfhe"))
        .arg("import")
        .arg(fixture(model))
        .arg("--data-dir")
        .arg(data)
        .args(["--threads", "2", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn an_imported_model_is_evaluated_like_a_trained_one() {
    let dir = tempfile::tempdir().unwrap();
    idx_folder(dir.path());
    let out = dir.path().join("out");
    // At the default 2^-40 the MLP's narrowest activation steps are refused, with the options.
    let refused = qfhe_import(
        "mlp.opset21.qcdq.onnx",
        dir.path(),
        &out,
        &["--fhe-samples", "0"],
    );
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("--p-error-log2") && err.contains("--poly-size 8192"),
        "{err}"
    );

    let run = qfhe_import(
        "mlp.opset21.qcdq.onnx",
        dir.path(),
        &out,
        &["--fhe-samples", "2", "--p-error-log2", "-25"],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["test_samples"], 100);
    assert_eq!(report["metric"], "accuracy");
    // The circuit computes the file's model exactly: same accuracy, in the same report keys.
    let fp32 = report["fp32_accuracy"].as_f64().unwrap();
    assert!(fp32 > 0.9, "{report}");
    assert_eq!(report["quantized_accuracy"].as_f64().unwrap(), fp32);
    assert_eq!(report["fhe"]["samples"], 2);
    assert_eq!(report["fhe"]["pbs_per_sample"], 128);
    assert!(out.join("circuit.json").exists() && out.join("params.json").exists());

    // `qfhe eval --inputs` on the circuit reproduces PyTorch's logits for the same images.
    let logits = dir.path().join("logits.npy");
    let eval = Command::new(env!("CARGO_BIN_EXE_qfhe"))
        .args(["eval", "--circuit"])
        .arg(out.join("circuit.json"))
        .arg("--inputs")
        .arg(fixture("mnist_test_x.npy"))
        .arg("--outputs")
        .arg(&logits)
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let ours: Vec<f32> = {
        let bytes = std::fs::read(&logits).unwrap();
        let file = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(file.shape(), &[100, 10]);
        file.into_vec().unwrap()
    };
    let torch: Vec<f32> = {
        let bytes = std::fs::read(fixture("mlp.logits.npy")).unwrap();
        npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap()
    };
    let worst = ours
        .iter()
        .zip(&torch)
        .fold(0f32, |w, (a, b)| w.max((a - b).abs()));
    assert!(worst < 1e-3, "max |Δ logit| {worst}");

    // A model on table features, evaluated on a bundled table's test rows.
    let iris = dir.path().join("iris");
    let run = Command::new(env!("CARGO_BIN_EXE_qfhe"))
        .arg("import")
        .arg(fixture("iris_mlp.opset17.qonnx.onnx"))
        .args([
            "--dataset",
            "iris",
            "--fhe-samples",
            "2",
            "--threads",
            "2",
            "--out",
        ])
        .arg(&iris)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(iris.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["test_samples"], 30);
    assert_eq!(
        report["fp32_accuracy"], report["quantized_accuracy"],
        "{report}"
    );
    assert_eq!(report["fhe"]["pbs_per_sample"], 16);

    // A float model needs calibration data, and says so.
    let float = qfhe_import(
        "cnn_float.opset17.onnx",
        dir.path(),
        &out,
        &["--fhe-samples", "0"],
    );
    assert_eq!(float.status.code(), Some(1));
    let err = String::from_utf8_lossy(&float.stderr);
    assert!(err.contains("--calibrate"), "{err}");

    // A file that is not ONNX is an error naming it, not a panic.
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"\x08\x07garbage").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_qfhe"))
        .arg("import")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("bad.onnx"), "{err}");
}
