//! An ONNX graph → qfhe's model description ([`ModelSpec`]) and its parameters
//! ([`ModelParams`]), from which the quantized model is built and lowered like a trained one.
//!
//! The graph is walked in topological order with a symbolic value per tensor: a constant, a
//! quantized constant (weights), a half-read `QuantizeLinear` waiting for its `Clip` and
//! `DequantizeLinear`, or data on the path from the input — raw, quantized codes, a weighted
//! layer's float accumulators, or an activation function's output. Each weighted node becomes a
//! `linear` or `conv2d` layer, each quantizer after a function (or after a weighted layer, a
//! pooling or an add) an activation layer at the file's step and code range, batch
//! normalization is folded into the weighted layer before it (its weight step, not its codes),
//! and the graph's output must be the last weighted layer's float accumulators: the logits.

use crate::error::{OnnxError, Result};
use crate::fuse::fuse_gelu;
use crate::graph::{Graph, Node, Tensor};
use crate::ops::{unsupported, QONNX_DOMAINS};
use crate::quantizer::{broadcast, Quantizer, Rounding};
use qfhe_core::{
    Activation, ActivationParams, InputQuant, LayerParams, LayerSpec, ModelParams, ModelSpec,
    QuantSpec, Shape, WeightedParams,
};
use std::collections::HashMap;

/// Oldest and newest default-domain operator sets read.
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=25;

/// What an import read, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The model description.
    pub spec: ModelSpec,
    /// Its parameters.
    pub params: ModelParams,
    /// One line per decision the import took (quantizers read, batch norms folded, …).
    pub notes: Vec<String>,
    /// Whether the file carried quantizers (quantization-aware training) or only floats
    /// (post-training quantization needs calibration data).
    pub quantized: bool,
}

/// Import a checked graph.
///
/// # Errors
/// [`OnnxError::Unsupported`] listing every operator qfhe cannot lower;
/// [`OnnxError::Node`] for a supported operator used in a way the circuit cannot express,
/// naming the node and what to change; [`OnnxError::Model`] when the result breaks a model
/// rule.
pub fn import(graph: &Graph) -> Result<Imported> {
    import_with(graph, QuantSpec::default())
}

/// [`import`], with the bit widths a float graph (one without quantizers) is to be calibrated
/// to; a quantized graph keeps the widths it was trained with.
///
/// # Errors
/// As [`import`].
pub fn import_with(graph: &Graph, float_bits: QuantSpec) -> Result<Imported> {
    let (nodes, fused) = fuse_gelu(graph);
    let missing = unsupported(&nodes);
    if !missing.is_empty() {
        return Err(OnnxError::Unsupported(missing));
    }
    match graph.onnx_opset() {
        Some(v) if OPSETS.contains(&v) => {}
        Some(v) => {
            return Err(OnnxError::Graph(format!(
                "default operator set version {v}; qfhe reads {} to {}: export again with \
                 torch.onnx.export(..., opset_version=17)",
                OPSETS.start(),
                OPSETS.end()
            )))
        }
        None => {}
    }
    let [input] = &graph.inputs[..] else {
        return Err(OnnxError::Graph(format!(
            "{} graph inputs besides the initializers; qfhe reads models with one input",
            graph.inputs.len()
        )));
    };
    let [output] = &graph.outputs[..] else {
        return Err(OnnxError::Graph(format!(
            "{} graph outputs; qfhe reads models with one output (the logits)",
            graph.outputs.len()
        )));
    };
    let shape = input_shape(&input.shape, &input.name)?;
    let float = !nodes.iter().any(is_quantizer);
    let mut w = Walk {
        float,
        float_bits,
        syms: HashMap::new(),
        layers: vec![],
        params: vec![],
        input_shape: shape,
        input: None,
        notes: fused,
        pending_pad: HashMap::new(),
    };
    w.syms.insert(
        input.name.clone(),
        Sym::Data(Data {
            shape,
            stage: Stage::Raw,
        }),
    );
    for (name, t) in &graph.constants {
        w.syms.insert(name.clone(), Sym::Const(t.clone(), None));
    }
    for node in nodes.iter() {
        w.node(node)?;
    }
    w.finish(output)
}

/// Whether `node` quantizes (QONNX or QCDQ): a graph without any is a float model.
fn is_quantizer(node: &Node) -> bool {
    let qonnx = QONNX_DOMAINS.contains(&node.domain.as_str());
    matches!(
        (qonnx, node.op_type.as_str()),
        (true, "Quant" | "IntQuant" | "BipolarQuant" | "Trunc")
            | (false, "QuantizeLinear" | "DequantizeLinear")
    )
}

fn input_shape(dims: &[Option<usize>], name: &str) -> Result<Shape> {
    let known = |d: &Option<usize>| {
        d.ok_or_else(|| {
            OnnxError::Graph(format!(
                "input '{name}' has a symbolic dimension besides the batch; export with a fixed \
                 input size (e.g. an example input of shape [1, 1, 28, 28])"
            ))
        })
    };
    match dims {
        [_, n] => Ok(Shape::Flat(known(n)?)),
        [_, c, h, w] => Ok(Shape::Image([known(c)?, known(h)?, known(w)?])),
        _ => Err(OnnxError::Graph(format!(
            "input '{name}' has rank {}; qfhe reads [batch, features] or [batch, channels, \
             height, width]",
            dims.len()
        ))),
    }
}

/// What a value is, as far as the lowering is concerned.
#[derive(Debug, Clone)]
enum Sym {
    /// A constant, with the bounds of a `Clip` folded into it (QCDQ weights).
    Const(Tensor, Option<(i64, i64)>),
    /// A quantized constant: integer codes (zero point removed) and the scale of each element.
    Weight {
        codes: Tensor,
        scales: Vec<f64>,
        bits: u32,
    },
    /// After a `QuantizeLinear` (and maybe a `Clip`), before its `DequantizeLinear`.
    QLinear { of: Box<Sym>, q: Quantizer },
    /// Data on the path from the input.
    Data(Data),
}

#[derive(Debug, Clone, Copy)]
struct Data {
    shape: Shape,
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// The model's float input, not yet quantized.
    Raw,
    /// Integer codes at a step (the input quantizer's or an activation's), or sums of them
    /// (after pooling or an add); `layer` is the spec layer that produced them (`None`: input).
    Codes { layer: Option<usize> },
    /// Float accumulators of weighted layer `layer`.
    Acc { layer: usize },
    /// An activation function applied to a weighted layer's accumulators, or to sums of codes
    /// (pooling, a residual add), waiting for its quantizer.
    Act { f: Activation },
}

struct Walk {
    /// The graph has no quantizer: weights and activations are calibrated later.
    float: bool,
    /// Bit widths for a float graph.
    float_bits: QuantSpec,
    syms: HashMap<String, Sym>,
    layers: Vec<LayerSpec>,
    params: Vec<LayerParams>,
    input_shape: Shape,
    input: Option<InputQuant>,
    notes: Vec<String>,
    /// Zero padding of `Pad` outputs, for the convolution that reads them.
    pending_pad: HashMap<String, usize>,
}

fn err(node: &Node, message: impl Into<String>) -> OnnxError {
    OnnxError::Node {
        node: node.name.clone(),
        op: node.op_type.clone(),
        message: message.into(),
    }
}

