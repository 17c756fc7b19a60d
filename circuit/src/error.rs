//! The crate's error type.

use crate::ir::{FORMAT_VERSION, OLDEST_READABLE_VERSION};

/// A circuit file or structure that cannot be used, or an input that does not fit a circuit.
#[derive(Debug, thiserror::Error)]
pub enum CircuitError {
    /// I/O on the circuit file.
    #[error("cannot access circuit file {path}")]
    Io {
        /// The file.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Not JSON of the expected shape.
    #[error("{path} is not a qfhe circuit file; export the trained model again to create one")]
    Parse {
        /// The file.
        path: String,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// A format version this build does not read.
    #[error("circuit format version {found} is not supported (this qfhe reads versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}); export the trained model again with this qfhe, or update qfhe")]
    Version {
        /// The file's version.
        found: u32,
    },
    /// Structurally inconsistent content.
    #[error("invalid circuit: {0}")]
    Invalid(String),
    /// Input codes that do not fit the circuit.
    #[error("input does not fit the circuit: {0}")]
    Input(String),
}
