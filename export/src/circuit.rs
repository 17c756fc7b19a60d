//! The circuit: what the server evaluates and the simulators run, in one definition.
//!
//! Stages, for an input of `features` codes in `[0, 2^in_bits - 1]`:
//! 1. the client encrypts each code `x` as the torus value `x · Δ_in` (`Δ_in = input_delta ·
//!    torus_per_unit`), one LWE ciphertext per value;
//! 2. each [`HiddenLayer`] computes `acc_j = Σ_i W_ji x_i` on ciphertexts, adds the neuron's
//!    offset, and bootstraps it through a LUT that reads slot `floor(phase_j / 2^R)` and writes
//!    `level_j(slot) · Δ_next`, the activation code in the next layer's encoding;
//! 3. the [`OutputLayer`] computes its accumulators, which the client decrypts and dequantizes
//!    (`logit_j = acc_j · scale_j + bias_j`); the prediction is the argmax.

use qfhe_quant::bounds::RowStats;
use qfhe_quant::encoding::NeuronEncoding;
use qfhe_quant::EncodingConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of the circuit file format written by this build. Version 2 added sparse
/// connectivity ([`HiddenLayer::inputs`]); version 3 replaced the output layer's power-of-two
/// `delta_log2` by any [`OutputLayer::delta`]. Version 1 and 2 files read unchanged (their
/// `delta_log2 = d` becomes `delta = 2^d`).
pub const FORMAT_VERSION: u32 = 3;
/// Oldest format version this build reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;
const FORMAT_TAG: &str = "qfhe-circuit";

/// A compiled quantized network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Circuit {
    /// Always `"qfhe-circuit"`.
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// Torus layout (polynomial size, phase resolution, margins) the encodings assume.
    pub encoding: EncodingConfig,
    /// Input features per sample.
    pub features: usize,
    /// Input code bit width.
    pub in_bits: u32,
    /// Phase units per input unit for the client's encryption (`Δ_in / torus_per_unit`).
    pub input_delta: i64,
    /// Hidden layers, each followed by one PBS per neuron.
    pub hidden: Vec<HiddenLayer>,
    /// The output layer (decrypted by the client, no PBS).
    pub output: OutputLayer,
    /// Free-form provenance: dataset, architecture, bit widths.
    pub meta: Meta,
}

/// Provenance of a circuit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Meta {
    /// Dataset the model was trained on.
    pub dataset: String,
    /// Architecture, e.g. `784-128-10`.
    pub arch: String,
    /// Hidden-layer weight bit width.
    pub w_bits: u32,
    /// Activation bit width.
    pub a_bits: u32,
    /// Accuracy of the fp32 model the circuit was trained from, if known.
    #[serde(default)]
    pub fp32_accuracy: Option<f64>,
}

/// A GEMM followed by one PBS per neuron.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HiddenLayer {
    /// Inputs per neuron.
    pub d_in: usize,
    /// Neurons.
    pub d_out: usize,
    /// Largest input code (inputs are in `[0, in_qmax]`).
    pub in_qmax: i32,
    /// Largest output code (activations are in `[0, out_qmax]`).
    pub out_qmax: i32,
    /// Weight bit width (codes in `[-(2^(w_bits-1) - 1), 2^(w_bits-1) - 1]`).
    pub w_bits: u32,
    /// Integer weights, neuron-major `[d_out][fan_in]` (`fan_in = d_in` when dense).
    pub weights: Vec<i32>,
    /// Sparse connectivity: weight `t` of neuron `j` reads input `inputs[j·fan_in + t]`
    /// (convolutions lowered by index — im2col without copying ciphertexts; a padded tap has
    /// weight 0). `None`: dense, weight `t` reads input `t`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<u32>>,
    /// Phase units per input unit (the previous stage's output scale).
    pub delta_in: i64,
    /// Per-neuron encoding and table.
    pub neurons: Vec<Neuron>,
    /// What the layer computes, for reports (`"conv"`, `"max-pool 1/2"`, …); optional, and
    /// ignored by evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One hidden neuron: where its accumulator sits on the torus and its activation table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neuron {
    /// Phase units per accumulator unit (a multiple of the layer's `delta_in`).
    pub mult: i64,
    /// Phase offset, phase units.
    pub offset: i64,
    /// `thresholds[k-1]` is the first slot whose output code is `≥ k`, for `k = 1..=out_qmax`
    /// (non-decreasing; `poly_size` when the level is never reached).
    pub thresholds: Vec<i64>,
}

