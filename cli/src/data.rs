//! Loading the dataset named on the command line.

use crate::args::DataArgs;
use anyhow::{bail, Context};
use qfhe::Dataset;

/// The dataset of `--dataset` / `--data-dir`.
pub fn load(args: &DataArgs) -> anyhow::Result<Dataset> {
    if let Some(dir) = &args.data_dir {
        return Dataset::from_dir(dir)
            .with_context(|| format!("loading the IDX dataset in {}", dir.display()));
    }
    match args.dataset.as_str() {
        "mnist" => Ok(Dataset::mnist()?),
        other => bail!("unknown dataset '{other}': use --dataset mnist, a table ({}), --data-dir DIR for images in IDX format or --data-csv FILE for a table", qfhe::datasets::bundled::NAMES.join(", ")),
    }
}

/// Whether `args` name a table (a bundled one or a CSV file) rather than images.
pub fn is_tabular(args: &DataArgs) -> bool {
    args.data_csv.is_some()
        || (args.data_dir.is_none() && qfhe::datasets::bundled::task(&args.dataset).is_some())
}
