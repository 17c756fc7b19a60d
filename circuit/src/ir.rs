//! The circuit's structure: what the server evaluates and the simulators run, in one definition.
//!
//! A circuit is a directed acyclic graph of stages over integer codes:
//! 1. the [`Input`]: the client encrypts each code `x ∈ [0, 2^bits − 1]` as the torus value
//!    `x · Δ_in`, one LWE ciphertext per feature;
//! 2. each [`Stage`] reads the concatenation of its [`Source`]s (the input or earlier stages),
//!    computes `acc_j = Σ_t W_jt x_{i(t)}` on ciphertexts with clear integer weights, adds the
//!    neuron's offset, and bootstraps it through a per-slot [`Table`] (any function of the slot:
//!    activation and requantization, signed or not), writing the code `y` as `y · Δ` where `Δ`
//!    is the stage's own output scale ([`Stage::delta`]);
//! 3. the [`OutputLayer`] computes its accumulators the same way, and the client decrypts and
//!    dequantizes them (`logit_j = acc_j · scale_j + bias_j`); the prediction is the argmax.
//!
//! A stage may be read by any number of later stages (residual connections), and every stage a
//! GEMM reads must write at the same `Δ`, so one integer row computes the accumulator.

use qfhe_core::bounds::{RowAccumulator, RowStats};
use qfhe_core::encoding::NeuronEncoding;
use qfhe_core::EncodingConfig;
use serde::{Deserialize, Serialize};

/// Version of the circuit file format written by this build.
///
/// Version 2 added sparse connectivity ([`Gemm::inputs`]); version 3 replaced the output
/// layer's power-of-two `delta_log2` by any integer Δ; version 4 made the circuit a graph of
/// stages ([`Source`]), each owning its output scale ([`Stage::delta`]), with per-slot signed
/// tables ([`Table`]); version 5 added the optional per-feature input quantizer
/// ([`Input::quantizer`]) and the output readout ([`OutputLayer::readout`]); version 6 added
/// exclusive groups of neurons ([`Stage::exclusive`]); version 7 added threshold bins to the
/// feature quantizer ([`FeatureQuantizer::edges`]). Files of versions 1–3 are upgraded when
/// read; version 4 to 6 files read as they are.
pub const FORMAT_VERSION: u32 = 7;
/// Oldest format version this build reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;
pub(crate) const FORMAT_TAG: &str = "qfhe-circuit";

/// A compiled quantized network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Circuit {
    /// Always `"qfhe-circuit"`.
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// Torus layout (polynomial size, phase resolution, margins) the encodings assume.
    pub encoding: EncodingConfig,
    /// The client's encrypted input.
    pub input: Input,
    /// PBS stages in evaluation order: stage `s` reads only the input and stages `< s`.
    pub stages: Vec<Stage>,
    /// The output layer (decrypted by the client, no PBS).
    pub output: OutputLayer,
    /// Free-form provenance: dataset, architecture, bit widths.
    pub meta: Meta,
}

/// The client's encrypted input: `features` codes in `[0, 2^bits − 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// Input features per sample.
    pub features: usize,
    /// Input code bit width.
    pub bits: u32,
    /// `Δ_in`: torus units (of `2^64`) per input unit; the client encrypts code `x` as `x · Δ_in`.
    pub delta: u64,
    /// How the client turns real-valued features into codes (tabular data). `None`: the input
    /// is an 8-bit image, each pixel `p` quantized as `round(p · (2^bits − 1) / 255)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantizer: Option<FeatureQuantizer>,
}

/// A per-feature quantizer of real-valued inputs, affine or by threshold bins.
///
/// Affine (no `edges`): feature `i`'s value `x` becomes the code
/// `clamp(round_half_even((x − low_i) / step_i), 0, 2^bits − 1)` and code `q` stands for
/// `low_i + q · step_i` (see [`FeatureQuantizer::calibrate`]).
///
/// Binned (`edges`, tree ensembles): the code is the number of feature `i`'s edges `≤ x`, so
/// `x < edges_i[k]` exactly when `code ≤ k`; a tree whose thresholds are the edges takes the
/// same path on the codes as on the real values (see [`FeatureQuantizer::with_edges`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureQuantizer {
    /// Value of code 0, per feature.
    pub low: Vec<f32>,
    /// Value of one code step, per feature (positive).
    pub step: Vec<f32>,
    /// Threshold bins: per feature, strictly increasing finite edges, at most `2^bits − 1` of
    /// them (a feature without edges always has code 0). `None`: the affine quantizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<Vec<Vec<f32>>>,
}

