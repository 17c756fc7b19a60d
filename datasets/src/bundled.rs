//! The small tabular datasets bundled with qfhe (`data/README.md` gives their sources and
//! licences) and the named synthetic ones, by the names `--dataset` takes.

use crate::error::DataError;
use crate::generate;
use crate::tabular::{CsvOptions, Table, Task};

/// Names of the tabular datasets `--dataset` takes.
pub const NAMES: [&str; 7] = [
    "iris",
    "breast-cancer",
    "wine",
    "digits",
    "diabetes",
    "synthetic-regression",
    "synthetic-classification",
];

/// The task of the named dataset, `None` for an unknown name.
pub fn task(name: &str) -> Option<Task> {
    match name {
        "iris" | "breast-cancer" | "wine" | "digits" | "synthetic-classification" => {
            Some(Task::Classification)
        }
        "diabetes" | "synthetic-regression" => Some(Task::Regression),
        _ => None,
    }
}

/// Seed of the named synthetic sets, so that every run sees the same rows.
const SYNTHETIC_SEED: u64 = 0;

/// Load a tabular dataset by name: a bundled CSV, or a synthetic set
/// ([`generate::regression`]: 1000 rows, 10 features of which 5 informative, noise σ = 40;
/// [`generate::classification`]: 1000 rows, 20 features, 2 informative, 2 redundant,
/// 2 classes, class separation 1, 1% of labels flipped).
///
/// # Errors
/// [`DataError::UnknownDataset`] for a name not in [`NAMES`].
pub fn load(name: &str) -> Result<Table, DataError> {
    let csv = |bytes: &[u8], task| {
        Table::from_csv(bytes, name, &CsvOptions::new(task)).expect("bundled files are valid")
    };
    Ok(match name {
        "iris" => csv(include_bytes!("../data/iris.csv"), Task::Classification),
        "breast-cancer" => csv(
            include_bytes!("../data/breast_cancer.csv"),
            Task::Classification,
        ),
        "wine" => csv(include_bytes!("../data/wine.csv"), Task::Classification),
        "digits" => {
            let gz: &[u8] = include_bytes!("../data/digits.csv.gz");
            Table::from_csv(
                flate2::read::GzDecoder::new(gz),
                name,
                &CsvOptions::new(Task::Classification),
            )
            .expect("bundled files are valid")
        }
        "diabetes" => csv(include_bytes!("../data/diabetes.csv"), Task::Regression),
        "synthetic-regression" => generate::regression(1000, 10, 5, 40.0, SYNTHETIC_SEED),
        "synthetic-classification" => {
            generate::classification(&generate::ClassificationSpec::default(), SYNTHETIC_SEED)
        }
        _ => {
            return Err(DataError::UnknownDataset {
                name: name.to_owned(),
                known: NAMES.to_vec(),
            })
        }
    })
}
