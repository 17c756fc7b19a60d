//! Models trained with Brevitas and exported by PyTorch (scripts/onnx-fixtures.py): every export
//! of one model imports to the same description and parameters, and the float reference
//! reproduces PyTorch's logits on the committed test images.

use qfhe_onnx::{load, reference};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/brevitas")
        .join(name)
}

/// A float32 `.npy` array: its shape and values.
fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let file = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = file.shape().iter().map(|&d| d as usize).collect();
    (shape, file.into_vec::<f32>().unwrap())
}

const EXPORTS: [&str; 6] = [
    "opset13.qonnx",
    "opset17.qonnx",
    "opset21.qonnx",
    "opset13.qcdq",
    "opset17.qcdq",
    "opset21.qcdq",
];

#[test]
fn every_export_of_a_model_reads_the_same() {
    for model in ["mlp", "cnn"] {
        let first = load(&fixture(&format!("{model}.{}.onnx", EXPORTS[0]))).unwrap();
        assert!(first.quantized);
        for export in &EXPORTS[1..] {
            let other = load(&fixture(&format!("{model}.{export}.onnx"))).unwrap();
            assert_eq!(other.spec, first.spec, "{model}.{export}");
            assert_eq!(other.params, first.params, "{model}.{export}");
        }
    }
}

#[test]
fn the_descriptions_are_the_trained_architectures() {
    let mlp = load(&fixture("mlp.opset13.qcdq.onnx")).unwrap();
    assert_eq!(
        mlp.spec.arch(),
        "1x28x28 flatten linear128 relu linear10",
        "{:?}",
        mlp.spec
    );
    let q = mlp.params.input.unwrap();
    assert_eq!(q.qmax, 7, "signed 3-bit input codes [-4, 3] become [0, 7]");
    assert!(q.low < 0.0);
    let cnn = load(&fixture("cnn.opset17.qonnx.onnx")).unwrap();
    assert_eq!(
        cnn.spec.arch(),
        "1x28x28 conv8k5s3p0 relu conv16k3s2p1 relu flatten linear10"
    );
    assert_eq!(cnn.params.input.unwrap().low, 0.0, "unsigned input");
    assert!(
        cnn.notes
            .iter()
            .filter(|n| n.contains("batch normalization"))
            .count()
            == 2
    );
    let res = load(&fixture("res.opset17.qonnx.onnx")).unwrap();
    assert_eq!(
        res.spec.arch(),
        "1x28x28 conv4k5s3p0 relu conv4k3s1p1 relu add1 relu maxpool2 flatten linear10"
    );
    let qcdq = load(&fixture("res.opset17.qcdq.onnx")).unwrap();
    assert_eq!((&res.spec, &res.params), (&qcdq.spec, &qcdq.params));
    // TruncAvgPool2d: QONNX's Trunc and QCDQ's QuantizeLinear after the pooling read alike.
    let pool = load(&fixture("pool.opset17.qonnx.onnx")).unwrap();
    assert_eq!(
        pool.spec.arch(),
        "1x28x28 conv8k5s3p0 relu avgpool2 identity flatten linear10"
    );
    let qcdq = load(&fixture("pool.opset17.qcdq.onnx")).unwrap();
    assert_eq!((&pool.spec, &pool.params), (&qcdq.spec, &qcdq.params));
}

#[test]
fn gelu_reads_alike_as_erf_nodes_and_as_one_gelu_node() {
    let erf = load(&fixture("gelu.opset17.qonnx.onnx")).unwrap();
    assert_eq!(
        erf.spec.arch(),
        "1x28x28 flatten linear64 gelu_erf linear10",
        "{:?}",
        erf.spec
    );
    assert!(
        erf.notes
            .iter()
            .any(|n| n.contains("GELU (erf form) read from 5 nodes")),
        "{:?}",
        erf.notes
    );
    for export in ["opset20.qonnx", "opset17.qcdq", "opset20.qcdq"] {
        let other = load(&fixture(&format!("gelu.{export}.onnx"))).unwrap();
        assert_eq!(
            (&other.spec, &other.params),
            (&erf.spec, &erf.params),
            "{export}"
        );
    }
}