/// How the client reads its prediction from the dequantized outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Readout {
    /// The class is the index of the largest output (first maximum).
    #[default]
    Argmax,
    /// One output, a binary decision score: class 1 when it is positive, else class 0.
    Sign,
    /// One output, the predicted value itself (regression).
    Value,
}

impl Readout {
    /// Whether this is the default, [`Readout::Argmax`].
    pub fn is_argmax(&self) -> bool {
        *self == Self::Argmax
    }

    /// Its name in reports: `argmax`, `sign`, `value`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Argmax => "argmax",
            Self::Sign => "sign",
            Self::Value => "value",
        }
    }
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

/// What a GEMM reads: the client's input or an earlier stage's PBS outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The client's fresh encryptions.
    Input,
    /// The outputs of stage `k` (0-based).
    Stage(usize),
}

/// Integer weights applied to the concatenation of some sources' values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gemm {
    /// What it reads; its input vector is these sources' values concatenated, in order.
    pub sources: Vec<Source>,
    /// Length of that input vector (the sum of the sources' widths).
    pub d_in: usize,
    /// Rows (neurons or outputs).
    pub d_out: usize,
    /// Weight bit width: codes in `[−(2^(w_bits−1) − 1), 2^(w_bits−1) − 1]`.
    pub w_bits: u32,
    /// Integer weights, row-major `[d_out][fan_in]` (`fan_in = d_in` when dense).
    pub weights: Vec<i32>,
    /// Sparse connectivity: weight `t` of row `j` reads input `inputs[j·fan_in + t]`
    /// (convolutions lowered by index, im2col without copying ciphertexts; a padded tap has
    /// weight 0). `None`: dense, weight `t` reads input `t`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<u32>>,
}

impl Gemm {
    /// Weights per row: `d_in` when dense.
    pub fn fan_in(&self) -> usize {
        self.weights.len() / self.d_out.max(1)
    }

    /// Weight row `j`, `fan_in` values.
    pub fn row(&self, j: usize) -> &[i32] {
        let f = self.fan_in();
        &self.weights[j * f..(j + 1) * f]
    }

    /// Input indices of row `j`'s weights (`None` when dense).
    pub fn row_inputs(&self, j: usize) -> Option<&[u32]> {
        let f = self.fan_in();
        self.inputs.as_ref().map(|ix| &ix[j * f..(j + 1) * f])
    }

    /// Index into the concatenated input that weight `t` of row `j` reads.
    pub fn input_index(&self, j: usize, t: usize) -> usize {
        match &self.inputs {
            None => t,
            Some(ix) => ix[j * self.fan_in() + t] as usize,
        }
    }

    /// The clear accumulator of row `j` on the concatenated input codes `x` (`d_in` values).
    pub fn accumulate(&self, j: usize, x: &[i32]) -> i64 {
        let row = self.row(j);
        match self.row_inputs(j) {
            None => row.iter().zip(x).map(|(&w, &v)| w as i64 * v as i64).sum(),
            Some(ix) => row
                .iter()
                .zip(ix)
                .map(|(&w, &i)| w as i64 * x[i as usize] as i64)
                .sum(),
        }
    }
}

/// A GEMM followed by one PBS per neuron.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// What the stage computes, for reports (`"conv"`, `"max-pool 1/2"`, …); ignored by
    /// evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The linear part.
    pub gemm: Gemm,
    /// Per-neuron encoding and table, `gemm.d_out` entries.
    pub neurons: Vec<Neuron>,
    /// Smallest code any table writes.
    pub out_min: i32,
    /// Largest code any table writes.
    pub out_max: i32,
    /// `Δ`: torus units (of `2^64`) per output unit; the tables write code `y` as `y · Δ`
    /// (mod `2^64`, so negative codes are fine). Owned by this stage; every reader must accept
    /// it (a multiple of the phase unit for PBS stages, a range fit for the output layer).
    pub delta: u64,
    /// Groups of neurons of which at most one writes a non-zero code per sample:
    /// `exclusive[i]` is neuron `i`'s group (`d_out` entries, each `< d_out`). The lowering
    /// guarantees it (the leaves of one decision tree: one path is taken); readers' worst-case
    /// ranges then count one neuron per group ([`Circuit::row_stats`]), so the output layer
    /// after an ensemble gets a Δ as wide as one leaf per tree allows, not all leaves at once.
    /// A file that declares groups its tables break decrypts wrapped values, never panics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<Vec<u32>>,
}

