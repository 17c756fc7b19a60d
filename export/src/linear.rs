//! Linear models → a circuit with no PBS: one GEMM on the input codes whose accumulators the
//! client decrypts at full width (post-training quantization).
//!
//! With feature `i`'s value `x_i ≈ low_i + q_i · step_i` (the circuit's
//! [`FeatureQuantizer`]), a score `s_j = Σ_i w_ji x_i + b_j` is
//! `Σ_i (w_ji · step_i) q_i + (b_j + Σ_i w_ji · low_i)`. The folded weights `a_ji = w_ji · step_i`
//! are quantized per output row, symmetric signed on `w_bits` (`W_ji = round(a_ji / σ_j)`,
//! `σ_j = max_i |a_ji| / (2^(w_bits−1) − 1)`), and the client dequantizes
//! `s_j = acc_j · σ_j + c_j` with `c_j = b_j + Σ_i w_ji · low_i`. This is the arithmetic of
//! Concrete ML's linear models (`q_X · q_W` decrypted, zero points folded into the bias), with
//! one quantizer per feature instead of one per tensor.

use crate::ExportError;
use qfhe_circuit::lut::output_delta_for;
use qfhe_circuit::{Circuit, FeatureQuantizer, Gemm, Input, Meta, OutputLayer, Readout, Source};
use qfhe_core::scheme::signed_qmax;
use qfhe_core::EncodingConfig;
use qfhe_train::{FloatLinear, LinearKind};

/// Quantization of a linear model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearQuant {
    /// Input code bits per feature (1 to 16).
    pub in_bits: u32,
    /// Weight bits (2 to 16).
    pub w_bits: u32,
}

impl Default for LinearQuant {
    /// 8-bit inputs and weights, as Concrete ML's linear models.
    fn default() -> Self {
        Self {
            in_bits: 8,
            w_bits: 8,
        }
    }
}

/// Lower `model` with inputs quantized by `quantizer` (calibrated on the training rows) to a
/// PBS-free circuit on `encoding`'s torus layout. The readout is the value for regression, the
/// sign of the one score for two classes, the argmax otherwise.
///
/// # Errors
/// [`ExportError::Features`] when the quantizer does not cover the model's features,
/// [`ExportError::BitWidth`] for a bit width out of range; [`ExportError::Circuit`] when the accumulators do not fit the torus
/// (too many features at these bit widths).
pub fn lower_linear(
    model: &FloatLinear,
    quantizer: FeatureQuantizer,
    quant: LinearQuant,
    encoding: EncodingConfig,
    dataset: &str,
) -> Result<Circuit, ExportError> {
    let d = model.features;
    if quantizer.features() != d {
        return Err(ExportError::Features {
            quantizer: quantizer.features(),
            model: d,
        });
    }
    for (what, bits, min) in [("input", quant.in_bits, 1), ("weight", quant.w_bits, 2)] {
        if !(min..=16).contains(&bits) {
            return Err(ExportError::BitWidth { what, bits, min });
        }
    }
    let qmax = signed_qmax(quant.w_bits) as f64;
    let k = model.outputs();
    let mut weights = Vec::with_capacity(k * d);
    let mut scale = Vec::with_capacity(k);
    let mut bias = Vec::with_capacity(k);
    for (j, w) in model.weights.chunks_exact(d).enumerate() {
        let folded: Vec<f64> = w
            .iter()
            .zip(&quantizer.step)
            .map(|(&a, &s)| a as f64 * s as f64)
            .collect();
        let peak = folded.iter().fold(0f64, |m, v| m.max(v.abs()));
        let sigma = if peak > 0.0 { peak / qmax } else { 1.0 };
        weights.extend(
            folded
                .iter()
                .map(|a| (a / sigma).round().clamp(-qmax, qmax) as i32),
        );
        let zero: f64 = w
            .iter()
            .zip(&quantizer.low)
            .map(|(&a, &l)| a as f64 * l as f64)
            .sum();
        scale.push(sigma as f32);
        bias.push((model.bias[j] as f64 + zero) as f32);
    }
    let readout = match model.kind {
        LinearKind::LinearRegression => Readout::Value,
        _ if k == 1 => Readout::Sign,
        _ => Readout::Argmax,
    };
    let input = Input {
        features: d,
        bits: quant.in_bits,
        // Placeholder: the largest Δ that fits the accumulators is set below.
        delta: 1 << 32,
        quantizer: Some(quantizer),
    };
    let output = OutputLayer {
        gemm: Gemm {
            sources: vec![Source::Input],
            d_in: d,
            d_out: k,
            w_bits: quant.w_bits,
            weights,
            inputs: None,
        },
        scale,
        bias,
        readout,
    };
    let meta = Meta {
        dataset: dataset.into(),
        arch: format!("{} {d}→{k}", model.kind.name()),
        w_bits: quant.w_bits,
        a_bits: quant.in_bits,
        fp32_accuracy: None,
    };
    let mut c = Circuit {
        format: String::new(),
        version: 0,
        encoding,
        input,
        stages: Vec::new(),
        output,
        meta,
    };
    let rows: Vec<_> = (0..k).map(|j| c.output_row_stats(j)).collect();
    c.input.delta = output_delta_for(&rows, c.encoding.noise.fresh_sigma_slots, &c.encoding);
    Ok(Circuit::new(
        c.encoding, c.input, c.stages, c.output, c.meta,
    )?)
}
