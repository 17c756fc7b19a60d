//! The crate's one error type.

/// Why a step of fit → compile → predict failed. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range.
    #[error("{field} = {value} is out of range: {bound}")]
    Config {
        /// The field, e.g. `train.batch_size`.
        field: &'static str,
        /// Its value.
        value: String,
        /// The range it must be in.
        bound: String,
    },
    /// The data does not fit the model or circuit.
    #[error("{what}: the model expects {expected}, the data has {found}")]
    Mismatch {
        /// What differs, e.g. `inputs per image`.
        what: &'static str,
        /// What the model or circuit takes.
        expected: usize,
        /// What the data has.
        found: usize,
    },
    /// No vetted parameter set for the polynomial size.
    #[error("no vetted TFHE parameter set with polynomial size {0}; use 2048 or 8192")]
    PolySize(u32),
    /// A dataset could not be fetched or read.
    #[error(transparent)]
    Data(#[from] qfhe_datasets::DataError),
    /// The model description is invalid.
    #[error(transparent)]
    Model(#[from] qfhe_core::ModelError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] qfhe_train::TrainError),
    /// A tree ensemble could not be trained, read or lowered.
    #[error(transparent)]
    Trees(#[from] qfhe_trees::TreeError),
    /// An ONNX file could not be read or imported.
    #[error(transparent)]
    Onnx(#[from] qfhe_onnx::OnnxError),
    /// Lowering failed.
    #[error(transparent)]
    Export(#[from] qfhe_export::ExportError),
    /// The circuit is invalid, or an input is out of its range.
    #[error(transparent)]
    Circuit(#[from] qfhe_circuit::CircuitError),
    /// The circuit does not meet the error-probability target under the parameters.
    #[error(transparent)]
    Compile(#[from] qfhe_fhe_runtime::CompileError),
    /// The FHE runtime refused a ciphertext list or circuit.
    #[error(transparent)]
    Runtime(#[from] qfhe_fhe_runtime::server::RuntimeError),
    /// The training backend was not compiled in.
    #[error(
        "this build has no {backend} training backend: rebuild with the `{backend}` cargo feature"
    )]
    Backend {
        /// `wgpu` or `ndarray`.
        backend: &'static str,
    },
    /// Reading or writing a saved model failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A saved model's description or weights could not be read.
    #[error("{path} is not a model saved by this version of qfhe ({message}); fit it again")]
    Saved {
        /// The file.
        path: std::path::PathBuf,
        /// What the reader said.
        message: String,
    },
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
