//! The data-independent half of the quantized forward: everything the circuit fixes before it
//! sees an input.
//!
//! Walking the layers with only the quantizer steps and code ranges of the values between them,
//! the plan takes each weighted layer's integer codes under the accumulator bound, chooses every
//! PBS point's encoding, and gives each group of stages read together one input scale `Δ`
//! (a residual `add` reads two stages in one GEMM, and a stage read by two later stages has one
//! `Δ`). The quantized forward ([`super::forward`]) and the lowering both read this plan, so the
//! circuit computes what the model computed.

use super::{input_shape, roles, step_owners, QSequential, Role};
use burn::prelude::*;
use qfhe_circuit::lut::{integer_table, neuron_table, output_delta};
use qfhe_circuit::Table;
use qfhe_core::bounds::RowStats;
use qfhe_core::encoding::{
    acc_per_step, choose_layer_encoding, encode_with_delta, step_shortfall, InputKind,
};
use qfhe_core::scheme::{input_scale, unsigned_qmax};
use qfhe_core::{Activation, LayerSpec, Shape};
use qfhe_quant::conv::{conv_row_stats_in, ConvGeometry};
use qfhe_quant::layers::{row_stats_in, AccumulatorBound};
use qfhe_quant::{EncodingConfig, EncodingError, LayerEncoding};

/// A producer of values the circuit's GEMMs read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Src {
    /// The client's encrypted input.
    Input,
    /// The PBS stage of activation `acts[i]`.
    Act(usize),
    /// The second of the two PBS stages that lower the `max_pool` at spec layer `i`.
    MaxPool(usize),
}

/// What is known, before any input, about the values between two layers.
#[derive(Debug, Clone)]
pub struct ValueMeta {
    /// Their shape.
    pub shape: Shape,
    /// Quantizer step `[1]` (value = code · step), carrying its LSQ gradient.
    pub step: Tensor<1>,
    /// Its value.
    pub step_value: f32,
    /// Smallest code.
    pub lo: i64,
    /// Largest code.
    pub hi: i64,
    /// Fresh encryptions or PBS outputs (their noise differs by orders of magnitude).
    pub kind: InputKind,
    /// Noise std of one value in units of one PBS output's: `√(terms)` for a sum of PBS
    /// outputs (pooling, residual add), 1 for a single one.
    pub gain: f64,
    /// The stages the values are sums of, in GEMM source order.
    pub sources: Vec<Src>,
}

/// A weighted layer's integer weight codes.
#[derive(Debug, Clone)]
pub enum WeightCodes {
    /// Dense codes `[d_in, d_out]`.
    Linear(Tensor<2>),
    /// Convolution codes `[c_out, c_in, k, k]` and the geometry on the image it reads.
    Conv(Tensor<4>, ConvGeometry),
}

/// One PBS point: an activation layer, with the GEMM before it (a weighted layer, or the
/// identity on the values it reads).
#[derive(Debug, Clone)]
pub struct PbsPlan {
    /// Spec index of the activation layer.
    pub layer: usize,
    /// Its index in `acts`.
    pub act: usize,
    /// Its function.
    pub activation: Activation,
    /// Spec index and codes of the weighted layer before it (`None`: it requantizes the values
    /// it reads, weight 1 each).
    pub weighted: Option<(usize, WeightCodes)>,
    /// What the GEMM reads.
    pub input: ValueMeta,
    /// Worst-case statistics of each neuron (noise gain applied to `l2`).
    pub rows: Vec<RowStats>,
    /// The neurons' encoding.
    pub encoding: LayerEncoding,
    /// Dequantization factor per neuron `[1, d_out]`, `s_in · s_w` (with gradients).
    pub k: Tensor<2>,
    /// Float bias per neuron `[1, d_out]`.
    pub bias: Tensor<2>,
    /// The output step `[1]` (the owner's, for a shared step).
    pub step: Tensor<1>,
    /// Its value.
    pub s_out: f32,
    /// Output code range.
    pub range: (i32, i32),
    /// Whether the tables are read at the integer accumulator of each slot
    /// ([`qfhe_core::NeuronEncoding::integer_acc`]) instead of its centre: for given codes
    /// ([`QSequential::fixed_codes`]), trained without slot rounding.
    pub integer_tables: bool,
}

