//! Shared helpers: a small deterministic synthetic dataset and a trained tiny model.
#![allow(dead_code)]

use burn::prelude::*;
use qfhe_datasets::{Dataset, ImageSet};
use qfhe_quant::EncodingConfig;
use qfhe_train::{MlpConfig, QMlp, TrainConfig};

/// 8x8 images, 4 classes: class c lights quadrant c, plus pseudo-random speckle.
pub fn synthetic(n: usize, seed: u64) -> ImageSet {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    let mut images = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = (next() % 4) as usize;
        for r in 0..8 {
            for col in 0..8 {
                let quadrant = (r / 4) * 2 + col / 4;
                let base = if quadrant == c {
                    150 + next() % 100
                } else {
                    next() % 90
                };
                images.push(base.min(255) as u8);
            }
        }
        labels.push(c as u8);
    }
    ImageSet {
        images,
        labels,
        rows: 8,
        cols: 8,
    }
}

pub fn dataset() -> Dataset {
    Dataset {
        name: "synthetic".into(),
        train: synthetic(1500, 1),
        test: synthetic(300, 2),
        num_classes: 4,
    }
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