impl Walk {
    fn sym(&self, node: &Node, i: usize) -> Result<&Sym> {
        let name = node
            .inputs
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err(node, format!("input {i} is missing")))?;
        self.syms
            .get(name)
            .ok_or_else(|| err(node, format!("input '{name}' is not known")))
    }

    fn data(&self, node: &Node, i: usize) -> Result<Data> {
        let padded = node
            .inputs
            .get(i)
            .is_some_and(|n| self.pending_pad.contains_key(n));
        if node.op_type != "Conv" && padded {
            return Err(err(
                node,
                "reads a padded tensor; qfhe reads zero padding only as part of a convolution",
            ));
        }
        match self.sym(node, i)? {
            Sym::Data(d) => Ok(*d),
            _ => Err(err(
                node,
                format!(
                    "input {i} is a constant where qfhe expects the data flowing from the model's \
                     input"
                ),
            )),
        }
    }

    fn constant(&self, node: &Node, i: usize) -> Result<Tensor> {
        match self.sym(node, i)? {
            Sym::Const(t, _) => Ok(t.clone()),
            _ => Err(err(
                node,
                format!("input {i} must be a constant (an initializer or a Constant node)"),
            )),
        }
    }

    fn scalar(&self, node: &Node, i: usize) -> Result<f64> {
        self.constant(node, i)?
            .scalar()
            .ok_or_else(|| err(node, format!("input {i} must be a single value")))
    }

    fn set(&mut self, node: &Node, sym: Sym) -> Result<()> {
        let out = node
            .outputs
            .first()
            .ok_or_else(|| err(node, "the node has no output"))?;
        self.syms.insert(out.clone(), sym);
        Ok(())
    }

    fn push(&mut self, layer: LayerSpec, params: LayerParams) -> usize {
        self.layers.push(layer);
        self.params.push(params);
        self.layers.len() - 1
    }

    fn node(&mut self, node: &Node) -> Result<()> {
        let qonnx = QONNX_DOMAINS.contains(&node.domain.as_str());
        match (qonnx, node.op_type.as_str()) {
            (true, "Quant" | "IntQuant") => self.qonnx_quant(node),
            (true, "BipolarQuant") => self.bipolar_quant(node),
            (true, "Trunc") => self.trunc(node),
            (_, "Identity") => {
                let s = self.sym(node, 0)?.clone();
                self.set(node, s)
            }
            (_, "QuantizeLinear") => self.quantize_linear(node),
            (_, "Clip") => self.clip(node),
            (_, "DequantizeLinear") => self.dequantize_linear(node),
            (_, "Flatten" | "Reshape") => self.flatten(node),
            (_, "Transpose") => self.transpose(node),
            (_, "Gemm" | "MatMul") => self.gemm(node),
            (_, "Conv") => self.conv(node),
            (_, "Pad") => self.pad(node),
            (_, "BatchNormalization") => self.batch_norm(node),
            (_, "Add") => self.add(node),
            (_, "Mul") => self.mul(node),
            (_, "Relu" | "Sigmoid" | "Tanh" | "LeakyRelu" | "Gelu") => self.function(node),
            (_, "AveragePool" | "GlobalAveragePool") => self.avg_pool(node),
            (_, "MaxPool") => self.max_pool(node),
            _ => Err(err(node, "not lowered (internal: listed as supported)")),
        }
    }

    /// QONNX `Quant(X, scale, zeropt, bitwidth)`.
    fn qonnx_quant(&mut self, node: &Node) -> Result<()> {
        let scale = self.constant(node, 1)?;
        let zero = self.constant(node, 2)?;
        let bits = self.scalar(node, 3)?;
        let signed = node.int("signed", 1) != 0;
        let narrow = node.int("narrow", 0) != 0;
        if !(2.0..=16.0).contains(&bits) || bits.fract() != 0.0 {
            return Err(err(
                node,
                format!("bit width {bits}; qfhe reads integer quantizers of 2 to 16 bits"),
            ));
        }
        let b = bits as u32;
        let (min, max) = if signed {
            (-(1i64 << (b - 1)) + narrow as i64, (1i64 << (b - 1)) - 1)
        } else {
            (0, (1i64 << b) - 1 - narrow as i64)
        };
        let q = Quantizer {
            scale,
            zero,
            min,
            max,
            rounding: Rounding::from_attr(node, "ROUND")?,
            node: node.name.clone(),
        };
        let x = self.sym(node, 0)?.clone();
        let out = self.quantized(node, x, q)?;
        self.set(node, out)
    }

    /// QONNX `BipolarQuant(X, scale)`: `Y = scale · (X ≥ 0 ? 1 : −1)`. On weights, codes `±1`
    /// (2-bit weights that are never 0); on a layer's accumulators, pooled values or a
    /// residual sum, the sign activation with step `scale`.
    fn bipolar_quant(&mut self, node: &Node) -> Result<()> {
        let scale = self.constant(node, 1)?;
        let q = Quantizer {
            scale,
            zero: Tensor {
                dims: vec![],
                data: vec![0.0],
                data_type: crate::proto::data_type::FLOAT,
            },
            min: -1,
            max: 1,
            rounding: Rounding::Sign,
            node: node.name.clone(),
        };
        let d = match self.sym(node, 0)?.clone() {
            Sym::Data(d) => d,
            x => {
                let out = self.quantized(node, x, q)?;
                return self.set(node, out);
            }
        };
        let step = match q.per_tensor() {
            Some((s, _)) if s.is_finite() && s > 0.0 => s,
            _ => {
                return Err(err(
                    node,
                    "a bipolar activation needs one positive scale per tensor",
                ))
            }
        };
        match d.stage {
            Stage::Acc { .. } | Stage::Codes { layer: Some(_) } => {}
            Stage::Act { .. } => {
                return Err(err(
                    node,
                    "a function before a bipolar quantizer: the sign is the activation, remove \
                     the function (or use an integer quantizer after it)",
                ))
            }
            _ => {
                return Err(err(
                    node,
                    "bipolar quantization of the model's input: quantize the input with an \
                     integer quantizer (2 to 8 bits)",
                ))
            }
        }
        let params = ActivationParams {
            step: step as f32,
            range: (-1, 1),
            bits: 2,
        };
        let index = self.push(LayerSpec::Sign, LayerParams::Activation(Some(params)));
        self.notes.push(format!(
            "layer {index} (sign): bipolar activation codes ±1, scale {step:e} (from '{}')",
            node.name
        ));
        self.set(
            node,
            Sym::Data(Data {
                shape: d.shape,
                stage: Stage::Codes { layer: Some(index) },
            }),
        )
    }

    /// QONNX `Trunc` (v2: `X, scale, zeropt, in_bitwidth, out_scale, out_bitwidth`) after an
    /// `AveragePool` — Brevitas's `TruncAvgPool2d`. It computes `y = round(X/scale + zeropt)`,
    /// divides by `t = 2^round(log2(out_scale/scale))`, rounds by `rounding_mode` and writes
    /// `y · out_scale`. When `scale` is the pooled sum's step (the input's step over the
    /// window's `k²` values), `X/scale` is the integer sum of codes, the first rounding is exact,
    /// and the whole is one rounding to nearest of the pooled values at `out_scale`: qfhe's
    /// identity activation after the pooling. Other scales or rounding modes round twice, and
    /// are refused.
    fn trunc(&mut self, node: &Node) -> Result<()> {
        if node.inputs.len() != 6 {
            return Err(err(
                node,
                format!(
                    "{} inputs: qfhe reads QONNX's Trunc v2 (6 inputs, with out_scale), as \
                     Brevitas 0.11 and later write it",
                    node.inputs.len()
                ),
            ));
        }
        let (scale, zero) = (self.scalar(node, 1)?, self.constant(node, 2)?);
        let out_scale = self.constant(node, 4)?;
        let out_bits = self.scalar(node, 5)?;
        let rounding = Rounding::from_attr(node, "FLOOR")?;
        let Sym::Data(d) = self.sym(node, 0)?.clone() else {
            return Err(err(node, "truncates a constant"));
        };
        let pooled = match d.stage {
            Stage::Codes { layer: Some(l) } => match self.layers[l] {
                LayerSpec::AvgPool { k } => l
                    .checked_sub(1)
                    .and_then(|p| self.step_of(p))
                    .map(|s| s / (k * k) as f64),
                _ => None,
            },
            _ => None,
        };
        let Some(sum_step) = pooled else {
            return Err(err(
                node,
                "a Trunc is read right after an AveragePool of quantized activations",
            ));
        };
        let exact = ((scale - sum_step) / sum_step).abs() < 1e-5;
        if !exact || rounding != Rounding::HalfEven || zero.data.iter().any(|&z| z != 0.0) {
            return Err(err(
                node,
                format!(
                    "truncation with scale {scale:e} (the pooled sum's step is {sum_step:e}), \
                     rounding {rounding:?} and zero point {:?} rounds twice; qfhe reads \
                     TruncAvgPool2d with rounding to nearest (float_to_int_impl_type='round'), \
                     or nn.AvgPool2d followed by a quantizer",
                    zero.data
                ),
            ));
        }
        if !(2.0..=16.0).contains(&out_bits) || out_bits.fract() != 0.0 {
            return Err(err(node, format!("output bit width {out_bits}")));
        }
        let b = out_bits as u32;
        let (signed, narrow) = (node.int("signed", 1) != 0, node.int("narrow", 0) != 0);
        let (min, max) = if signed {
            (-(1i64 << (b - 1)) + narrow as i64, (1i64 << (b - 1)) - 1)
        } else {
            (0, (1i64 << b) - 1 - narrow as i64)
        };
        let q = Quantizer {
            scale: out_scale,
            zero,
            min,
            max,
            rounding: Rounding::HalfEven,
            node: node.name.clone(),
        };
        let out = self.quantized(node, Sym::Data(d), q)?;
        self.set(node, out)
    }

    /// The step of the values spec layer `l` outputs, when it is a quantized activation (or a
    /// flatten of one).
    fn step_of(&self, l: usize) -> Option<f64> {
        match (&self.layers[l], &self.params[l]) {
            (_, LayerParams::Activation(Some(a))) => Some(a.step as f64),
            (LayerSpec::Flatten, _) => l.checked_sub(1).and_then(|p| self.step_of(p)),
            _ => None,
        }
    }

    /// `QuantizeLinear(x, y_scale, y_zero_point)`: integer container range from the zero
    /// point's type; the value is resolved by the `DequantizeLinear` that reads it.
    fn quantize_linear(&mut self, node: &Node) -> Result<()> {
        if node.int("block_size", 0) != 0 {
            return Err(err(
                node,
                "blocked quantization (block_size > 0) is not supported: use per-tensor or \
                 per-channel scales",
            ));
        }
        let (scale, zero, min, max) = self.linear_params(node)?;
        let x = self.sym(node, 0)?.clone();
        let q = Quantizer {
            scale: axis_aligned(node, scale, &x)?,
            zero: axis_aligned(node, zero, &x)?,
            min,
            max,
            rounding: Rounding::HalfEven,
            node: node.name.clone(),
        };
        self.set(node, Sym::QLinear { of: Box::new(x), q })
    }

    fn linear_params(&self, node: &Node) -> Result<(Tensor, Tensor, i64, i64)> {
        let scale = self.constant(node, 1)?;
        let zero = match node.inputs.get(2).filter(|n| !n.is_empty()) {
            Some(_) => self.constant(node, 2)?,
            None => Tensor {
                dims: vec![],
                data: vec![0.0],
                data_type: crate::proto::data_type::UINT8,
            },
        };
        use crate::proto::data_type as dt;
        let (min, max) = match zero.data_type {
            dt::UINT8 => (0, 255),
            dt::INT8 => (-128, 127),
            dt::UINT16 => (0, 65_535),
            dt::INT16 => (-32_768, 32_767),
            dt::INT32 => (i32::MIN as i64, i32::MAX as i64),
            other => {
                return Err(err(
                    node,
                    format!(
                        "zero point of element type {other}: qfhe reads 8-, 16- and 32-bit \
                         integer quantization (not float8 or 4-bit containers)"
                    ),
                ))
            }
        };
        Ok((scale, zero, min, max))
    }

    /// `Clip(x, min, max)`: narrows a pending `QuantizeLinear`'s range (Brevitas writes the bit
    /// width this way), or bounds an integer constant (QCDQ weights).
    fn clip(&mut self, node: &Node) -> Result<()> {
        let bound = |i: usize, attr: &str| -> Result<Option<f64>> {
            if node.inputs.get(i).is_some_and(|n| !n.is_empty()) {
                Ok(Some(self.scalar(node, i)?))
            } else if node.attrs.contains_key(attr) {
                Ok(Some(node.float(attr, 0.0) as f64))
            } else {
                Ok(None)
            }
        };
        let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
        let int = |v: Option<f64>| -> Result<Option<i64>> {
            match v {
                Some(v) if v.fract() != 0.0 => Err(err(
                    node,
                    format!("bound {v} on integer codes is not an integer"),
                )),
                Some(v) => Ok(Some(v as i64)),
                None => Ok(None),
            }
        };
        let out = match self.sym(node, 0)?.clone() {
            Sym::QLinear { of, mut q } => {
                if let Some(lo) = int(lo)? {
                    q.min = q.min.max(lo);
                }
                if let Some(hi) = int(hi)? {
                    q.max = q.max.min(hi);
                }
                if q.min >= q.max {
                    return Err(err(node, "the clip leaves fewer than two codes"));
                }
                Sym::QLinear { of, q }
            }
            Sym::Const(t, _) => {
                let (lo, hi) = (int(lo)?.unwrap_or(i64::MIN), int(hi)?.unwrap_or(i64::MAX));
                if lo >= hi {
                    return Err(err(node, "the clip leaves fewer than two codes"));
                }
                let data = t
                    .data
                    .iter()
                    .map(|&v| v.clamp(lo as f64, hi as f64))
                    .collect();
                Sym::Const(Tensor { data, ..t }, Some((lo, hi)))
            }
            _ => {
                return Err(err(
                    node,
                    "a Clip on data is only read between QuantizeLinear and DequantizeLinear \
                     (use ReLU for a lower bound of 0)",
                ))
            }
        };
        self.set(node, out)
    }

    /// `DequantizeLinear(x, scale, zero_point)`: closes a `QuantizeLinear`, or dequantizes an
    /// integer constant (weights stored as codes).
    fn dequantize_linear(&mut self, node: &Node) -> Result<()> {
        if node.int("block_size", 0) != 0 {
            return Err(err(
                node,
                "blocked quantization (block_size > 0) is not supported: use per-tensor or \
                 per-channel scales",
            ));
        }
        let (scale, zero, cmin, cmax) = self.linear_params(node)?;
        let out = match self.sym(node, 0)?.clone() {
            Sym::QLinear { of, q } => {
                let same = |a: &Tensor, b: &Tensor| a.data == b.data;
                let x = Sym::QLinear {
                    of: of.clone(),
                    q: q.clone(),
                };
                let q_scale = axis_aligned(node, scale, &x)?;
                if !same(&q_scale, &q.scale) || !same(&axis_aligned(node, zero, &x)?, &q.zero) {
                    return Err(err(
                        node,
                        format!(
                            "its scale or zero point differs from those of '{}' it dequantizes; \
                             qfhe reads QuantizeLinear → DequantizeLinear pairs with one scale",
                            q.node
                        ),
                    ));
                }
                self.quantized(node, *of, q)?
            }
            Sym::Const(codes, clip) => {
                let (min, max) = clip.unwrap_or((cmin, cmax));
                let x = Sym::Const(codes.clone(), None);
                let scale = axis_aligned(node, scale, &x)?;
                let zero = axis_aligned(node, zero, &x)?;
                let zi = broadcast(&zero, &codes.dims, &node.name)?;
                let si = broadcast(&scale, &codes.dims, &node.name)?;
                let data = codes
                    .data
                    .iter()
                    .zip(&zi)
                    .map(|(&c, &k)| c - zero.data[k])
                    .collect();
                let scales = si.iter().map(|&k| scale.data[k]).collect();
                let bits = Quantizer {
                    scale: scale.clone(),
                    zero: zero.clone(),
                    min: min.max(cmin),
                    max: max.min(cmax),
                    rounding: Rounding::HalfEven,
                    node: node.name.clone(),
                }
                .bits();
                Sym::Weight {
                    codes: Tensor { data, ..codes },
                    scales,
                    bits,
                }
            }
            _ => {
                return Err(err(
                    node,
                    "dequantizes neither a QuantizeLinear nor an integer constant",
                ))
            }
        };
        self.set(node, out)
    }

    /// The value a quantizer `q` gives to `x`.
    fn quantized(&mut self, node: &Node, x: Sym, q: Quantizer) -> Result<Sym> {
        match x {
            Sym::Const(t, _) => {
                let (codes, scales) = q.codes(&t)?;
                Ok(Sym::Weight {
                    bits: q.bits(),
                    codes: Tensor { data: codes, ..t },
                    scales,
                })
            }
            Sym::Data(d) => {
                let Some((scale, zero)) = q.per_tensor() else {
                    return Err(err(
                        node,
                        "per-channel quantization of activations is not supported: the values a \
                         layer reads share one scale (use a per-tensor activation quantizer)",
                    ));
                };
                if q.rounding != Rounding::HalfEven {
                    return Err(err(
                        node,
                        "activations are quantized with rounding to nearest (ROUND); other modes \
                         are read for weights only",
                    ));
                }
                self.quantize_data(node, d, scale, zero, &q)
            }
            Sym::Weight { .. } | Sym::QLinear { .. } => Err(err(
                node,
                "quantizes a value that is already quantized; remove one of the two quantizers",
            )),
        }
    }

    fn quantize_data(
        &mut self,
        node: &Node,
        d: Data,
        scale: f64,
        zero: f64,
        q: &Quantizer,
    ) -> Result<Sym> {
        let bits = q.bits();
        if !(scale.is_finite() && scale > 0.0) || zero.fract() != 0.0 {
            return Err(err(
                node,
                format!("scale {scale} and zero point {zero}: the scale must be positive and the zero point an integer"),
            ));
        }
        if d.stage == Stage::Raw {
            if !self.layers.iter().all(|l| matches!(l, LayerSpec::Flatten)) {
                return Err(err(node, "the input is quantized after a layer"));
            }
            let qmax = q.max - q.min;
            if qmax > 255 {
                return Err(err(
                    node,
                    format!("{bits}-bit input codes; the circuit's inputs have at most 8 bits"),
                ));
            }
            self.input = Some(InputQuant {
                low: ((q.min as f64 - zero) * scale) as f32,
                step: scale as f32,
                qmax: qmax as i32,
            });
            self.notes.push(format!(
                "input quantizer '{}': {bits}-bit codes [{}, {}], scale {scale:e}, zero point {zero}",
                q.node, q.min, q.max
            ));
            return Ok(Sym::Data(Data {
                shape: d.shape,
                stage: Stage::Codes { layer: None },
            }));
        }
        if zero != 0.0 {
            return Err(err(
                node,
                format!(
                    "zero point {zero}: qfhe's activation codes have zero point 0 (a symmetric \
                     signed quantizer, or an unsigned one after ReLU)"
                ),
            ));
        }
        if bits > 8 || q.min > 0 || q.max <= 0 {
            return Err(err(
                node,
                format!(
                    "activation codes [{}, {}]: qfhe reads 2- to 8-bit activation codes that \
                     include 0",
                    q.min, q.max
                ),
            ));
        }
        let (f, layer) = match d.stage {
            Stage::Act { f, .. } => (f, activation_layer(f)),
            Stage::Acc { .. } | Stage::Codes { .. } => (Activation::Identity, LayerSpec::Identity),
            Stage::Raw => unreachable!("handled above"),
        };
        let params = ActivationParams {
            step: scale as f32,
            range: (q.min as i32, q.max as i32),
            bits: bits.max(2),
        };
        let index = self.push(layer, LayerParams::Activation(Some(params)));
        self.notes.push(format!(
            "layer {index} ({}): {bits}-bit activation codes [{}, {}], scale {scale:e} (from '{}')",
            activation_layer(f).kind(),
            q.min,
            q.max,
            q.node
        ));
        Ok(Sym::Data(Data {
            shape: d.shape,
            stage: Stage::Codes { layer: Some(index) },
        }))
    }

    fn flatten(&mut self, node: &Node) -> Result<()> {
        let d = self.data(node, 0)?;
        if node.op_type == "Flatten" && node.int("axis", 1) != 1 {
            return Err(err(
                node,
                "flattens at an axis other than 1 (keep the batch axis)",
            ));
        }
        if node.op_type == "Reshape" {
            let target = self.constant(node, 1)?;
            let flat = target.dims.len() == 1
                && target.data.len() == 2
                && (target.data[1] == -1.0 || target.data[1] == d.shape.len() as f64);
            if !flat {
                return Err(err(
                    node,
                    format!(
                        "reshapes to {:?}; qfhe reads reshapes to [batch, features] (a flatten)",
                        target.data
                    ),
                ));
            }
        }
        let shape = Shape::Flat(d.shape.len());
        if matches!(d.shape, Shape::Image(_)) {
            match d.stage {
                Stage::Raw => self.push(LayerSpec::Flatten, LayerParams::None),
                Stage::Codes { .. } => self.push(LayerSpec::Flatten, LayerParams::None),
                _ => {
                    return Err(err(
                        node,
                        "flattens a layer's float outputs: quantize them first (an activation \
                         quantizer before the flatten)",
                    ))
                }
            };
        }
        let stage = match d.stage {
            Stage::Codes { layer: Some(_) } => Stage::Codes {
                layer: Some(self.layers.len() - 1),
            },
            s => s,
        };
        self.set(node, Sym::Data(Data { shape, stage }))
    }

    /// The weighted layer's input must be codes (the input's, an activation's, or sums). In a
    /// float graph, the float input stands for the circuit's input codes and a weighted
    /// layer's accumulators read directly by another get an identity activation (qfhe
    /// quantizes between weighted layers).
    fn codes_input(&mut self, node: &Node) -> Result<Data> {
        let d = self.data(node, 0)?;
        match d.stage {
            Stage::Codes { .. } => Ok(d),
            Stage::Raw if self.float && self.layers.iter().all(|l| *l == LayerSpec::Flatten) => {
                Ok(d)
            }
            Stage::Acc { .. } if self.float => {
                let index = self.push(LayerSpec::Identity, LayerParams::Activation(None));
                Ok(Data {
                    shape: d.shape,
                    stage: Stage::Codes { layer: Some(index) },
                })
            }
            Stage::Raw => Err(err(
                node,
                "reads the model's input unquantized: quantize it first (a QuantIdentity, or \
                 QuantizeLinear/DequantizeLinear, before the first layer)",
            )),
            _ => Err(err(
                node,
                "reads another layer's float outputs: put an activation quantizer between the \
                 two layers",
            )),
        }
    }

    /// A weighted node's weights: codes with the scale of each element, or, in a float graph,
    /// float values (no scales).
    fn weight(&self, node: &Node, i: usize) -> Result<(Tensor, Option<Vec<f64>>, u32)> {
        match self.sym(node, i)? {
            Sym::Weight {
                codes,
                scales,
                bits,
            } => Ok((codes.clone(), Some(scales.clone()), *bits)),
            Sym::Const(t, _) if self.float => Ok((t.clone(), None, self.float_bits.w_bits)),
            Sym::Const(t, _) => Err(err(
                node,
                format!(
                    "its weights '{}' are float; this importer reads quantization-aware models \
                     whose weights pass through a quantizer (QONNX Quant or \
                     QuantizeLinear/DequantizeLinear)",
                    node.inputs[i]
                ),
            )
            .with_dims(&t.dims)),
            _ => Err(err(node, format!("input {i} is not a weight tensor"))),
        }
    }

    /// Per-output-channel steps from per-element scales of a weight whose output channel is
    /// axis `out_axis` of `dims`.
    fn channel_steps(
        node: &Node,
        dims: &[usize],
        scales: &[f64],
        out_axis: usize,
    ) -> Result<Vec<f32>> {
        let outs = dims[out_axis];
        let inner: usize = dims[out_axis + 1..].iter().product();
        let mut steps = vec![f64::NAN; outs];
        for (i, &s) in scales.iter().enumerate() {
            let c = (i / inner) % outs;
            if steps[c].is_nan() {
                steps[c] = s;
            } else if steps[c] != s {
                return Err(err(
                    node,
                    "its weight scales vary within an output channel: qfhe reads per-tensor or \
                     per-output-channel weight scales",
                ));
            }
        }
        if steps.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(err(node, "a weight scale is not a positive number"));
        }
        Ok(steps.iter().map(|&s| s as f32).collect())
    }

    fn bias(&self, node: &Node, i: usize, out: usize) -> Result<Vec<f32>> {
        if node.inputs.get(i).is_none_or(|n| n.is_empty()) {
            return Ok(vec![0.0; out]);
        }
        let b = match self.sym(node, i)? {
            Sym::Const(t, _) => t.data.clone(),
            Sym::Weight { codes, scales, .. } => {
                codes.data.iter().zip(scales).map(|(c, s)| c * s).collect()
            }
            _ => return Err(err(node, "its bias is not a constant")),
        };
        if b.len() == out {
            Ok(b.iter().map(|&v| v as f32).collect())
        } else if b.len() == 1 {
            Ok(vec![b[0] as f32; out])
        } else {
            Err(err(node, format!("{} biases for {out} outputs", b.len())))
        }
    }

    fn gemm(&mut self, node: &Node) -> Result<()> {
        let d = self.codes_input(node)?;
        let Shape::Flat(d_in) = d.shape else {
            return Err(err(node, "reads images: flatten them first"));
        };
        if node.op_type == "Gemm"
            && (node.float("alpha", 1.0) != 1.0
                || node.float("beta", 1.0) != 1.0
                || node.int("transA", 0) != 0)
        {
            return Err(err(node, "alpha and beta must be 1 and transA 0"));
        }
        let (codes, scales, bits) = self.weight(node, 1)?;
        let trans_b = node.op_type == "Gemm" && node.int("transB", 0) != 0;
        let [a, b] = codes.dims[..] else {
            return Err(err(
                node,
                format!("weights of shape {:?}, not 2-D", codes.dims),
            ));
        };
        let (out, fan_in) = if trans_b { (a, b) } else { (b, a) };
        if fan_in != d_in {
            return Err(err(
                node,
                format!("weights for {fan_in} inputs, reading {d_in} values"),
            ));
        }
        let steps = match &scales {
            Some(sc) => Some(Self::channel_steps(
                node,
                &codes.dims,
                sc,
                if trans_b { 0 } else { 1 },
            )?),
            None => None,
        };
        // Row-major [out, in] (PyTorch's layout), dequantized: code · step (float weights as
        // they are).
        let mut weight = vec![0f32; out * fan_in];
        for o in 0..out {
            for i in 0..fan_in {
                let k = if trans_b { o * fan_in + i } else { i * out + o };
                let step = steps.as_ref().map_or(1.0, |s| s[o]);
                weight[o * fan_in + i] = (codes.data[k] as f32) * step;
            }
        }
        let bias = if node.op_type == "Gemm" {
            self.bias(node, 2, out)?
        } else {
            vec![0.0; out]
        };
        let bits = match steps {
            Some(_) => weight_bits(&codes, bits),
            None => bits,
        };
        let params = WeightedParams {
            weight,
            bias,
            step: steps,
            bits,
        };
        let index = self.push(LayerSpec::Linear { out }, LayerParams::Weighted(params));
        self.set(
            node,
            Sym::Data(Data {
                shape: Shape::Flat(out),
                stage: Stage::Acc { layer: index },
            }),
        )
    }

    /// `Transpose` of a 2-D constant or quantized weight (Brevitas writes one before a
    /// `MatMul` for a dense layer without bias); data keeps its layout.
    fn transpose(&mut self, node: &Node) -> Result<()> {
        let swap = |t: &Tensor, values: &[f64]| -> Result<(Vec<usize>, Vec<f64>)> {
            let perm = node.ints("perm").unwrap_or(&[1, 0]);
            let [a, b] = t.dims[..] else {
                return Err(err(
                    node,
                    format!(
                        "transposes a constant of shape {:?}; qfhe reads 2-D ones",
                        t.dims
                    ),
                ));
            };
            if perm != [1, 0] {
                return Err(err(node, format!("permutation {perm:?} of a 2-D constant")));
            }
            let mut out = Vec::with_capacity(values.len());
            for j in 0..b {
                out.extend((0..a).map(|i| values[i * b + j]));
            }
            Ok((vec![b, a], out))
        };
        let out = match self.sym(node, 0)?.clone() {
            Sym::Const(t, clip) => {
                let (dims, data) = swap(&t, &t.data)?;
                Sym::Const(Tensor { dims, data, ..t }, clip)
            }
            Sym::Weight {
                codes,
                scales,
                bits,
            } => {
                let (_, scales) = swap(&codes, &scales)?;
                let (dims, data) = swap(&codes, &codes.data)?;
                Sym::Weight {
                    codes: Tensor {
                        dims,
                        data,
                        ..codes
                    },
                    scales,
                    bits,
                }
            }
            _ => {
                return Err(err(
                    node,
                    "transposes data: qfhe reads NCHW images and flat vectors; export without \
                     it (use Flatten)",
                ))
            }
        };
        self.set(node, out)
    }

    fn pad(&mut self, node: &Node) -> Result<()> {
        // A constant zero Pad is kept for the convolution that reads it (Brevitas writes one
        // before a padded convolution in some exports).
        let d = self.codes_input(node)?;
        if node.string("mode", "constant") != "constant" {
            return Err(err(node, "only constant (zero) padding is supported"));
        }
        let pads = match node.inputs.get(1).filter(|n| !n.is_empty()) {
            Some(_) => self.constant(node, 1)?.data,
            None => node
                .ints("pads")
                .unwrap_or_default()
                .iter()
                .map(|&p| p as f64)
                .collect(),
        };
        if node.inputs.get(2).is_some_and(|n| !n.is_empty()) && self.scalar(node, 2)? != 0.0 {
            return Err(err(node, "pads with a value other than 0"));
        }
        let Shape::Image([c, h, w]) = d.shape else {
            return Err(err(node, "pads flat values"));
        };
        // [x1_begin, x2_begin, x3_begin, x4_begin, x1_end, …] over NCHW: only H and W, equal.
        let p = match pads[..] {
            [0.0, 0.0, a, b, 0.0, 0.0, e, f]
                if a == b && b == e && e == f && (0.0..=64.0).contains(&a) && a.fract() == 0.0 =>
            {
                a as usize
            }
            _ => {
                return Err(err(
                    node,
                    format!("pads {pads:?}: qfhe reads equal zero padding of height and width"),
                ))
            }
        };
        self.set(
            node,
            Sym::Data(Data {
                shape: Shape::Image([c, h, w]),
                stage: d.stage,
            }),
        )?;
        self.notes.push(format!(
            "'{}': zero padding {p} kept for the next convolution",
            node.name
        ));
        self.pending_pad.insert(node.outputs[0].clone(), p);
        Ok(())
    }

    fn conv(&mut self, node: &Node) -> Result<()> {
        let d = self.codes_input(node)?;
        let extra_pad = node
            .inputs
            .first()
            .and_then(|n| self.pending_pad.get(n))
            .copied()
            .unwrap_or(0);
        let Shape::Image([c_in, h, w]) = d.shape else {
            return Err(err(node, "reads flat values; a convolution reads images"));
        };
        let (codes, scales, bits) = self.weight(node, 1)?;
        let [c_out, wc_in, kh, kw] = codes.dims[..] else {
            return Err(err(
                node,
                format!("weights of shape {:?}, not [out, in, k, k]", codes.dims),
            ));
        };
        let ints = |name: &str| node.ints(name).map(<[i64]>::to_vec);
        let all = |v: &[i64], x: i64| v.iter().all(|&e| e == x);
        if node.int("group", 1) != 1 || wc_in != c_in {
            return Err(err(
                node,
                "grouped or depthwise convolutions are not supported (group must be 1)",
            ));
        }
        if kh != kw || ints("dilations").is_some_and(|v| !all(&v, 1)) {
            return Err(err(node, "kernels must be square, without dilation"));
        }
        if node.string("auto_pad", "NOTSET") != "NOTSET" {
            return Err(err(node, "auto_pad is not read: give explicit pads"));
        }
        let strides = ints("strides").unwrap_or(vec![1, 1]);
        let pads = ints("pads").unwrap_or(vec![0; 4]);
        let (stride, pad) = match (&strides[..], &pads[..]) {
            ([s, t], [a, b, c, e])
                if s == t
                    && a == b
                    && b == c
                    && c == e
                    && (1..=64).contains(s)
                    && (0..=64).contains(a) =>
            {
                (*s as usize, *a as usize + extra_pad)
            }
            _ => {
                return Err(err(
                    node,
                    format!(
                        "strides {strides:?} and pads {pads:?}: qfhe reads equal strides and equal \
                         padding on every side"
                    ),
                ))
            }
        };
        let out_hw = |n: usize| {
            (n + 2 * pad)
                .checked_sub(kh)
                .map(|v| v / stride + 1)
                .ok_or_else(|| err(node, "the kernel is larger than the padded image"))
        };
        let shape = Shape::Image([c_out, out_hw(h)?, out_hw(w)?]);
        let steps = match &scales {
            Some(sc) => Some(Self::channel_steps(node, &codes.dims, sc, 0)?),
            None => None,
        };
        let per = c_in * kh * kw;
        let weight = codes
            .data
            .iter()
            .enumerate()
            .map(|(i, &c)| c as f32 * steps.as_ref().map_or(1.0, |s| s[i / per]))
            .collect();
        let bits = match steps {
            Some(_) => weight_bits(&codes, bits),
            None => bits,
        };
        let params = WeightedParams {
            weight,
            bias: self.bias(node, 2, c_out)?,
            step: steps,
            bits,
        };
        let index = self.push(
            LayerSpec::Conv2d {
                out_channels: c_out,
                kernel: kh,
                stride,
                padding: pad,
            },
            LayerParams::Weighted(params),
        );
        self.set(
            node,
            Sym::Data(Data {
                shape,
                stage: Stage::Acc { layer: index },
            }),
        )
    }
}

