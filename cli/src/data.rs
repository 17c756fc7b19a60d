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
        other => bail!("unknown dataset '{other}': use --dataset mnist, or --data-dir DIR for a dataset in IDX format"),
    }
}
