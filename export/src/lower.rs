//! The lowering: a trained [`QSequential`] of any architecture → a [`Circuit`].
//!
//! The weight codes, encodings and scales come from the model's own plan
//! ([`QSequential::plan`]), which its quantized forward follows too; this module only decides
//! which circuit values each GEMM row reads. Between layers every value is a sum of *terms*,
//! outputs of earlier stages (or the input), each with weight 1: an activation's output is one
//! term, an average-pooled value the terms of its window, a residual sum those of both addends,
//! a max-pooled value the two outputs of its pooling stages. A weighted layer's row then reads,
//! for each of its weights, every term of the value it multiplies (convolutions by index,
//! im2col without copying ciphertexts).

use crate::ExportError;
use burn::prelude::*;
use qfhe_circuit::lut::relu_table;
use qfhe_circuit::{Circuit, Gemm, Input, Meta, Neuron, OutputLayer, Source, Stage};
use qfhe_core::bounds::RowStats;
use qfhe_core::encoding::{choose_layer_encoding, InputKind};
use qfhe_core::{LayerSpec, Shape};
use qfhe_quant::EncodingConfig;
use qfhe_train::sequential::{input_shape, roles, PbsPlan, Role, Src, WeightCodes};
use qfhe_train::QSequential;
use std::collections::HashMap;

/// One term of a value: element `index` of producer `src`.
type Term = (Src, u32);

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 tensor")
}

/// Lower a trained model (batch norms folded, quantizers calibrated) to a circuit.
///
/// # Errors
/// [`ExportError::Encoding`] when a neuron's worst-case range cannot be encoded;
/// [`ExportError::Circuit`] if the circuit fails validation (a bug, reported rather than
/// written).
pub fn lower(model: &QSequential, dataset: &str) -> Result<Circuit, ExportError> {
    let plan = model.plan(1)?;
    let spec = &model.spec;
    let cfg = model.encoding;
    let shapes = model.shapes();
    let roles = roles(spec);
    let mut b = Builder {
        cfg,
        stages: Vec::new(),
        index: HashMap::new(),
        features: spec.input.iter().product(),
    };
    let mut terms: Vec<Vec<Term>> = (0..b.features as u32)
        .map(|i| vec![(Src::Input, i)])
        .collect();
    let mut shape = input_shape(spec);
    let mut after: Vec<Vec<Vec<Term>>> = Vec::with_capacity(spec.layers.len());
    let mut output = None;
    for (i, layer) in spec.layers.iter().enumerate() {
        match (roles[i], layer) {
            (Role::Linear(_), _) if i == plan.output.layer => {
                let o = &plan.output;
                let codes = neuron_major(o.codes.clone());
                let rows = dense_rows(&codes, &terms);
                let gemm = b.gemm(rows, &terms, w_bits(spec.quant.out_w_bits));
                output = Some(OutputLayer {
                    gemm,
                    scale: floats(o.k.clone()),
                    bias: floats(o.bias.clone()),
                    readout: Default::default(),
                });
            }
            (Role::Act(a), _) => {
                let p = &plan.pbs[a];
                let (rows, bits, label) = match &p.weighted {
                    None => ((0..p.d_out()).map(|j| ones(&terms[j])).collect(), 2, None),
                    Some((_, WeightCodes::Linear(c))) => (
                        dense_rows(&neuron_major(c.clone()), &terms),
                        spec.quant.w_bits,
                        None,
                    ),
                    Some((_, WeightCodes::Conv(c, g))) => (
                        conv_rows(c.clone(), g, &terms),
                        spec.quant.w_bits,
                        Some("conv"),
                    ),
                };
                let gemm = b.gemm(rows, &terms, w_bits(bits));
                let delta = plan.delta(Src::Act(a)).unwrap_or(0); // set by its max pool
                b.push(Src::Act(a), stage(p, gemm, delta, &cfg, label));
                terms = (0..p.d_out() as u32)
                    .map(|j| vec![(Src::Act(a), j)])
                    .collect();
            }
            (_, LayerSpec::AvgPool { k }) => terms = avg_pool_terms(&terms, shape, *k),
            (_, LayerSpec::MaxPool { .. }) => {
                let Shape::Image(dims) = shape else {
                    unreachable!("validated: pooling reads images")
                };
                let (lo, hi) = (plan.values[i - 1].lo, plan.values[i - 1].hi);
                debug_assert_eq!(lo, 0, "validated: max pooling reads unsigned codes");
                let out_delta = plan.delta(Src::MaxPool(i)).unwrap_or(0);
                b.max_pool(&terms, dims, hi as i32, i, out_delta)?;
                let pooled = shapes[i].len() as u32;
                terms = (0..pooled)
                    .map(|w| vec![(Src::MaxPool(i), 2 * w), (Src::MaxPool(i), 2 * w + 1)])
                    .collect();
            }
            (_, LayerSpec::Add { from }) => {
                terms = after[*from]
                    .iter()
                    .zip(&terms)
                    .map(|(a, c)| a.iter().chain(c).copied().collect())
                    .collect();
            }
            _ => {} // weighted layers (lowered with their activation), flatten, batch norm
        }
        shape = shapes[i];
        after.push(terms.clone());
    }
    let output = output.expect("validated: the last layer is linear");
    let input = Input {
        features: b.features,
        bits: spec.quant.in_bits,
        delta: plan.delta(Src::Input).unwrap_or(cfg.torus_per_unit()),
        quantizer: None,
    };
    let meta = Meta {
        dataset: dataset.into(),
        arch: spec.arch(),
        w_bits: spec.quant.w_bits,
        a_bits: spec.quant.a_bits,
        fp32_accuracy: None,
    };
    Ok(Circuit::new(cfg, input, b.stages, output, meta)?)
}