trait WithDims {
    fn with_dims(self, dims: &[usize]) -> Self;
}

impl WithDims for OnnxError {
    fn with_dims(self, dims: &[usize]) -> Self {
        match self {
            OnnxError::Node { node, op, message } => OnnxError::Node {
                node,
                op,
                message: format!("{message} (shape {dims:?})"),
            },
            e => e,
        }
    }
}

/// Bits of symmetric weight codes: the declared width, or one more when the codes use the
/// non-narrow end (−2^(b−1)), since qfhe's weight codes are symmetric.
fn weight_bits(codes: &Tensor, declared: u32) -> u32 {
    let m = codes.data.iter().fold(0f64, |a, &c| a.max(c.abs())) as i64;
    let mut bits = declared.max(2);
    while (1i64 << (bits - 1)) - 1 < m {
        bits += 1;
    }
    bits
}

/// Per-axis scales of `QuantizeLinear`/`DequantizeLinear` (1-D, along attribute `axis`,
/// default 1) reshaped to broadcast against the tensor; per-tensor scales as they are.
fn axis_aligned(node: &Node, t: Tensor, x: &Sym) -> Result<Tensor> {
    if t.dims.len() != 1 || t.data.len() == 1 {
        return Ok(t);
    }
    let rank = match x {
        Sym::Const(c, _) => c.dims.len(),
        Sym::Weight { codes, .. } => codes.dims.len(),
        Sym::QLinear { of, .. } => return axis_aligned(node, t, of),
        Sym::Data(d) => match d.shape {
            Shape::Flat(_) => 2,
            Shape::Image(_) => 4,
        },
    };
    let axis = node.int("axis", 1);
    let axis = if axis < 0 { axis + rank as i64 } else { axis };
    if axis < 0 || axis as usize >= rank {
        return Err(err(
            node,
            format!("axis {axis} outside the tensor's rank {rank}"),
        ));
    }
    let mut dims = vec![1; rank];
    dims[axis as usize] = t.data.len();
    Ok(Tensor { dims, ..t })
}

