//! Linear models on tabular data — linear regression, logistic regression, linear SVM — with the
//! same fit → compile → predict flow as networks: [`fit_linear`] trains in `f32` and quantizes
//! (post-training, 8-bit inputs and weights by default) into a circuit with no PBS, whose
//! accumulators the client decrypts at full width, so FHE predictions equal the quantized ones
//! exactly.

use crate::compiled::{Compiled, DEFAULT_P_ERROR_LOG2};
use crate::tabular::{float_rows, labels};
use crate::{Error, Result};
use qfhe_circuit::{Circuit, FeatureQuantizer};
use qfhe_core::EncodingConfig;
use qfhe_datasets::{Table, Target};
use qfhe_export::{lower_linear, LinearQuant};
use qfhe_fhe_runtime::FheParams;
use qfhe_train::{train_linear, FloatLinear, LinearKind, LinearTarget, LinearTrainConfig};

/// How to fit a linear model. [`LinearConfig::new`] gives the defaults `qfhe` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearConfig {
    /// Which model.
    pub kind: LinearKind,
    /// Input and weight bit widths (8 and 8 by default).
    pub quant: LinearQuant,
    /// Steps, batch size, learning rate, L2 penalty, seed.
    pub train: LinearTrainConfig,
    /// Polynomial size of the parameter set whose keys encrypt the inputs (2048 or 8192).
    pub poly_size: u32,
}

impl LinearConfig {
    /// The defaults for `kind`.
    pub fn new(kind: LinearKind) -> Self {
        Self {
            kind,
            quant: LinearQuant::default(),
            train: LinearTrainConfig::default(),
            poly_size: 2048,
        }
    }

    /// Check every field.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field and its bound; [`Error::PolySize`].
    pub fn validate(&self) -> Result<()> {
        let bad = |field, value: String, bound: &str| {
            Err(Error::Config {
                field,
                value,
                bound: bound.into(),
            })
        };
        let t = &self.train;
        if t.batch_size == 0 {
            return bad("train.batch_size", "0".into(), "at least 1");
        }
        if t.steps == 0 {
            return bad("train.steps", "0".into(), "at least 1");
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad("train.lr", t.lr.to_string(), "a positive learning rate");
        }
        if !(t.l2.is_finite() && t.l2 >= 0.0) {
            return bad("train.l2", t.l2.to_string(), "a non-negative penalty");
        }
        if !(1..=16).contains(&self.quant.in_bits) {
            return bad("quant.in_bits", self.quant.in_bits.to_string(), "1 to 16");
        }
        if !(2..=16).contains(&self.quant.w_bits) {
            return bad("quant.w_bits", self.quant.w_bits.to_string(), "2 to 16");
        }
        FheParams::by_poly_size(self.poly_size)
            .map(|_| ())
            .ok_or(Error::PolySize(self.poly_size))
    }
}

/// A fitted linear model: the `f32` model and its circuit.
#[derive(Debug, Clone)]
pub struct LinearModel {
    float: FloatLinear,
    circuit: Circuit,
}

/// Fit `cfg.kind` on `train` and quantize it: each feature's input quantizer is calibrated on
/// `train`'s rows (min–max), the weights per output. `dataset` names the data in the circuit's
/// provenance.
///
/// # Errors
/// As [`LinearConfig::validate`]; [`Error::Train`] for a table the model cannot learn (a
/// classifier on a real-valued target or one class, a regression on classes);
/// [`Error::Export`] when the accumulators do not fit.
pub fn fit_linear(train: &Table, dataset: &str, cfg: &LinearConfig) -> Result<LinearModel> {
    cfg.validate()?;
    let x = float_rows(train);
    let d = train.width();
    let values: Vec<f32>;
    let class_labels: Vec<u32>;
    let target = match &train.target {
        Target::Values(v) => {
            values = v.iter().map(|&y| y as f32).collect();
            LinearTarget::Values(&values)
        }
        Target::Classes { .. } => {
            class_labels = labels(train);
            LinearTarget::Classes {
                labels: &class_labels,
                classes: train.classes(),
            }
        }
    };
    let float = train_linear(
        cfg.kind,
        &x,
        d,
        target,
        &cfg.train,
        &burn::prelude::Device::flex(),
    )?;
    let quantizer = FeatureQuantizer::calibrate(&x, d, cfg.quant.in_bits)?;
    let params = FheParams::by_poly_size(cfg.poly_size).ok_or(Error::PolySize(cfg.poly_size))?;
    let encoding = EncodingConfig {
        poly_size: params.poly_size(),
        noise: params.noise_spec(),
        ..EncodingConfig::default()
    };
    let circuit = lower_linear(&float, quantizer, cfg.quant, encoding, dataset)?;
    Ok(LinearModel { float, circuit })
}

impl LinearModel {
    /// The `f32` model on the raw features.
    pub fn float(&self) -> &FloatLinear {
        &self.float
    }

    /// The circuit (no PBS).
    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// The `f32` model's predictions on every row of `table`: class indices (the argmax, or the
    /// sign of the one score for two classes) or values.
    ///
    /// # Errors
    /// [`Error::Mismatch`] when the table has another number of features.
    pub fn predict_float(&self, table: &Table) -> Result<Vec<f64>> {
        if table.width() != self.float.features {
            return Err(Error::Mismatch {
                what: "features per row",
                expected: self.float.features,
                found: table.width(),
            });
        }
        let rows = float_rows(table);
        Ok(rows
            .chunks_exact(self.float.features.max(1))
            .map(|row| {
                let s = self.float.scores(row);
                match self.float.kind {
                    LinearKind::LinearRegression => s[0] as f64,
                    _ if s.len() == 1 => f64::from(u8::from(s[0] > 0.0)),
                    _ => qfhe_circuit::argmax(&s) as f64,
                }
            })
            .collect())
    }

    /// Check the circuit against its parameter set ([`Compiled::from_codes`]); `calibration`
    /// (e.g. the training table) feeds the analysis.
    ///
    /// # Errors
    /// As [`Compiled::from_codes`]; [`Error::Circuit`] when a row does not fit.
    pub fn compile(&self, calibration: &Table) -> Result<Compiled> {
        let codes = crate::tabular::codes(&self.circuit, calibration)?;
        Compiled::from_codes(self.circuit.clone(), &codes, DEFAULT_P_ERROR_LOG2)
    }
}
