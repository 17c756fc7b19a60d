//! Shared helpers: a small deterministic synthetic dataset and a trained tiny model.
#![allow(dead_code)]

use burn::prelude::*;
use qfhe_datasets::Dataset;
use qfhe_quant::EncodingConfig;
use qfhe_train::{MlpConfig, QMlp, TrainConfig};

pub fn dataset() -> Dataset {
    qfhe_datasets::synthetic::quadrants_dataset()
}

/// A 64-24-16-4 w3/a3 model trained for a few epochs (seconds).
pub fn trained_model(data: &Dataset) -> (QMlp, qfhe_train::TrainReport) {
    let cfg = MlpConfig {
        inputs: 64,
        hidden: vec![24, 16],
        classes: 4,
        w_bits: 3,
        out_w_bits: 4,
        a_bits: 3,
        in_bits: 3,
        encoding: EncodingConfig::default(),
    };
    let tc = TrainConfig {
        fp32_epochs: 2,
        qat_epochs: 2,
        batch_size: 64,
        ..TrainConfig::default()
    };
    qfhe_train::train(cfg, &tc, data, &Device::flex()).expect("training")
}
