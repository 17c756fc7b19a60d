//! Fixtures for the criterion benchmarks in `benches/fhe.rs`.
//!
//! FHE cost does not depend on what a model learned, only on its shape and encodings, so the
//! benchmarks use an untrained 784-128-10 w3/a3 MLP exported through the real pipeline.

use burn::prelude::*;
use qfhe_export::{export_mlp, Circuit};
use qfhe_quant::EncodingConfig;
use qfhe_train::{MlpConfig, QMlp};
use tfhe::core_crypto::prelude::*;

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

/// Pseudo-random input codes in `[0, 7]` (splitmix64).
pub fn random_codes(n: usize, seed: u64) -> Vec<i32> {
    random_words(n, seed)
        .into_iter()
        .map(|w| (w % 8) as i32)
        .collect()
}

/// Pseudo-random 64-bit words (splitmix64): ciphertext-like data for timing.
pub fn random_words(n: usize, seed: u64) -> Vec<u64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .collect()
}

/// `count` random-looking LWE ciphertexts of dimension `dim` (zeros would skip work in KS/PBS).
pub fn random_ciphertexts(count: usize, dim: usize) -> Vec<LweCiphertextOwned<u64>> {
    (0..count)
        .map(|i| {
            LweCiphertext::from_container(
                random_words(dim + 1, i as u64 + 1),
                CiphertextModulus::new_native(),
            )
        })
        .collect()
}