impl Stage {
    /// The name reports use for stage `s` (0-based): `hidden 3`, or `hidden 3 (max-pool 1/2)`
    /// when labelled.
    pub fn name(&self, s: usize) -> String {
        match &self.label {
            Some(label) => format!("hidden {} ({label})", s + 1),
            None => format!("hidden {}", s + 1),
        }
    }

    /// Neurons (PBS per sample).
    pub fn d_out(&self) -> usize {
        self.gemm.d_out
    }
}

/// One hidden neuron: where its accumulator sits on the torus and its table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neuron {
    /// Phase units per accumulator unit: the row multiplier `c` times the input's phase units
    /// per unit (`Δ_in / torus_per_unit`).
    pub mult: i64,
    /// Phase offset, phase units.
    pub offset: i64,
    /// Output code per slot.
    pub table: Table,
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
        self.table.level_at(slot)
    }
}

/// A function from the `N` slots of the half torus to output codes, stored as runs: slot `u`
/// has code `levels[k]` for the last `k` with `starts[k] ≤ u`. Any function of the slot can be
/// written so (non-monotone activations such as GELU or SiLU, signed codes); a monotone `b`-bit
/// activation needs at most `2^b` runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// First slot of each run: `starts[0] = 0`, strictly increasing, below `N`.
    pub starts: Vec<u32>,
    /// Code of each run (adjacent runs differ).
    pub levels: Vec<i32>,
}

impl Table {
    /// The table whose slot `u ∈ [0, n)` holds `f(u)`, with equal neighbours merged into runs.
    pub fn from_fn(n: u32, mut f: impl FnMut(u32) -> i32) -> Self {
        let (mut starts, mut levels) = (Vec::new(), Vec::new());
        for u in 0..n {
            let y = f(u);
            if levels.last() != Some(&y) {
                starts.push(u);
                levels.push(y);
            }
        }
        Self { starts, levels }
    }

    /// Code at `slot`; slots below 0 read run 0, slots past the end the last run.
    pub fn level_at(&self, slot: i64) -> i32 {
        self.levels[self.run_index(slot)]
    }

    /// Index of the run containing `slot` (run 0 below slot 0, the last past the end).
    fn run_index(&self, slot: i64) -> usize {
        self.starts
            .partition_point(|&s| (s as i64) <= slot)
            .saturating_sub(1)
    }

    /// The run containing `slot` (as [`Table::level_at`]) as `(index, first slot, end slot)`,
    /// the end exclusive (`n` for the last run).
    pub fn run_at(&self, slot: i64, n: u32) -> (usize, i64, i64) {
        let k = self.run_index(slot);
        (k, self.starts[k] as i64, self.run_end(k, n))
    }

    /// End (exclusive) of run `k`.
    pub fn run_end(&self, k: usize, n: u32) -> i64 {
        self.starts.get(k + 1).map_or(n as i64, |&s| s as i64)
    }

    /// Number of runs.
    pub fn runs(&self) -> usize {
        self.starts.len()
    }
}

/// The final GEMM, decrypted and dequantized by the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputLayer {
    /// The linear part; its sources' common Δ is the output scale.
    pub gemm: Gemm,
    /// Dequantization factor per output, `s_in · s_w_j` (`f32`).
    pub scale: Vec<f32>,
    /// Float bias per output.
    pub bias: Vec<f32>,
    /// How the prediction is read from the logits (argmax unless written).
    #[serde(default, skip_serializing_if = "Readout::is_argmax")]
    pub readout: Readout,
}