/// The weight bit width a GEMM declares: at least 2 (weights of ±1).
fn w_bits(bits: u32) -> u32 {
    bits.max(2)
}

/// A PBS stage from its plan and GEMM.
fn stage(p: &PbsPlan, gemm: Gemm, delta: u64, cfg: &EncodingConfig, label: Option<&str>) -> Stage {
    let neurons = p
        .encoding
        .neurons
        .iter()
        .zip(p.tables(cfg))
        .map(|(e, table)| Neuron {
            mult: e.mult,
            offset: e.offset,
            table,
        })
        .collect();
    Stage {
        label: label.map(str::to_owned),
        gemm,
        neurons,
        out_min: p.range.0,
        out_max: p.range.1,
        delta,
        exclusive: None,
    }
}

/// Burn layout `[d_in, d_out]` codes → neuron-major rows `[d_out][d_in]`.
fn neuron_major(codes: Tensor<2>) -> Vec<Vec<i32>> {
    let [d_in, d_out] = codes.dims();
    let v = floats(codes);
    (0..d_out)
        .map(|j| (0..d_in).map(|i| v[i * d_out + j] as i32).collect())
        .collect()
}

/// A row entry: weight and the term it reads (`None`: a padded tap, weight 0).
type Entry = (i32, Option<Term>);

fn ones(terms: &[Term]) -> Vec<Entry> {
    terms.iter().map(|&t| (1, Some(t))).collect()
}

/// Dense rows: weight `w_ji` on every term of value `i`.
fn dense_rows(weights: &[Vec<i32>], terms: &[Vec<Term>]) -> Vec<Vec<Entry>> {
    weights
        .iter()
        .map(|row| {
            row.iter()
                .zip(terms)
                .flat_map(|(&w, ts)| ts.iter().map(move |&t| (w, Some(t))))
                .collect()
        })
        .collect()
}

/// Convolution rows, neuron `c·h'·w' + position`: each tap's weight on every term of the value
/// it reads; a tap on the padding is one zero entry.
fn conv_rows(
    codes: Tensor<4>,
    g: &qfhe_quant::conv::ConvGeometry,
    terms: &[Vec<Term>],
) -> Vec<Vec<Entry>> {
    let [c_out, ..] = codes.dims();
    let kernels = floats(codes);
    let fan_in = g.fan_in();
    let taps = g.taps();
    let mut rows = Vec::with_capacity(c_out * taps.len());
    for c in 0..c_out {
        let kernel = &kernels[c * fan_in..(c + 1) * fan_in];
        for row in &taps {
            let mut entries = Vec::new();
            for (&k, t) in kernel.iter().zip(row) {
                match t {
                    Some(idx) => {
                        entries.extend(terms[*idx as usize].iter().map(|&t| (k as i32, Some(t))))
                    }
                    None => entries.push((0, None)),
                }
            }
            rows.push(entries);
        }
    }
    rows
}

