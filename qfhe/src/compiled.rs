//! `compile` → `predict`: the circuit checked against its TFHE parameters, and predictions in
//! the clear (exact), through the noise model (simulated) or under real encryption (FHE).

use crate::fit::Model;
use crate::{Error, Result};
use qfhe_circuit::{Circuit, Metric, NoiseModel};
use qfhe_datasets::ImageSet;
use qfhe_fhe_runtime::{
    compile, Backend, Client, ClientKey, CompileReport, EvalKey, FheParams, Server,
};
use rand::SeedableRng;
use rayon::prelude::*;
use std::path::Path;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Instant;

/// Largest acceptable gross-error probability per PBS, as log2, unless told otherwise.
pub const DEFAULT_P_ERROR_LOG2: f64 = -40.0;
/// Images of the calibration set the compile step's flip-rate analysis reads.
const ANALYSIS_SAMPLES: usize = 1000;

/// How a prediction is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The exact circuit in the clear: the quantized model's answer.
    Exact,
    /// The circuit with the FHE noise model's errors drawn from `seed`.
    Simulate {
        /// Seed of the noise draws (sample `i` uses `seed · 1000003 + i`).
        seed: u64,
    },
    /// Real encryption, homomorphic evaluation and decryption under keys generated once per
    /// [`Compiled`] (the first FHE prediction pays for key generation).
    Fhe,
}

/// One prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The class by the circuit's readout: the argmax of the logits (first maximum), or the
    /// sign of the one score of a binary linear classifier; 0 for regression.
    pub class: usize,
    /// What a metric scores: the class index, or the predicted value for regression.
    pub value: f64,
    /// Dequantized logits, one per class.
    pub logits: Vec<f32>,
    /// Wall time of this prediction's evaluation, seconds (FHE: encryption, server
    /// evaluation and decryption; 0 in the clear).
    pub seconds: f64,
}

/// A circuit checked against its parameter set, ready to predict.
pub struct Compiled {
    circuit: Arc<Circuit>,
    params: FheParams,
    report: CompileReport,
    keys: OnceLock<(Arc<ClientKey>, Arc<EvalKey>)>,
    backend: Backend,
}

impl Model {
    /// Lower the model to a circuit and check it against the parameter set of its encoding:
    /// every layer's gross-error probability per PBS at most `2^-40`. `calibration` (e.g. a
    /// slice of the training images) feeds the predicted flip rates.
    ///
    /// # Errors
    /// As [`Compiled::new`]; [`Error::Export`] when the model cannot be lowered.
    pub fn compile(&self, calibration: &ImageSet) -> Result<Compiled> {
        self.compile_with(calibration, DEFAULT_P_ERROR_LOG2)
    }

    /// [`Model::compile`] against the target `2^p_error_log2`.
    ///
    /// # Errors
    /// As [`Model::compile`].
    pub fn compile_with(&self, calibration: &ImageSet, p_error_log2: f64) -> Result<Compiled> {
        Compiled::new(self.circuit()?, calibration, p_error_log2)
    }
}

impl Compiled {
    /// Check `circuit` against the vetted parameter set of its polynomial size.
    ///
    /// # Errors
    /// [`Error::PolySize`] without such a set, [`Error::Config`] for a target outside
    /// `[-200, 0)`, [`Error::Mismatch`] when the calibration images do not fit the circuit,
    /// [`Error::Compile`] when a layer misses the target (the message says what to retrain).
    pub fn new(circuit: Circuit, calibration: &ImageSet, p_error_log2: f64) -> Result<Self> {
        check_images(&circuit, calibration)?;
        let samples: Vec<Vec<i32>> = (0..calibration.len().min(ANALYSIS_SAMPLES))
            .map(|i| circuit.input_codes(calibration.image(i)))
            .collect();
        Self::from_codes(circuit, &samples, p_error_log2)
    }

    /// [`Compiled::new`] with the calibration given as input codes (one `Vec` of
    /// `features` codes per sample; the first 1000 are read).
    ///
    /// # Errors
    /// As [`Compiled::new`]; [`Error::Circuit`] for a code outside the circuit's input range.
    pub fn from_codes(
        circuit: Circuit,
        calibration: &[Vec<i32>],
        p_error_log2: f64,
    ) -> Result<Self> {
        if !(p_error_log2.is_finite() && (-200.0..0.0).contains(&p_error_log2)) {
            return Err(Error::Config {
                field: "p_error_log2",
                value: p_error_log2.to_string(),
                bound: "a log2 probability in [-200, 0), e.g. -40".into(),
            });
        }
        let n = circuit.encoding.poly_size;
        let params = FheParams::by_poly_size(n).ok_or(Error::PolySize(n))?;
        let samples = &calibration[..calibration.len().min(ANALYSIS_SAMPLES)];
        for x in samples {
            circuit.check_input(x)?;
        }
        let report = compile(&circuit, &params, p_error_log2, samples)?;
        Ok(Self {
            circuit: Arc::new(circuit),
            params,
            report,
            keys: OnceLock::new(),
            backend: Backend::default(),
        })
    }

