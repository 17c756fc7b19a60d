//! From a trained QAT model to a [`qfhe_circuit::Circuit`]: the lowering.
//!
//! * [`lower`]: any trained [`qfhe_train::QSequential`] (a model description of any
//!   architecture) → circuit, each neuron's table computed by the model's own activation
//!   arithmetic at every slot centre;
//! * [`linear`]: a linear model (regression, logistic regression, SVM) → a PBS-free circuit.
//!
//! The circuit format, its simulators and analysis live in the Burn-free `qfhe-circuit`.

pub mod linear;
pub mod lower;

pub use linear::{lower_linear, LinearQuant};
pub use lower::lower;

/// Why a model could not be lowered.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A layer's range cannot be encoded.
    #[error(transparent)]
    Encoding(#[from] qfhe_quant::EncodingError),
    /// The input quantizer and the model disagree on the number of features.
    #[error("the input quantizer covers {quantizer} features but the model has {model}; calibrate it on rows of the model's features")]
    Features {
        /// Features of the quantizer.
        quantizer: usize,
        /// Features of the model.
        model: usize,
    },
    /// A bit width out of range.
    #[error("{what} bit width {bits} is outside [{min}, 16]; choose one in that range")]
    BitWidth {
        /// `input` or `weight`.
        what: &'static str,
        /// The width asked for.
        bits: u32,
        /// The smallest allowed.
        min: u32,
    },
    /// The produced circuit failed validation (a bug, reported rather than written).
    #[error(transparent)]
    Circuit(#[from] qfhe_circuit::CircuitError),
}
