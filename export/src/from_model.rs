//! Trained QAT model → circuit.
//!
//! The weight codes and encodings are taken from the model's own QAT forward
//! ([`QMlp::forward_qat_traced`]), and each neuron's table is that forward's activation
//! arithmetic evaluated at every slot centre, so the circuit computes what the model computed.

use burn::prelude::*;
use qfhe_circuit::lut::{output_delta, relu_table};
use qfhe_circuit::{Circuit, CircuitError, Gemm, Input, Meta, Neuron, Source, Stage};
use qfhe_quant::bounds::RowStats;
use qfhe_quant::encoding::{choose_layer_encoding, InputKind};
use qfhe_quant::layers::{ActQuant, QuantLinear};
use qfhe_quant::scheme::{input_scale, unsigned_qmax};
use qfhe_quant::EncodingError;
use qfhe_train::{HiddenTrace, Pooling, QCnn, QMlp};

/// Why a model could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A layer's range cannot be encoded.
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    /// The produced circuit failed validation (a bug, reported rather than written).
    #[error(transparent)]
    Circuit(#[from] CircuitError),
}

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 tensor")
}

/// Burn layout `[d_in, d_out]` codes → neuron-major `[d_out][d_in]` integers.
fn neuron_major(codes: Tensor<2>) -> (Vec<i32>, usize, usize) {
    let [d_in, d_out] = codes.dims();
    let v = floats(codes);
    let mut w = vec![0i32; d_in * d_out];
    for i in 0..d_in {
        for j in 0..d_out {
            w[j * d_in + i] = v[i * d_out + j] as i32;
        }
    }
    (w, d_in, d_out)
}

/// One PBS layer of a chain, before its output scale is known (it is the next layer's
/// `delta_in`, or the output layer's Δ).
struct HiddenLayer {
    d_in: usize,
    d_out: usize,
    out_qmax: i32,
    w_bits: u32,
    weights: Vec<i32>,
    inputs: Option<Vec<u32>>,
    /// Phase units per input unit.
    delta_in: i64,
    neurons: Vec<Neuron>,
    label: Option<String>,
}

/// The output layer of a chain.
struct OutputLayer {
    d_in: usize,
    d_out: usize,
    w_bits: u32,
    weights: Vec<i32>,
    delta: u64,
    scale: Vec<f32>,
    bias: Vec<f32>,
}

/// A dense layer's integer weights as the circuit sees them.
struct DenseWeights {
    /// Neuron-major `[d_out][d_in]`.
    weights: Vec<i32>,
    d_in: usize,
}

/// One PBS-fed dense hidden layer of the circuit from its QAT trace: `scales` are the input and
/// output activation steps.
fn dense_hidden_layer(
    t: &HiddenTrace,
    layer: &QuantLinear,
    w: DenseWeights,
    (s_in, s_out): (f32, f32),
    out_qmax: i32,
    enc_cfg: &qfhe_quant::EncodingConfig,
) -> HiddenLayer {
    let s_w = layer.scale_values();
    let bias = floats(layer.bias.val());
    let neurons = t
        .encoding
        .neurons
        .iter()
        .enumerate()
        .map(|(j, &e)| Neuron {
            mult: e.mult,
            offset: e.offset,
            table: relu_table(
                e,
                enc_cfg.frac_bits,
                enc_cfg.poly_size,
                (s_in * s_w[j], bias[j], s_out),
                out_qmax,
            ),
        })
        .collect::<Vec<_>>();
    HiddenLayer {
        d_in: w.d_in,
        d_out: neurons.len(),
        out_qmax,
        w_bits: layer.w_bits,
        weights: w.weights,
        inputs: None,
        delta_in: t.encoding.delta_in,
        neurons,
        label: None,
    }
}

/// The dense layers' weights as the circuit sees them: neuron-major codes, the first dense layer
/// (hidden or output) rewritten by `first_reads` for what it actually reads (identity for an
/// MLP; the un-pooled conv outputs for a CNN).
struct DenseStack<'a> {
    first_reads: &'a dyn Fn(Vec<i32>, usize) -> (Vec<i32>, usize),
    enc_cfg: qfhe_quant::EncodingConfig,
}

