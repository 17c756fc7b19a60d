//! `fit`: train a model description, fp32 then quantization-aware, for the encoding of a vetted
//! TFHE parameter set.

use crate::{Error, Result};
use burn::module::Module;
use burn::prelude::Device;
use qfhe_core::{LayerSpec, ModelParams, ModelSpec};
use qfhe_datasets::Dataset;
use qfhe_fhe_runtime::FheParams;
use qfhe_quant::EncodingConfig;
use qfhe_train::{select_device, DeviceChoice, QSequential, TrainConfig, TrainEvent, TrainReport};
use std::path::Path;

/// How to fit a model. [`FitConfig::default`] is what the `qfhe` command uses.
#[derive(Debug, Clone)]
pub struct FitConfig {
    /// Epochs, batch size, learning rates, noise-aware QAT, seed.
    pub train: TrainConfig,
    /// PBS polynomial size `N` of the parameter set the circuit is encoded for (2048 or 8192);
    /// the encoding's noise figures are taken from that set.
    pub poly_size: u32,
    /// Narrowest table step to train for, in PBS slots (the accumulator-aware bound): wider
    /// steps mean fewer off-by-one table reads under FHE, at some accuracy cost.
    pub min_step_slots: f64,
    /// Training backend.
    pub device: DeviceChoice,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            train: TrainConfig::default(),
            poly_size: 2048,
            min_step_slots: 40.0,
            device: DeviceChoice::Flex,
        }
    }
}

impl FitConfig {
    /// Check every field.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field and its bound, [`Error::PolySize`] for a polynomial
    /// size without a parameter set.
    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        let bad = |field, value: String, bound: &str| {
            Err(Error::Config {
                field,
                value,
                bound: bound.into(),
            })
        };
        if t.batch_size == 0 {
            return bad("train.batch_size", "0".into(), "at least 1");
        }
        for (field, lr) in [("train.lr", t.lr), ("train.qat_lr", t.qat_lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                return bad(field, lr.to_string(), "a positive learning rate");
            }
        }
        if !(0.0..1.0).contains(&t.distill) {
            return bad(
                "train.distill",
                t.distill.to_string(),
                "a weight in [0, 1) (0: no distillation)",
            );
        }
        if !(0.0..=10.0).contains(&t.qat_noise_scale) {
            return bad(
                "train.qat_noise_scale",
                t.qat_noise_scale.to_string(),
                "a factor in [0, 10] on the modelled noise (1: the circuit's own)",
            );
        }
        if !(self.min_step_slots.is_finite() && self.min_step_slots > 0.0) {
            return bad(
                "min_step_slots",
                self.min_step_slots.to_string(),
                "a positive number of slots",
            );
        }
        self.params().map(|_| ())
    }

    fn params(&self) -> Result<FheParams> {
        FheParams::by_poly_size(self.poly_size).ok_or(Error::PolySize(self.poly_size))
    }

    /// The torus encoding the model is trained for: the parameter set's polynomial size and
    /// noise figures, this configuration's minimum step.
    ///
    /// # Errors
    /// As [`FitConfig::validate`].
    pub fn encoding(&self) -> Result<EncodingConfig> {
        self.validate()?;
        let params = self.params()?;
        Ok(EncodingConfig {
            poly_size: params.poly_size(),
            min_step_slots: self.min_step_slots,
            noise: params.noise_spec(),
            ..EncodingConfig::default()
        })
    }
}

/// Where [`Model::save`] keeps the parameters of a model read from a file.
const PARAMS_FILE: &str = "params.json";

/// A fitted model: the trained network, its description and what training measured.
#[derive(Debug, Clone)]
pub struct Model {
    pub(crate) net: QSequential,
    pub(crate) info: ModelInfo,
    /// The parameters of a model read from a file ([`Model::from_onnx`],
    /// [`Model::calibrate_onnx`]), which its float reference evaluates.
    pub(crate) params: Option<std::sync::Arc<ModelParams>>,
    /// Whether the network is built from `params` as they are (a quantization-aware model
    /// read from a file), rather than trained or calibrated here.
    pub(crate) given: bool,
}

/// What is saved beside a model's weights (`model.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// The dataset it was trained on.
    pub dataset: String,
    /// Its name (preset or file stem).
    pub name: String,
    /// The architecture.
    pub model: ModelSpec,
    /// The encoding it was trained for.
    pub encoding: EncodingConfig,
    /// Training hyper-parameters.
    pub train: TrainConfig,
    /// fp32 accuracy on the evaluation set, in [0, 1].
    pub fp32_accuracy: f64,
    /// Quantized (QAT forward) accuracy on the evaluation set, in [0, 1].
    pub qat_accuracy: f64,
    /// The QAT epoch kept by best-epoch selection on held-out training images
    /// ([`TrainConfig::select_best`]), `None` when the last epoch was kept.
    #[serde(default)]
    pub selected_epoch: Option<usize>,
    /// Wall time of training (both phases), seconds.
    #[serde(default)]
    pub train_seconds: f64,
}

/// Train `spec` on `data` (fp32, then calibration and quantization-aware training) for the
/// encoding `cfg` names. Reports nothing while it runs; see [`fit_with`].
///
/// # Errors
/// As [`fit_with`].
pub fn fit(spec: &ModelSpec, data: &Dataset, cfg: &FitConfig) -> Result<Model> {
    fit_with(spec, data, cfg, &mut |_| {})
}

