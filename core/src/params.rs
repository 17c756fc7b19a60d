//! Trained parameters for a [`ModelSpec`], given rather than learned: what an importer reads
//! from a model trained elsewhere (e.g. an ONNX file), layer by layer, without a tensor
//! library. The quantized model is built from them and then lowered like any trained model.

use crate::model::{LayerSpec, ModelError, ModelSpec, Shape};
use serde::{Deserialize, Serialize};

/// The client's input quantizer: input value `x` becomes the code
/// `clamp(round_half_even((x − low) / step), 0, qmax)`, which stands for `low + code · step`
/// (one quantizer for every input, as QONNX's and ONNX's per-tensor quantizers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InputQuant {
    /// The value of code 0.
    pub low: f32,
    /// Value per code step (> 0).
    pub step: f32,
    /// Largest code, in `[1, 255]`.
    pub qmax: i32,
}

/// A weighted layer's parameters (`linear` or `conv2d`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightedParams {
    /// Float weights, row-major `[out, in]` for `linear` (PyTorch's layout) or
    /// `[out_channels, in_channels, k, k]` for `conv2d`.
    pub weight: Vec<f32>,
    /// Float bias, `[out]`.
    pub bias: Vec<f32>,
    /// Per-output-channel quantizer step (`[out]`, each > 0) when the weights are already
    /// quantized: each weight is then an integer code times its channel's step, and the model
    /// keeps those codes as they are (no accumulator bound reshapes them). `None`: float
    /// weights, quantized by calibration.
    pub step: Option<Vec<f32>>,
    /// Weight code bits (symmetric codes in `[−(2^(b−1) − 1), 2^(b−1) − 1]`, or one more bit for
    /// a non-narrow range), in `[2, 8]`.
    pub bits: u32,
}

/// An activation layer's quantizer, when it is given.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActivationParams {
    /// Value per code (> 0).
    pub step: f32,
    /// Code range `[lo, hi]` (`lo ≤ 0 < hi`); code 0 is the value 0 (no zero point).
    pub range: (i32, i32),
    /// Bits the codes need, in `[2, 8]`.
    pub bits: u32,
}

/// One layer's parameters, in the order of [`ModelSpec::layers`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerParams {
    /// `linear` or `conv2d`.
    Weighted(WeightedParams),
    /// An activation; `None` leaves its quantizer to calibration.
    Activation(Option<ActivationParams>),
    /// A layer without parameters (pooling, flatten, add).
    None,
}

/// Parameters for every layer of a [`ModelSpec`] (batch norms already folded: a spec given
/// with parameters has no `batch_norm` layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelParams {
    /// The input quantizer; `None` for pixels on `[0, 1]` at the spec's `in_bits`.
    pub input: Option<InputQuant>,
    /// One entry per spec layer.
    pub layers: Vec<LayerParams>,
}