/// The terms of `k × k` sum pooling (stride `k`) of values of image `shape`.
fn avg_pool_terms(terms: &[Vec<Term>], shape: Shape, k: usize) -> Vec<Vec<Term>> {
    let Shape::Image([c, h, w]) = shape else {
        unreachable!("validated: pooling reads images")
    };
    let (ph, pw) = (h / k, w / k);
    let mut out = Vec::with_capacity(c * ph * pw);
    for ch in 0..c {
        for y in 0..ph {
            for x in 0..pw {
                let mut t = Vec::new();
                for dy in 0..k {
                    for dx in 0..k {
                        t.extend_from_slice(&terms[ch * h * w + (y * k + dy) * w + x * k + dx]);
                    }
                }
                out.push(t);
            }
        }
    }
    out
}

/// Stages under construction.
struct Builder {
    cfg: EncodingConfig,
    stages: Vec<Stage>,
    /// Circuit stage of each producer.
    index: HashMap<Src, usize>,
    features: usize,
}

impl Builder {
    fn source(&self, src: Src) -> Source {
        match src {
            Src::Input => Source::Input,
            other => Source::Stage(self.index[&other]),
        }
    }

    fn width(&self, src: Src) -> usize {
        match src {
            Src::Input => self.features,
            other => self.stages[self.index[&other]].d_out(),
        }
    }

    fn push(&mut self, src: Src, stage: Stage) {
        self.index.insert(src, self.stages.len());
        self.stages.push(stage);
    }

    /// A GEMM from rows of entries over `value`'s terms: its sources are the producers the
    /// terms name, in order of first appearance. When every value is exactly element `i` of one
    /// producer and no row has padding, the GEMM is dense; otherwise rows read by index, padded
    /// to one length with zero weights.
    fn gemm(&self, rows: Vec<Vec<Entry>>, value: &[Vec<Term>], w_bits: u32) -> Gemm {
        let mut sources: Vec<Src> = Vec::new();
        for &(s, _) in value.iter().flatten() {
            if !sources.contains(&s) {
                sources.push(s);
            }
        }
        let mut offset = HashMap::new();
        let mut d_in = 0;
        for &s in &sources {
            offset.insert(s, d_in);
            d_in += self.width(s);
        }
        let identity = sources.len() == 1
            && value.len() == d_in
            && value
                .iter()
                .enumerate()
                .all(|(i, t)| t.len() == 1 && t[0].1 as usize == i);
        let dense = identity
            && rows
                .iter()
                .all(|r| r.len() == d_in && r.iter().all(|e| e.1.is_some()));
        let d_out = rows.len();
        let global = |t: Option<Term>| t.map_or(0, |(s, i)| (offset[&s] + i as usize) as u32);
        let (weights, inputs) = if dense {
            (rows.into_iter().flatten().map(|(w, _)| w).collect(), None)
        } else {
            let fan_in = rows.iter().map(Vec::len).max().unwrap_or(0);
            let (mut w, mut ix) = (Vec::with_capacity(d_out * fan_in), Vec::new());
            for row in rows {
                let pad = fan_in - row.len();
                for (wt, t) in row {
                    w.push(wt);
                    ix.push(global(t));
                }
                w.extend(std::iter::repeat_n(0, pad));
                ix.extend(std::iter::repeat_n(0, pad));
            }
            (w, Some(ix))
        };
        Gemm {
            sources: sources.iter().map(|&s| self.source(s)).collect(),
            d_in,
            d_out,
            w_bits,
            weights,
            inputs,
        }
    }

