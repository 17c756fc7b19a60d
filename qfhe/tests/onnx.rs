//! Models trained with Brevitas and exported to ONNX, through qfhe: every export lowers to the
//! same circuit, the exact circuit computes PyTorch's logits on the committed test images, the
//! quantized forward computes the circuit's, and real encryption agrees with the circuit.

use burn::prelude::*;
use qfhe::datasets::ImageSet;
use qfhe::{Mode, Model};
use qfhe_train::PhaseNoise;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../onnx/tests/fixtures/brevitas")
        .join(name)
}

fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let file = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = file.shape().iter().map(|&d| d as usize).collect();
    (shape, file.into_vec::<f32>().unwrap())
}

/// The committed test images (pixels / 255 in the file) as 8-bit images, with their labels.
fn images() -> (ImageSet, Vec<f32>) {
    let (shape, x) = npy("mnist_test_x.npy");
    let bytes = std::fs::read(fixture("mnist_test_y.npy")).unwrap();
    let labels: Vec<i64> = npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap();
    let set = ImageSet {
        images: x.iter().map(|&v| (v * 255.0).round() as u8).collect(),
        labels: labels.iter().map(|&l| l as u8).collect(),
        rows: shape[2],
        cols: shape[3],
    };
    (set, x)
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, j| if v[j] > v[b] { j } else { b })
}

#[test]
fn every_export_lowers_to_the_same_circuit() {
    for model in ["mlp", "cnn"] {
        let circuit = |export: &str| {
            let (m, _) = Model::from_onnx(&fixture(&format!("{model}.{export}.onnx"))).unwrap();
            serde_json::to_string(&m.circuit().unwrap()).unwrap()
        };
        let first = circuit("opset13.qonnx");
        for export in [
            "opset17.qonnx",
            "opset21.qonnx",
            "opset13.qcdq",
            "opset17.qcdq",
            "opset21.qcdq",
        ] {
            assert!(circuit(export) == first, "{model}.{export}");
        }
    }
}

#[test]
fn the_exact_circuit_computes_pytorchs_logits() {
    let (set, x) = images();
    let n = set.len();
    let d = x.len() / n;
    // MLP, CNN with batch norms, a residual block with max pooling, truncating average pooling,
    // GELU, bipolar weights and activations.
    for (model, export) in [
        ("mlp", "opset17.qcdq"),
        ("cnn", "opset17.qcdq"),
        ("res", "opset17.qcdq"),
        ("pool", "opset17.qcdq"),
        ("gelu", "opset17.qcdq"),
        ("bnn", "opset17.qonnx"),
    ] {
        let (torch_shape, torch) = npy(&format!("{model}.logits.npy"));
        let classes = torch_shape[1];
        let (m, _) = Model::from_onnx(&fixture(&format!("{model}.{export}.onnx"))).unwrap();
        let circuit = m.circuit().unwrap();
        let mut worst = 0f32;
        for i in 0..n {
            let codes = circuit.encode_features(&x[i * d..(i + 1) * d]).unwrap();
            // Pixels as images reach the same codes.
            assert_eq!(
                codes,
                circuit.input_codes(set.image(i)),
                "{model} sample {i}"
            );
            let logits = circuit.run_exact(&codes).unwrap().logits;
            let theirs = &torch[i * classes..(i + 1) * classes];
            assert_eq!(argmax(&logits), argmax(theirs), "{model} sample {i}");
            for (a, b) in logits.iter().zip(theirs) {
                worst = worst.max((a - b).abs());
            }
        }
        // Integer accumulators equal PyTorch's; only the f32 dequantization's rounding differs.
        assert!(worst < 1e-3, "{model}: max |Δ logit| {worst}");

        // The quantized forward (the plan the lowering follows) computes the circuit's logits.
        let net = m.network();
        let device = net.device();
        let batch = 16;
        let codes: Vec<f32> = (0..batch)
            .flat_map(|i| circuit.input_codes(set.image(i)))
            .map(|c| c as f32)
            .collect();
        let t = Tensor::<2>::from_data(TensorData::new(codes, [batch, d]), &device);
        let forward = net.forward_qat(t, PhaseNoise::Exact).unwrap();
        let forward: Vec<f32> = forward.into_data().try_into_vec().unwrap();
        for i in 0..batch {
            let exact = circuit
                .run_exact(&circuit.input_codes(set.image(i)))
                .unwrap();
            for (a, b) in forward[i * classes..(i + 1) * classes]
                .iter()
                .zip(&exact.logits)
            {
                assert_eq!(a.to_bits(), b.to_bits(), "{model} sample {i}");
            }
        }
    }
}

#[test]
fn an_imported_mlp_runs_under_fhe_as_in_the_clear() {
    let (set, _) = images();
    let (mut m, notes) = Model::from_onnx(&fixture("mlp.opset13.qonnx.onnx")).unwrap();
    assert!(notes.iter().any(|n| n.contains("input quantizer")));
    // Its hidden layer's accumulators fit the table: every neuron computes the file's value.
    assert!(
        notes
            .iter()
            .any(|n| n.contains("128 of 128 neurons read exactly")),
        "{notes:?}"
    );
    let acc = m.reference_accuracy(&set).unwrap().unwrap();
    assert!(acc > 0.9, "{acc}");
    // The file's activation steps are narrower than qfhe's training targets: its worst
    // neuron's gross-error probability is ~2^-30 per PBS, so the default 2^-40 refuses it.
    let Err(err) = m.compile(&set) else {
        panic!("compiled at 2^-40")
    };
    let err = err.to_string();
    assert!(err.contains("gross-error probability"), "{err}");
    let compiled = m.compile_with(&set, -25.0).unwrap();
    let idx = [0, 1];
    let exact = compiled.predict(&set, &idx, Mode::Exact).unwrap();
    let fhe = compiled.predict(&set, &idx, Mode::Fhe).unwrap();
    for (e, f) in exact.iter().zip(&fhe) {
        assert_eq!(e.class, f.class);
    }
}

