//! The CNN's Burn QAT forward and its exported circuit compute the same integers.
mod common;

use burn::prelude::*;
use qfhe_export::export_cnn;
use qfhe_quant::EncodingConfig;
use qfhe_train::batch::{argmax_rows, code_inputs};
use qfhe_train::{train_model, CnnConfig, Pooling, QCnn, TrainConfig};

#[test]
fn cnn_forward_and_circuit_simulator_agree() {
    // Pooling folded into the output layer.
    check_cnn(vec![], false, Pooling::Average);
}

#[test]
fn cnn_with_batch_norm_and_hidden_layer_agrees_with_simulator() {
    // Batch norm folded into the convolution, pooling folded into the hidden layer.
    check_cnn(vec![8], true, Pooling::Average);
}

#[test]
fn cnn_with_max_pooling_agrees_with_simulator() {
    // Max pooling as two PBS layers (6 PBS per 2×2 window), then a hidden layer.
    check_cnn(vec![8], false, Pooling::Max);
}

fn check_cnn(hidden: Vec<usize>, batch_norm: bool, pooling: Pooling) {
    let data = common::dataset();
    let windows = 4 * 4 * 4;
    let extra_pbs = hidden.iter().sum::<usize>() + pooling.pbs_per_window() * windows;
    let pool_layers = if pooling == Pooling::Max { 2 } else { 0 };
    let cfg = CnnConfig {
        input: [1, 8, 8],
        channels: 4,
        kernel: 3,
        stride: 1,
        padding: 1,
        pool: 2,
        pooling,
        hidden,
        batch_norm,
        classes: 4,
        w_bits: 3,
        out_w_bits: 4,
        a_bits: 3,
        in_bits: 3,
        encoding: EncodingConfig::default(),
    };
    let tc = TrainConfig {
        fp32_epochs: 6,
        qat_epochs: 4,
        batch_size: 64,
        lr: 3e-3,
        ..TrainConfig::default()
    };
    let (model, report) = train_model(|d| QCnn::new(cfg, d), &tc, &data, &Device::flex()).unwrap();
    assert!(
        report.qat_accuracy > 0.8,
        "QAT accuracy {}",
        report.qat_accuracy
    );
    let circuit = export_cnn(&model, "synthetic").unwrap();
    assert_eq!(circuit.pbs_count(), 4 * 8 * 8 + extra_pbs);
    assert!(model.bn.is_none(), "batch norm is folded before QAT");
    assert!(circuit.stages[0].gemm.inputs.is_some());

    let idx: Vec<usize> = (0..data.test.len()).collect();
    let x = code_inputs(&data.test, &idx, 3, &model.conv.weight.val().device());
    let (logits, trace) = model.forward_qat_traced(x).unwrap();
    let logits = logits.into_data().try_into_vec::<f32>().unwrap();
    let conv = trace.conv_out.into_data().try_into_vec::<f32>().unwrap();
    let fc: Vec<Vec<f32>> = trace
        .hidden
        .iter()
        .map(|t| {
            t.out_codes
                .clone()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap()
        })
        .collect();
    let preds = argmax_rows(&logits, 4);
    let mut mismatches = 0;
    for (s, &i) in idx.iter().enumerate() {
        let sim = circuit
            .run_exact(&circuit.input_codes(data.test.image(i)))
            .unwrap();
        let burn_row = &conv[s * 256..(s + 1) * 256];
        mismatches += burn_row
            .iter()
            .zip(&sim.stages[0])
            .filter(|(b, q)| **b as i32 != **q)
            .count();
        if pooling == Pooling::Max {
            // The second pooling layer's two outputs per window sum to the window's maximum.
            let pooled = &sim.stages[2];
            for c in 0..4 {
                for (y, x) in (0..4).flat_map(|y| (0..4).map(move |x| (y, x))) {
                    let at =
                        |dy: usize, dx: usize| burn_row[c * 64 + (2 * y + dy) * 8 + 2 * x + dx];
                    let max = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)) as i32;
                    let w = c * 16 + y * 4 + x;
                    assert_eq!(pooled[2 * w] + pooled[2 * w + 1], max, "window {w}");
                }
            }
        }
        for (l, codes) in fc.iter().enumerate() {
            let d = codes.len() / idx.len();
            mismatches += codes[s * d..(s + 1) * d]
                .iter()
                .zip(&sim.stages[1 + pool_layers + l])
                .filter(|(b, q)| **b as i32 != **q)
                .count();
        }
        for (j, (&b, &q)) in logits[s * 4..(s + 1) * 4]
            .iter()
            .zip(&sim.logits)
            .enumerate()
        {
            assert_eq!(
                b.to_bits(),
                q.to_bits(),
                "sample {s} logit {j}: burn {b} vs simulator {q}"
            );
        }
        assert_eq!(preds[s], sim.prediction);
    }
    assert_eq!(mismatches, 0, "conv or hidden activations differ");
    // The exported circuit is accurate on its own (exact simulator on the test set).
    let acc = idx
        .iter()
        .filter(|&&i| {
            circuit
                .run_exact(&circuit.input_codes(data.test.image(i)))
                .unwrap()
                .prediction
                == data.test.labels[i] as usize
        })
        .count();
    assert!(acc as f64 / idx.len() as f64 > 0.8);
}