    /// 2×2 max pooling of the activation codes `value` (one term each, `[c, h, w]`, codes in
    /// `[0, qmax]`) as two PBS stages, `max(a, b) = a + relu(b − a)` applied twice (as Concrete
    /// ML lowers it): per window `(a, b; c, d)`, stage 1 outputs `a, relu(b − a), c,
    /// relu(d − c)` and stage 2 outputs `m₁ = a + relu(b − a)` and `relu(m₂ − m₁)`; the next
    /// GEMM reads both with the window's weight, so it sums them to the maximum. 6 PBS per
    /// window, windows in `(c, y, x)` order, stage 2's outputs `2·window + {0, 1}`. Sets the
    /// pooled activation's `Δ` to stage 1's input scale.
    fn max_pool(
        &mut self,
        value: &[Vec<Term>],
        [c_out, oh, ow]: [usize; 3],
        qmax: i32,
        layer: usize,
        out_delta: u64,
    ) -> Result<(), ExportError> {
        let src = value[0][0].0;
        let (ph, pw) = (oh / 2, ow / 2);
        let (mut w1, mut in1, mut w2, mut in2) = (vec![], vec![], vec![], vec![]);
        let mut window = 0u32;
        for c in 0..c_out {
            for y in 0..ph {
                for x in 0..pw {
                    let a = (c * oh * ow + 2 * y * ow + 2 * x) as u32;
                    let below = a + ow as u32;
                    for top_left in [a, below] {
                        w1.extend([1, 0, -1, 1]);
                        in1.extend([top_left, top_left + 1, top_left, top_left + 1]);
                    }
                    let u = 4 * window;
                    w2.extend([1, 1, 0, 0, -1, -1, 1, 1]);
                    in2.extend((0..2).flat_map(|_| u..u + 4));
                    window += 1;
                }
            }
        }
        let d1 = w1.len() / 2;
        let (first, enc1) =
            self.integer_relu(vec![self.source(src)], c_out * oh * ow, 2, w1, in1, qmax)?;
        let (second, enc2) =
            self.integer_relu(vec![Source::Stage(self.stages.len())], d1, 4, w2, in2, qmax)?;
        let tpu = self.cfg.torus_per_unit();
        let pooled = self.index[&src];
        self.stages[pooled].delta = enc1 as u64 * tpu;
        self.stages.push(Stage {
            delta: enc2 as u64 * tpu,
            label: Some("max-pool 1/2".into()),
            ..first
        });
        self.push(
            Src::MaxPool(layer),
            Stage {
                delta: out_delta,
                label: Some("max-pool 2/2".into()),
                ..second
            },
        );
        Ok(())
    }

    /// One exact integer stage of the max-pooling lowering: neuron `j` reads `inputs[j·fan_in..]`
    /// (values in `[0, qmax]`) with `weights[j·fan_in..]` and outputs `clamp(acc, 0, qmax)`
    /// through a table whose steps sit halfway between integers. Returns the stage (its `Δ`
    /// unset) and its `delta_in`.
    fn integer_relu(
        &self,
        sources: Vec<Source>,
        d_in: usize,
        fan_in: usize,
        weights: Vec<i32>,
        inputs: Vec<u32>,
        qmax: i32,
    ) -> Result<(Stage, i64), ExportError> {
        let cfg = &self.cfg;
        let d_out = weights.len() / fan_in;
        let rows: Vec<RowStats> = weights
            .chunks(fan_in)
            .map(|w| RowStats::of_row(w, qmax))
            .collect();
        let enc = choose_layer_encoding(&rows, &vec![1.0; d_out], InputKind::Pbs, cfg)?;
        let neurons = enc
            .neurons
            .iter()
            .map(|&e| Neuron {
                mult: e.mult,
                offset: e.offset,
                table: relu_table(e, cfg.frac_bits, cfg.poly_size, (1.0, 0.0, 1.0), qmax),
            })
            .collect();
        let stage = Stage {
            label: None,
            gemm: Gemm {
                sources,
                d_in,
                d_out,
                w_bits: 2,
                weights,
                inputs: Some(inputs),
            },
            neurons,
            out_min: 0,
            out_max: qmax,
            delta: 0,
            exclusive: None,
        };
        Ok((stage, enc.delta_in))
    }
}
