//! Models trained elsewhere, read from ONNX files: quantization-aware models exported from
//! PyTorch with Brevitas (QONNX or QCDQ), whose weight codes, scales and bit widths are kept as
//! they are, and float models, quantized here by calibration (and optionally fine-tuned). The
//! model is then lowered, compiled and run like a model fitted here.

use crate::fit::{FitConfig, Model, ModelInfo};
use crate::{Error, Result};
use burn::prelude::Device;
use qfhe_core::{ModelParams, QuantSpec};
use qfhe_datasets::{Dataset, ImageSet, Table, Target};
use qfhe_fhe_runtime::FheParams;
use qfhe_quant::EncodingConfig;
use qfhe_train::{select_device, DeviceChoice, QSequential, TrainConfig, TrainEvent};
use std::path::Path;
use std::sync::Arc;

impl Model {
    /// Read a quantization-aware model from an ONNX file ([`qfhe_onnx::load`]) for the vetted
    /// parameter set of polynomial size 2048.
    ///
    /// # Errors
    /// As [`Model::from_onnx_with`].
    pub fn from_onnx(path: &Path) -> Result<(Self, Vec<String>)> {
        Self::from_onnx_with(path, 2048)
    }

    /// [`Model::from_onnx`] for the parameter set of polynomial size `poly_size` (2048 or
    /// 8192). Returns the model and the import's notes (quantizers read, batch norms folded).
    ///
    /// # Errors
    /// [`Error::Onnx`] for a file that cannot be read or imported (the message names the
    /// node and what to change); [`Error::Config`] for a float graph (no quantizers);
    /// [`Error::PolySize`]; [`Error::Model`] for parameters the model cannot take.
    pub fn from_onnx_with(path: &Path, poly_size: u32) -> Result<(Self, Vec<String>)> {
        let imported = qfhe_onnx::load(path)?;
        if !imported.quantized {
            return Err(Error::Config {
                field: "model",
                value: format!("{} (a float graph)", path.display()),
                bound: "a quantization-aware model, whose weights and activations pass \
                        through quantizers (Brevitas QuantLinear/QuantConv2d/QuantReLU, \
                        exported with export_qonnx or export_onnx_qcdq); a float model needs \
                        calibration data (Model::calibrate_onnx)"
                    .into(),
            });
        }
        let params = FheParams::by_poly_size(poly_size).ok_or(Error::PolySize(poly_size))?;
        let encoding = EncodingConfig {
            poly_size: params.poly_size(),
            noise: params.noise_spec(),
            ..EncodingConfig::default()
        };
        let net = QSequential::from_params(
            imported.spec.clone(),
            &imported.params,
            encoding,
            &Device::flex(),
        )?;
        let name = path
            .file_stem()
            .map_or("onnx".into(), |s| s.to_string_lossy().into_owned());
        let info = ModelInfo {
            dataset: String::new(),
            name,
            model: imported.spec,
            encoding,
            train: TrainConfig::default(),
            fp32_accuracy: 0.0,
            qat_accuracy: 0.0,
            selected_epoch: None,
            train_seconds: 0.0,
        };
        let mut notes = imported.notes;
        notes.extend(resolution_notes(&net, &encoding)?);
        let model = Model {
            net,
            info,
            params: Some(Arc::new(imported.params)),
            given: true,
        };
        Ok((model, notes))
    }

