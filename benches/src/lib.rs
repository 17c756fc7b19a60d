//! Fixtures for the criterion benchmarks in `benches/fhe.rs`.
//!
//! FHE cost does not depend on what a model learned, only on its shape and encodings, so the
//! benchmarks use an untrained 784-128-10 w3/a3 MLP lowered through the real pipeline.

use burn::prelude::*;
use qfhe_circuit::Circuit;
use qfhe_core::ModelSpec;
use qfhe_export::lower;
use qfhe_fhe_runtime::server::random_words;
use qfhe_quant::EncodingConfig;
use qfhe_train::QSequential;

/// The MLP preset on MNIST with dense hidden layers of widths `hidden` (w3/a3) as a circuit.
pub fn mnist_circuit(hidden: &[usize]) -> Circuit {
    let spec = ModelSpec::preset("mlp", [1, 28, 28], 10)
        .and_then(|s| s.with_hidden(hidden))
        .expect("a valid MLP");
    let mut model =
        QSequential::new(spec, EncodingConfig::default(), &Device::flex()).expect("valid");
    model.init_weight_scales();
    lower(&model, "bench").expect("lowering")
}

/// Pseudo-random input codes in `[0, 7]`.
pub fn random_codes(n: usize, seed: u64) -> Vec<i32> {
    random_words(n, seed)
        .into_iter()
        .map(|w| (w % 8) as i32)
        .collect()
}