impl Neuron {
    /// The encoding part.
    pub fn encoding(&self) -> NeuronEncoding {
        NeuronEncoding {
            mult: self.mult,
            offset: self.offset,
        }
    }

    /// Output code of the table at `slot ∈ [0, N)`.
    pub fn level_at(&self, slot: i64) -> i32 {
        self.thresholds.partition_point(|&t| t <= slot) as i32
    }
}

/// The final GEMM, decrypted and dequantized by the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputLayer {
    /// Inputs per output.
    pub d_in: usize,
    /// Outputs (classes).
    pub d_out: usize,
    /// Largest input code.
    pub in_qmax: i32,
    /// Weight bit width.
    pub w_bits: u32,
    /// Integer weights, `[d_out][d_in]`.
    pub weights: Vec<i32>,
    /// `Δ`, torus units (of `2^64`) per accumulator unit: the last hidden layer's LUTs write
    /// code `y` as `y · Δ`. Any value, not only a power of two, so the worst-case range fills
    /// the torus and the PBS output noise is as small as possible in accumulator units.
    pub delta: u64,
    /// Dequantization factor per output, `s_in · s_w_j` (`f32`).
    pub scale: Vec<f32>,
    /// Float bias per output.
    pub bias: Vec<f32>,
}

impl OutputLayer {
    /// Logits from decrypted accumulators: `acc_j · scale_j + bias_j` in `f32`, the QAT forward's
    /// arithmetic.
    pub fn logits(&self, acc: &[i64]) -> Vec<f32> {
        acc.iter()
            .zip(&self.scale)
            .zip(&self.bias)
            .map(|((&a, &s), &b)| a as f32 * s + b)
            .collect()
    }

    /// Worst-case statistics of output `j`.
    pub fn row_stats(&self, j: usize) -> RowStats {
        RowStats::of_row(
            &self.weights[j * self.d_in..(j + 1) * self.d_in],
            self.in_qmax,
        )
    }

    /// Shift added to output `j`'s accumulator (on the torus by the server, removed by the
    /// client) so its worst-case range sits in the middle of the torus: half the spare capacity
    /// on each side is margin against noise.
    pub fn placement(&self, j: usize) -> i64 {
        let r = self.row_stats(j);
        ((self.capacity() - r.range() as i128) / 2) as i64 - r.acc_min
    }

    /// Accumulator values that fit the torus at this Δ, `floor(2^64 / Δ)`.
    pub fn capacity(&self) -> i128 {
        ((1u128 << 64) / self.delta.max(1) as u128) as i128
    }

    /// Accumulator `j` from the decrypted torus value `phase` of its ciphertext (Δ-scaled,
    /// shifted by [`OutputLayer::placement`]): rounded to the nearest multiple of Δ, measured as
    /// a signed distance from the middle of the placed range so that noise below 0 wraps back
    /// (the torus is cyclic modulo `2^64`, which a non-power-of-two Δ does not divide).
    pub fn decode(&self, j: usize, phase: u64) -> i64 {
        let middle = self.capacity() as u64 / 2;
        let from_middle = phase.wrapping_sub(middle.wrapping_mul(self.delta)) as i64;
        let delta = self.delta as i128;
        let units = (from_middle as i128 + delta / 2).div_euclid(delta) as i64;
        middle as i64 + units - self.placement(j)
    }
}

