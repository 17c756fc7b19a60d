//! Training: fp32 pre-training, quantizer calibration, QAT fine-tuning.

use crate::batch::{argmax_rows, code_inputs, float_inputs, one_hot};
use crate::model::{MlpConfig, QMlp};
use crate::qat::{PhaseNoise, QatModel};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use qfhe_datasets::{Dataset, ImageSet};
use qfhe_quant::EncodingError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::IsTerminal;
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
    /// Seed for initialisation and shuffling.
    pub seed: u64,
    /// Use only the first `n` training images (tests); `None` uses all.
    pub max_train: Option<usize>,
    /// Use only the first `n` test images for the per-epoch evaluation; `None` uses all.
    pub max_eval: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            fp32_epochs: 18,
            qat_epochs: 12,
            batch_size: 128,
            lr: 1e-3,
            qat_lr: 1e-3,
            qat_noise: true,
            seed: 42,
            max_train: None,
            max_eval: None,
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
    /// Wall time of the epoch's training steps, seconds.
    pub seconds: f64,
}

/// What training measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    /// fp32 model accuracy on the evaluation set, in [0, 1].
    pub fp32_accuracy: f64,
    /// Quantized (QAT forward) accuracy on the evaluation set, in [0, 1].
    pub qat_accuracy: f64,
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

fn progress(len: usize, label: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    if !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_owned());
    pb
}

fn cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let n = logits.dims()[0] as f64;
    (log_softmax(logits, 1) * targets)
        .sum()
        .mul_scalar(-1.0 / n)
}

/// Train an MLP on `data`: fp32, then calibration and QAT (see [`train_model`]).
///
/// # Errors
/// As [`train_model`].
pub fn train(
    model_cfg: MlpConfig,
    cfg: &TrainConfig,
    data: &Dataset,
    device: &Device,
) -> Result<(QMlp, TrainReport), TrainError> {
    train_model(|d| QMlp::new(model_cfg, d), cfg, data, device)
}

/// Train the model `build` makes on `data`: fp32, then calibration and QAT. Returns the QAT
/// model in evaluation mode (no autodiff) and what was measured. Progress bars on stderr when
/// it is a terminal, and one line per epoch.
///
/// # Errors
/// [`TrainError::Data`] if the images do not match the model's inputs or the labels exceed its
/// classes; [`TrainError::Encoding`] if a layer cannot be encoded.
pub fn train_model<M: QatModel>(
    build: impl FnOnce(&Device) -> M,
    cfg: &TrainConfig,
    data: &Dataset,
    device: &Device,
) -> Result<(M, TrainReport), TrainError> {
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
    let classes = model.classes();
    let in_bits = model.in_bits();
    let train_set = match cfg.max_train {
        Some(n) => data.train.head(n),
        None => data.train.clone(),
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
        let pb = progress(batches, &format!("fp32 {epoch}/{}", cfg.fp32_epochs));
        let t = Instant::now();
        let mut loss_sum = 0.0;
        for idx in order.chunks(cfg.batch_size) {
            let x = float_inputs(&train_set, idx, &ad);
            let y = one_hot(&train_set, idx, classes, &ad);
            let loss = cross_entropy(model.forward_float(x).0, y);
            loss_sum += loss.clone().into_scalar::<f32>() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(cosine_lr(cfg.lr, step, fp32_steps), model, grads);
            step += 1;
            pb.inc(1);
            if pb.position().is_multiple_of(20) {
                pb.set_message(format!("loss {:.4}", loss_sum / pb.position() as f64));
            }
        }
        pb.finish_and_clear();
        let seconds = t.elapsed().as_secs_f64();
        fp32_accuracy = evaluate_float(&model.valid(), &eval_set).0;
        log_epoch(
            &mut epochs,
            "fp32",
            epoch,
            loss_sum / batches as f64,
            fp32_accuracy,
            seconds,
        );
    }

    calibrate(&mut model, &train_set);
    let mut opt = AdamConfig::new().init();
    let total_steps = (cfg.qat_epochs * batches).max(1);
    let mut step = 0usize;
    let noise = if cfg.qat_noise {
        PhaseNoise::Modelled
    } else {
        PhaseNoise::Exact
    };
    let mut qat_accuracy = evaluate_qat(&model.valid(), &eval_set)?.0;
    eprintln!(
        "  calibrated quantizers: QAT accuracy before fine-tuning {:.4}",
        qat_accuracy
    );
    for epoch in 1..=cfg.qat_epochs {
        order.shuffle(&mut rng);
        let pb = progress(batches, &format!("QAT {epoch}/{}", cfg.qat_epochs));
        let t = Instant::now();
        let mut loss_sum = 0.0;
        for idx in order.chunks(cfg.batch_size) {
            let x = code_inputs(&train_set, idx, in_bits, &ad);
            let y = one_hot(&train_set, idx, classes, &ad);
            let loss = cross_entropy(model.forward_qat(x, noise)?, y);
            loss_sum += loss.clone().into_scalar::<f32>() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = cosine_lr(cfg.qat_lr, step, total_steps);
            model = opt.step(lr, model, grads);
            step += 1;
            pb.inc(1);
            if pb.position().is_multiple_of(20) {
                pb.set_message(format!(
                    "loss {:.4}  lr {lr:.2e}",
                    loss_sum / pb.position() as f64
                ));
            }
        }
        pb.finish_and_clear();
        let seconds = t.elapsed().as_secs_f64();
        qat_accuracy = evaluate_qat(&model.valid(), &eval_set)?.0;
        log_epoch(
            &mut epochs,
            "qat",
            epoch,
            loss_sum / batches as f64,
            qat_accuracy,
            seconds,
        );
    }
    let report = TrainReport {
        fp32_accuracy,
        qat_accuracy,
        epochs,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((model.valid(), report))
}

/// Cosine decay from `lr` to 5% of it over `total` steps (Loshchilov & Hutter 2017, SGDR
/// without restarts).
fn cosine_lr(lr: f64, step: usize, total: usize) -> f64 {
    let progress = step as f64 / total as f64;
    lr * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

fn log_epoch(
    log: &mut Vec<EpochLog>,
    phase: &str,
    epoch: usize,
    loss: f64,
    acc: f64,
    seconds: f64,
) {
    eprintln!(
        "  {phase:>4} epoch {epoch:>2}: loss {loss:.4}  test accuracy {acc:.4}  ({seconds:.1} s)"
    );
    log.push(EpochLog {
        phase: phase.into(),
        epoch,
        loss,
        test_accuracy: acc,
        seconds,
    });
}

/// LSQ initial weight steps, and activation steps from the float pre-activations of up to 2048
/// training images.
fn calibrate<M: QatModel>(model: &mut M, set: &ImageSet) {
    let idx: Vec<usize> = (0..set.len().min(2048)).collect();
    let x = float_inputs(set, &idx, &model.device());
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
        let logits = model.forward_float(float_inputs(set, chunk, &device)).0;
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
        let x = code_inputs(set, chunk, model.in_bits(), &device);
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
