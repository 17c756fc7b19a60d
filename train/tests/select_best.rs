//! Best-epoch selection: the model returned is the QAT epoch that scored best on the held-out
//! training images, and its reported accuracy is that epoch's.

use burn::prelude::Device;
use qfhe_core::{LayerSpec::*, ModelSpec, QuantSpec};
use qfhe_datasets::synthetic::quadrants_dataset;
use qfhe_quant::EncodingConfig;
use qfhe_train::{evaluate_qat, train_model, QSequential, TrainConfig, TrainError};

fn spec() -> ModelSpec {
    ModelSpec {
        input: vec![1, 8, 8],
        classes: 4,
        quant: QuantSpec::default(),
        layers: vec![Flatten, Linear { out: 8 }, Relu, Linear { out: 4 }],
    }
}

fn config(select_best: usize) -> TrainConfig {
    TrainConfig {
        fp32_epochs: 3,
        qat_epochs: 5,
        batch_size: 32,
        lr: 3e-3,
        select_best,
        ..TrainConfig::default()
    }
}

#[test]
fn the_best_validation_epoch_is_kept() {
    let data = quadrants_dataset();
    let build = |d: &Device| QSequential::new(spec(), EncodingConfig::default(), d).unwrap();
    let held_out = data.train.len() / 4;
    let (model, report) = train_model(build, &config(held_out), &data, &Device::flex()).unwrap();
    let qat: Vec<_> = report.epochs.iter().filter(|e| e.phase == "qat").collect();
    assert_eq!(qat.len(), 5);
    let scores: Vec<f64> = qat.iter().map(|e| e.validation_accuracy.unwrap()).collect();
    let best = scores
        .iter()
        .enumerate()
        .fold(0, |b, (i, v)| if *v > scores[b] { i } else { b });
    assert_eq!(report.selected_epoch, Some(best + 1), "{scores:?}");
    assert_eq!(report.qat_accuracy, qat[best].test_accuracy);
    // The model returned is that epoch's: it scores that epoch's test accuracy.
    assert_eq!(
        evaluate_qat(&model, &data.test).unwrap().0,
        report.qat_accuracy
    );
    assert!(report
        .epochs
        .iter()
        .filter(|e| e.phase == "fp32")
        .all(|e| e.validation_accuracy.is_none()));
}

#[test]
fn without_selection_the_last_epoch_is_kept_and_too_large_a_hold_out_is_refused() {
    let data = quadrants_dataset();
    let build = |d: &Device| QSequential::new(spec(), EncodingConfig::default(), d).unwrap();
    let (_, report) = train_model(build, &config(0), &data, &Device::flex()).unwrap();
    assert_eq!(report.selected_epoch, None);
    assert_eq!(
        report.qat_accuracy,
        report.epochs.last().unwrap().test_accuracy
    );
    let Err(err) = train_model(build, &config(data.train.len()), &data, &Device::flex()) else {
        panic!("a hold-out of the whole training set must be refused")
    };
    assert!(
        matches!(err, TrainError::Data(ref m) if m.contains("hold out fewer")),
        "{err}"
    );
}