impl HiddenLayer {
    /// The name reports use for layer `l` (0-based): `hidden 3`, or `hidden 3 (max-pool 1/2)`
    /// when labelled.
    pub fn name(&self, l: usize) -> String {
        match &self.label {
            Some(label) => format!("hidden {} ({label})", l + 1),
            None => format!("hidden {}", l + 1),
        }
    }

    /// Weights per neuron: `d_in` when dense.
    pub fn fan_in(&self) -> usize {
        self.weights.len() / self.d_out.max(1)
    }

    /// Weight row of neuron `j`, `fan_in` values.
    pub fn row(&self, j: usize) -> &[i32] {
        let f = self.fan_in();
        &self.weights[j * f..(j + 1) * f]
    }

    /// Input indices of neuron `j`'s weights (`None` when dense).
    pub fn row_inputs(&self, j: usize) -> Option<&[u32]> {
        let f = self.fan_in();
        self.inputs.as_ref().map(|ix| &ix[j * f..(j + 1) * f])
    }

    /// The clear accumulator of neuron `j` on input codes `x` (`d_in` values).
    pub fn accumulate(&self, j: usize, x: &[i32]) -> i64 {
        match self.row_inputs(j) {
            None => dot(self.row(j), x),
            Some(ix) => self
                .row(j)
                .iter()
                .zip(ix)
                .map(|(&w, &i)| w as i64 * x[i as usize] as i64)
                .sum(),
        }
    }

    /// Worst-case statistics of neuron `j`.
    pub fn row_stats(&self, j: usize) -> RowStats {
        RowStats::of_row(self.row(j), self.in_qmax)
    }
}

/// Dot product of integer weights and codes (the clear GEMM).
pub fn dot(w: &[i32], x: &[i32]) -> i64 {
    w.iter().zip(x).map(|(&a, &b)| a as i64 * b as i64).sum()
}