impl DenseStack<'_> {
    /// Hidden layers from their traces; `scales[l]`, `scales[l + 1]` are layer `l`'s input and
    /// output steps. Returns the layers and the last one's largest output code.
    fn hidden(
        &self,
        traces: &[HiddenTrace],
        layers: &[QuantLinear],
        acts: &[ActQuant],
        scales: &[f32],
        mut in_qmax: i32,
    ) -> (Vec<HiddenLayer>, i32) {
        let mut out = Vec::with_capacity(traces.len());
        for (l, t) in traces.iter().enumerate() {
            let (weights, d_in, _) = neuron_major(t.codes.clone());
            let (weights, d_in) = if l == 0 {
                (self.first_reads)(weights, d_in)
            } else {
                (weights, d_in)
            };
            let out_qmax = acts[l].qmax();
            out.push(dense_hidden_layer(
                t,
                &layers[l],
                DenseWeights { weights, d_in },
                (scales[l], scales[l + 1]),
                out_qmax,
                &self.enc_cfg,
            ));
            in_qmax = out_qmax;
        }
        (out, in_qmax)
    }

    /// The output layer from its codes `[d_in, classes]`; `first` when no hidden layer precedes
    /// it, `s_in` its input step. Its Δ comes from [`output_delta`].
    fn output(
        &self,
        codes: Tensor<2>,
        layer: &QuantLinear,
        first: bool,
        in_qmax: i32,
        s_in: f32,
    ) -> OutputLayer {
        let (weights, d_in, d_out) = neuron_major(codes);
        let (weights, d_in) = if first {
            (self.first_reads)(weights, d_in)
        } else {
            (weights, d_in)
        };
        let rows: Vec<RowStats> = (0..d_out)
            .map(|j| RowStats::of_row(&weights[j * d_in..(j + 1) * d_in], in_qmax))
            .collect();
        OutputLayer {
            d_in,
            d_out,
            w_bits: layer.w_bits,
            weights,
            delta: output_delta(&rows, &self.enc_cfg),
            scale: layer.scale_values().iter().map(|&s| s * s_in).collect(),
            bias: floats(layer.bias.val()),
        }
    }
}

/// Fold `p × p` sum pooling into a dense layer: neuron-major weights over the pooled features
/// `[d_out][c·ph·pw]` become weights over the conv outputs `[d_out][c·oh·ow]`, conv output
/// `(c, y, x)` taking the weight of `(c, y/p, x/p)` (0 for positions the pooling drops).
fn fold_pool(pooled_w: &[i32], conv: [usize; 3], pooled: [usize; 3], p: usize) -> Vec<i32> {
    let [c_out, oh, ow] = conv;
    let [_, ph, pw] = pooled;
    let (d_in, d_pooled) = (c_out * oh * ow, c_out * ph * pw);
    let d_out = pooled_w.len() / d_pooled;
    let mut weights = vec![0i32; d_out * d_in];
    for j in 0..d_out {
        for c in 0..c_out {
            for y in 0..ph * p {
                for x in 0..pw * p {
                    weights[j * d_in + c * oh * ow + y * ow + x] =
                        pooled_w[j * d_pooled + c * ph * pw + (y / p) * pw + x / p];
                }
            }
        }
    }
    weights
}

/// One exact integer layer of the max-pooling lowering: neuron `j` reads `inputs[j·fan_in..]`
/// (values in `[0, qmax]`) with `weights[j·fan_in..]` and outputs `clamp(acc, 0, qmax)` through
/// a table whose steps sit halfway between integers.
fn integer_relu_layer(
    d_in: usize,
    fan_in: usize,
    weights: Vec<i32>,
    inputs: Vec<u32>,
    qmax: i32,
    label: &str,
    enc_cfg: &qfhe_quant::EncodingConfig,
) -> Result<HiddenLayer, ExportError> {
    let d_out = weights.len() / fan_in;
    let rows: Vec<RowStats> = weights
        .chunks(fan_in)
        .map(|w| RowStats::of_row(w, qmax))
        .collect();
    let enc = choose_layer_encoding(&rows, &vec![1.0; d_out], InputKind::Pbs, enc_cfg)?;
    let neurons = enc
        .neurons
        .iter()
        .map(|&e| Neuron {
            mult: e.mult,
            offset: e.offset,
            table: relu_table(
                e,
                enc_cfg.frac_bits,
                enc_cfg.poly_size,
                (1.0, 0.0, 1.0),
                qmax,
            ),
        })
        .collect();
    Ok(HiddenLayer {
        d_in,
        d_out,
        out_qmax: qmax,
        w_bits: 2,
        weights,
        inputs: Some(inputs),
        delta_in: enc.delta_in,
        neurons,
        label: Some(label.into()),
    })
}

