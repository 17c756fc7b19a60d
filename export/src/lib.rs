//! From a trained model to a TFHE circuit, and the circuit's clear-integer semantics.
//!
//! * [`circuit`]: the versioned, serde-serialized circuit (GEMM with clear integer weights, one
//!   PBS per hidden neuron whose LUT applies activation + requantization, an output GEMM that the
//!   client decrypts), loaded with validation;
//! * [`from_model`]: a trained [`qfhe_train::QMlp`] → [`Circuit`];
//! * [`simulate`]: the exact simulator ("quantized" predictions, which FHE must reproduce) and the
//!   noise-model simulator (FHE noise in clear, "simulated" predictions);
//! * [`analysis`]: per-layer ranges, bit widths, slots per step, noise, predicted flip rates and
//!   gross-error probabilities.

pub mod analysis;
pub mod circuit;
pub mod from_model;
pub mod simulate;

pub use analysis::{analyze, LayerReport};
pub use circuit::{Circuit, CircuitError, HiddenLayer, Neuron, OutputLayer, FORMAT_VERSION};
pub use from_model::{export_cnn, export_mlp};
pub use simulate::{ExactTrace, NoiseModel};