impl OutputLayer {
    /// Outputs (classes).
    pub fn d_out(&self) -> usize {
        self.gemm.d_out
    }

    /// Logits from decrypted accumulators: `acc_j · scale_j + bias_j` in `f32`, the QAT forward's
    /// arithmetic (`d_out` values; extra accumulators are ignored).
    pub fn logits(&self, acc: &[i64]) -> Vec<f32> {
        acc.iter()
            .zip(&self.scale)
            .zip(&self.bias)
            .map(|((&a, &s), &b)| a as f32 * s + b)
            .collect()
    }

    /// The predicted class of `logits` by the [`Readout`]: the first maximum, or `logit_0 > 0`
    /// for [`Readout::Sign`]; 0 for [`Readout::Value`] (a regression has no class).
    pub fn class(&self, logits: &[f32]) -> usize {
        match self.readout {
            Readout::Argmax => crate::simulate::argmax(logits),
            Readout::Sign => usize::from(logits.first().is_some_and(|&v| v > 0.0)),
            Readout::Value => 0,
        }
    }

    /// The prediction as a number, what a [`Metric`](crate::metric::Metric) scores: the class
    /// index, or the value `logit_0` for [`Readout::Value`].
    pub fn predicted_value(&self, logits: &[f32]) -> f64 {
        match self.readout {
            Readout::Value => logits.first().map_or(0.0, |&v| v as f64),
            _ => self.class(logits) as f64,
        }
    }
}

/// Accumulator values that fit the torus at scale `delta`, `floor(2^64 / Δ)`.
pub fn capacity(delta: u64) -> i128 {
    ((1u128 << 64) / delta.max(1) as u128) as i128
}

/// Shift added to an output accumulator with worst case `row` (on the torus by the server,
/// removed by the client) so the range sits in the middle of the torus at scale `delta`: half
/// the spare capacity on each side is margin against noise.
pub fn placement(row: &RowStats, delta: u64) -> i64 {
    ((capacity(delta) - row.range() as i128) / 2) as i64 - row.acc_min
}

/// Accumulator from the decrypted torus value `phase` of an output ciphertext (Δ-scaled,
/// shifted by [`placement`]): rounded to the nearest multiple of Δ, measured as a signed
/// distance from the middle of the placed range so that noise below 0 wraps back (the torus is
/// cyclic modulo `2^64`, which a non-power-of-two Δ does not divide).
pub fn decode(phase: u64, row: &RowStats, delta: u64) -> i64 {
    let middle = capacity(delta) as u64 / 2;
    let from_middle = phase.wrapping_sub(middle.wrapping_mul(delta)) as i64;
    let d = delta as i128;
    let units = (from_middle as i128 + d / 2).div_euclid(d) as i64;
    middle as i64 + units - placement(row, delta)
}

impl Circuit {
    /// Input features per sample.
    pub fn features(&self) -> usize {
        self.input.features
    }

    /// Number of PBS per sample (one per stage neuron).
    pub fn pbs_count(&self) -> usize {
        self.stages.iter().map(Stage::d_out).sum()
    }

    /// Number of values `source` produces.
    pub fn width(&self, source: Source) -> usize {
        match source {
            Source::Input => self.input.features,
            Source::Stage(k) => self.stages[k].d_out(),
        }
    }

    /// Code range `[min, max]` of `source`'s values.
    pub fn range(&self, source: Source) -> (i32, i32) {
        match source {
            Source::Input => (0, (1i32 << self.input.bits) - 1),
            Source::Stage(k) => (self.stages[k].out_min, self.stages[k].out_max),
        }
    }

    /// Torus units per unit of `source`'s values.
    pub fn delta(&self, source: Source) -> u64 {
        match source {
            Source::Input => self.input.delta,
            Source::Stage(k) => self.stages[k].delta,
        }
    }

    /// The Δ a GEMM's accumulators carry: that of its first source (all are equal in a valid
    /// circuit).
    pub fn gemm_delta(&self, g: &Gemm) -> u64 {
        g.sources.first().map_or(1, |&s| self.delta(s))
    }

    /// Phase units per input unit of stage `s` (`Δ_in / torus_per_unit`).
    pub fn delta_in_units(&self, s: usize) -> i64 {
        (self.gemm_delta(&self.stages[s].gemm) / self.encoding.torus_per_unit()) as i64
    }

