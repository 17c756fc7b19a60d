//! One fake-quantized dense hidden layer exactly as the circuit computes it: weight codes under
//! the accumulator bound, the encoding chosen for them, slot rounding, and the activation
//! quantizer. Shared by the MLP's hidden layers and the CNN's fully connected layers.

use crate::qat::PhaseNoise;
use burn::prelude::*;
use qfhe_quant::bounds::RowStats;
use qfhe_quant::encoding::{acc_per_step, choose_layer_encoding, step_shortfall, InputKind};
use qfhe_quant::layers::{
    round_to_noisy_slots, round_to_slots, row_stats, AccumulatorBound, ActQuant, QuantLinear,
};
use qfhe_quant::{EncodingConfig, EncodingError, LayerEncoding};

/// What one hidden layer's QAT forward used, for export and tests.
#[derive(Debug, Clone)]
pub struct HiddenTrace {
    /// Integer weight codes `[d_in, d_out]`.
    pub codes: Tensor<2>,
    /// The encoding chosen from those codes.
    pub encoding: LayerEncoding,
    /// Output activation codes `[batch, d_out]`.
    pub out_codes: Tensor<2>,
}

/// The input of a dense hidden layer.
#[derive(Debug, Clone)]
pub struct DenseInput {
    /// Integer input codes `[batch, d_in]`.
    pub codes: Tensor<2>,
    /// Largest input code.
    pub qmax: i32,
    /// Input step `[1]` (carries the previous quantizer's LSQ gradient).
    pub step: Tensor<1>,
    /// Its value.
    pub step_value: f32,
    /// Fresh ciphertexts or PBS outputs.
    pub kind: InputKind,
    /// Factor on each row's `‖W_j‖₂` for the noise the circuit sees: `p` when every input is a
    /// sum of `p²` PBS outputs (average pooling folded into this layer), else 1.
    pub noise_gain: f64,
}

/// Round accumulators `[batch, d_out]` to the slots the PBS reads under `encoding`: exactly
/// ([`round_to_slots`]), or through the noise model for training ([`round_to_noisy_slots`],
/// each neuron's σ from `rows`, its weight statistics with any noise gain applied).
pub fn read_slots(
    acc: Tensor<2>,
    encoding: &LayerEncoding,
    rows: &[RowStats],
    kind: InputKind,
    enc_cfg: &EncodingConfig,
    noise: PhaseNoise,
) -> Tensor<2> {
    match noise {
        PhaseNoise::Exact => round_to_slots(acc, encoding, enc_cfg.frac_bits),
        PhaseNoise::Modelled => {
            let sigma = encoding.sigma_slots(rows, kind, enc_cfg);
            round_to_noisy_slots(acc, encoding, enc_cfg.frac_bits, &sigma)
        }
    }
}

/// What the dense part of a network (hidden layers, then the output layer) computed.
#[derive(Debug, Clone)]
pub struct DenseStackTrace {
    /// Logits `[batch, classes]`.
    pub logits: Tensor<2>,
    /// One entry per hidden layer.
    pub hidden: Vec<HiddenTrace>,
    /// Output weight codes `[d_in, classes]`.
    pub output_codes: Tensor<2>,
}

/// Quantized forward of hidden layers `layers[l]` → `acts[l]`, then the `output` layer (its
/// accumulators dequantized with `s_in · s_w` plus the float bias, no PBS), on `input`. Every
/// hidden layer after the first reads PBS outputs. Shared by the MLP and the CNN's fully
/// connected part.
///
/// # Errors
/// [`EncodingError`] when a neuron's worst-case range cannot be encoded.
pub fn dense_stack_forward(
    layers: &[QuantLinear],
    acts: &[ActQuant],
    output: &QuantLinear,
    mut input: DenseInput,
    enc_cfg: &EncodingConfig,
    noise: PhaseNoise,
) -> Result<DenseStackTrace, EncodingError> {
    let mut hidden = Vec::with_capacity(layers.len());
    for (layer, act) in layers.iter().zip(acts) {
        let (trace, step) = dense_hidden_forward(layer, act, input, enc_cfg, noise)?;
        input = DenseInput {
            codes: trace.out_codes.clone(),
            qmax: act.qmax(),
            step,
            step_value: act.step_value(),
            kind: InputKind::Pbs,
            noise_gain: 1.0,
        };
        hidden.push(trace);
    }
    let output_codes = output.codes(None);
    let k = (output.scale() * input.step).unsqueeze_dim::<2>(0);
    let logits = input.codes.matmul(output_codes.clone()) * k + output.bias.val().unsqueeze_dim(0);
    Ok(DenseStackTrace {
        logits,
        hidden,
        output_codes,
    })
}