/// A circuit file or structure that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CircuitError {
    /// I/O on the circuit file.
    #[error("cannot access circuit file {path}")]
    Io {
        /// The file.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Not JSON of the expected shape.
    #[error("{path} is not a qfhe circuit file; create one with `qfhe export`")]
    Parse {
        /// The file.
        path: String,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// A different format version.
    #[error("circuit format version {found} is not supported (this qfhe reads versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}); re-export the model with `qfhe export`, or update qfhe")]
    Version {
        /// The file's version.
        found: u32,
    },
    /// Structurally inconsistent content.
    #[error("invalid circuit: {0}")]
    Invalid(String),
}

impl Circuit {
    /// Number of PBS per sample (one per hidden neuron).
    pub fn pbs_count(&self) -> usize {
        self.hidden.iter().map(|l| l.d_out).sum()
    }

    /// Torus value of one input unit for the client's encryption.
    pub fn input_torus_delta(&self) -> u64 {
        self.input_delta as u64 * self.encoding.torus_per_unit()
    }

    /// Torus value of one unit of hidden layer `l`'s *output* code (its LUT's output scale).
    pub fn output_torus_delta(&self, l: usize) -> u64 {
        match self.hidden.get(l + 1) {
            Some(next) => next.delta_in as u64 * self.encoding.torus_per_unit(),
            None => self.output.delta,
        }
    }

    /// Check every invariant the simulators and the runtime rely on.
    ///
    /// # Errors
    /// [`CircuitError::Version`] or [`CircuitError::Invalid`] naming the first problem.
    pub fn validate(&self) -> Result<(), CircuitError> {
        let bad = |m: String| Err(CircuitError::Invalid(m));
        if self.format != FORMAT_TAG {
            return bad(format!(
                "format tag '{}', expected '{FORMAT_TAG}'",
                self.format
            ));
        }
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&self.version) {
            return Err(CircuitError::Version {
                found: self.version,
            });
        }
        let e = &self.encoding;
        if !e.poly_size.is_power_of_two() || !(256..=65536).contains(&e.poly_size) {
            return bad(format!(
                "polynomial size {} is not a power of two in [256, 65536]",
                e.poly_size
            ));
        }
        if !(1..=20).contains(&e.frac_bits) || 2 * e.margin_slots >= e.poly_size {
            return bad(format!(
                "frac_bits {} / margin {} out of range",
                e.frac_bits, e.margin_slots
            ));
        }
        if !(1..=8).contains(&self.in_bits) || self.input_delta < 1 {
            return bad(format!(
                "input bits {} / delta {} out of range",
                self.in_bits, self.input_delta
            ));
        }
        if self.hidden.is_empty() {
            return bad("a circuit needs at least one hidden layer".into());
        }
        let half_torus_units = (e.poly_size as i64) << e.frac_bits;
        let mut d_prev = self.features;
        let mut qmax_prev = (1i32 << self.in_bits) - 1;
        let mut delta_prev = self.input_delta;
        for (l, h) in self.hidden.iter().enumerate() {
            let name = format!("hidden layer {}", l + 1);
            if h.d_in != d_prev || h.in_qmax != qmax_prev || h.delta_in != delta_prev {
                return bad(format!("{name}: input (d_in {}, qmax {}, delta {}) does not match the previous stage (d {}, qmax {}, delta {})", h.d_in, h.in_qmax, h.delta_in, d_prev, qmax_prev, delta_prev));
            }
            match &h.inputs {
                None => check_weights(&name, &h.weights, h.d_in, h.d_out, h.w_bits)?,
                Some(ix) => {
                    let fan_in = h.weights.len() / h.d_out.max(1);
                    check_weights(&name, &h.weights, fan_in, h.d_out, h.w_bits)?;
                    if ix.len() != h.weights.len() {
                        return bad(format!(
                            "{name}: {} input indices for {} weights",
                            ix.len(),
                            h.weights.len()
                        ));
                    }
                    if let Some(i) = ix.iter().find(|&&i| i as usize >= h.d_in) {
                        return bad(format!(
                            "{name}: input index {i} out of range for {} inputs",
                            h.d_in
                        ));
                    }
                }
            }
            if h.neurons.len() != h.d_out || !(1..=255).contains(&h.out_qmax) {
                return bad(format!(
                    "{name}: {} neurons for d_out {} (out_qmax {})",
                    h.neurons.len(),
                    h.d_out,
                    h.out_qmax
                ));
            }
            for (j, n) in h.neurons.iter().enumerate() {
                if n.mult < 1 || n.mult % h.delta_in != 0 {
                    return bad(format!(
                        "{name} neuron {j}: multiplier {} is not a positive multiple of delta {}",
                        n.mult, h.delta_in
                    ));
                }
                if n.thresholds.len() != h.out_qmax as usize
                    || n.thresholds.windows(2).any(|w| w[0] > w[1])
                {
                    return bad(format!(
                        "{name} neuron {j}: thresholds must be {} non-decreasing slots",
                        h.out_qmax
                    ));
                }
                let r = h.row_stats(j);
                let (lo, hi) = (n.encoding().phase(r.acc_min), n.encoding().phase(r.acc_max));
                if lo < 0 || hi >= half_torus_units {
                    return bad(format!("{name} neuron {j}: worst-case phase [{lo}, {hi}] leaves the half torus [0, {half_torus_units}) and would wrap around; re-export the model"));
                }
            }
            d_prev = h.d_out;
            qmax_prev = h.out_qmax;
            delta_prev = self.hidden.get(l + 1).map_or(0, |n| n.delta_in);
        }
        let o = &self.output;
        if o.d_in != d_prev || o.in_qmax != qmax_prev {
            return bad(format!("output layer: d_in {} / qmax {} do not match the last hidden layer ({d_prev}, {qmax_prev})", o.d_in, o.in_qmax));
        }
        check_weights("output layer", &o.weights, o.d_in, o.d_out, o.w_bits)?;
        if o.scale.len() != o.d_out
            || o.bias.len() != o.d_out
            || o.scale.iter().chain(&o.bias).any(|v| !v.is_finite())
        {
            return bad("output layer: scale and bias need one finite value per output".into());
        }
        if o.delta < 1 << 8 {
            return bad(format!(
                "output layer: Δ = {} is below 2^8 (no room for noise)",
                o.delta
            ));
        }
        for j in 0..o.d_out {
            if o.row_stats(j).range() as i128 >= o.capacity() {
                return bad(format!(
                    "output {j}: accumulator range does not fit the torus at Δ = {}",
                    o.delta
                ));
            }
        }
        Ok(())
    }

    /// Serialize to JSON.
    ///
    /// # Errors
    /// [`CircuitError::Io`] if the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), CircuitError> {
        let json = serde_json::to_vec(self).expect("circuit serializes");
        std::fs::write(path, json).map_err(|source| CircuitError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Load and [`validate`](Circuit::validate) a circuit file.
    ///
    /// # Errors
    /// [`CircuitError`] for unreadable, malformed, other-version or inconsistent files.
    pub fn load(path: &Path) -> Result<Self, CircuitError> {
        let bytes = std::fs::read(path).map_err(|source| CircuitError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&bytes, &path.display().to_string())
    }

    /// Parse and validate circuit JSON; `origin` names it in errors.
    ///
    /// # Errors
    /// As [`Circuit::load`].
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<Self, CircuitError> {
        // Read the version first so a future format gets the version error, not a parse error.
        #[derive(Deserialize)]
        struct Header {
            format: Option<String>,
            version: Option<u32>,
        }
        let parse_err = |source| CircuitError::Parse {
            path: origin.to_owned(),
            source,
        };
        let header: Header = serde_json::from_slice(bytes).map_err(parse_err)?;
        if header.format.as_deref() == Some(FORMAT_TAG) {
            if let Some(v) = header
                .version
                .filter(|v| !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(v))
            {
                return Err(CircuitError::Version { found: v });
            }
        }
        let mut json: serde_json::Value = serde_json::from_slice(bytes).map_err(parse_err)?;
        if header.version.is_some_and(|v| v < 3) {
            upgrade_output_delta(&mut json);
        }
        let c: Circuit = serde_json::from_value(json).map_err(parse_err)?;
        c.validate()?;
        Ok(c)
    }
}

/// Versions 1 and 2 stored the output Δ as `delta_log2`; version 3 stores `delta = 2^d`. A
/// missing or out-of-range `delta_log2` is left for deserialization to report.
fn upgrade_output_delta(json: &mut serde_json::Value) {
    let Some(output) = json.get_mut("output").and_then(|o| o.as_object_mut()) else {
        return;
    };
    if let Some(d) = output.get("delta_log2").and_then(|d| d.as_u64()) {
        if (8..=62).contains(&d) {
            output.remove("delta_log2");
            output.insert("delta".into(), (1u64 << d).into());
        }
    }
}

fn check_weights(
    name: &str,
    w: &[i32],
    d_in: usize,
    d_out: usize,
    bits: u32,
) -> Result<(), CircuitError> {
    if w.len() != d_in * d_out || d_in == 0 || d_out == 0 {
        return Err(CircuitError::Invalid(format!(
            "{name}: {} weights for {d_in}x{d_out}",
            w.len()
        )));
    }
    if !(2..=8).contains(&bits) {
        return Err(CircuitError::Invalid(format!(
            "{name}: weight bit width {bits} out of range [2, 8]"
        )));
    }
    let q = (1i32 << (bits - 1)) - 1;
    if let Some(v) = w.iter().find(|v| v.abs() > q) {
        return Err(CircuitError::Invalid(format!(
            "{name}: weight {v} outside the {bits}-bit range [-{q}, {q}]"
        )));
    }
    Ok(())
}

pub(crate) const TAG: &str = FORMAT_TAG;