    /// Load a circuit file and check it ([`Compiled::new`]).
    ///
    /// # Errors
    /// [`Error::Circuit`] for a file that is missing, malformed or invalid; as
    /// [`Compiled::new`].
    pub fn load(path: &Path, calibration: &ImageSet, p_error_log2: f64) -> Result<Self> {
        Self::new(Circuit::load(path)?, calibration, p_error_log2)
    }

    /// Write the circuit file.
    ///
    /// # Errors
    /// [`Error::Circuit`] when it cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(self.circuit.save(path)?)
    }

    /// Run [`Mode::Fhe`] predictions' KS + PBS on `backend` (default: the CPU in batches of
    /// [`Backend::DEFAULT_CPU_BATCH`]); predictions are the same on every backend.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The PBS backend of [`Mode::Fhe`] predictions.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The circuit.
    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// The parameter set.
    pub fn params(&self) -> &FheParams {
        &self.params
    }

    /// The per-layer noise analysis.
    pub fn report(&self) -> &CompileReport {
        &self.report
    }

    /// The keys, generated on first use (seconds; the evaluation key is ~120 MB, none for a
    /// circuit without PBS).
    fn keys(&self) -> &(Arc<ClientKey>, Arc<EvalKey>) {
        self.keys.get_or_init(|| {
            let (c, e) = ClientKey::generate_for(self.params, &self.circuit);
            (Arc::new(c), Arc::new(e))
        })
    }

    /// Predict images `idx` of `set` in `mode`. Clear modes run the images in parallel; FHE runs
    /// them one after another, each PBS layer spread over the threads.
    ///
    /// # Errors
    /// [`Error::Mismatch`] for images of another size or an index past the set;
    /// [`Error::Runtime`] if the runtime refuses a ciphertext list.
    pub fn predict(&self, set: &ImageSet, idx: &[usize], mode: Mode) -> Result<Vec<Prediction>> {
        check_images(&self.circuit, set)?;
        if let Some(&i) = idx.iter().find(|&&i| i >= set.len()) {
            return Err(Error::Mismatch {
                what: "image index (the set's length)",
                expected: set.len(),
                found: i,
            });
        }
        let samples: Vec<(u64, Vec<i32>)> = idx
            .iter()
            .map(|&i| (i as u64, self.circuit.input_codes(set.image(i))))
            .collect();
        self.predict_codes(&samples, mode)
    }

    /// Predict samples given as input codes in `mode`; each sample is `(id, codes)`, the id
    /// choosing its noise draws in [`Mode::Simulate`] (sample `id` uses seed
    /// `seed · 1000003 + id`, so a sample gets the same draws in any batch).
    ///
    /// # Errors
    /// [`Error::Circuit`] for codes that do not fit the circuit; [`Error::Runtime`] if the
    /// runtime refuses a ciphertext list.
    pub fn predict_codes(
        &self,
        samples: &[(u64, Vec<i32>)],
        mode: Mode,
    ) -> Result<Vec<Prediction>> {
        let c = &self.circuit;
        let clear = |logits: Vec<f32>| Prediction {
            class: c.output.class(&logits),
            value: c.output.predicted_value(&logits),
            logits,
            seconds: 0.0,
        };
        match mode {
            Mode::Exact => samples
                .par_iter()
                .map(|(_, x)| Ok(clear(c.run_exact(x)?.logits)))
                .collect(),
            Mode::Simulate { seed } => {
                let noise = NoiseModel::new(c, &self.report.noise);
                samples
                    .par_iter()
                    .map(|(id, x)| {
                        let s = seed.wrapping_mul(1_000_003).wrapping_add(*id);
                        let mut rng = rand::rngs::StdRng::seed_from_u64(s);
                        Ok(clear(noise.run(c, x, &mut rng)?.logits))
                    })
                    .collect()
            }
            Mode::Fhe => {
                let (client_key, eval_key) = self.keys();
                let server =
                    Server::with_backend(self.circuit.clone(), eval_key.clone(), self.backend)?;
                let client = Client::new(client_key.clone(), self.circuit.clone())?;
                samples
                    .iter()
                    .map(|(_, x)| {
                        let t = Instant::now();
                        c.check_input(x)?;
                        let cts = client.encrypt(x)?;
                        let out = server.evaluate(&cts)?;
                        let acc = client.decrypt_output(&out.output)?;
                        Ok(Prediction {
                            seconds: t.elapsed().as_secs_f64(),
                            ..clear(c.output.logits(&acc))
                        })
                    })
                    .collect()
            }
        }
    }

    /// The accuracy table on `set`: exact and simulated (seed `seed`) on every image, FHE on the
    /// first `fhe_samples` (0: none).
    ///
    /// # Errors
    /// As [`Compiled::predict`].
    pub fn evaluate(&self, set: &ImageSet, fhe_samples: usize, seed: u64) -> Result<Evaluation> {
        let all: Vec<usize> = (0..set.len()).collect();
        let exact = self.predict(set, &all, Mode::Exact)?;
        let simulated = self.predict(set, &all, Mode::Simulate { seed })?;
        let first = &all[..fhe_samples.min(set.len())];
        let fhe = self.predict(set, first, Mode::Fhe)?;
        let labels: Vec<f64> = set.labels.iter().map(|&l| l as f64).collect();
        Ok(Evaluation::of(
            Metric::Accuracy,
            &labels,
            &exact,
            &simulated,
            &fhe,
        ))
    }
}

