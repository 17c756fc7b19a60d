//! Models trained elsewhere, read from ONNX files: quantization-aware models exported from
//! PyTorch with Brevitas (QONNX or QCDQ). The file's weight codes, scales and bit widths are
//! kept as they are; the model is then lowered, compiled and run like a model fitted here.

use crate::fit::{Model, ModelInfo};
use crate::{Error, Result};
use burn::prelude::Device;
use qfhe_core::ModelParams;
use qfhe_datasets::ImageSet;
use qfhe_fhe_runtime::FheParams;
use qfhe_quant::EncodingConfig;
use qfhe_train::{QSequential, TrainConfig};
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
                bound: "a quantization-aware model: its weights and activations must pass \
                        through quantizers (Brevitas QuantLinear/QuantConv2d/QuantReLU, \
                        exported with export_qonnx or export_onnx_qcdq)"
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
        let model = Model {
            net,
            info,
            params: Some(Arc::new(imported.params)),
        };
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
        use rayon::prelude::*;
        if self.params.is_none() || images.is_empty() {
            return Ok(None);
        }
        let correct: Result<Vec<bool>> = (0..images.len())
            .into_par_iter()
            .map(|i| {
                let x: Vec<f32> = images.image(i).iter().map(|&p| p as f32 / 255.0).collect();
                let logits = self
                    .reference_logits(&x)?
                    .expect("a model read from a file");
                Ok(qfhe_circuit::simulate::argmax(&logits) == images.labels[i] as usize)
            })
            .collect();
        let acc = correct?.iter().filter(|&&c| c).count() as f64 / images.len() as f64;
        self.info.fp32_accuracy = acc;
        Ok(Some(acc))
    }

    /// Name the data the model is evaluated on (reported in the circuit's provenance).
    pub fn set_dataset(&mut self, name: impl Into<String>) {
        self.info.dataset = name.into();
    }
}
