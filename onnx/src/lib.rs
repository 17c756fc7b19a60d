//! Reading models trained elsewhere from ONNX files into qfhe's model description.
//!
//! * [`fuse`]: multi-node patterns exporters write for one function (the erf-form GELU)
//!   fused back into one node;
//! * [`graph`]: the file, decoded (a small protobuf schema of the ONNX messages qfhe reads,
//!   [`proto`]) and checked — sizes before allocation, no external data, no cycle, every value
//!   produced once;
//! * [`import`](mod@import): the graph walked into a [`qfhe_core::ModelSpec`] and its
//!   [`qfhe_core::ModelParams`] — QONNX (`Quant`, Brevitas's `export_qonnx`) and QCDQ
//!   (`QuantizeLinear` → `Clip` → `DequantizeLinear`, `export_onnx_qcdq`) quantizers read as
//!   they are, batch norms folded, every unsupported operator listed at once ([`ops`]).
//!
//! The model is then built and lowered like any trained model (crate `qfhe`).

pub mod error;
pub mod fuse;
pub mod graph;
pub mod import;
pub mod ops;
pub mod proto;
pub mod quantizer;
pub mod reference;

pub use error::{OnnxError, Result, UnsupportedOp};
pub use graph::Graph;
pub use import::{import, import_with, Imported};

/// Read and import an ONNX file.
///
/// # Errors
/// As [`Graph::load`] and [`import()`].
pub fn load(path: &std::path::Path) -> Result<Imported> {
    import(&Graph::load(path)?)
}

/// [`load`], with the bit widths a float graph is to be calibrated to ([`import_with`]).
///
/// # Errors
/// As [`load`].
pub fn load_with(path: &std::path::Path, float_bits: qfhe_core::QuantSpec) -> Result<Imported> {
    import_with(&Graph::load(path)?, float_bits)
}
