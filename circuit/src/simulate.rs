//! Clear simulators of a circuit: exact, and with the FHE noise model.
//!
//! Both read the circuit's own definitions ([`Neuron::level_at`], [`OutputLayer::logits`],
//! [`Gemm::accumulate`]); the FHE runtime uses the same ones to build its LUTs and decode its
//! outputs.

use crate::error::CircuitError;
use crate::ir::{Circuit, Gemm, InputSources, Neuron, OutputLayer, Source};
use qfhe_core::scheme::input_code;
use qfhe_core::NoiseSpec;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Every intermediate value of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ExactTrace {
    /// Output codes of each stage (`stages[s]` has the stage's `d_out` values).
    pub stages: Vec<Vec<i32>>,
    /// Output accumulators (what the client decrypts).
    pub out_acc: Vec<i64>,
    /// Logits.
    pub logits: Vec<f32>,
    /// Predicted class ([`OutputLayer::class`]: first maximum unless the readout says otherwise).
    pub prediction: usize,
}

/// Index of the first maximum (0 for an empty slice).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (j, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = j;
        }
    }
    best
}

impl Circuit {
    /// Input codes of an 8-bit image (`features` pixels): [`input_code`], or for a circuit
    /// with a feature quantizer ([`crate::Input::quantizer`], e.g. a linear model fitted on
    /// images as tables) each pixel's value `p / 255` through it.
    pub fn input_codes(&self, pixels: &[u8]) -> Vec<i32> {
        match &self.input.quantizer {
            None => pixels
                .iter()
                .map(|&p| input_code(p, self.input.bits))
                .collect(),
            Some(q) => {
                let qmax = (1i32 << self.input.bits) - 1;
                pixels
                    .iter()
                    .take(q.features())
                    .enumerate()
                    .map(|(i, &p)| q.code(i, p as f32 / 255.0, qmax))
                    .collect()
            }
        }
    }

    /// Check that `input` is one sample of this circuit: `features` codes in
    /// `[0, 2^bits − 1]`.
    ///
    /// # Errors
    /// [`CircuitError::Input`] naming the length or the first out-of-range code.
    pub fn check_input(&self, input: &[i32]) -> Result<(), CircuitError> {
        if input.len() != self.input.features {
            return Err(CircuitError::Input(format!(
                "{} input codes, the circuit takes {}",
                input.len(),
                self.input.features
            )));
        }
        let (lo, hi) = self.range(Source::Input);
        if let Some(v) = input.iter().find(|v| !(lo..=hi).contains(*v)) {
            return Err(CircuitError::Input(format!(
                "input code {v} outside [{lo}, {hi}]"
            )));
        }
        Ok(())
    }

    /// Run the circuit exactly (the "quantized" model) on checked input codes.
    ///
    /// # Errors
    /// [`CircuitError::Input`] if `input` is not one sample ([`Circuit::check_input`]).
    pub fn run_exact(&self, input: &[i32]) -> Result<ExactTrace, CircuitError> {
        self.check_input(input)?;
        let r = self.encoding.frac_bits;
        Ok(self.run_with(
            input,
            |_, _, n, acc| n.level_at(n.encoding().slot(acc, r)),
            |_, acc| acc,
        ))
    }

    /// The shared evaluation order of both simulators: `read(stage, neuron, n, acc)` gives a
    /// neuron's output code from its exact accumulator, `decrypt(j, acc)` an output
    /// accumulator as the client reads it.
    fn run_with(
        &self,
        input: &[i32],
        mut read: impl FnMut(usize, usize, &Neuron, i64) -> i32,
        mut decrypt: impl FnMut(usize, i64) -> i64,
    ) -> ExactTrace {
        let mut stages: Vec<Vec<i32>> = Vec::with_capacity(self.stages.len());
        for (s, stage) in self.stages.iter().enumerate() {
            let x = self.gather_codes(&stage.gemm, input, &stages);
            let out = (0..stage.d_out())
                .map(|j| read(s, j, &stage.neurons[j], stage.gemm.accumulate(j, &x)))
                .collect();
            stages.push(out);
        }
        let o: &OutputLayer = &self.output;
        let x = self.gather_codes(&o.gemm, input, &stages);
        let out_acc: Vec<i64> = (0..o.d_out())
            .map(|j| decrypt(j, o.gemm.accumulate(j, &x)))
            .collect();
        let logits = o.logits(&out_acc);
        ExactTrace {
            prediction: o.class(&logits),
            stages,
            out_acc,
            logits,
        }
    }

    fn gather_codes(&self, g: &Gemm, input: &[i32], stages: &[Vec<i32>]) -> Vec<i32> {
        self.gather(g, |s| match s {
            Source::Input => input,
            Source::Stage(k) => &stages[k],
        })
    }
}

/// Noise std of every PBS input (slots) and every decrypted output accumulator (accumulator
/// units), from a [`NoiseSpec`] and the circuit's actual weights and encodings.
#[derive(Debug, Clone)]
pub struct NoiseModel {
    /// `stage_sigma[s][j]`: std at neuron `j` of stage `s`, slots.
    pub stage_sigma: Vec<Vec<f64>>,
    /// Std of output accumulator `j`, accumulator units.
    pub output_sigma: Vec<f64>,
}

impl NoiseModel {
    /// Std of one ciphertext of `source` in slots: fresh encryptions or PBS outputs.
    fn source_sigma(spec: &NoiseSpec, source: Source) -> f64 {
        match source {
            Source::Input => spec.fresh_sigma_slots,
            Source::Stage(_) => spec.pbs_sigma_slots,
        }
    }