/// The layer of activation `f`.
fn activation_layer(f: Activation) -> LayerSpec {
    match f {
        Activation::Relu => LayerSpec::Relu,
        Activation::LeakyRelu { slope } => LayerSpec::LeakyRelu { slope },
        Activation::Sigmoid => LayerSpec::Sigmoid,
        Activation::Tanh => LayerSpec::Tanh,
        Activation::Gelu => LayerSpec::Gelu,
        Activation::GeluErf => LayerSpec::GeluErf,
        Activation::Silu => LayerSpec::Silu,
        Activation::Identity => LayerSpec::Identity,
        Activation::Sign => LayerSpec::Sign,
    }
}

impl Walk {
    /// `BatchNormalization(x, scale, bias, mean, var)` after a weighted layer: folded into its
    /// weight steps and bias (`g = γ / √(var + ε)`: weights `w·g`, steps `step·|g|`, so the codes
    /// keep their magnitudes; bias `(b − μ)·g + β`).
    fn batch_norm(&mut self, node: &Node) -> Result<()> {
        let d = self.data(node, 0)?;
        let Stage::Acc { layer } = d.stage else {
            return Err(err(
                node,
                "batch normalization must directly follow a Gemm or Conv (it is folded into it)",
            ));
        };
        let channels = match d.shape {
            Shape::Flat(n) => n,
            Shape::Image([c, ..]) => c,
        };
        let get = |i: usize| -> Result<Vec<f64>> {
            let t = self.constant(node, i)?;
            if t.len() != channels {
                return Err(err(
                    node,
                    format!("input {i} has {} values for {channels} channels", t.len()),
                ));
            }
            Ok(t.data)
        };
        let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
        let eps = node.float("epsilon", 1e-5) as f64;
        let LayerParams::Weighted(p) = &mut self.params[layer] else {
            unreachable!("an accumulator comes from a weighted layer")
        };
        let per = p.weight.len() / channels;
        for c in 0..channels {
            let g = gamma[c] / (var[c] + eps).sqrt();
            if !g.is_finite() || g == 0.0 {
                return Err(err(
                    node,
                    format!("channel {c} has scale {g} (γ = 0 or variance < −ε)"),
                ));
            }
            for w in &mut p.weight[c * per..(c + 1) * per] {
                *w = (*w as f64 * g) as f32;
            }
            if let Some(steps) = &mut p.step {
                steps[c] = (steps[c] as f64 * g.abs()) as f32;
            }
            p.bias[c] = ((p.bias[c] as f64 - mean[c]) * g + beta[c]) as f32;
        }
        self.notes.push(format!(
            "'{}': batch normalization folded into layer {layer}'s weight steps and bias",
            node.name
        ));
        self.set(node, Sym::Data(d))
    }

