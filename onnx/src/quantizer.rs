//! Quantizers as they appear in ONNX files — QONNX `Quant` / `IntQuant` / `BipolarQuant` and
//! ONNX `QuantizeLinear` (+ `Clip`) + `DequantizeLinear` — in one form:
//! `q = clamp(round(x / scale + zero), min, max)`, value `(q − zero) · scale`.

use crate::error::{OnnxError, Result};
use crate::graph::{Node, Tensor};

/// How `x / scale + zero` is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// To the nearest integer, ties to even (QONNX `ROUND`, ONNX `QuantizeLinear`).
    HalfEven,
    /// Down (QONNX `FLOOR`).
    Floor,
    /// Up (QONNX `CEIL`).
    Ceil,
    /// To `+1` from 0 up, to `−1` below: QONNX `BipolarQuant`, whose codes are `±1` (with
    /// `min = −1`, `max = 1` and no zero point).
    Sign,
}

impl Rounding {
    /// Round `v`.
    pub fn apply(self, v: f64) -> f64 {
        match self {
            Self::HalfEven => v.round_ties_even(),
            Self::Floor => v.floor(),
            Self::Ceil => v.ceil(),
            Self::Sign => {
                if v >= 0.0 {
                    1.0
                } else {
                    -1.0
                }
            }
        }
    }

    /// QONNX's `rounding_mode` attribute (case-insensitive, as qonnx reads it).
    ///
    /// # Errors
    /// [`OnnxError::Node`] for a mode qonnx does not implement.
    pub fn from_attr(node: &Node, default: &str) -> Result<Self> {
        let mode = node.string("rounding_mode", default).to_ascii_uppercase();
        match mode.as_str() {
            "ROUND" | "HALF_EVEN" => Ok(Self::HalfEven),
            "FLOOR" => Ok(Self::Floor),
            "CEIL" => Ok(Self::Ceil),
            other => Err(OnnxError::Node {
                node: node.name.clone(),
                op: node.op_type.clone(),
                message: format!(
                    "rounding_mode '{other}' is not one qfhe reads (ROUND, FLOOR, CEIL); \
                     use the default ROUND"
                ),
            }),
        }
    }
}

/// A uniform integer quantizer read from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantizer {
    /// Scales, broadcast against the quantized tensor (one value: per tensor).
    pub scale: Tensor,
    /// Zero points, broadcast likewise.
    pub zero: Tensor,
    /// Smallest code `q` (before the zero point is subtracted).
    pub min: i64,
    /// Largest code `q`.
    pub max: i64,
    /// Rounding of `x / scale + zero`.
    pub rounding: Rounding,
    /// The node that defines it, for messages.
    pub node: String,
}

impl Quantizer {
    /// Bits the codes need: `⌈log2(max − min + 1)⌉`.
    pub fn bits(&self) -> u32 {
        let levels = (self.max - self.min + 1).max(2) as u64;
        64 - (levels - 1).leading_zeros()
    }

    /// The quantizer's single scale and zero point, when both are per tensor.
    pub fn per_tensor(&self) -> Option<(f64, f64)> {
        Some((self.scale.scalar()?, self.zero.scalar()?))
    }

    /// Quantize the constant `x` (dims `dims`): the integer codes `q − zero`, one per element,
    /// and the scale each element uses.
    ///
    /// # Errors
    /// [`OnnxError::Node`] when the scale or zero point does not broadcast to `dims`.
    pub fn codes(&self, x: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
        if self.min >= self.max {
            return Err(OnnxError::Node {
                node: self.node.clone(),
                op: "quantizer".into(),
                message: format!(
                    "codes [{}, {}] hold fewer than two values",
                    self.min, self.max
                ),
            });
        }
        let scale = broadcast(&self.scale, &x.dims, &self.node)?;
        let zero = broadcast(&self.zero, &x.dims, &self.node)?;
        let codes = x
            .data
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let (s, z) = (self.scale.data[scale[i]], self.zero.data[zero[i]]);
                let q = (v / s + z).clamp(self.min as f64, self.max as f64);
                self.rounding.apply(q) - z
            })
            .collect();
        let scales = scale.iter().map(|&k| self.scale.data[k]).collect();
        Ok((codes, scales))
    }
}

/// For each element of a tensor of `dims`, the index into `t` that numpy broadcasting reads.
///
/// # Errors
/// [`OnnxError::Node`] (naming `node`) when `t` does not broadcast to `dims`.
pub fn broadcast(t: &Tensor, dims: &[usize], node: &str) -> Result<Vec<usize>> {
    let bad = || OnnxError::Node {
        node: node.into(),
        op: "quantizer".into(),
        message: format!(
            "a scale or zero point of shape {:?} does not broadcast to the tensor's {dims:?}",
            t.dims
        ),
    };
    if t.dims.len() > dims.len() {
        return Err(bad());
    }
    let pad = dims.len() - t.dims.len();
    let tdims: Vec<usize> = std::iter::repeat_n(1, pad)
        .chain(t.dims.iter().copied())
        .collect();
    for (&a, &b) in tdims.iter().zip(dims) {
        if a != 1 && a != b {
            return Err(bad());
        }
    }
    let total: usize = dims.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..total {
        let mut k = 0;
        for (d, &i) in idx.iter().enumerate() {
            k = k * tdims[d] + if tdims[d] == 1 { 0 } else { i };
        }
        out.push(k);
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}
