//! Any model description: its Burn quantized forward and its lowered circuit's exact simulator
//! compute the same integers, stage by stage, and bit-identical logits.
mod common;

use burn::prelude::*;
use qfhe_core::{LayerSpec, LayerSpec::*, ModelSpec, QuantSpec};
use qfhe_export::lower;
use qfhe_quant::EncodingConfig;
use qfhe_train::batch::{code_inputs, Augment};
use qfhe_train::sequential::forward::{activation_codes, forward};
use qfhe_train::{train_model, PhaseNoise, QSequential, TrainConfig};

/// Burn's device random generator is shared by every thread: trainings in one test binary
/// take turns so each run's draws are its own (and a rerun reproduces it).
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn conv(out_channels: usize, padding: usize) -> LayerSpec {
    Conv2d {
        out_channels,
        kernel: 3,
        stride: 1,
        padding,
    }
}

/// Train `layers` on the 8×8 quadrant images briefly, lower it, and compare every activation
/// and logit of the Burn forward with the exact simulator on the 300 test images. Returns the
/// circuit's exact accuracy.
fn check(input: Vec<usize>, layers: Vec<LayerSpec>) -> f64 {
    let data = common::dataset();
    let spec = ModelSpec {
        input,
        classes: 4,
        quant: QuantSpec::default(),
        layers,
    };
    spec.validate().expect("a valid model");
    let tc = TrainConfig {
        fp32_epochs: 3,
        qat_epochs: 2,
        batch_size: 64,
        lr: 3e-3,
        ..TrainConfig::default()
    };
    let build = |d: &Device| QSequential::new(spec.clone(), EncodingConfig::default(), d).unwrap();
    let (model, _) = {
        let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
        train_model(build, &tc, &data, &Device::flex()).unwrap()
    };
    let circuit = lower(&model, "synthetic").unwrap();

    // Circuit stage of each activation: max pooling adds two stages after its input.
    let mut stage_of_act = Vec::new();
    let mut stage = 0;
    for l in &spec.layers {
        if l.activation().is_some() {
            stage_of_act.push(stage);
            stage += 1;
        } else if matches!(l, MaxPool { .. }) {
            stage += 2;
        }
    }
    assert_eq!(stage, circuit.stages.len());

    let idx: Vec<usize> = (0..data.test.len()).collect();
    let x = code_inputs(
        &data.test,
        &idx,
        spec.quant.in_bits,
        &mut Augment::none(),
        &model.device(),
    );
    let plan = model.plan(idx.len()).unwrap();
    let out = forward(&model, &plan, x, PhaseNoise::Exact);
    let acts = activation_codes(&model, &out);
    let logits = out.logits.into_data().try_into_vec::<f32>().unwrap();
    let mut correct = 0;
    for (s, &i) in idx.iter().enumerate() {
        let sim = circuit
            .run_exact(&circuit.input_codes(data.test.image(i)))
            .unwrap();
        for (a, codes) in acts.iter().enumerate() {
            let d = codes.len() / idx.len();
            assert_eq!(
                &codes[s * d..(s + 1) * d],
                &sim.stages[stage_of_act[a]][..],
                "sample {s}, activation {a}"
            );
        }
        for (j, (&b, &q)) in logits[s * 4..(s + 1) * 4]
            .iter()
            .zip(&sim.logits)
            .enumerate()
        {
            assert_eq!(b.to_bits(), q.to_bits(), "sample {s} logit {j}: {b} vs {q}");
        }
        correct += (sim.prediction == data.test.labels[i] as usize) as usize;
    }
    let distinct: Vec<usize> = acts
        .iter()
        .map(|c| c.iter().collect::<std::collections::BTreeSet<_>>().len())
        .collect();
    eprintln!(
        "accuracy {}, distinct codes per activation {distinct:?}, sources {:?}",
        correct as f64 / idx.len() as f64,
        circuit
            .stages
            .iter()
            .map(|s| s.gemm.sources.len())
            .collect::<Vec<_>>()
    );
    // Every activation uses more than one code: the comparison is not of constants.
    assert!(distinct.iter().all(|&d| d > 1), "{distinct:?}");
    correct as f64 / idx.len() as f64
}

#[test]
fn dense_model_with_gelu_silu_and_tanh() {
    let acc = check(
        vec![64],
        vec![
            Linear { out: 24 },
            Gelu,
            Linear { out: 16 },
            Silu,
            Linear { out: 12 },
            Tanh,
            Linear { out: 4 },
        ],
    );
    assert!(acc > 0.6, "exact accuracy {acc}");
}

#[test]
fn residual_convolutions_with_silu_shared_step_and_pooled_sum() {
    // conv → bn → relu (2) → conv → silu → add(2) → avg_pool → flatten → dense: the add reads
    // two stages in one GEMM, and the pooled sum of both feeds the dense layer.
    let acc = check(
        vec![1, 8, 8],
        vec![
            conv(4, 1),
            BatchNorm,
            Relu,
            conv(4, 1),
            Silu,
            Add { from: 2 },
            AvgPool { k: 2 },
            Flatten,
            Linear { out: 8 },
            LeakyRelu { slope: 0.1 },
            Linear { out: 4 },
        ],
    );
    assert!(acc > 0.6, "exact accuracy {acc}");
}

#[test]
fn two_convolutions_with_max_pooling_and_a_requantization() {
    // conv → relu → max_pool (two PBS stages) → conv on PBS outputs → relu → avg_pool →
    // sigmoid (a PBS point without weights) → dense.
    let acc = check(
        vec![1, 8, 8],
        vec![
            conv(4, 1),
            Relu,
            MaxPool { k: 2 },
            conv(6, 1),
            Relu,
            AvgPool { k: 2 },
            Sigmoid,
            Flatten,
            Linear { out: 4 },
        ],
    );
    assert!(acc > 0.6, "exact accuracy {acc}");
}

#[test]
fn a_preset_written_as_a_model_file_lowers_to_the_same_bytes() {
    let data = common::dataset();
    let preset = ModelSpec::preset("cnn", [1, 8, 8], 4)
        .and_then(|s| s.with_hidden(&[8]))
        .unwrap();
    // cnn's 7×7 stride-4 kernel on 8×8 images leaves 1×1 outputs: still a convolution.
    let from_file = ModelSpec::from_toml(&preset.to_toml()).unwrap();
    assert_eq!(from_file, preset);
    let tc = TrainConfig {
        fp32_epochs: 1,
        qat_epochs: 1,
        batch_size: 64,
        ..TrainConfig::default()
    };
    let circuit = |spec: &ModelSpec| {
        let build =
            |d: &Device| QSequential::new(spec.clone(), EncodingConfig::default(), d).unwrap();
        let (model, _) = {
            let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
            train_model(build, &tc, &data, &Device::flex()).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("circuit.json");
        lower(&model, "synthetic").unwrap().save(&path).unwrap();
        std::fs::read(&path).unwrap()
    };
    assert_eq!(circuit(&preset), circuit(&from_file));
}