    fn function(&mut self, node: &Node) -> Result<()> {
        let d = self.data(node, 0)?;
        let f = match node.op_type.as_str() {
            "Relu" => Activation::Relu,
            "Sigmoid" => Activation::Sigmoid,
            "Tanh" => Activation::Tanh,
            "Gelu" => match node.string("approximate", "none") {
                "none" => Activation::GeluErf,
                "tanh" => Activation::Gelu,
                other => {
                    return Err(err(
                        node,
                        format!("approximate = '{other}'; ONNX defines 'none' and 'tanh'"),
                    ))
                }
            },
            _ => Activation::LeakyRelu {
                slope: node.float("alpha", 0.01),
            },
        };
        match d.stage {
            Stage::Acc { .. } | Stage::Codes { layer: Some(_) } if self.float => {
                // No quantizer will follow: the activation is quantized by calibration.
                let index = self.push(activation_layer(f), LayerParams::Activation(None));
                return self.set(
                    node,
                    Sym::Data(Data {
                        shape: d.shape,
                        stage: Stage::Codes { layer: Some(index) },
                    }),
                );
            }
            // On codes, the function is applied by the table of the quantizer that follows
            // (e.g. ReLU then a quantizer after a residual add).
            Stage::Acc { .. } | Stage::Codes { layer: Some(_) } => {}
            _ => {
                return Err(err(
                    node,
                    "an activation function must read a Gemm or Conv output (possibly batch \
                     normalized), pooled values or a residual sum, and be followed by a quantizer",
                ))
            }
        };
        self.set(
            node,
            Sym::Data(Data {
                shape: d.shape,
                stage: Stage::Act { f },
            }),
        )
    }