#[test]
fn the_float_reference_reproduces_pytorch() {
    let (shape, x) = npy("mnist_test_x.npy");
    let n = shape[0];
    let d = x.len() / n;
    for (model, exports) in [
        ("mlp", &["opset13.qonnx", "opset21.qcdq"][..]),
        ("cnn", &["opset13.qonnx", "opset21.qcdq"]),
        ("res", &["opset17.qonnx", "opset17.qcdq"]),
        ("pool", &["opset17.qonnx", "opset17.qcdq"]),
        (
            "gelu",
            &[
                "opset17.qonnx",
                "opset20.qonnx",
                "opset17.qcdq",
                "opset20.qcdq",
            ],
        ),
        ("bnn", &["opset17.qonnx"]),
    ] {
        let (_, torch) = npy(&format!("{model}.logits.npy"));
        let classes = torch.len() / n;
        for export in exports {
            let m = load(&fixture(&format!("{model}.{export}.onnx"))).unwrap();
            let mut worst = 0f32;
            for i in 0..n {
                let ours = reference::logits(&m.spec, &m.params, &x[i * d..(i + 1) * d]);
                let theirs = &torch[i * classes..(i + 1) * classes];
                for (a, b) in ours.iter().zip(theirs) {
                    worst = worst.max((a - b).abs());
                }
                let argmax = |v: &[f32]| {
                    (0..v.len()).fold(0, |best, j| if v[j] > v[best] { j } else { best })
                };
                assert_eq!(argmax(&ours), argmax(theirs), "{model}.{export} sample {i}");
            }
            // Same quantized values; only the order of f32 sums differs.
            assert!(worst < 1e-4, "{model}.{export}: max |Δ logit| {worst}");
        }
    }
}

#[test]
fn a_float_model_imports_for_calibration_and_its_reference_is_pytorchs() {
    let m = load(&fixture("cnn_float.opset17.onnx")).unwrap();
    assert!(!m.quantized);
    // PyTorch's exporter folded the batch norms into the convolutions.
    assert_eq!(
        m.spec.arch(),
        "1x28x28 conv8k5s3p0 relu conv16k3s2p1 relu flatten linear10"
    );
    assert!(m.params.input.is_none());
    for p in &m.params.layers {
        match p {
            qfhe_core::LayerParams::Weighted(w) => assert!(w.step.is_none()),
            qfhe_core::LayerParams::Activation(a) => assert!(a.is_none()),
            qfhe_core::LayerParams::None => {}
        }
    }
    let (shape, x) = npy("mnist_test_x.npy");
    let (_, torch) = npy("cnn_float.logits.npy");
    let d = x.len() / shape[0];
    let mut worst = 0f32;
    for i in 0..shape[0] {
        let ours = reference::logits(&m.spec, &m.params, &x[i * d..(i + 1) * d]);
        for (a, b) in ours.iter().zip(&torch[i * 10..(i + 1) * 10]) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(worst < 1e-4, "max |Δ logit| {worst}");
}

#[test]
fn a_model_on_table_features_imports_with_its_input_quantizer() {
    let (shape, x) = npy("iris_x.npy");
    let (_, torch) = npy("iris_mlp.logits.npy");
    let first = load(&fixture("iris_mlp.opset17.qonnx.onnx")).unwrap();
    let qcdq = load(&fixture("iris_mlp.opset17.qcdq.onnx")).unwrap();
    assert_eq!((&first.spec, &first.params), (&qcdq.spec, &qcdq.params));
    assert_eq!(first.spec.arch(), "4 linear16 relu linear3");
    assert_eq!(
        first.params.input.unwrap().qmax,
        15,
        "signed 4-bit input codes"
    );
    let d = shape[1];
    for i in 0..shape[0] {
        let ours = reference::logits(&first.spec, &first.params, &x[i * d..(i + 1) * d]);
        for (a, b) in ours.iter().zip(&torch[i * 3..(i + 1) * 3]) {
            assert!((a - b).abs() < 1e-4, "row {i}: {ours:?}");
        }
    }
}
