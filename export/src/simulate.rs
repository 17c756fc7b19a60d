//! Clear simulators of a circuit: exact, and with the FHE noise model.
//!
//! Both read the circuit's own definitions ([`Neuron::level_at`], [`OutputLayer::logits`],
//! [`dot`]); the FHE runtime uses the same ones to build its LUTs and decode its outputs.

use crate::circuit::{dot, Circuit, HiddenLayer, Neuron};
use qfhe_quant::encoding::InputKind;
use qfhe_quant::scheme::input_code;
use qfhe_quant::NoiseSpec;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Every intermediate value of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ExactTrace {
    /// Activation codes of each hidden layer.
    pub hidden: Vec<Vec<i32>>,
    /// Output accumulators (what the client decrypts).
    pub out_acc: Vec<i64>,
    /// Logits.
    pub logits: Vec<f32>,
    /// Predicted class (first maximum).
    pub prediction: usize,
}

/// Index of the first maximum.
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
    /// Input codes of an image (`features` pixels).
    pub fn input_codes(&self, pixels: &[u8]) -> Vec<i32> {
        pixels
            .iter()
            .map(|&p| input_code(p, self.in_bits))
            .collect()
    }

    /// Output code of hidden neuron `j` of `layer` for inputs `x` (no noise).
    pub fn neuron_exact(layer: &HiddenLayer, j: usize, x: &[i32], frac_bits: u32) -> i32 {
        let n = &layer.neurons[j];
        n.level_at(n.encoding().slot(layer.accumulate(j, x), frac_bits))
    }

    /// Run the circuit exactly (the "quantized" model).
    pub fn run_exact(&self, input: &[i32]) -> ExactTrace {
        let r = self.encoding.frac_bits;
        let mut x = input.to_vec();
        let mut hidden = Vec::with_capacity(self.hidden.len());
        for layer in &self.hidden {
            x = (0..layer.d_out)
                .map(|j| Self::neuron_exact(layer, j, &x, r))
                .collect();
            hidden.push(x.clone());
        }
        let o = &self.output;
        let out_acc: Vec<i64> = (0..o.d_out)
            .map(|j| dot(&o.weights[j * o.d_in..(j + 1) * o.d_in], &x))
            .collect();
        let logits = o.logits(&out_acc);
        ExactTrace {
            prediction: argmax(&logits),
            hidden,
            out_acc,
            logits,
        }
    }
}

/// Noise std of every PBS input (slots) and every decrypted output accumulator (accumulator
/// units), from a [`NoiseSpec`] and the circuit's actual weights and encodings.
#[derive(Debug, Clone)]
pub struct NoiseModel {
    /// `sigma[l][j]`: std at hidden neuron `j` of layer `l`, slots.
    pub hidden_sigma: Vec<Vec<f64>>,
    /// Std of output accumulator `j`, accumulator units.
    pub output_sigma: Vec<f64>,
}