impl PbsPlan {
    /// Neurons.
    pub fn d_out(&self) -> usize {
        self.encoding.neurons.len()
    }

    /// Each neuron's table: slot `u` holds [`Activation::code`] of the slot centre's
    /// dequantized value, `f32` arithmetic as in the forward (`d_out` tables of `N` slots).
    pub fn tables(&self, cfg: &EncodingConfig) -> Vec<Table> {
        let k = floats(self.k.clone());
        let b = floats(self.bias.clone());
        self.encoding
            .neurons
            .iter()
            .enumerate()
            .map(|(j, &e)| {
                if self.integer_tables {
                    // The exact value of an integer accumulator, as its framework rounds it.
                    let (kj, bj, s) = (k[j] as f64, b[j] as f64, self.s_out as f64);
                    integer_table(e, cfg.frac_bits, cfg.poly_size, |acc| {
                        self.activation
                            .code_f64(acc as f64 * kj + bj, s, self.range)
                    })
                } else {
                    neuron_table(e, cfg.frac_bits, cfg.poly_size, |acc| {
                        self.activation
                            .code(acc * k[j] + b[j], self.s_out, self.range)
                    })
                }
            })
            .collect()
    }
}

/// The output layer: its accumulators are decrypted and dequantized by the client.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    /// Spec index.
    pub layer: usize,
    /// Codes `[d_in, classes]`.
    pub codes: Tensor<2>,
    /// What it reads.
    pub input: ValueMeta,
    /// `s_in · s_w` per output `[1, classes]`.
    pub k: Tensor<2>,
    /// Float bias `[1, classes]`.
    pub bias: Tensor<2>,
    /// Worst-case statistics per output (noise gain applied).
    pub rows: Vec<RowStats>,
    /// Torus units per accumulator unit.
    pub delta: u64,
}

/// The plan of a model's quantized forward.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One entry per activation layer, in `acts` order.
    pub pbs: Vec<PbsPlan>,
    /// The output layer.
    pub output: OutputPlan,
    /// The values after each spec layer (after a weighted layer: what it reads).
    pub values: Vec<ValueMeta>,
    /// The scale `Δ` (torus units per code unit) each producer writes at, for every producer
    /// a planned GEMM reads (a `max_pool`'s input is read by its own stages only, lowered
    /// later).
    pub deltas: Vec<(Src, u64)>,
}

impl Plan {
    /// `Δ` of `src`, if a planned GEMM reads it.
    pub fn delta(&self, src: Src) -> Option<u64> {
        self.deltas.iter().find(|(s, _)| *s == src).map(|&(_, d)| d)
    }
}

pub(crate) fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 tensor")
}