    fn add(&mut self, node: &Node) -> Result<()> {
        let (a, b) = (self.sym(node, 0)?.clone(), self.sym(node, 1)?.clone());
        match (a, b) {
            (Sym::Data(d), Sym::Const(t, _)) | (Sym::Const(t, _), Sym::Data(d)) => {
                let Stage::Acc { layer } = d.stage else {
                    return Err(err(
                        node,
                        "adds a constant to something other than a layer's accumulators (a bias)",
                    ));
                };
                let LayerParams::Weighted(p) = &mut self.params[layer] else {
                    unreachable!("an accumulator comes from a weighted layer")
                };
                let out = p.bias.len();
                let ok = t.len() == out || t.len() == 1;
                if !ok || matches!(d.shape, Shape::Image(_)) && t.len() != 1 {
                    return Err(err(
                        node,
                        format!("adds {} values to {out} outputs", t.len()),
                    ));
                }
                for (j, b) in p.bias.iter_mut().enumerate() {
                    *b += t.data[if t.len() == 1 { 0 } else { j }] as f32;
                }
                self.set(node, Sym::Data(d))
            }
            (Sym::Data(x), Sym::Data(y)) => {
                let (Stage::Codes { layer: Some(lx) }, Stage::Codes { layer: Some(ly) }) =
                    (x.stage, y.stage)
                else {
                    return Err(err(
                        node,
                        "a residual Add sums two quantized activations: put an activation \
                         quantizer on both branches (one quantizer shared by both)",
                    ));
                };
                if x.shape != y.shape {
                    return Err(err(node, "adds tensors of different shapes"));
                }
                let last = self.layers.len() - 1;
                let from = match (lx == last, ly == last) {
                    (true, _) => ly,
                    (_, true) => lx,
                    _ => {
                        return Err(err(
                            node,
                            "neither addend is the layer just before the add; qfhe reads a \
                             residual Add right after one of its two branches",
                        ))
                    }
                };
                let index = self.push(LayerSpec::Add { from }, LayerParams::None);
                self.set(
                    node,
                    Sym::Data(Data {
                        shape: x.shape,
                        stage: Stage::Codes { layer: Some(index) },
                    }),
                )
            }
            _ => Err(err(
                node,
                "qfhe reads Add as a bias or as a residual sum of two activations",
            )),
        }
    }

