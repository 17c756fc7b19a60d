//! Fixtures for the criterion benchmarks in `benches/fhe.rs`.
//!
//! FHE cost does not depend on what a model learned, only on its shape and encodings, so the
//! benchmarks use an untrained 784-128-10 w3/a3 MLP exported through the real pipeline.

use burn::prelude::*;
use qfhe_circuit::Circuit;
use qfhe_export::export_mlp;
use qfhe_fhe_runtime::server::random_words;
use qfhe_quant::EncodingConfig;
use qfhe_train::{MlpConfig, QMlp};

/// The default MNIST architecture (784-`hidden`-10, w3/a3) as a circuit.
pub fn mnist_circuit(hidden: &[usize]) -> Circuit {
    let cfg = MlpConfig {
        inputs: 784,
        hidden: hidden.to_vec(),
        classes: 10,
        w_bits: 3,
        out_w_bits: 4,
        a_bits: 3,
        in_bits: 3,
        encoding: EncodingConfig::default(),
    };
    let mut model = QMlp::new(cfg, &Device::flex());
    for l in &mut model.layers {
        l.init_scales();
    }
    export_mlp(&model, "bench").expect("export")
}

/// Pseudo-random input codes in `[0, 7]`.
pub fn random_codes(n: usize, seed: u64) -> Vec<i32> {
    random_words(n, seed)
        .into_iter()
        .map(|w| (w % 8) as i32)
        .collect()
}
