//! The qfhe circuit and its clear-integer semantics, with no tensor library: what a server or a
//! client needs, without the trainer.
//!
//! * [`ir`]: the circuit — a graph of GEMM + PBS stages over integer codes with per-slot tables,
//!   and an output GEMM the client decrypts;
//! * [`format`]: the versioned JSON file, read with upgrades from older versions;
//! * [`input`]: per-feature quantization of tabular inputs, calibrated on training rows;
//! * [`metric`]: accuracy, F1 and r² of predictions;
//! * [`validate`]: every invariant the simulators and the runtime rely on, checked arithmetic;
//! * [`lut`]: building a neuron's table from its encoding and activation arithmetic, and the
//!   output layer's scale;
//! * [`simulate`]: the exact simulator ("quantized" predictions, which FHE must reproduce) and the
//!   noise-model simulator (FHE noise in clear, "simulated" predictions);
//! * [`analysis`]: per-stage ranges, bit widths, slots per step, noise, predicted flip rates and
//!   gross-error probabilities.

pub mod analysis;
pub mod error;
pub mod fixtures;
pub mod format;
pub mod input;
pub mod ir;
pub mod lut;
pub mod metric;
pub mod simulate;
pub mod validate;

pub use analysis::{analyze, LayerReport};
pub use error::CircuitError;
pub use ir::{
    Circuit, FeatureQuantizer, Gemm, Input, Meta, Neuron, OutputLayer, Readout, Source, Stage,
    Table, FORMAT_VERSION, OLDEST_READABLE_VERSION,
};
pub use metric::Metric;
pub use simulate::{argmax, ExactTrace, NoiseModel};