    /// The output layer's Δ (torus units per accumulator unit).
    pub fn output_delta(&self) -> u64 {
        self.gemm_delta(&self.output.gemm)
    }

    /// Worst-case statistics of row `j` of `g`: each weight against the code range of the source
    /// its input comes from; inputs from one exclusive group ([`Stage::exclusive`]) count as
    /// the largest of their terms, since the others are 0.
    pub fn row_stats(&self, g: &Gemm, j: usize) -> RowStats {
        let sources = InputSources::of(self, g);
        let mut acc = RowAccumulator::default();
        let mut groups: std::collections::BTreeMap<(usize, u32), (i64, i64)> = Default::default();
        for (t, &w) in g.row(j).iter().enumerate() {
            let (source, at) = sources.locate(g.input_index(j, t));
            let (lo, hi) = self.range(source);
            let group = match source {
                Source::Stage(k) => self.stages[k]
                    .exclusive
                    .as_ref()
                    .and_then(|e| e.get(at))
                    .map(|&id| (k, id)),
                Source::Input => None,
            };
            match group {
                Some(key) => {
                    let (a, b) = (w as i64 * lo as i64, w as i64 * hi as i64);
                    let span = groups.entry(key).or_insert((0, 0));
                    *span = (span.0.min(a.min(b)), span.1.max(a.max(b)));
                    acc.add_noise(w);
                }
                None => acc.add(w, lo, hi),
            }
        }
        for (lo, hi) in groups.into_values() {
            acc.add_span(lo, hi);
        }
        acc.finish()
    }

    /// `g`'s concatenated input from every source's values (`values(source)`).
    pub fn gather<'v, T: Copy + 'v>(&self, g: &Gemm, values: impl Fn(Source) -> &'v [T]) -> Vec<T> {
        let mut x = Vec::with_capacity(g.d_in);
        for &s in &g.sources {
            x.extend_from_slice(values(s));
        }
        x
    }

    /// Worst-case statistics of output `j`.
    pub fn output_row_stats(&self, j: usize) -> RowStats {
        self.row_stats(&self.output.gemm, j)
    }

    /// Output `j`'s accumulator from the decrypted torus value of its ciphertext ([`decode`]).
    pub fn decode_output(&self, j: usize, phase: u64) -> i64 {
        decode(phase, &self.output_row_stats(j), self.output_delta())
    }

    /// Shift the server adds to output `j` ([`placement`]).
    pub fn output_placement(&self, j: usize) -> i64 {
        placement(&self.output_row_stats(j), self.output_delta())
    }

    /// For each stage, the index of the last reader of its outputs (a later stage, or
    /// `stages.len()` for the output layer): when the server may free them.
    pub fn last_readers(&self) -> Vec<usize> {
        let mut last = vec![0; self.stages.len()];
        let readers = self
            .stages
            .iter()
            .map(|s| &s.gemm)
            .chain(std::iter::once(&self.output.gemm));
        for (r, g) in readers.enumerate() {
            for &src in &g.sources {
                if let Source::Stage(k) = src {
                    last[k] = r;
                }
            }
        }
        last
    }
}

/// Which source each position of a GEMM's concatenated input comes from.
#[derive(Debug, Clone)]
pub struct InputSources {
    /// `(first index, source)`, one per source in order.
    parts: Vec<(usize, Source)>,
}

impl InputSources {
    /// The sources of `g`'s input in `circuit`.
    pub fn of(circuit: &Circuit, g: &Gemm) -> Self {
        let mut start = 0;
        let mut parts = Vec::with_capacity(g.sources.len());
        for &s in &g.sources {
            parts.push((start, s));
            start += circuit.width(s);
        }
        Self { parts }
    }

    /// The source of input `i`.
    pub fn at(&self, i: usize) -> Source {
        self.locate(i).0
    }

    /// The source of input `i` and its index among that source's values.
    pub fn locate(&self, i: usize) -> (Source, usize) {
        let k = self.parts.partition_point(|p| p.0 <= i).saturating_sub(1);
        (self.parts[k].1, i.saturating_sub(self.parts[k].0))
    }
}
