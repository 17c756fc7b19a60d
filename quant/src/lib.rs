//! Fake quantization for Burn: the training-side half of qfhe's quantization semantics.
//!
//! The rules themselves (bit widths, the torus encoding, accumulator bounds) live in the
//! Burn-free `qfhe-core` and are re-exported here; this crate adds the Burn modules that apply
//! them in the QAT forward pass:
//! * [`ste`]: straight-through estimators and LSQ gradient scaling;
//! * [`layers`]: fake-quantized linear layer, activation quantizer, slot rounding;
//! * [`conv`]: fake-quantized 2-D convolution, its im2col-by-index lowering, exact sum pooling.

pub mod conv;
pub mod layers;
pub mod ste;

pub use qfhe_core::{bounds, encoding, scheme};
pub use qfhe_core::{
    EncodingConfig, EncodingError, LayerEncoding, NeuronEncoding, NoiseSpec, RowStats,
};