    /// `Mul` of a layer's accumulators by a positive constant (a rescaling): folded into its
    /// weight steps and bias.
    fn mul(&mut self, node: &Node) -> Result<()> {
        let (a, b) = (self.sym(node, 0)?.clone(), self.sym(node, 1)?.clone());
        let (d, t) = match (a, b) {
            (Sym::Data(d), Sym::Const(t, _)) | (Sym::Const(t, _), Sym::Data(d)) => (d, t),
            _ => return Err(err(node, "qfhe reads Mul by a constant only")),
        };
        let (Stage::Acc { layer }, Some(k)) = (d.stage, t.scalar()) else {
            return Err(err(
                node,
                "qfhe reads Mul as one constant scaling a Gemm or Conv output",
            ));
        };
        let LayerParams::Weighted(p) = &mut self.params[layer] else {
            unreachable!("an accumulator comes from a weighted layer")
        };
        if !(k.is_finite() && k > 0.0) {
            return Err(err(
                node,
                format!("scales by {k}; only positive factors are read"),
            ));
        }
        for w in &mut p.weight {
            *w = (*w as f64 * k) as f32;
        }
        for b in &mut p.bias {
            *b = (*b as f64 * k) as f32;
        }
        if let Some(steps) = &mut p.step {
            for s in steps {
                *s = (*s as f64 * k) as f32;
            }
        }
        self.set(node, Sym::Data(d))
    }

