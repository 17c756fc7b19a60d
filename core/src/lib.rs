//! The rules that decide *which integers* a quantized network computes, with no tensor library:
//! used by the Burn QAT forward (`qfhe-quant`, `qfhe-train`), the circuit and its simulators
//! (`qfhe-circuit`) and the FHE runtime (`qfhe-fhe-runtime`), so they cannot drift apart.
//!
//! * [`scheme`]: bit widths, code ranges, the input quantizer and the activation quantizer;
//! * [`encoding`]: how a neuron's accumulator is placed on the PBS torus (per-neuron integer row
//!   multipliers, offsets, slot rounding) and the noise at a PBS input;
//! * [`bounds`]: worst-case accumulator ranges and bit widths;
//! * [`model`]: model descriptions — a sequential quantized network as a list of layers, from a
//!   TOML or JSON file or a preset, with shapes inferred and every field checked.

pub mod bounds;
pub mod encoding;
pub mod model;
pub mod params;
pub mod scheme;

pub use bounds::RowStats;
pub use encoding::{EncodingConfig, EncodingError, LayerEncoding, NeuronEncoding, NoiseSpec};
pub use model::{Activation, LayerSpec, ModelError, ModelSpec, QuantSpec, Shape};
pub use params::{ActivationParams, InputQuant, LayerParams, ModelParams, WeightedParams};