impl ModelParams {
    /// Check the parameters against `spec`: one entry per layer of the matching kind, weight and
    /// bias sizes equal to the layer's shape, every step finite and positive, every value
    /// finite, code ranges and bit widths in bounds.
    ///
    /// # Errors
    /// [`ModelError::Layer`] naming the first layer at fault, [`ModelError::Range`] for the
    /// input quantizer.
    pub fn validate(&self, spec: &ModelSpec) -> Result<(), ModelError> {
        let shapes = spec.validate()?;
        if let Some(q) = self.input {
            let ok = q.low.is_finite() && q.step.is_finite() && q.step > 0.0;
            if !ok || !(1..=255).contains(&q.qmax) {
                return Err(ModelError::Range {
                    field: "input quantizer".into(),
                    value: format!("low {}, step {}, qmax {}", q.low, q.step, q.qmax),
                    bound: "a finite low, a finite positive step and 1 ≤ qmax ≤ 255".into(),
                });
            }
        }
        if self.layers.len() != spec.layers.len() {
            return Err(ModelError::Range {
                field: "parameters".into(),
                value: format!("{} layers", self.layers.len()),
                bound: format!("one per layer of the description ({})", spec.layers.len()),
            });
        }
        let input = match spec.input[..] {
            [n] => Shape::Flat(n),
            [c, h, w] => Shape::Image([c, h, w]),
            _ => unreachable!("validated"),
        };
        for (i, (layer, params)) in spec.layers.iter().zip(&self.layers).enumerate() {
            let bad = |message: String| ModelError::Layer {
                index: i,
                kind: layer.kind(),
                message,
            };
            let before = if i == 0 { input } else { shapes[i - 1] };
            match (layer, params) {
                (LayerSpec::BatchNorm, _) => {
                    return Err(bad(
                        "a model given with parameters has its batch norms folded already".into(),
                    ))
                }
                (LayerSpec::Linear { out }, LayerParams::Weighted(w)) => {
                    check_weighted(w, *out, before.len(), &bad)?
                }
                (
                    LayerSpec::Conv2d {
                        out_channels,
                        kernel,
                        ..
                    },
                    LayerParams::Weighted(w),
                ) => {
                    let Shape::Image([c_in, ..]) = before else {
                        unreachable!("validated: a convolution reads images")
                    };
                    let fan_in = c_in
                        .checked_mul(kernel * kernel)
                        .ok_or_else(|| bad("kernel too large".into()))?;
                    check_weighted(w, *out_channels, fan_in, &bad)?
                }
                (l, LayerParams::Activation(a)) if l.activation().is_some() => {
                    if let Some(a) = a {
                        let (lo, hi) = a.range;
                        let ok = a.step.is_finite() && a.step > 0.0 && lo <= 0 && hi > 0;
                        let width = (hi as i64 - lo as i64 + 1) as u64;
                        if !ok || !(2..=8).contains(&a.bits) || width > 1u64 << a.bits {
                            return Err(bad(format!(
                                "quantizer step {} with codes [{lo}, {hi}] on {} bits: the step \
                                 must be finite and positive, lo ≤ 0 < hi, 2 to 8 bits holding \
                                 the range",
                                a.step, a.bits
                            )));
                        }
                    }
                }
                (l, LayerParams::None) if !l.weighted() && l.activation().is_none() => {}
                (_, p) => {
                    return Err(bad(format!(
                        "parameters of the wrong kind ({})",
                        match p {
                            LayerParams::Weighted(_) => "weights",
                            LayerParams::Activation(_) => "an activation quantizer",
                            LayerParams::None => "none",
                        }
                    )))
                }
            }
        }
        Ok(())
    }
}

fn check_weighted(
    w: &WeightedParams,
    out: usize,
    fan_in: usize,
    bad: &dyn Fn(String) -> ModelError,
) -> Result<(), ModelError> {
    let want = out
        .checked_mul(fan_in)
        .ok_or_else(|| bad("too many weights".into()))?;
    if w.weight.len() != want || w.bias.len() != out {
        return Err(bad(format!(
            "{} weights and {} biases; the layer has {out} outputs of {fan_in} inputs",
            w.weight.len(),
            w.bias.len()
        )));
    }
    if let Some(i) = w.weight.iter().chain(&w.bias).position(|v| !v.is_finite()) {
        return Err(bad(format!("parameter {i} is not a finite number")));
    }
    if !(2..=8).contains(&w.bits) {
        return Err(bad(format!("{}-bit weights; use 2 to 8 bits", w.bits)));
    }
    if let Some(step) = &w.step {
        if step.len() != out || step.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(bad(format!(
                "{} weight steps; give one finite positive step per output ({out})",
                step.len()
            )));
        }
        let qmax = (1i64 << (w.bits - 1)) - 1;
        for (j, row) in w.weight.chunks_exact(fan_in).enumerate() {
            for &v in row {
                let code = (v / step[j]).round() as i64;
                if code.abs() > qmax {
                    return Err(bad(format!(
                        "output {j} has weight code {code}, outside ±{qmax} for {}-bit weights",
                        w.bits
                    )));
                }
            }
        }
    }
    Ok(())
}