    fn pool_window(&self, node: &Node, d: &Data) -> Result<usize> {
        let Shape::Image([_, h, w]) = d.shape else {
            return Err(err(node, "pools flat values"));
        };
        if node.op_type == "GlobalAveragePool" {
            if h != w {
                return Err(err(node, "global pooling of a non-square image"));
            }
            return Ok(h);
        }
        let kernel = node.ints("kernel_shape").unwrap_or_default().to_vec();
        let strides = node
            .ints("strides")
            .map(<[i64]>::to_vec)
            .unwrap_or(kernel.clone());
        let pads = node.ints("pads").map(<[i64]>::to_vec).unwrap_or(vec![0; 4]);
        match (&kernel[..], &strides[..]) {
            ([a, b], [c, e])
                if a == b
                    && b == c
                    && c == e
                    && (1..=1024).contains(a)
                    && pads.iter().all(|&p| p == 0)
                    && node.int("ceil_mode", 0) == 0 =>
            {
                Ok(*a as usize)
            }
            _ => Err(err(
                node,
                format!(
                    "kernel {kernel:?}, strides {strides:?}, pads {pads:?}: qfhe reads square \
                     windows with stride equal to the window and no padding"
                ),
            )),
        }
    }

    fn avg_pool(&mut self, node: &Node) -> Result<()> {
        let d = self.codes_input(node)?;
        let k = self.pool_window(node, &d)?;
        let Shape::Image([c, h, w]) = d.shape else {
            unreachable!("checked by pool_window")
        };
        if h % k != 0 || w % k != 0 {
            return Err(err(node, format!("a {k}×{k} window does not tile {h}×{w}")));
        }
        let shape = Shape::Image([c, h / k, w / k]);
        let index = self.push(LayerSpec::AvgPool { k }, LayerParams::None);
        self.set(
            node,
            Sym::Data(Data {
                shape,
                stage: Stage::Codes { layer: Some(index) },
            }),
        )
    }

    fn max_pool(&mut self, node: &Node) -> Result<()> {
        let d = self.codes_input(node)?;
        let k = self.pool_window(node, &d)?;
        let Shape::Image([c, h, w]) = d.shape else {
            unreachable!("checked by pool_window")
        };
        if k != 2 || h % 2 != 0 || w % 2 != 0 {
            return Err(err(
                node,
                format!("max pooling {k}×{k} of {h}×{w}: qfhe reads 2×2 windows tiling the image"),
            ));
        }
        let shape = Shape::Image([c, h / 2, w / 2]);
        let index = self.push(LayerSpec::MaxPool { k: 2 }, LayerParams::None);
        self.set(
            node,
            Sym::Data(Data {
                shape,
                stage: Stage::Codes { layer: Some(index) },
            }),
        )
    }

    /// The graph's output must be the last layer's float accumulators, a `linear` layer: the
    /// logits the client dequantizes.
    fn finish(self, output: &str) -> Result<Imported> {
        let last = self.layers.len().checked_sub(1);
        let ok = match self.syms.get(output) {
            Some(Sym::Data(Data {
                stage: Stage::Acc { layer },
                ..
            })) => Some(*layer) == last && matches!(self.layers[*layer], LayerSpec::Linear { .. }),
            _ => false,
        };
        if !ok {
            return Err(OnnxError::Graph(format!(
                "the graph's output '{output}' is not the float output of its last Gemm or \
                 MatMul: qfhe decrypts the last dense layer's accumulators as the logits, so the \
                 model must end with a dense layer without an output quantizer, activation or \
                 softmax"
            )));
        }
        let classes = match self.layers.last() {
            Some(LayerSpec::Linear { out }) => *out,
            _ => unreachable!("checked above"),
        };
        let bits = |f: &dyn Fn(&LayerParams) -> Option<u32>| self.params.iter().filter_map(f).max();
        let last = self.layers.len() - 1;
        let hidden_w = self.params[..last]
            .iter()
            .filter_map(|p| match p {
                LayerParams::Weighted(w) => Some(w.bits),
                _ => None,
            })
            .max();
        let out_w = match &self.params[last] {
            LayerParams::Weighted(w) => w.bits,
            _ => unreachable!("the last layer is linear"),
        };
        let a_bits = bits(&|p| match p {
            LayerParams::Activation(Some(a)) => Some(a.bits),
            _ => None,
        });
        let in_bits = self
            .input
            .map(|q| 32 - (q.qmax as u32).leading_zeros())
            .unwrap_or(self.float_bits.in_bits);
        let quant = if self.float {
            self.float_bits
        } else {
            QuantSpec {
                w_bits: hidden_w.unwrap_or(out_w),
                out_w_bits: out_w,
                a_bits: a_bits.unwrap_or(self.float_bits.a_bits),
                in_bits,
            }
        };
        let mut layers_params = self.params;
        if self.float {
            for (i, p) in layers_params.iter_mut().enumerate() {
                if let LayerParams::Weighted(w) = p {
                    w.bits = if i == last {
                        quant.out_w_bits
                    } else {
                        quant.w_bits
                    };
                }
            }
        }
        let input = match self.input_shape {
            Shape::Flat(n) => vec![n],
            Shape::Image([c, h, w]) => vec![c, h, w],
        };
        let spec = ModelSpec {
            input,
            classes,
            quant,
            layers: self.layers,
        };
        let params = ModelParams {
            input: self.input,
            layers: layers_params,
        };
        params.validate(&spec)?;
        Ok(Imported {
            spec,
            params,
            notes: self.notes,
            quantized: !self.float,
        })
    }
}
