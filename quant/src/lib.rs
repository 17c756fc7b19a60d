//! Quantization semantics for qfhe.
//!
//! Everything that decides *which integers* a quantized network computes lives here, once, and
//! is used by both the Burn QAT forward pass (`qfhe-train`) and the exported circuit's simulator
//! (`qfhe-export`):
//! * [`scheme`]: bit widths, code ranges and the input quantizer;
//! * [`encoding`]: how a neuron's accumulator is placed on the PBS torus (per-neuron integer row
//!   multipliers, offsets, slot rounding) and the activation LUT evaluated at slot centres;
//! * [`bounds`]: worst-case accumulator ranges and bit widths;
//! * [`ste`]: straight-through estimators and LSQ gradient scaling for Burn;
//! * [`layers`]: fake-quantized Burn modules (linear layer, activation quantizer).

pub mod bounds;
pub mod conv;
pub mod encoding;
pub mod layers;
pub mod scheme;
pub mod ste;

pub use bounds::RowStats;
pub use encoding::{EncodingConfig, EncodingError, LayerEncoding, NeuronEncoding, NoiseSpec};
