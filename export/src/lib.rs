//! From a trained QAT model to a [`qfhe_circuit::Circuit`]: the lowering.
//!
//! * [`lower`]: any trained [`qfhe_train::QSequential`] (a model description of any
//!   architecture) → circuit, each neuron's table computed by the model's own activation
//!   arithmetic at every slot centre.
//!
//! The circuit format, its simulators and analysis live in the Burn-free `qfhe-circuit`.

pub mod lower;

pub use lower::lower;

/// Why a model could not be lowered.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A layer's range cannot be encoded.
    #[error(transparent)]
    Encoding(#[from] qfhe_quant::EncodingError),
    /// The produced circuit failed validation (a bug, reported rather than written).
    #[error(transparent)]
    Circuit(#[from] qfhe_circuit::CircuitError),
}
