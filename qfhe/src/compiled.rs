//! `compile` → `predict`: the circuit checked against its TFHE parameters, and predictions in
//! the clear (exact), through the noise model (simulated) or under real encryption (FHE).

use crate::fit::Model;
use crate::{Error, Result};
use qfhe_circuit::{Circuit, NoiseModel};
use qfhe_datasets::ImageSet;
use qfhe_fhe_runtime::{compile, Client, ClientKey, CompileReport, EvalKey, FheParams, Server};
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
    /// The class, argmax of the logits (first maximum).
    pub class: usize,
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
        if !(p_error_log2.is_finite() && (-200.0..0.0).contains(&p_error_log2)) {
            return Err(Error::Config {
                field: "p_error_log2",
                value: p_error_log2.to_string(),
                bound: "a log2 probability in [-200, 0), e.g. -40".into(),
            });
        }
        let n = circuit.encoding.poly_size;
        let params = FheParams::by_poly_size(n).ok_or(Error::PolySize(n))?;
        check_images(&circuit, calibration)?;
        let samples: Vec<Vec<i32>> = (0..calibration.len().min(ANALYSIS_SAMPLES))
            .map(|i| circuit.input_codes(calibration.image(i)))
            .collect();
        let report = compile(&circuit, &params, p_error_log2, &samples)?;
        Ok(Self {
            circuit: Arc::new(circuit),
            params,
            report,
            keys: OnceLock::new(),
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

    /// The keys, generated on first use (seconds; the evaluation key is ~120 MB).
    fn keys(&self) -> &(Arc<ClientKey>, Arc<EvalKey>) {
        self.keys.get_or_init(|| {
            let (c, e) = ClientKey::generate(self.params);
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
        let c = &self.circuit;
        let codes = |i: usize| c.input_codes(set.image(i));
        let clear = |(logits, class): (Vec<f32>, usize)| Prediction {
            class,
            logits,
            seconds: 0.0,
        };
        match mode {
            Mode::Exact => idx
                .par_iter()
                .map(|&i| {
                    Ok(clear(
                        c.run_exact(&codes(i)).map(|t| (t.logits, t.prediction))?,
                    ))
                })
                .collect(),
            Mode::Simulate { seed } => {
                let noise = NoiseModel::new(c, &self.report.noise);
                idx.par_iter()
                    .map(|&i| {
                        let s = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
                        let mut rng = rand::rngs::StdRng::seed_from_u64(s);
                        let t = noise.run(c, &codes(i), &mut rng)?;
                        Ok(clear((t.logits, t.prediction)))
                    })
                    .collect()
            }
            Mode::Fhe => {
                let (client_key, eval_key) = self.keys();
                let server = Server::new(self.circuit.clone(), eval_key.clone())?;
                let client = Client::new(client_key.clone(), self.circuit.clone())?;
                idx.iter()
                    .map(|&i| {
                        let t = Instant::now();
                        let cts = client.encrypt(&codes(i))?;
                        let out = server.evaluate(&cts)?;
                        let acc = client.decrypt_output(&out.output)?;
                        let logits = c.output.logits(&acc);
                        let class = qfhe_circuit::simulate::argmax(&logits);
                        Ok(Prediction {
                            class,
                            logits,
                            seconds: t.elapsed().as_secs_f64(),
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
        let acc = |p: &[Prediction], idx: &[usize]| {
            let ok = p
                .iter()
                .zip(idx)
                .filter(|(p, &i)| p.class == set.labels[i] as usize)
                .count();
            ok as f64 / p.len().max(1) as f64
        };
        let agree = fhe
            .iter()
            .zip(&exact)
            .filter(|(f, e)| f.class == e.class)
            .count() as f64
            / fhe.len().max(1) as f64;
        let mut seconds: Vec<f64> = fhe.iter().map(|p| p.seconds).collect();
        seconds.sort_by(f64::total_cmp);
        Ok(Evaluation {
            quantized_accuracy: acc(&exact, &all),
            simulated_accuracy: acc(&simulated, &all),
            fhe_samples: fhe.len(),
            fhe_accuracy: acc(&fhe, first),
            fhe_agreement: agree,
            fhe_median_seconds: seconds.get(seconds.len() / 2).copied(),
        })
    }
}

/// The accuracy table of [`Compiled::evaluate`] (accuracies in [0, 1]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evaluation {
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