/// Quantized forward of `layer` followed by `act` on `input`: the output codes `[batch, d_out]`
/// (in the trace) and the output step `[1]`.
///
/// Computes the integer accumulator, rounds it to the slot grid of the encoding chosen from the
/// current weights, dequantizes with `s_in · s_w` and the float bias, and quantizes the
/// activation: the circuit's semantics. With [`PhaseNoise::Modelled`] the slot is read through
/// the noise model (training only).
///
/// # Errors
/// [`EncodingError`] when a neuron's worst-case range cannot be encoded.
pub fn dense_hidden_forward(
    layer: &QuantLinear,
    act: &ActQuant,
    input: DenseInput,
    enc_cfg: &EncodingConfig,
    noise: PhaseNoise,
) -> Result<(HiddenTrace, Tensor<1>), EncodingError> {
    let batch = input.codes.dims()[0];
    let d_out = layer.weight.val().dims()[1];
    let step = act.step(batch * d_out);
    let s_out = act.step_value();
    let kind = input.kind;
    let (codes, rows, encoding) = bounded_codes(layer, &input, step.clone(), s_out, enc_cfg)?;
    let k = (layer.scale() * input.step).unsqueeze_dim::<2>(0);
    let bias = layer.bias.val().unsqueeze_dim::<2>(0);
    let acc = input.codes.matmul(codes.clone());
    let acc = read_slots(acc, &encoding, &rows, kind, enc_cfg, noise);
    let out_codes = act.quantize(acc * k + bias, step.clone());
    Ok((
        HiddenTrace {
            codes,
            encoding,
            out_codes,
        },
        step,
    ))
}

/// The layer's weight codes under the accumulator bound, their row statistics (noise gain
/// applied), and the encoding chosen for them.
/// For layers fed by PBS outputs, neurons whose table step falls short of the target under the
/// chosen encoding get a tighter bound and everything is re-derived (a few rounds, since the
/// layer's shared input scale can move).
fn bounded_codes(
    layer: &QuantLinear,
    input: &DenseInput,
    step: Tensor<1>,
    s_out: f32,
    enc_cfg: &EncodingConfig,
) -> Result<(Tensor<2>, Vec<RowStats>, LayerEncoding), EncodingError> {
    let device = step.device();
    let x_max = input.qmax as f32 * input.step_value;
    let s_w: Vec<f32> = layer.scale_values();
    let aps = acc_per_step(input.step_value, &s_w, s_out);
    let full = enc_cfg.max_range_steps() as f32;
    let mut max_steps = vec![full; s_w.len()];
    let mut bound = AccumulatorBound {
        x_max,
        s_out: step,
        max_steps: Tensor::from_floats([full], &device),
    };
    let encode = |codes: &Tensor<2>| {
        let mut rows = row_stats(codes, input.qmax);
        for r in &mut rows {
            r.l2 *= input.noise_gain;
        }
        choose_layer_encoding(&rows, &aps, input.kind, enc_cfg).map(|e| (rows, e))
    };
    let mut codes = layer.codes(Some(&bound));
    let (mut rows, mut encoding) = encode(&codes)?;
    if input.kind == InputKind::Pbs {
        let range_steps = layer.range_steps(x_max, s_out);
        for _ in 0..8 {
            let short = step_shortfall(&rows, &encoding, &aps, input.kind, enc_cfg);
            if short.iter().all(|&f| f >= 1.0) {
                break;
            }
            for ((m, &f), &r) in max_steps.iter_mut().zip(&short).zip(&range_steps) {
                if f < 1.0 {
                    *m = m.min(r) * f as f32 * 0.92;
                }
            }
            bound.max_steps = Tensor::from_floats(max_steps.as_slice(), &device);
            codes = layer.codes(Some(&bound));
            (rows, encoding) = encode(&codes)?;
        }
    }
    Ok((codes, rows, encoding))
}