    /// Read a float model (no quantizers) from an ONNX file and quantize it for the circuit:
    /// calibration on `data`'s training images sets every weight and activation step for the
    /// bit widths `quant` (post-training quantization), then `cfg.train.qat_epochs` epochs of
    /// quantization-aware training fine-tune it from the file's weights (0: calibration only).
    /// The file's weights are the fp32 model: no fp32 epochs run, and the fp32 accuracy
    /// reported is the file's model on `data`'s test images ([`Model::reference_accuracy`]).
    ///
    /// # Errors
    /// [`Error::Onnx`] for a file that cannot be read or imported; [`Error::Config`] for a
    /// quantization-aware file (use [`Model::from_onnx`]) or an invalid `cfg`;
    /// [`Error::Mismatch`] when the images do not have the model's inputs; as [`crate::fit_with`].
    pub fn calibrate_onnx(
        path: &Path,
        quant: QuantSpec,
        data: &Dataset,
        cfg: &FitConfig,
        progress: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<(Self, Vec<String>)> {
        quant.validate("quant.")?;
        let encoding = cfg.encoding()?;
        let imported = qfhe_onnx::load_with(path, quant)?;
        if imported.quantized {
            return Err(Error::Config {
                field: "model",
                value: format!("{} (a quantization-aware graph)", path.display()),
                bound: "a float graph: a model with quantizers keeps its own (import it without calibration)".into(),
            });
        }
        let inputs: usize = imported.spec.input.iter().product();
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
        let spec = imported.spec.clone();
        // Validated here, so building on the training device cannot fail.
        QSequential::from_params(spec.clone(), &imported.params, encoding, &Device::flex())?;
        let build = |d: &Device| {
            QSequential::from_params(spec.clone(), &imported.params, encoding, d)
                .expect("validated above")
        };
        let mut train = cfg.train.clone();
        train.fp32_epochs = 0;
        let (net, report) = qfhe_train::train_model_with(build, &train, data, &device, progress)?;
        let name = path
            .file_stem()
            .map_or("onnx".into(), |s| s.to_string_lossy().into_owned());
        let info = ModelInfo {
            dataset: data.name.clone(),
            name,
            model: spec,
            encoding,
            train,
            fp32_accuracy: 0.0,
            qat_accuracy: report.qat_accuracy,
            selected_epoch: report.selected_epoch,
            train_seconds: report.seconds,
        };
        let mut model = Model {
            net,
            info,
            params: Some(Arc::new(imported.params)),
            given: false,
        };
        model.reference_accuracy(&data.test)?;
        Ok((model, imported.notes))
    }

    /// The parameters of a model read from a file; `None` for a model fitted here.
    pub fn params(&self) -> Option<&ModelParams> {
        self.params.as_deref()
    }

    /// The logits `[classes]` a model read from a file gives input `x` (`spec.input` values,
    /// e.g. pixels / 255) when evaluated as its training framework evaluates it, in floating
    /// point with every quantizer applied ([`qfhe_onnx::reference`]); `None` for a model
    /// fitted here.
    ///
    /// # Errors
    /// [`Error::Mismatch`] when `x` has another number of values than the model's input.
    pub fn reference_logits(&self, x: &[f32]) -> Result<Option<Vec<f32>>> {
        let Some(params) = &self.params else {
            return Ok(None);
        };
        let inputs: usize = self.info.model.input.iter().product();
        if x.len() != inputs {
            return Err(Error::Mismatch {
                what: "input values",
                expected: inputs,
                found: x.len(),
            });
        }
        Ok(Some(qfhe_onnx::reference::logits(
            &self.info.model,
            params,
            x,
        )))
    }

    /// The accuracy of [`Model::reference_logits`] on `images` (pixels / 255 as inputs);
    /// `None` for a model fitted here. It is also what [`Model::circuit`] reports as fp32.
    ///
    /// # Errors
    /// As [`Model::reference_logits`].
    pub fn reference_accuracy(&mut self, images: &ImageSet) -> Result<Option<f64>> {
        let rows: Vec<Vec<f32>> = (0..images.len())
            .map(|i| images.image(i).iter().map(|&p| p as f32 / 255.0).collect())
            .collect();
        let labels: Vec<u32> = images.labels.iter().map(|&l| u32::from(l)).collect();
        self.reference_accuracy_on(&rows, &labels)
    }

    /// [`Model::reference_accuracy`] on the rows of a classification `table` (raw features as
    /// inputs).
    ///
    /// # Errors
    /// As [`Model::reference_logits`]; [`Error::Config`] for a regression table.
    pub fn reference_accuracy_table(&mut self, table: &Table) -> Result<Option<f64>> {
        let Target::Classes { labels, .. } = &table.target else {
            return Err(Error::Config {
                field: "data",
                value: "a regression table".into(),
                bound: "a classification table: an imported network's logits are read by argmax"
                    .into(),
            });
        };
        let rows: Vec<Vec<f32>> = crate::tabular::float_rows(table)
            .chunks_exact(table.width().max(1))
            .map(<[f32]>::to_vec)
            .collect();
        self.reference_accuracy_on(&rows, labels)
    }

    fn reference_accuracy_on(&mut self, rows: &[Vec<f32>], labels: &[u32]) -> Result<Option<f64>> {
        use rayon::prelude::*;
        if self.params.is_none() || rows.is_empty() {
            return Ok(None);
        }
        let correct: Result<Vec<bool>> = rows
            .par_iter()
            .zip(labels)
            .map(|(x, &label)| {
                let logits = self.reference_logits(x)?.expect("a model read from a file");
                Ok(qfhe_circuit::simulate::argmax(&logits) == label as usize)
            })
            .collect();
        let acc = correct?.iter().filter(|&&c| c).count() as f64 / rows.len() as f64;
        self.info.fp32_accuracy = acc;
        Ok(Some(acc))
    }

    /// Name the data the model is evaluated on (reported in the circuit's provenance).
    pub fn set_dataset(&mut self, name: impl Into<String>) {
        self.info.dataset = name.into();
    }
}

/// One line per PBS layer of a model with given codes: how wide its accumulators are, and how
/// many of its neurons the encoding reads exactly (one slot or more per accumulator value, so
/// the integer tables compute the file's activation of every accumulator); the others are
/// rounded to their slot, which the file's model did not do.
fn resolution_notes(net: &QSequential, encoding: &EncodingConfig) -> Result<Vec<String>> {
    let plan = net.plan(1).map_err(qfhe_train::TrainError::from)?;
    let exact_values = encoding.usable_slots();
    Ok(plan
        .pbs
        .iter()
        .map(|p| {
            let widest = p.rows.iter().map(|r| r.range() + 1).max().unwrap_or(1);
            let exact = p
                .encoding
                .neurons
                .iter()
                .filter(|n| n.resolves_integers(encoding.frac_bits))
                .count();
            let bits = (widest as f64).log2();
            let mut line = format!(
                "layer {} ({}): accumulators of up to {widest} values ({bits:.1} bits); {exact} of \
                 {} neurons read exactly (PBS tables resolve {exact_values} values, {:.1} bits, \
                 at N = {})",
                p.layer,
                net.spec.layers[p.layer].kind(),
                p.d_out(),
                (exact_values as f64).log2(),
                encoding.poly_size
            );
            if exact < p.d_out() {
                line.push_str(
                    "; the others are rounded to their table slot, which the trained model did \
                     not do: bound the layer's accumulator range in training (e.g. Brevitas's \
                     accumulator-aware quantizers, exported as QCDQ), use fewer inputs or bits, \
                     or the N = 8192 parameter set (about 8064 values)",
                );
            }
            line
        })
        .collect())
}