/// 2×2 max pooling of conv activations `[c, oh, ow]` (codes in `[0, qmax]`) as two PBS layers,
/// `max(a, b) = a + relu(b − a)` applied twice (Concrete ML lowers max pooling the same way):
/// per window `(a, b; c, d)`, layer 1 outputs `a, relu(b − a), c, relu(d − c)` and layer 2
/// outputs `m₁ = a + relu(b − a)` and `relu(m₂ − m₁)`; the next layer reads both with the
/// window's weight, so it sums them to the maximum. 6 PBS per window, windows in `(c, y, x)`
/// order, layer 2's outputs `2·window + {0, 1}`.
fn max_pool_layers(
    conv: [usize; 3],
    qmax: i32,
    enc_cfg: &qfhe_quant::EncodingConfig,
) -> Result<[HiddenLayer; 2], ExportError> {
    let [c_out, oh, ow] = conv;
    let (ph, pw) = (oh / 2, ow / 2);
    let (mut w1, mut in1, mut w2, mut in2) = (vec![], vec![], vec![], vec![]);
    let mut window = 0u32;
    for c in 0..c_out {
        for y in 0..ph {
            for x in 0..pw {
                let a = (c * oh * ow + 2 * y * ow + 2 * x) as u32;
                let below = a + ow as u32;
                for top_left in [a, below] {
                    // `top_left`, then `relu(right − top_left)`.
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
    let first = integer_relu_layer(c_out * oh * ow, 2, w1, in1, qmax, "max-pool 1/2", enc_cfg)?;
    let second = integer_relu_layer(first.d_out, 4, w2, in2, qmax, "max-pool 2/2", enc_cfg)?;
    Ok([first, second])
}

/// A validated circuit of the current format version from a chain of layers: layer `l` reads
/// layer `l − 1` (the first reads the input) and writes at the scale its reader chose.
fn assemble(
    encoding: qfhe_quant::EncodingConfig,
    features: usize,
    in_bits: u32,
    input_delta: i64,
    hidden: Vec<HiddenLayer>,
    output: OutputLayer,
    meta: Meta,
) -> Result<Circuit, ExportError> {
    let tpu = encoding.torus_per_unit();
    let scale = |units: i64| units as u64 * tpu;
    let source = |l: usize| {
        if l == 0 {
            Source::Input
        } else {
            Source::Stage(l - 1)
        }
    };
    let deltas: Vec<u64> = hidden
        .iter()
        .skip(1)
        .map(|h| scale(h.delta_in))
        .chain(std::iter::once(output.delta))
        .collect();
    let stages: Vec<Stage> = hidden
        .into_iter()
        .zip(deltas)
        .enumerate()
        .map(|(l, (h, delta))| Stage {
            label: h.label,
            gemm: Gemm {
                sources: vec![source(l)],
                d_in: h.d_in,
                d_out: h.d_out,
                w_bits: h.w_bits,
                weights: h.weights,
                inputs: h.inputs,
            },
            neurons: h.neurons,
            out_min: 0,
            out_max: h.out_qmax,
            delta,
        })
        .collect();
    let output = qfhe_circuit::OutputLayer {
        gemm: Gemm {
            sources: vec![source(stages.len())],
            d_in: output.d_in,
            d_out: output.d_out,
            w_bits: output.w_bits,
            weights: output.weights,
            inputs: None,
        },
        scale: output.scale,
        bias: output.bias,
    };
    let input = Input {
        features,
        bits: in_bits,
        delta: scale(input_delta),
    };
    Ok(Circuit::new(encoding, input, stages, output, meta)?)
}

/// Export a trained model (evaluation mode) as a circuit.
///
/// # Errors
/// [`ExportError::Encoding`] when a layer's worst-case range cannot be encoded.
pub fn export_mlp(model: &QMlp, dataset: &str) -> Result<Circuit, ExportError> {
    let cfg = &model.config;
    let device = model.device();
    let probe = Tensor::<2>::zeros([1, cfg.inputs], &device);
    let (_, trace) = model.forward_qat_traced(probe)?;
    let scales = model.input_scales();
    let enc_cfg = cfg.encoding;
    let stack = DenseStack {
        first_reads: &|w, d| (w, d),
        enc_cfg,
    };
    let (hidden, in_qmax) = stack.hidden(
        &trace.hidden,
        &model.layers,
        &model.acts,
        &scales,
        unsigned_qmax(cfg.in_bits),
    );
    let output = stack.output(
        trace.output_codes.clone(),
        model.layers.last().expect("at least one layer"),
        hidden.is_empty(),
        in_qmax,
        *scales.last().expect("scales"),
    );
    let meta = Meta {
        dataset: dataset.into(),
        arch: cfg.arch(),
        w_bits: cfg.w_bits,
        a_bits: cfg.a_bits,
        fp32_accuracy: None,
    };
    assemble(
        enc_cfg,
        cfg.inputs,
        cfg.in_bits,
        trace.hidden.first().map_or(1, |t| t.encoding.delta_in),
        hidden,
        output,
        meta,
    )
}

/// Export a trained CNN (evaluation mode) as a circuit: the convolution becomes a hidden layer
/// with sparse rows (im2col by index; a padded tap has weight 0), one PBS per output position;
/// the average pooling is folded into the next dense layer (the first hidden layer, else the
/// output layer), whose weight for conv output `(c, y, x)` is the pooled weight of
/// `(c, y/p, x/p)` (0 for positions the pooling drops), with the `1/p²` in its scale. A batch
/// norm was folded into the convolution before QAT ([`QCnn::fold_batch_norm`]).
///
/// # Errors
/// [`ExportError::Encoding`] when a neuron's worst-case range cannot be encoded.
pub fn export_cnn(model: &QCnn, dataset: &str) -> Result<Circuit, ExportError> {
    let cfg = &model.config;
    let enc_cfg = cfg.encoding;
    let features: usize = cfg.input.iter().product();
    let probe = Tensor::<2>::zeros([1, features], &model.conv.weight.val().device());
    let (_, trace) = model.forward_qat_traced(probe)?;
    let [c_out, oh, ow] = cfg.conv_shape();
    let g = cfg.geometry();
    let fan_in = g.fan_in();
    let kernels = floats(trace.conv_codes.clone());
    let s_w = model.conv.scale_values();
    let bias = floats(model.conv.bias.val());
    let s_in = input_scale(cfg.in_bits);
    let s_act = model.act.step_value();
    let qmax = model.act.qmax();
    let taps = g.taps();
    let (mut weights, mut inputs, mut neurons) = (Vec::new(), Vec::new(), Vec::new());
    for c in 0..c_out {
        let kernel = &kernels[c * fan_in..(c + 1) * fan_in];
        for (p, row) in taps.iter().enumerate() {
            for (&k, t) in kernel.iter().zip(row) {
                weights.push(if t.is_some() { k as i32 } else { 0 });
                inputs.push(t.unwrap_or(0));
            }
            let e = trace.encoding.neurons[c * oh * ow + p];
            neurons.push(Neuron {
                mult: e.mult,
                offset: e.offset,
                table: relu_table(
                    e,
                    enc_cfg.frac_bits,
                    enc_cfg.poly_size,
                    (s_in * s_w[c], bias[c], s_act),
                    qmax,
                ),
            });
        }
    }
    let conv = HiddenLayer {
        d_in: features,
        d_out: c_out * oh * ow,
        out_qmax: qmax,
        w_bits: cfg.w_bits,
        weights,
        inputs: Some(inputs),
        delta_in: trace.encoding.delta_in,
        neurons,
        label: Some("conv".into()),
    };
    // Dense layers: after average pooling the first reads the un-pooled conv outputs, pooling
    // folded into its weights; after max pooling it reads the pooling layers' two outputs per
    // window, each with the window's weight.
    let (conv_shape, pooled_shape, p) = (cfg.conv_shape(), cfg.pooled_shape(), cfg.pool);
    let scales = model.dense_input_scales();
    let unpool = |w: Vec<i32>, _| (fold_pool(&w, conv_shape, pooled_shape, p), c_out * oh * ow);
    let both_terms = |w: Vec<i32>, d: usize| (w.iter().flat_map(|&v| [v, v]).collect(), 2 * d);
    let (pool_layers, first_reads): (Vec<HiddenLayer>, &dyn Fn(Vec<i32>, usize) -> _) =
        match cfg.pooling {
            Pooling::Average => (vec![], &unpool),
            Pooling::Max => (
                max_pool_layers(conv_shape, qmax, &enc_cfg)?.into(),
                &both_terms,
            ),
        };
    let stack = DenseStack {
        first_reads,
        enc_cfg,
    };
    let (dense, in_qmax) = stack.hidden(&trace.hidden, &model.fc, &model.fc_acts, &scales, qmax);
    let output = stack.output(
        trace.output_codes.clone(),
        &model.output,
        dense.is_empty(),
        in_qmax,
        *scales.last().expect("scales"),
    );
    let mut layers = vec![conv];
    layers.extend(pool_layers);
    layers.extend(dense);
    let meta = Meta {
        dataset: dataset.into(),
        arch: cfg.arch(),
        w_bits: cfg.w_bits,
        a_bits: cfg.a_bits,
        fp32_accuracy: None,
    };
    assemble(
        enc_cfg,
        features,
        cfg.in_bits,
        trace.encoding.delta_in,
        layers,
        output,
        meta,
    )
}