pub(super) fn plan(model: &QSequential, batch: usize) -> Result<Plan, EncodingError> {
    let spec = &model.spec;
    let cfg = &model.encoding;
    let shapes = model.shapes();
    let roles = roles(spec);
    let owners = step_owners(spec);
    let device = model.device();
    let in_bits = spec.quant.in_bits;
    let (in_step, in_qmax) = match model.input {
        Some(q) => (q.step, q.qmax),
        None => (input_scale(in_bits), unsigned_qmax(in_bits)),
    };
    let mut cur = ValueMeta {
        shape: input_shape(spec),
        step: Tensor::from_floats([in_step], &device),
        step_value: in_step,
        lo: 0,
        hi: in_qmax as i64,
        kind: InputKind::Fresh,
        gain: 1.0,
        sources: vec![Src::Input],
    };
    let mut values: Vec<ValueMeta> = Vec::with_capacity(shapes.len());
    let mut pending: Option<(usize, ValueMeta)> = None;
    let mut pbs = Vec::with_capacity(model.acts.len());
    let mut output = None;
    let last = spec.layers.len() - 1;
    for (i, layer) in spec.layers.iter().enumerate() {
        match (roles[i], layer) {
            (Role::Linear(l), _) if i == last => {
                output = Some(output_plan(model, l, i, cur.clone()));
            }
            (Role::Linear(_) | Role::Conv(_), _) => pending = Some((i, cur.clone())),
            (Role::Act(a), l) => {
                let owner = &model.acts[owners[a]];
                let n = shapes[i].len();
                let step = owner.step(batch * n);
                let s_out = owner.step_value();
                let range = (model.acts[a].lo, model.acts[a].hi);
                let activation = l.activation().expect("an activation");
                let point = match pending.take() {
                    Some((w, input)) => {
                        // The bound is for the steepest table step, not the average one.
                        let mu = activation.max_slope();
                        let (step, s_out) = (step.clone().div_scalar(mu), s_out / mu);
                        weighted_point(model, (w, roles[w]), input, step, s_out)?
                    }
                    None => identity_point(cur.clone(), n, s_out, cfg)?,
                };
                pbs.push(PbsPlan {
                    layer: i,
                    act: a,
                    activation,
                    weighted: point.codes,
                    input: point.input,
                    rows: point.rows,
                    encoding: point.encoding,
                    k: point.k,
                    bias: point.bias,
                    step: step.clone(),
                    s_out,
                    range,
                    integer_tables: model.fixed_codes,
                });
                cur = ValueMeta {
                    shape: shapes[i],
                    step,
                    step_value: s_out,
                    lo: range.0 as i64,
                    hi: range.1 as i64,
                    kind: InputKind::Pbs,
                    gain: 1.0,
                    sources: vec![Src::Act(a)],
                };
            }
            (_, LayerSpec::AvgPool { k }) => {
                let p2 = (k * k) as f32;
                cur = ValueMeta {
                    shape: shapes[i],
                    step: cur.step.div_scalar(p2),
                    step_value: cur.step_value / p2,
                    lo: cur.lo * (k * k) as i64,
                    hi: cur.hi * (k * k) as i64,
                    gain: cur.gain * *k as f64,
                    ..cur
                };
            }
            // The next GEMM reads `m₁` and `relu(m₂ − m₁)` (each in `[0, hi]`) with the pooled
            // weight on both: the worst case of inputs in `[0, 2·hi]`, noise gain √2.
            (_, LayerSpec::MaxPool { .. }) => {
                cur = ValueMeta {
                    shape: shapes[i],
                    lo: 0,
                    hi: 2 * cur.hi,
                    gain: std::f64::consts::SQRT_2,
                    sources: vec![Src::MaxPool(i)],
                    ..cur
                };
            }
            (_, LayerSpec::Add { from }) => {
                let other = &values[*from];
                let mut sources = other.sources.clone();
                sources.extend(cur.sources.iter().filter(|s| !other.sources.contains(s)));
                cur = ValueMeta {
                    lo: cur.lo + other.lo,
                    hi: cur.hi + other.hi,
                    gain: (cur.gain.powi(2) + other.gain.powi(2)).sqrt(),
                    kind: InputKind::Pbs,
                    sources,
                    ..cur
                };
            }
            (_, LayerSpec::Flatten) => cur.shape = shapes[i],
            _ => {} // a folded batch norm
        }
        values.push(cur.clone());
    }
    let output = output.expect("validated: the last layer is linear");
    let mut plan = Plan {
        pbs,
        output,
        values,
        deltas: vec![],
    };
    share_deltas(&mut plan, cfg);
    Ok(plan)
}

/// What a PBS point's GEMM is, before it is named.
struct Point {
    codes: Option<(usize, WeightCodes)>,
    input: ValueMeta,
    rows: Vec<RowStats>,
    encoding: LayerEncoding,
    k: Tensor<2>,
    bias: Tensor<2>,
}

/// A requantization of `input` (`n` values, weight 1 each): row `j` reads value `j`, whose
/// worst case is the values' code range and whose noise is their gain.
fn identity_point(
    input: ValueMeta,
    n: usize,
    s_out: f32,
    cfg: &EncodingConfig,
) -> Result<Point, EncodingError> {
    let row = RowStats {
        acc_min: input.lo,
        acc_max: input.hi,
        l2: input.gain,
    };
    let rows = vec![row; n];
    let aps = acc_per_step(input.step_value, &vec![1.0; n], s_out);
    let encoding = choose_layer_encoding(&rows, &aps, input.kind, cfg)?;
    let device = input.step.device();
    let k = input.step.clone().unsqueeze_dim::<2>(0).repeat_dim(1, n);
    Ok(Point {
        codes: None,
        rows,
        encoding,
        k,
        bias: Tensor::zeros([1, n], &device),
        input,
    })
}