impl NoiseModel {
    /// Noise of `circuit` under `spec` (variance of a linear combination is `‖w‖₂² · Var`).
    pub fn new(circuit: &Circuit, spec: &NoiseSpec) -> Self {
        let enc = qfhe_quant::EncodingConfig {
            noise: *spec,
            ..circuit.encoding
        };
        let hidden_sigma = circuit
            .hidden
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                let kind = if l == 0 {
                    InputKind::Fresh
                } else {
                    InputKind::Pbs
                };
                (0..layer.d_out)
                    .map(|j| {
                        enc.sigma_slots(
                            &layer.row_stats(j),
                            layer.neurons[j].mult / layer.delta_in,
                            kind,
                        )
                    })
                    .collect()
            })
            .collect();
        // A PBS output's std in torus units is pbs_sigma_slots · 2^64 / 2N; in accumulator units
        // of the output layer, divide by Δ.
        let pbs_sigma_units =
            spec.pbs_sigma_slots * circuit.encoding.torus_per_slot() / circuit.output.delta as f64;
        let o = &circuit.output;
        let output_sigma = (0..o.d_out)
            .map(|j| o.row_stats(j).l2 * pbs_sigma_units)
            .collect();
        Self {
            hidden_sigma,
            output_sigma,
        }
    }

    /// The phase of hidden neuron `n` for accumulator `acc`, in slots (half a phase unit added,
    /// as on the torus).
    pub fn phase_slots(n: &Neuron, acc: i64, frac_bits: u32) -> f64 {
        (n.encoding().phase(acc) as f64 + 0.5) / (1i64 << frac_bits) as f64
    }

    /// Run `circuit` with Gaussian noise at every PBS input and on every decrypted output.
    /// A slot read outside `[0, N)` wraps negacyclically (the LUT returns minus the value).
    pub fn run(&self, circuit: &Circuit, input: &[i32], rng: &mut impl Rng) -> ExactTrace {
        let r = circuit.encoding.frac_bits;
        let n_slots = circuit.encoding.poly_size as i64;
        let std = Normal::new(0.0, 1.0).expect("unit normal");
        let mut x = input.to_vec();
        let mut hidden = Vec::with_capacity(circuit.hidden.len());
        for (l, layer) in circuit.hidden.iter().enumerate() {
            x = (0..layer.d_out)
                .map(|j| {
                    let n = &layer.neurons[j];
                    let phase = Self::phase_slots(n, layer.accumulate(j, &x), r);
                    let slot = (phase + self.hidden_sigma[l][j] * std.sample(rng)).floor() as i64;
                    let wrapped = slot.rem_euclid(2 * n_slots);
                    if wrapped < n_slots {
                        n.level_at(wrapped)
                    } else {
                        -n.level_at(wrapped - n_slots)
                    }
                })
                .collect();
            hidden.push(x.clone());
        }
        let o = &circuit.output;
        let out_acc: Vec<i64> = (0..o.d_out)
            .map(|j| {
                let acc = dot(&o.weights[j * o.d_in..(j + 1) * o.d_in], &x) as f64;
                (acc + self.output_sigma[j] * std.sample(rng)).round() as i64
            })
            .collect();
        let logits = o.logits(&out_acc);
        ExactTrace {
            prediction: argmax(&logits),
            hidden,
            out_acc,
            logits,
        }
    }

    /// Probability that hidden neuron `j` of layer `l` outputs a different code than the exact
    /// circuit, given its exact accumulator: the Gaussian mass outside the slots of its level.
    pub fn flip_probability(&self, circuit: &Circuit, l: usize, j: usize, acc: i64) -> f64 {
        let n = &circuit.hidden[l].neurons[j];
        let phase = Self::phase_slots(n, acc, circuit.encoding.frac_bits);
        let level = n.level_at(phase.floor() as i64) as usize;
        let lo = if level == 0 {
            0.0
        } else {
            n.thresholds[level - 1] as f64
        };
        let hi = n
            .thresholds
            .get(level)
            .map_or(circuit.encoding.poly_size as f64, |&t| t as f64);
        let s = self.hidden_sigma[l][j] * std::f64::consts::SQRT_2;
        0.5 * libm::erfc((phase - lo) / s) + 0.5 * libm::erfc((hi - phase) / s)
    }
}

/// Probability that the client decrypts a PBS output of hidden layer `l` to a neighbouring
/// level: the output's noise (std `pbs_sigma_slots` slots of `2^64 / 2N`) against half the level
/// spacing Δ ([`Circuit::output_torus_delta`]), `erfc(Δ/2 / (√2·σ))`. Only trace mode decrypts
/// hidden layers; the evaluation never rounds these values (the next GEMM carries their noise,
/// which [`NoiseModel`] includes), so this is a property of the measurement, not an error of the
/// computation.
pub fn hidden_decode_error(circuit: &Circuit, l: usize, pbs_sigma_slots: f64) -> f64 {
    let sigma = pbs_sigma_slots * circuit.encoding.torus_per_slot();
    let half = circuit.output_torus_delta(l) as f64 / 2.0;
    libm::erfc(half / (std::f64::consts::SQRT_2 * sigma))
}
