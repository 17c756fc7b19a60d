//! Shared helpers: a small deterministic synthetic dataset.
#![allow(dead_code)]

use qfhe_datasets::Dataset;

pub fn dataset() -> Dataset {
    qfhe_datasets::synthetic::quadrants_dataset()
}