/// The point after weighted layer `w`: its codes under the accumulator bound for output step
/// `step` (`s_out`), their row statistics and encoding. For layers fed by PBS outputs, channels
/// whose table step falls short of the target under the chosen encoding get a tighter bound and
/// everything is re-derived (a few rounds, since the layer's shared input scale can move).
fn weighted_point(
    model: &QSequential,
    (w, role): (usize, Role),
    input: ValueMeta,
    step: Tensor<1>,
    s_out: f32,
) -> Result<Point, EncodingError> {
    let cfg = &model.encoding;
    let device = step.device();
    let x_max = (input.hi - input.lo) as f32 * input.step_value;
    let range = (input.lo, input.hi);
    let layer = Weighted::new(model, role, input.shape);
    let s_w = layer.scale_values();
    let positions = layer.positions();
    let aps: Vec<f64> = acc_per_step(input.step_value, &s_w, s_out)
        .into_iter()
        .flat_map(|a| std::iter::repeat_n(a, positions))
        .collect();
    let full = cfg.max_range_steps() as f32;
    let mut max_steps = vec![full; s_w.len()];
    let mut bound = AccumulatorBound {
        x_max,
        s_out: step.clone(),
        max_steps: Tensor::from_floats([full], &device),
    };
    let encode = |codes: &WeightCodes| {
        let mut rows = layer.rows(codes, range);
        for r in &mut rows {
            r.l2 *= input.gain;
        }
        choose_layer_encoding(&rows, &aps, input.kind, cfg).map(|e| (rows, e))
    };
    let mut codes = layer.codes((!model.fixed_codes).then_some(&bound));
    let (mut rows, mut encoding) = encode(&codes)?;
    if input.kind == InputKind::Pbs && !model.fixed_codes {
        let range_steps = layer.range_steps(x_max, s_out);
        for _ in 0..8 {
            let short = step_shortfall(&rows, &encoding, &aps, input.kind, cfg);
            if short.iter().all(|&f| f >= 1.0) {
                break;
            }
            // A channel's bound is as tight as its worst position needs.
            for (c, m) in max_steps.iter_mut().enumerate() {
                let f = short[c * positions..(c + 1) * positions]
                    .iter()
                    .fold(1.0f64, |a, &b| a.min(b));
                if f < 1.0 {
                    *m = m.min(range_steps[c]) * f as f32 * 0.92;
                }
            }
            bound.max_steps = Tensor::from_floats(max_steps.as_slice(), &device);
            codes = layer.codes(Some(&bound));
            (rows, encoding) = encode(&codes)?;
        }
    }
    let (k, bias) = layer.dequantization(&input.step);
    Ok(Point {
        codes: Some((w, codes)),
        input,
        rows,
        encoding,
        k,
        bias,
    })
}

fn output_plan(model: &QSequential, l: usize, layer: usize, input: ValueMeta) -> OutputPlan {
    let lin = &model.linears[l];
    let codes = lin.codes(None);
    let mut rows = row_stats_in(&codes, (input.lo, input.hi));
    for r in &mut rows {
        r.l2 *= input.gain;
    }
    let delta = output_delta(&rows, &model.encoding);
    OutputPlan {
        layer,
        k: (lin.scale() * input.step.clone()).unsqueeze_dim::<2>(0),
        bias: lin.bias.val().unsqueeze_dim::<2>(0),
        codes,
        input,
        rows,
        delta,
    }
}