#[test]
fn an_imported_model_saves_and_loads_to_the_same_circuit() {
    let (m, _) = Model::from_onnx(&fixture("cnn.opset21.qonnx.onnx")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path()).unwrap();
    let loaded = Model::load(dir.path()).unwrap();
    assert_eq!(loaded.params(), m.params());
    let (a, b) = (
        serde_json::to_string(&loaded.circuit().unwrap()).unwrap(),
        serde_json::to_string(&m.circuit().unwrap()).unwrap(),
    );
    let first = a.bytes().zip(b.bytes()).position(|(x, y)| x != y);
    assert!(
        a == b,
        "circuits differ at byte {first:?}: {:?} against {:?}",
        first.map(|i| &a[i.saturating_sub(80)..(i + 80).min(a.len())]),
        first.map(|i| &b[i.saturating_sub(80)..(i + 80).min(b.len())])
    );
}

#[test]
fn a_float_model_is_calibrated_fine_tuned_and_lowered() {
    let (set, _) = images();
    let data = qfhe::Dataset {
        name: "fixture".into(),
        train: set.clone(),
        test: set.clone(),
        num_classes: 10,
    };
    let path = fixture("cnn_float.opset17.onnx");
    // Without calibration data a float file is refused, saying what it needs.
    let Err(e) = Model::from_onnx(&path) else {
        panic!("a float graph imported without calibration")
    };
    assert!(e.to_string().contains("calibration"), "{e}");

    let mut cfg = qfhe::FitConfig::default();
    cfg.train.qat_epochs = 1;
    cfg.train.batch_size = 25;
    let mut events = 0;
    let (m, _) = Model::calibrate_onnx(&path, qfhe::QuantSpec::default(), &data, &cfg, &mut |_| {
        events += 1
    })
    .unwrap();
    assert!(events > 0);
    // fp32 is the file's own float model on the test images.
    assert!(m.info().fp32_accuracy > 0.95, "{:?}", m.info());
    assert_eq!(m.info().train.fp32_epochs, 0);
    let circuit = m.circuit().unwrap();
    assert_eq!(circuit.pbs_count(), 768);
    // Calibrated here: the circuit reads pixels, the model saves as weights and reloads.
    assert!(circuit.input.quantizer.is_none());
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path()).unwrap();
    assert!(!dir.path().join("params.json").exists());
    let loaded = Model::load(dir.path()).unwrap();
    assert!(
        serde_json::to_string(&loaded.circuit().unwrap()).unwrap()
            == serde_json::to_string(&circuit).unwrap()
    );
}

#[test]
fn an_imported_table_model_reads_raw_features_and_computes_pytorchs_logits() {
    let (shape, x) = npy("iris_x.npy");
    let (_, torch) = npy("iris_mlp.logits.npy");
    let (m, _) = Model::from_onnx(&fixture("iris_mlp.opset17.qcdq.onnx")).unwrap();
    let circuit = m.circuit().unwrap();
    let d = shape[1];
    for i in 0..shape[0] {
        let codes = circuit.encode_features(&x[i * d..(i + 1) * d]).unwrap();
        let logits = circuit.run_exact(&codes).unwrap().logits;
        let theirs = &torch[i * 3..(i + 1) * 3];
        assert_eq!(argmax(&logits), argmax(theirs), "row {i}");
        for (a, b) in logits.iter().zip(theirs) {
            assert!(
                (a - b).abs() < 1e-3,
                "row {i}: {logits:?} against {theirs:?}"
            );
        }
    }
}

#[test]
fn a_binarized_model_is_imported_but_not_trained_here() {
    let (m, notes) = Model::from_onnx(&fixture("bnn.opset17.qonnx.onnx")).unwrap();
    let spec = m.info().model.clone();
    assert_eq!(
        spec.arch(),
        "1x28x28 flatten linear128 sign linear64 sign linear10"
    );
    assert_eq!(
        notes.iter().filter(|n| n.contains("bipolar")).count(),
        2,
        "{notes:?}"
    );
    // Bipolar weight codes are ±1, never 0: each weight is ± its row's step.
    let json = serde_json::to_value(&m.params().unwrap().layers[3]).unwrap();
    let w = &json["weighted"];
    let steps: Vec<f64> = serde_json::from_value(w["step"].clone()).unwrap();
    let weights: Vec<f64> = serde_json::from_value(w["weight"].clone()).unwrap();
    for (j, row) in weights.chunks(128).enumerate() {
        for v in row {
            assert!(
                (v.abs() / steps[j] - 1.0).abs() < 1e-5,
                "row {j}: {v} / {}",
                steps[j]
            );
        }
    }
    let (set, _) = images();
    let data = qfhe::datasets::Dataset {
        name: "fixture".into(),
        train: set.clone(),
        test: set,
        num_classes: 10,
    };
    let err = qfhe::fit(&spec, &data, &qfhe::FitConfig::default()).unwrap_err();
    assert!(err.to_string().contains("layers[2] (sign)"), "{err}");
}
