//! The runtime's error type.

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The circuit was exported for other parameters.
    #[error("the circuit was exported for polynomial size N = {circuit}, but the parameters ({name}) have N = {params}; train and export the model for N = {params}, or choose parameters with N = {circuit}")]
    ParamsMismatch {
        /// Circuit's N.
        circuit: u32,
        /// Parameters' N.
        params: u32,
        /// Parameter set.
        name: &'static str,
    },
    /// Bad input.
    #[error("bad input: {0}")]
    Input(String),
    /// Input codes that do not fit the circuit.
    #[error(transparent)]
    Circuit(#[from] qfhe_circuit::CircuitError),
    /// A key or ciphertext envelope that is malformed, truncated, oversized, corrupted, of
    /// another kind, or made for other parameters, another circuit or another key.
    #[error("{what}: {reason}")]
    Envelope {
        /// What was being read ("an evaluation key", ...).
        what: &'static str,
        /// What is wrong with it and what to do.
        reason: String,
    },
    /// A key or ciphertext file that cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}
