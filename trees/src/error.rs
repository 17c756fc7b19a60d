//! The crate's error type.

/// Why a tree model could not be trained, read or lowered.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A structurally inconsistent model.
    #[error("invalid tree model: {0}")]
    Invalid(String),
    /// Training data that the trainer cannot use.
    #[error("{0}")]
    Data(String),
    /// A model file that is not what the reader expects.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong, and what to change.
        reason: String,
    },
    /// Reading a file failed.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The circuit could not be built.
    #[error(transparent)]
    Circuit(#[from] qfhe_circuit::CircuitError),
}