    /// `sqrt(Σ_t (w_t · σ_t)²)` of row `j` of `g`, slots: the std its GEMM carries before any
    /// row multiplier (variance of a linear combination, `Σ w² · Var`).
    pub fn gemm_sigma(circuit: &Circuit, g: &Gemm, j: usize, spec: &NoiseSpec) -> f64 {
        let sources = InputSources::of(circuit, g);
        g.row(j)
            .iter()
            .enumerate()
            .map(|(t, &w)| {
                let sigma = Self::source_sigma(spec, sources.at(g.input_index(j, t)));
                (w as f64 * sigma).powi(2)
            })
            .sum::<f64>()
            .sqrt()
    }

    /// Noise of `circuit` under `spec`: at neuron `j` of a stage,
    /// `sqrt(base² + (c_j · gemm_sigma_j)²)` slots with `c_j = mult_j / Δ_in` the row
    /// multiplier; at output `j`, `gemm_sigma_j · 2^64/2N / Δ_out` accumulator units.
    pub fn new(circuit: &Circuit, spec: &NoiseSpec) -> Self {
        let stage_sigma = circuit
            .stages
            .iter()
            .enumerate()
            .map(|(s, stage)| {
                let units = circuit.delta_in_units(s).max(1);
                (0..stage.d_out())
                    .map(|j| {
                        let c = (stage.neurons[j].mult / units) as f64;
                        let gemm = c * Self::gemm_sigma(circuit, &stage.gemm, j, spec);
                        (spec.base_sigma_slots.powi(2) + gemm * gemm).sqrt()
                    })
                    .collect()
            })
            .collect();
        let slot = circuit.encoding.torus_per_slot() / circuit.output_delta() as f64;
        let o = &circuit.output;
        let output_sigma = (0..o.d_out())
            .map(|j| {
                let gemm = Self::gemm_sigma(circuit, &o.gemm, j, spec);
                (gemm * gemm + spec.output_wire_sigma_slots.powi(2)).sqrt() * slot
            })
            .collect();
        Self {
            stage_sigma,
            output_sigma,
        }
    }

    /// The phase of neuron `n` for accumulator `acc`, in slots (half a phase unit added, as on
    /// the torus).
    pub fn phase_slots(n: &Neuron, acc: i64, frac_bits: u32) -> f64 {
        (n.encoding().phase(acc) as f64 + 0.5) / (1i64 << frac_bits) as f64
    }

    /// Run `circuit` with Gaussian noise at every PBS input and on every decrypted output.
    /// A slot read outside `[0, N)` wraps negacyclically (the LUT returns minus the value).
    ///
    /// # Errors
    /// [`CircuitError::Input`] if `input` is not one sample ([`Circuit::check_input`]).
    pub fn run(
        &self,
        circuit: &Circuit,
        input: &[i32],
        rng: &mut impl Rng,
    ) -> Result<ExactTrace, CircuitError> {
        circuit.check_input(input)?;
        let r = circuit.encoding.frac_bits;
        let n_slots = circuit.encoding.poly_size as i64;
        let std = Normal::new(0.0, 1.0).expect("unit normal");
        let normal = std::cell::RefCell::new((rng, std));
        let draw = || {
            let mut g = normal.borrow_mut();
            let (rng, std) = &mut *g;
            std.sample(rng)
        };
        Ok(circuit.run_with(
            input,
            |s, j, n, acc| {
                let phase = Self::phase_slots(n, acc, r);
                let slot = (phase + self.stage_sigma[s][j] * draw()).floor() as i64;
                let wrapped = slot.rem_euclid(2 * n_slots);
                if wrapped < n_slots {
                    n.level_at(wrapped)
                } else {
                    -n.level_at(wrapped - n_slots)
                }
            },
            |j, acc| (acc as f64 + self.output_sigma[j] * draw()).round() as i64,
        ))
    }

    /// Probability that neuron `j` of stage `s` outputs a different code than the exact circuit,
    /// given its exact accumulator: the Gaussian mass outside the run of its table it reads.
    pub fn flip_probability(&self, circuit: &Circuit, s: usize, j: usize, acc: i64) -> f64 {
        let n = &circuit.stages[s].neurons[j];
        let phase = Self::phase_slots(n, acc, circuit.encoding.frac_bits);
        let (_, lo, hi) = n
            .table
            .run_at(phase.floor() as i64, circuit.encoding.poly_size);
        let sd = self.stage_sigma[s][j] * std::f64::consts::SQRT_2;
        0.5 * libm::erfc((phase - lo as f64) / sd) + 0.5 * libm::erfc((hi as f64 - phase) / sd)
    }
}

/// Probability that the client decrypts a PBS output of stage `s` to a neighbouring code: the
/// output's noise (std `pbs_sigma_slots` slots of `2^64 / 2N`) against half the stage's scale
/// Δ, `erfc(Δ/2 / (√2·σ))`. Only trace mode decrypts stage outputs; the evaluation never rounds
/// these values (the next GEMM carries their noise, which [`NoiseModel`] includes), so this is
/// a property of the measurement, not an error of the computation.
pub fn stage_decode_error(circuit: &Circuit, s: usize, pbs_sigma_slots: f64) -> f64 {
    let sigma = pbs_sigma_slots * circuit.encoding.torus_per_slot();
    let half = circuit.stages[s].delta as f64 / 2.0;
    libm::erfc(half / (std::f64::consts::SQRT_2 * sigma))
}
