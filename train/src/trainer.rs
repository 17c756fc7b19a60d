//! Training: fp32 pre-training, quantizer calibration, QAT fine-tuning.

use crate::batch::{argmax_rows, batch_inputs, code_inputs, float_inputs, one_hot, Augment};
use crate::progress::{Phase, TrainEvent};
use crate::qat::{PhaseNoise, QatModel};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use qfhe_datasets::{Dataset, ImageSet};
use qfhe_quant::EncodingError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::time::Instant;

/// Training hyper-parameters.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Epochs of fp32 training (the fp32 accuracy column comes from this model).
    pub fp32_epochs: usize,
    /// Epochs of QAT fine-tuning from the fp32 model.
    pub qat_epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Initial Adam learning rate for fp32 training (cosine decay to 5% of it).
    pub lr: f64,
    /// Initial Adam learning rate for QAT (cosine decay to 5% of it).
    pub qat_lr: f64,
    /// Noise-aware QAT: train through the FHE noise model's phase noise
    /// ([`PhaseNoise::Modelled`]); evaluation always uses the exact circuit.
    #[serde(default)]
    pub qat_noise: bool,
    /// Factor on the modelled noise std in noise-aware QAT (1: the circuit's own noise; a
    /// little above 1 trains a margin, so fewer predictions change under the real noise).
    #[serde(default = "unit_scale")]
    pub qat_noise_scale: f64,
    /// Data augmentation: each training image is moved by a random whole-pixel translation of
    /// up to this many pixels in each direction (uniform, drawn per image and epoch, border
    /// filled with background), in both phases. 0 trains on the images as they are. Evaluation
    /// never augments.
    #[serde(default)]
    pub augment_shift: usize,
    /// Best-epoch selection: hold out this many images from the end of the training set (they
    /// are not trained on), evaluate the QAT model on them after every QAT epoch, and keep the
    /// epoch that scores best there instead of the last one. 0 keeps the last epoch and trains
    /// on every image. The test set never takes part in the choice.
    #[serde(default)]
    pub select_best: usize,
    /// Seed for initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Use only the first `n` training images (tests); `None` uses all.
    pub max_train: Option<usize>,
    /// Use only the first `n` test images for the per-epoch evaluation; `None` uses all.
    pub max_eval: Option<usize>,
    /// Knowledge distillation in QAT: the weight `α ∈ [0, 1)` of the loss that pulls the
    /// quantized model's softened predictions toward the fp32 model's (Hinton et al. 2015:
    /// `(1 − α)·CE + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T))`, `T` =
    /// [`DISTILL_TEMPERATURE`]). 0 trains on the labels alone.
    #[serde(default)]
    pub distill: f64,
}

fn unit_scale() -> f64 {
    1.0
}

/// Temperature of the distillation loss ([`TrainConfig::distill`]).
pub const DISTILL_TEMPERATURE: f64 = 2.0;

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            fp32_epochs: 18,
            qat_epochs: 12,
            batch_size: 128,
            lr: 1e-3,
            qat_lr: 1e-3,
            qat_noise: true,
            qat_noise_scale: 1.0,
            augment_shift: 0,
            select_best: 0,
            seed: 42,
            max_train: None,
            max_eval: None,
            distill: 0.0,
        }
    }
}

/// One epoch's numbers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochLog {
    /// `fp32` or `qat`.
    pub phase: String,
    /// 1-based epoch number within its phase.
    pub epoch: usize,
    /// Mean training cross-entropy.
    pub loss: f64,
    /// Test accuracy after the epoch, in [0, 1].
    pub test_accuracy: f64,
    /// Accuracy on the held-out validation images ([`TrainConfig::select_best`]), QAT epochs
    /// only.
    pub validation_accuracy: Option<f64>,
    /// Wall time of the epoch's training steps, seconds.
    pub seconds: f64,
}

/// What training measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    /// fp32 model accuracy on the evaluation set, in [0, 1].
    pub fp32_accuracy: f64,
    /// Quantized (QAT forward) accuracy on the evaluation set, in [0, 1], of the model returned.
    pub qat_accuracy: f64,
    /// The QAT epoch returned when [`TrainConfig::select_best`] chose one (1-based).
    pub selected_epoch: Option<usize>,
    /// Per-epoch log.
    pub epochs: Vec<EpochLog>,
    /// Total training wall time, seconds.
    pub seconds: f64,
}

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A layer's accumulator range cannot be encoded.
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    /// The model configuration is out of range.
    #[error(transparent)]
    Model(#[from] qfhe_core::ModelError),
    /// The dataset does not fit the model.
    #[error("{0}")]
    Data(String),
}