/// The metric table of [`Compiled::evaluate`] and [`Compiled::evaluate_table`]: the
/// `*_accuracy` fields hold the [`Metric`] named in `metric` (accuracy for images).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evaluation {
    /// What the scores measure.
    pub metric: Metric,
    /// The exact circuit's accuracy on the whole set.
    pub quantized_accuracy: f64,
    /// The noise model's accuracy on the whole set.
    pub simulated_accuracy: f64,
    /// Images run under FHE.
    pub fhe_samples: usize,
    /// FHE accuracy on them.
    pub fhe_accuracy: f64,
    /// Fraction of them where FHE predicts what the exact circuit predicts.
    pub fhe_agreement: f64,
    /// Median FHE latency per image, seconds (`None` without FHE samples).
    pub fhe_median_seconds: Option<f64>,
}

/// Fraction of `predicted[k]` that agree with `exact[k]` (`exact` may be longer: the whole
/// test set). A class agrees when it is the same class. A regression value agrees when it is
/// within [`REGRESSION_AGREEMENT`] of the spread (max − min) of the exact values: a decrypted
/// sum of PBS outputs carries a few accumulator units of noise, which no output Δ removes
/// when the sum spans thousands of units, and which is far below the model's own error.
pub fn agreement(metric: Metric, predicted: &[f64], exact: &[f64]) -> f64 {
    let tolerance = if metric.is_classification() {
        0.0
    } else {
        let (lo, hi) = exact
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        REGRESSION_AGREEMENT * (hi - lo).max(0.0)
    };
    predicted
        .iter()
        .zip(exact)
        .filter(|(p, e)| (*p - *e).abs() <= tolerance)
        .count() as f64
        / predicted.len().max(1) as f64
}

/// Tolerance of a regression prediction's agreement, as a fraction of the exact predictions'
/// spread (1%).
pub const REGRESSION_AGREEMENT: f64 = 0.01;

impl Evaluation {
    /// Scores of exact predictions (every sample), simulated ones (every sample) and FHE ones
    /// (the first `fhe.len()` samples) against `targets`.
    pub fn of(
        metric: Metric,
        targets: &[f64],
        exact: &[Prediction],
        simulated: &[Prediction],
        fhe: &[Prediction],
    ) -> Self {
        let score = |p: &[Prediction]| {
            let v: Vec<f64> = p.iter().map(|p| p.value).collect();
            metric.score(&v, &targets[..v.len().min(targets.len())])
        };
        let exact_values: Vec<f64> = exact.iter().map(|p| p.value).collect();
        let fhe_values: Vec<f64> = fhe.iter().map(|p| p.value).collect();
        let agree = agreement(metric, &fhe_values, &exact_values);
        let mut seconds: Vec<f64> = fhe.iter().map(|p| p.seconds).collect();
        seconds.sort_by(f64::total_cmp);
        Self {
            metric,
            quantized_accuracy: score(exact),
            simulated_accuracy: score(simulated),
            fhe_samples: fhe.len(),
            fhe_accuracy: score(fhe),
            fhe_agreement: agree,
            fhe_median_seconds: seconds.get(seconds.len() / 2).copied(),
        }
    }
}

fn check_images(circuit: &Circuit, set: &ImageSet) -> Result<()> {
    if set.pixels() != circuit.features() {
        return Err(Error::Mismatch {
            what: "inputs per image",
            expected: circuit.features(),
            found: set.pixels(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod agreement_tests {
    use super::*;

    #[test]
    fn classes_agree_only_when_equal() {
        let exact = [0.0, 1.0, 2.0, 1.0];
        assert_eq!(agreement(Metric::Accuracy, &[0.0, 1.0], &exact), 1.0);
        assert_eq!(agreement(Metric::F1, &[0.0, 2.0], &exact), 0.5);
    }

    #[test]
    fn regression_agrees_within_one_percent_of_the_spread() {
        // Spread 100 → tolerance 1.0.
        let exact = [0.0, 50.0, 100.0];
        assert_eq!(
            agreement(Metric::R2, &[0.9, 51.0, 101.5], &exact),
            2.0 / 3.0
        );
        assert_eq!(agreement(Metric::R2, &[-1.1], &exact), 0.0);
        assert_eq!(agreement(Metric::R2, &[], &exact), 0.0);
    }
}