/// [`fit`], calling `progress` with every [`TrainEvent`] (epochs, mini-batches, calibration).
///
/// # Errors
/// [`Error::Model`] for an invalid description, [`Error::Config`] for an invalid `cfg`,
/// [`Error::Mismatch`] when the images do not have the model's inputs, [`Error::Train`] when
/// training fails (a layer that cannot be encoded), [`Error::Backend`] for a backend not built.
pub fn fit_with(
    spec: &ModelSpec,
    data: &Dataset,
    cfg: &FitConfig,
    progress: &mut dyn FnMut(TrainEvent<'_>),
) -> Result<Model> {
    let encoding = cfg.encoding()?;
    spec.validate()?;
    if let Some(i) = spec.layers.iter().position(|l| *l == LayerSpec::Sign) {
        // Its gradient is zero almost everywhere: fp32 training would not move.
        return Err(Error::Config {
            field: "model.layers",
            value: format!("layers[{i}] (sign)"),
            bound: "activations with a gradient; sign is read from binarized models trained \
                    elsewhere (ONNX BipolarQuant): train with tanh or identity instead"
                .into(),
        });
    }
    let inputs: usize = spec.input.iter().product();
    if inputs != data.train.pixels() {
        return Err(Error::Mismatch {
            what: "inputs per image",
            expected: inputs,
            found: data.train.pixels(),
        });
    }
    let device = select_device(cfg.device).map_err(|_| Error::Backend {
        backend: match cfg.device {
            DeviceChoice::Wgpu => "wgpu",
            _ => "ndarray",
        },
    })?;
    let build = |d: &Device| QSequential::new(spec.clone(), encoding, d).expect("validated");
    let (net, report) = qfhe_train::train_model_with(build, &cfg.train, data, &device, progress)?;
    Ok(Model {
        net,
        info: info(spec, data, encoding, cfg, &report),
        params: None,
        given: false,
    })
}

fn info(
    spec: &ModelSpec,
    data: &Dataset,
    encoding: EncodingConfig,
    cfg: &FitConfig,
    report: &TrainReport,
) -> ModelInfo {
    ModelInfo {
        dataset: data.name.clone(),
        name: "model".into(),
        model: spec.clone(),
        encoding,
        train: cfg.train.clone(),
        fp32_accuracy: report.fp32_accuracy,
        qat_accuracy: report.qat_accuracy,
        selected_epoch: report.selected_epoch,
        train_seconds: report.seconds,
    }
}

impl Model {
    /// What was saved or measured: description, encoding, accuracies.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The name reports use.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.info.name = name.into();
    }

    /// The trained network.
    pub fn network(&self) -> &QSequential {
        &self.net
    }

    /// Lower the model to its circuit (no parameter check; see [`Model::compile`]), carrying
    /// the dataset's name and the fp32 accuracy for reports.
    ///
    /// # Errors
    /// [`Error::Export`] when a layer cannot be lowered.
    pub fn circuit(&self) -> Result<qfhe_circuit::Circuit> {
        let mut circuit = qfhe_export::lower(&self.net, &self.info.dataset)?;
        circuit.meta.fp32_accuracy = Some(self.info.fp32_accuracy);
        if let Some(q) = self.net.input {
            // The file's input quantizer: the client turns raw values into the codes.
            let n = circuit.features();
            circuit.input.quantizer = Some(qfhe_circuit::FeatureQuantizer {
                low: vec![q.low; n],
                step: vec![q.step; n],
                edges: None,
            });
            circuit.validate()?;
        }
        Ok(circuit)
    }

    /// Save as `dir/model.bpk` (weights) and `dir/model.json` ([`ModelInfo`]); a
    /// quantization-aware model read from a file also writes its parameters to
    /// `dir/params.json`, which [`Model::load`] builds it from.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Saved`] when a file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.into(),
            source,
        })?;
        if let Some(params) = self.params.as_ref().filter(|_| self.given) {
            let path = dir.join(PARAMS_FILE);
            let json = serde_json::to_vec(params.as_ref()).expect("plain data");
            std::fs::write(&path, json).map_err(|source| Error::Io { path, source })?;
        }
        let weights = dir.join("model.bpk");
        self.net
            .clone()
            .save_file(&weights)
            .map_err(|e| Error::Saved {
                path: weights,
                message: format!("{e:?}"),
            })?;
        let path = dir.join("model.json");
        let json = serde_json::to_vec_pretty(&self.info).expect("plain data");
        std::fs::write(&path, json).map_err(|source| Error::Io { path, source })
    }

    /// Load what [`Model::save`] wrote.
    ///
    /// # Errors
    /// [`Error::Io`] for a missing file, [`Error::Saved`] for files this version cannot read,
    /// [`Error::Model`] for a description that is not valid.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("model.json");
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let info: ModelInfo = serde_json::from_slice(&bytes).map_err(|e| Error::Saved {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let params_path = dir.join(PARAMS_FILE);
        if params_path.exists() {
            let bytes = std::fs::read(&params_path).map_err(|source| Error::Io {
                path: params_path.clone(),
                source,
            })?;
            let params: ModelParams = serde_json::from_slice(&bytes).map_err(|e| Error::Saved {
                path: params_path,
                message: e.to_string(),
            })?;
            let net = QSequential::from_params(
                info.model.clone(),
                &params,
                info.encoding,
                &Device::flex(),
            )?;
            return Ok(Self {
                net,
                info,
                params: Some(std::sync::Arc::new(params)),
                given: true,
            });
        }
        let weights = dir.join("model.bpk");
        let net = QSequential::new_folded(info.model.clone(), info.encoding, &Device::flex())?
            .try_load_file(&weights)
            .map_err(|e| Error::Saved {
                path: weights,
                message: format!("{e:?}"),
            })?;
        Ok(Self {
            net,
            info,
            params: None,
            given: false,
        })
    }
}