fn cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let n = logits.dims()[0] as f64;
    (log_softmax(logits, 1) * targets)
        .sum()
        .mul_scalar(-1.0 / n)
}

/// `T²·KL(softmax(teacher/T) ‖ softmax(student/T))`, mean over the batch; the teacher's logits
/// carry no gradient.
fn distillation(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let t = DISTILL_TEMPERATURE;
    let n = student.dims()[0] as f64;
    let log_p = log_softmax(teacher.detach().div_scalar(t), 1);
    let log_q = log_softmax(student.div_scalar(t), 1);
    (log_p.clone().exp() * (log_p - log_q))
        .sum()
        .mul_scalar(t * t / n)
}

/// Train the model `build` makes on `data`: fp32, then calibration and QAT. Returns the QAT
/// model in evaluation mode (no autodiff) and what was measured. Reports nothing while it runs;
/// see [`train_model_with`].
///
/// # Errors
/// As [`train_model_with`].
pub fn train_model<M: QatModel>(
    build: impl FnOnce(&Device) -> M,
    cfg: &TrainConfig,
    data: &Dataset,
    device: &Device,
) -> Result<(M, TrainReport), TrainError> {
    train_model_with(build, cfg, data, device, &mut |_| {})
}

/// [`train_model`], calling `progress` with every [`TrainEvent`] (epoch starts and ends,
/// mini-batches, calibration) so a caller can draw progress.
///
/// # Errors
/// [`TrainError::Data`] if the images do not match the model's inputs or the labels exceed its
/// classes, or the batch size is 0; [`TrainError::Encoding`] if a layer cannot be encoded.
pub fn train_model_with<M: QatModel>(
    build: impl FnOnce(&Device) -> M,
    cfg: &TrainConfig,
    data: &Dataset,
    device: &Device,
    progress: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<(M, TrainReport), TrainError> {
    if cfg.batch_size == 0 {
        return Err(TrainError::Data(
            "the batch size is 0; use at least 1".into(),
        ));
    }
    let ad = device.clone().autodiff();
    ad.seed(cfg.seed);
    let mut model = build(&ad);
    if data.train.pixels() != model.inputs() {
        return Err(TrainError::Data(format!(
            "images have {} pixels but the model expects {} inputs",
            data.train.pixels(),
            model.inputs()
        )));
    }
    if data.num_classes > model.classes() {
        return Err(TrainError::Data(format!(
            "labels go up to {} but the model has {} classes",
            data.num_classes - 1,
            model.classes()
        )));
    }
    let start = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    // Its own stream, so that turning augmentation on does not change the shuffling order.
    let mut augment = Augment::new(cfg.augment_shift, cfg.seed);
    let classes = model.classes();
    let in_bits = model.in_bits();
    let train_set = match cfg.max_train {
        Some(n) => data.train.head(n),
        None => data.train.clone(),
    };
    let (train_set, validation) = if cfg.select_best > 0 {
        if cfg.select_best >= train_set.len() {
            return Err(TrainError::Data(format!(
                "{} images held out for best-epoch selection, but the training set has {}; hold out fewer",
                cfg.select_best,
                train_set.len()
            )));
        }
        let cut = train_set.len() - cfg.select_best;
        (
            train_set.head(cut),
            Some(train_set.range(cut, train_set.len())),
        )
    } else {
        (train_set, None)
    };
    let eval_set = match cfg.max_eval {
        Some(n) => data.test.head(n),
        None => data.test.clone(),
    };
    let mut epochs = Vec::new();
    let mut order: Vec<usize> = (0..train_set.len()).collect();
    let batches = order.len().div_ceil(cfg.batch_size);

    let mut opt = AdamConfig::new().init();
    let mut fp32_accuracy = 0.0;
    let fp32_steps = (cfg.fp32_epochs * batches).max(1);
    let mut step = 0usize;
    for epoch in 1..=cfg.fp32_epochs {
        order.shuffle(&mut rng);
        progress(TrainEvent::EpochStart {
            phase: Phase::Fp32,
            epoch,
            epochs: cfg.fp32_epochs,
            steps: batches,
        });
        let t = Instant::now();
        let mut loss_sum = 0.0;
        for (done, idx) in order.chunks(cfg.batch_size).enumerate() {
            let x = float_inputs(&train_set, idx, &mut augment, &ad);
            let y = one_hot(&train_set, idx, classes, &ad);
            let loss = cross_entropy(model.forward_float(x).0, y);
            loss_sum += loss.clone().into_scalar::<f32>() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = cosine_lr(cfg.lr, step, fp32_steps);
            model = opt.step(lr, model, grads);
            step += 1;
            progress(TrainEvent::Step {
                mean_loss: loss_sum / (done + 1) as f64,
                lr,
            });
        }
        let seconds = t.elapsed().as_secs_f64();
        fp32_accuracy = evaluate_float(&model.valid(), &eval_set).0;
        epochs.push(EpochLog {
            phase: Phase::Fp32.name().into(),
            epoch,
            loss: loss_sum / batches as f64,
            test_accuracy: fp32_accuracy,
            validation_accuracy: None,
            seconds,
        });
        progress(TrainEvent::EpochEnd(epochs.last().expect("just pushed")));
    }

    // The fp32 model, before calibration folds its batch norms, teaches the quantized one; it
    // runs without autodiff, so its forward records no graph.
    let teacher = (cfg.distill > 0.0).then(|| model.valid());
    calibrate(&mut model, &train_set);
    let mut opt = AdamConfig::new().init();
    let total_steps = (cfg.qat_epochs * batches).max(1);
    let mut step = 0usize;
    let noise = if cfg.qat_noise {
        PhaseNoise::Modelled {
            scale: cfg.qat_noise_scale as f32,
        }
    } else {
        PhaseNoise::Exact
    };
    let mut qat_accuracy = evaluate_qat(&model.valid(), &eval_set)?.0;
    progress(TrainEvent::Calibrated { qat_accuracy });
    // (validation accuracy, epoch, test accuracy, model) of the best epoch so far.
    let mut best: Option<(f64, usize, f64, M)> = None;
    for epoch in 1..=cfg.qat_epochs {
        order.shuffle(&mut rng);
        progress(TrainEvent::EpochStart {
            phase: Phase::Qat,
            epoch,
            epochs: cfg.qat_epochs,
            steps: batches,
        });
        let t = Instant::now();
        let mut loss_sum = 0.0;
        for (done, idx) in order.chunks(cfg.batch_size).enumerate() {
            // The teacher's pixels only when there is a teacher, on its (non-autodiff) device.
            let pixels_on = teacher.as_ref().map(|_| device);
            let (x, pixels) = batch_inputs(&train_set, idx, in_bits, &mut augment, &ad, pixels_on);
            let y = one_hot(&train_set, idx, classes, &ad);
            let logits = model.forward_qat(x, noise)?;
            let loss = match (&teacher, pixels) {
                (Some(t), Some(pixels)) => {
                    let soft = Tensor::<2>::from_data(t.forward_float(pixels).0.into_data(), &ad);
                    cross_entropy(logits.clone(), y).mul_scalar(1.0 - cfg.distill)
                        + distillation(logits, soft).mul_scalar(cfg.distill)
                }
                _ => cross_entropy(logits, y),
            };
            loss_sum += loss.clone().into_scalar::<f32>() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = cosine_lr(cfg.qat_lr, step, total_steps);
            model = opt.step(lr, model, grads);
            step += 1;
            progress(TrainEvent::Step {
                mean_loss: loss_sum / (done + 1) as f64,
                lr,
            });
        }
        let seconds = t.elapsed().as_secs_f64();
        let current = model.valid();
        qat_accuracy = evaluate_qat(&current, &eval_set)?.0;
        let validation_accuracy = match &validation {
            Some(v) => Some(evaluate_qat(&current, v)?.0),
            None => None,
        };
        if let Some(v) = validation_accuracy {
            if best.as_ref().is_none_or(|(b, ..)| v > *b) {
                best = Some((v, epoch, qat_accuracy, current));
            }
        }
        epochs.push(EpochLog {
            phase: Phase::Qat.name().into(),
            epoch,
            loss: loss_sum / batches as f64,
            test_accuracy: qat_accuracy,
            validation_accuracy,
            seconds,
        });
        progress(TrainEvent::EpochEnd(epochs.last().expect("just pushed")));
    }
    let (model, qat_accuracy, selected_epoch) = match best {
        Some((_, epoch, accuracy, chosen)) => (chosen, accuracy, Some(epoch)),
        None => (model.valid(), qat_accuracy, None),
    };
    let report = TrainReport {
        fp32_accuracy,
        qat_accuracy,
        selected_epoch,
        epochs,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((model, report))
}

/// Cosine decay from `lr` to 5% of it over `total` steps (Loshchilov & Hutter 2017, SGDR
/// without restarts).
fn cosine_lr(lr: f64, step: usize, total: usize) -> f64 {
    let progress = step as f64 / total as f64;
    lr * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

/// LSQ initial weight steps, and activation steps from the float pre-activations of up to 2048
/// training images.
fn calibrate<M: QatModel>(model: &mut M, set: &ImageSet) {
    let idx: Vec<usize> = (0..set.len().min(2048)).collect();
    let x = float_inputs(set, &idx, &mut Augment::none(), &model.device());
    let (_, pre) = model.forward_float(x);
    model.init_quantizers(pre.into_iter().map(|z| z.detach()).collect());
}

const EVAL_BATCH: usize = 1000;

/// Float accuracy of `model` on `set` and its predictions.
pub fn evaluate_float<M: QatModel>(model: &M, set: &ImageSet) -> (f64, Vec<usize>) {
    let device = model.device();
    let mut preds = Vec::with_capacity(set.len());
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(EVAL_BATCH) {
        let logits = model
            .forward_float(float_inputs(set, chunk, &mut Augment::none(), &device))
            .0;
        preds.extend(argmax_rows(
            &logits.into_data().try_into_vec::<f32>().expect("f32"),
            model.classes(),
        ));
    }
    (accuracy(&preds, &set.labels), preds)
}

/// Quantized (QAT forward) accuracy of `model` on `set`, its predictions and logits
/// (`[n, classes]` row-major).
///
/// # Errors
/// [`TrainError::Encoding`] if a layer cannot be encoded.
pub fn evaluate_qat<M: QatModel>(
    model: &M,
    set: &ImageSet,
) -> Result<(f64, Vec<usize>, Vec<f32>), TrainError> {
    let device = model.device();
    let mut preds = Vec::with_capacity(set.len());
    let mut all = Vec::with_capacity(set.len() * model.classes());
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(EVAL_BATCH) {
        let x = code_inputs(set, chunk, model.in_bits(), &mut Augment::none(), &device);
        let logits = model.forward_qat(x, PhaseNoise::Exact)?;
        let v = logits.into_data().try_into_vec::<f32>().expect("f32");
        preds.extend(argmax_rows(&v, model.classes()));
        all.extend(v);
    }
    Ok((accuracy(&preds, &set.labels), preds, all))
}

/// Fraction of `preds` equal to `labels`.
pub fn accuracy(preds: &[usize], labels: &[u8]) -> f64 {
    let ok = preds
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p == **l as usize)
        .count();
    ok as f64 / preds.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(v: &[f32]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v.to_vec(), [2, 3]), &Device::flex())
    }

    fn value(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn distillation_is_zero_only_when_the_student_agrees_with_the_teacher() {
        let teacher = logits(&[2.0, 0.5, -1.0, 0.0, 3.0, 1.0]);
        assert!(value(distillation(teacher.clone(), teacher.clone())).abs() < 1e-6);
        // Shifting a row's logits by a constant changes no probability.
        let shifted = logits(&[7.0, 5.5, 4.0, -2.0, 1.0, -1.0]);
        assert!(value(distillation(shifted, teacher.clone())).abs() < 1e-5);
        let other = logits(&[0.0, 0.5, 2.0, 3.0, 0.0, 1.0]);
        let far = value(distillation(other, teacher.clone()));
        let near = value(distillation(
            logits(&[1.8, 0.5, -0.8, 0.0, 2.9, 1.0]),
            teacher,
        ));
        assert!(far > near && near > 0.0, "{far} {near}");
    }
}