/// A weighted layer seen uniformly: its neurons are `channels × positions` (positions 1 for a
/// dense layer), neuron `c·positions + p`.
enum Weighted<'a> {
    Linear(&'a qfhe_quant::layers::QuantLinear),
    Conv(&'a qfhe_quant::conv::QuantConv2d, ConvGeometry),
}

impl<'a> Weighted<'a> {
    fn new(model: &'a QSequential, role: Role, input: Shape) -> Self {
        match (role, input) {
            (Role::Linear(l), _) => Self::Linear(&model.linears[l]),
            (Role::Conv(c), Shape::Image([_, h, w])) => {
                let conv = &model.convs[c];
                Self::Conv(conv, conv.geometry(h, w))
            }
            _ => unreachable!("validated: a weighted layer, a conv reading images"),
        }
    }

    fn positions(&self) -> usize {
        match self {
            Self::Linear(_) => 1,
            Self::Conv(_, g) => {
                let (oh, ow) = g.output_hw();
                oh * ow
            }
        }
    }

    fn scale_values(&self) -> Vec<f32> {
        match self {
            Self::Linear(l) => l.scale_values(),
            Self::Conv(c, _) => c.scale_values(),
        }
    }

    fn codes(&self, bound: Option<&AccumulatorBound>) -> WeightCodes {
        match self {
            Self::Linear(l) => WeightCodes::Linear(l.codes(bound)),
            Self::Conv(c, g) => WeightCodes::Conv(c.codes(bound), *g),
        }
    }

    fn rows(&self, codes: &WeightCodes, range: (i64, i64)) -> Vec<RowStats> {
        match codes {
            WeightCodes::Linear(t) => row_stats_in(t, range),
            WeightCodes::Conv(t, g) => conv_row_stats_in(t, g, range),
        }
    }

    fn range_steps(&self, x_max: f32, s_out: f32) -> Vec<f32> {
        match self {
            Self::Linear(l) => l.range_steps(x_max, s_out),
            Self::Conv(c, _) => c.range_steps(x_max, s_out),
        }
    }

    /// `k = s_in · s_w` and the bias per neuron, `[1, d_out]` each.
    fn dequantization(&self, s_in: &Tensor<1>) -> (Tensor<2>, Tensor<2>) {
        match self {
            Self::Linear(l) => (
                (l.scale() * s_in.clone()).unsqueeze_dim::<2>(0),
                l.bias.val().unsqueeze_dim::<2>(0),
            ),
            Self::Conv(c, _) => {
                let p = self.positions();
                let per_neuron = |t: Tensor<1>| {
                    let n = t.dims()[0];
                    t.unsqueeze_dim::<2>(1).repeat_dim(1, p).reshape([1, n * p])
                };
                (
                    per_neuron(c.scale() * s_in.clone()),
                    per_neuron(c.bias.val()),
                )
            }
        }
    }
}

/// Give every group of producers read together one `Δ`: producers are grouped when one GEMM
/// reads them all or when they share a reader, transitively. A group's PBS readers take the
/// smallest `delta_in` any of them chose (a finer input scale still fits every range) and are
/// re-encoded at it; when the output layer reads the group too, its `Δ` is that scale (or its
/// own, if smaller, rounded down to whole phase units).
fn share_deltas(plan: &mut Plan, cfg: &EncodingConfig) {
    let tpu = cfg.torus_per_unit();
    let readers: Vec<Vec<Src>> = plan
        .pbs
        .iter()
        .map(|p| p.input.sources.clone())
        .chain(std::iter::once(plan.output.input.sources.clone()))
        .collect();
    let out = readers.len() - 1;
    // Union of readers sharing a source: groups of reader indices.
    let mut group: Vec<usize> = (0..readers.len()).collect();
    fn root(g: &mut [usize], mut i: usize) -> usize {
        while g[i] != i {
            i = g[i];
        }
        i
    }
    for a in 0..readers.len() {
        for b in a + 1..readers.len() {
            if readers[a].iter().any(|s| readers[b].contains(s)) {
                let (ra, rb) = (root(&mut group, a), root(&mut group, b));
                group[rb] = ra;
            }
        }
    }
    let mut deltas: Vec<(Src, u64)> = Vec::new();
    for r in 0..readers.len() {
        if root(&mut group, r) != r {
            continue;
        }
        let members: Vec<usize> = (0..readers.len())
            .filter(|&m| root(&mut group, m) == r)
            .collect();
        let pbs: Vec<usize> = members.iter().copied().filter(|&m| m != out).collect();
        let reads_output = members.contains(&out);
        let delta = if pbs.is_empty() {
            plan.output.delta
        } else {
            let mut units = pbs
                .iter()
                .map(|&m| plan.pbs[m].encoding.delta_in)
                .min()
                .expect("non-empty");
            if reads_output {
                units = units.min((plan.output.delta / tpu).max(1) as i64);
                plan.output.delta = units as u64 * tpu;
            }
            for &m in &pbs {
                let p = &mut plan.pbs[m];
                if p.encoding.delta_in != units {
                    p.encoding = encode_with_delta(&p.rows, units, p.input.kind, cfg);
                }
            }
            units as u64 * tpu
        };
        for &m in &members {
            for &s in &readers[m] {
                if !deltas.iter().any(|(d, _)| *d == s) {
                    deltas.push((s, delta));
                }
            }
        }
    }
    plan.deltas = deltas;
}
