//! Model descriptions: a sequential quantized network as a list of layers, read from a TOML or
//! JSON file or taken from a preset, with its shapes inferred and every field checked.
//!
//! ```toml
//! input = [1, 28, 28]          # [channels, height, width], or [features]
//! classes = 10
//!
//! [quant]                      # optional; these are the defaults
//! w_bits = 3                   # weights of every layer but the last
//! out_w_bits = 4               # weights of the last layer (decrypted, no PBS after it)
//! a_bits = 3                   # activations
//! in_bits = 3                  # inputs (pixels on [0, 1])
//!
//! [[layers]]
//! kind = "conv2d"
//! out_channels = 8
//! kernel = 5
//! stride = 2                   # default 1
//! padding = 0                  # default 0
//!
//! [[layers]]
//! kind = "relu"
//!
//! [[layers]]
//! kind = "flatten"
//!
//! [[layers]]
//! kind = "linear"
//! out = 10                     # the last layer: its accumulators are the logits
//! ```
//!
//! Layer kinds: `linear { out }`, `conv2d { out_channels, kernel, stride, padding }`,
//! `batch_norm` (right after a `linear` or `conv2d`; folded into it before QAT), the activations
//! `relu`, `leaky_relu { slope }`, `sigmoid`, `tanh`, `gelu` (tanh form), `gelu_erf`, `silu`,
//! `identity` (each a quantizer to `a_bits` codes, one PBS per value; `sign`, codes ±1, for
//! binarized models trained elsewhere), `avg_pool { k }` (a sum folded into the next weighted
//! layer, no PBS), `max_pool { k = 2 }` (6 PBS per window), `flatten`, and `add { from }`: the
//! element-wise sum of the current values and the output of layer `from` (0-based index into
//! `layers`), a residual connection of two tensors of equal shape.
//!
//! The rules a model must follow, checked by [`ModelSpec::validate`]: weighted layers read
//! activations (or the input), never another weighted layer's raw accumulators; the last layer
//! is a `linear` with `classes` outputs; `linear` reads flat values (`flatten` first) and
//! `conv2d`, the pools and `batch_norm` after a conv read images.

use serde::{Deserialize, Serialize};

/// Why a model description cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The text is neither valid TOML nor valid JSON of a model description.
    #[error("not a model description ({format}): {message}")]
    Parse {
        /// `TOML` or `JSON`.
        format: &'static str,
        /// What the parser said.
        message: String,
    },
    /// A field is out of its range.
    #[error("{field} = {value} is out of range: {bound}")]
    Range {
        /// The field, e.g. `layers[2].kernel`.
        field: String,
        /// Its value.
        value: String,
        /// The range it must be in, or what to change.
        bound: String,
    },
    /// A layer does not fit the values it reads.
    #[error("layers[{index}] ({kind}): {message}")]
    Layer {
        /// 0-based index into `layers`.
        index: usize,
        /// Its kind.
        kind: &'static str,
        /// What is wrong and what to change.
        message: String,
    },
    /// No preset of that name.
    #[error("no model preset '{0}': use mlp, cnn or lenet, or give a model file")]
    UnknownPreset(String),
}

/// Bit widths of a model's quantizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuantSpec {
    /// Weight bits of every weighted layer but the last, in `[2, 8]`.
    pub w_bits: u32,
    /// Weight bits of the last layer, in `[2, 8]`.
    pub out_w_bits: u32,
    /// Activation bits, in `[2, 8]`.
    pub a_bits: u32,
    /// Input bits, in `[1, 8]`.
    pub in_bits: u32,
}

impl Default for QuantSpec {
    fn default() -> Self {
        Self {
            w_bits: 3,
            out_w_bits: 4,
            a_bits: 3,
            in_bits: 3,
        }
    }
}

impl QuantSpec {
    /// Check the bit widths: weights and activations in `[2, 8]`, inputs in `[1, 8]`. Errors
    /// name the field as `{prefix}w_bits` etc.
    ///
    /// # Errors
    /// [`ModelError::Range`] for the first width out of range.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        for (field, bits, lo) in [
            ("w_bits", self.w_bits, 2),
            ("out_w_bits", self.out_w_bits, 2),
            ("a_bits", self.a_bits, 2),
            ("in_bits", self.in_bits, 1),
        ] {
            if !(lo..=8).contains(&bits) {
                return Err(range(
                    format!("{prefix}{field}"),
                    bits,
                    &format!("[{lo}, 8] bits"),
                ));
            }
        }
        Ok(())
    }
}

/// A quantized activation: its function, applied before the quantizer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(0, z)`.
    Relu,
    /// `z` for `z ≥ 0`, `slope · z` below.
    LeakyRelu {
        /// Slope for negative inputs, in `[0, 1)`.
        slope: f32,
    },
    /// `1 / (1 + e^−z)`.
    Sigmoid,
    /// `tanh(z)`.
    Tanh,
    /// `z · Φ(z)` (Gaussian error linear unit, tanh approximation as in PyTorch's
    /// `approximate="tanh"`).
    Gelu,
    /// `z · Φ(z) = z/2 · (1 + erf(z/√2))`, the exact Gaussian error linear unit (PyTorch's
    /// default `approximate="none"`; erf from `libm`, a port of FreeBSD's msun).
    GeluErf,
    /// `z · sigmoid(z)` (SiLU, swish).
    Silu,
    /// `z`.
    Identity,
    /// `+1` for `z ≥ 0`, `−1` below: a bipolar (binarized) activation whose codes are `±1`,
    /// worth `±step` (QONNX `BipolarQuant`, Brevitas's binary activation quantizers). Its
    /// gradient is zero almost everywhere: it is read from models trained elsewhere (with a
    /// straight-through estimator), not trained from scratch by qfhe.
    Sign,
}

impl Activation {
    /// The function in `f32`.
    pub fn apply(self, z: f32) -> f32 {
        match self {
            Self::Relu => z.max(0.0),
            Self::LeakyRelu { slope } => {
                if z >= 0.0 {
                    z
                } else {
                    slope * z
                }
            }
            Self::Sigmoid => 1.0 / (1.0 + (-z).exp()),
            Self::Tanh => z.tanh(),
            Self::Gelu => {
                let c = (2.0 / std::f32::consts::PI).sqrt();
                0.5 * z * (1.0 + (c * (z + 0.044_715 * z * z * z)).tanh())
            }
            Self::GeluErf => 0.5 * z * (1.0 + libm::erff(z * std::f32::consts::FRAC_1_SQRT_2)),
            Self::Silu => z / (1.0 + (-z).exp()),
            Self::Identity => z,
            Self::Sign => 1f32.copysign(z + 0.0),
        }
    }

    /// The function's steepest slope, at least 1: a table step after it can be this many
    /// times narrower, in pre-activation units, than its output step, so training bounds the
    /// accumulator with the step divided by it. GELU (both forms) peaks at 1.129 near z = 1.41,
    /// SiLU at 1.0998 near z = 2.40 (maxima of the derivatives, rounded up); the others are at
    /// most 1.
    pub fn max_slope(self) -> f32 {
        match self {
            Self::Gelu | Self::GeluErf => 1.13,
            Self::Silu => 1.10,
            _ => 1.0,
        }
    }

    /// Whether the function can be negative: its codes are then signed.
    pub fn signed(self) -> bool {
        !matches!(self, Self::Relu | Self::Sigmoid)
    }

    /// The codes `[lo, hi]` of a `bits`-bit quantizer after this function (code 0 is the value
    /// 0, no zero point): `[0, 2^b − 1]` for ReLU and sigmoid; `[−2^(b−1), 2^(b−1) − 1]` for
    /// tanh, leaky ReLU and the identity; `[−2^(b−2), 3·2^(b−2) − 1]` for GELU and SiLU, whose
    /// negative part is small (minimum −0.17 and −0.28), so a quarter of the codes cover it;
    /// `[−1, 1]` for the sign, whatever `bits`.
    pub fn code_range(self, bits: u32) -> (i32, i32) {
        let levels = 1i32 << bits;
        match self {
            Self::Relu | Self::Sigmoid => (0, levels - 1),
            Self::Tanh | Self::LeakyRelu { .. } | Self::Identity => (-levels / 2, levels / 2 - 1),
            Self::Gelu | Self::GeluErf | Self::Silu => (-levels / 4, 3 * levels / 4 - 1),
            Self::Sign => (-1, 1),
        }
    }

    /// The quantized activation of a dequantized pre-activation `z`:
    /// `clamp(round(f(z) / s_out), lo, hi)`, ties to even, in `f32` in this order (the QAT
    /// forward reads tables built by this function, so the two agree exactly). The sign's
    /// codes are its values `±1` (clamped to the range), whatever `s_out`.
    pub fn code(self, z: f32, s_out: f32, (lo, hi): (i32, i32)) -> i32 {
        if self == Self::Sign {
            return (self.apply(z) as i32).clamp(lo, hi);
        }
        crate::scheme::round_ties_even(self.apply(z) / s_out).clamp(lo as f32, hi as f32) as i32
    }

    /// The function in `f64`.
    pub fn apply_f64(self, z: f64) -> f64 {
        match self {
            Self::Relu => z.max(0.0),
            Self::LeakyRelu { slope } => {
                if z >= 0.0 {
                    z
                } else {
                    slope as f64 * z
                }
            }
            Self::Sigmoid => 1.0 / (1.0 + (-z).exp()),
            Self::Tanh => z.tanh(),
            Self::Gelu => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * z * (1.0 + (c * (z + 0.044_715 * z * z * z)).tanh())
            }
            Self::GeluErf => 0.5 * z * (1.0 + libm::erf(z * std::f64::consts::FRAC_1_SQRT_2)),
            Self::Silu => z / (1.0 + (-z).exp()),
            Self::Identity => z,
            Self::Sign => 1f64.copysign(z + 0.0),
        }
    }

    /// [`Activation::code`] in `f64`: for a model trained elsewhere, whose framework rounds the
    /// exact value (e.g. a pooled sum requantized by a power of two lands exactly on a tie,
    /// which `f32` products can move off).
    pub fn code_f64(self, z: f64, s_out: f64, (lo, hi): (i32, i32)) -> i32 {
        if self == Self::Sign {
            return (self.apply_f64(z) as i32).clamp(lo, hi);
        }
        (self.apply_f64(z) / s_out)
            .round_ties_even()
            .clamp(lo as f64, hi as f64) as i32
    }
}

fn one() -> usize {
    1
}

fn two() -> usize {
    2
}

/// One layer of a [`ModelSpec`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// A dense layer with `out` outputs.
    Linear {
        /// Outputs.
        out: usize,
    },
    /// A 2-D convolution with square kernels.
    Conv2d {
        /// Output channels.
        out_channels: usize,
        /// Kernel size `k` (`k × k`).
        kernel: usize,
        /// Stride.
        #[serde(default = "one")]
        stride: usize,
        /// Zero padding on each side.
        #[serde(default)]
        padding: usize,
    },
    /// Batch normalization of the preceding weighted layer's outputs (folded into it).
    BatchNorm,
    /// `max(0, z)`, quantized.
    Relu,
    /// Leaky ReLU, quantized.
    LeakyRelu {
        /// Slope for negative inputs, in `[0, 1)`.
        #[serde(default = "default_slope")]
        slope: f32,
    },
    /// Sigmoid, quantized.
    Sigmoid,
    /// tanh, quantized.
    Tanh,
    /// GELU (tanh form), quantized.
    Gelu,
    /// GELU (erf form, exact), quantized.
    GeluErf,
    /// SiLU, quantized.
    Silu,
    /// The identity, quantized (a requantization).
    Identity,
    /// The sign `±1` (bipolar codes worth `±step`), for models trained elsewhere.
    Sign,
    /// `k × k` average pooling with stride `k`.
    AvgPool {
        /// Window.
        k: usize,
    },
    /// `k × k` max pooling with stride `k` (only `k = 2`).
    MaxPool {
        /// Window.
        #[serde(default = "two")]
        k: usize,
    },
    /// Images to flat values (channel-major, then rows).
    Flatten,
    /// Element-wise sum with the output of layer `from`.
    Add {
        /// 0-based index of an earlier layer.
        from: usize,
    },
}

fn default_slope() -> f32 {
    0.01
}

impl LayerSpec {
    /// The `kind` name, as in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Linear { .. } => "linear",
            Self::Conv2d { .. } => "conv2d",
            Self::BatchNorm => "batch_norm",
            Self::Relu => "relu",
            Self::LeakyRelu { .. } => "leaky_relu",
            Self::Sigmoid => "sigmoid",
            Self::Tanh => "tanh",
            Self::Gelu => "gelu",
            Self::GeluErf => "gelu_erf",
            Self::Silu => "silu",
            Self::Identity => "identity",
            Self::Sign => "sign",
            Self::AvgPool { .. } => "avg_pool",
            Self::MaxPool { .. } => "max_pool",
            Self::Flatten => "flatten",
            Self::Add { .. } => "add",
        }
    }

    /// The activation, for activation layers.
    pub fn activation(&self) -> Option<Activation> {
        Some(match *self {
            Self::Relu => Activation::Relu,
            Self::LeakyRelu { slope } => Activation::LeakyRelu { slope },
            Self::Sigmoid => Activation::Sigmoid,
            Self::Tanh => Activation::Tanh,
            Self::Gelu => Activation::Gelu,
            Self::GeluErf => Activation::GeluErf,
            Self::Silu => Activation::Silu,
            Self::Identity => Activation::Identity,
            Self::Sign => Activation::Sign,
            _ => return None,
        })
    }

    /// Whether the layer has weights (`linear`, `conv2d`).
    pub fn weighted(&self) -> bool {
        matches!(self, Self::Linear { .. } | Self::Conv2d { .. })
    }
}

/// The shape of the values between two layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shape {
    /// `n` flat values.
    Flat(usize),
    /// `[channels, height, width]`.
    Image([usize; 3]),
}

impl Shape {
    /// Number of values.
    pub fn len(&self) -> usize {
        match *self {
            Self::Flat(n) => n,
            Self::Image([c, h, w]) => c * h * w,
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Largest number of values between two layers (and of inputs).
pub const MAX_VALUES: usize = 1 << 22;
/// Largest number of layers.
pub const MAX_LAYERS: usize = 256;

/// A sequential quantized network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Input shape: `[features]` or `[channels, height, width]`.
    pub input: Vec<usize>,
    /// Output classes (the last layer's outputs).
    pub classes: usize,
    /// Bit widths.
    #[serde(default)]
    pub quant: QuantSpec,
    /// The layers, input to output.
    pub layers: Vec<LayerSpec>,
}

fn range(field: String, value: impl ToString, bound: &str) -> ModelError {
    ModelError::Range {
        field,
        value: value.to_string(),
        bound: bound.to_owned(),
    }
}

impl ModelSpec {
    /// Parse a TOML description, then [validate](ModelSpec::validate) it.
    ///
    /// # Errors
    /// [`ModelError::Parse`] for text that is not a model description, else as
    /// [`ModelSpec::validate`].
    pub fn from_toml(text: &str) -> Result<Self, ModelError> {
        let spec: Self = toml::from_str(text).map_err(|e| ModelError::Parse {
            format: "TOML",
            message: e.message().to_owned(),
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Parse a JSON description, then [validate](ModelSpec::validate) it.
    ///
    /// # Errors
    /// As [`ModelSpec::from_toml`].
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let spec: Self = serde_json::from_str(text).map_err(|e| ModelError::Parse {
            format: "JSON",
            message: e.to_string(),
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// The description as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a model description is plain data")
    }

    /// A preset by name: `mlp` (784-128-10), `cnn` (conv 1→24 7×7 stride 4, batch norm,
    /// dense 256) or `lenet` (conv 1→12 5×5 stride 2, conv 12→24 3×3 stride 2, each with batch
    /// norm, dense 128), for `input` images `[c, h, w]` and `classes`.
    ///
    /// # Errors
    /// [`ModelError::UnknownPreset`] for another name; as [`ModelSpec::validate`] when the
    /// preset does not fit `input`.
    pub fn preset(name: &str, input: [usize; 3], classes: usize) -> Result<Self, ModelError> {
        use LayerSpec::*;
        let layers = match name {
            "mlp" => vec![Flatten, Linear { out: 128 }, Relu, Linear { out: classes }],
            "cnn" => vec![
                Conv2d {
                    out_channels: 24,
                    kernel: 7,
                    stride: 4,
                    padding: 0,
                },
                BatchNorm,
                Relu,
                Flatten,
                Linear { out: 256 },
                Relu,
                Linear { out: classes },
            ],
            "lenet" => vec![
                Conv2d {
                    out_channels: 12,
                    kernel: 5,
                    stride: 2,
                    padding: 0,
                },
                BatchNorm,
                Relu,
                Conv2d {
                    out_channels: 24,
                    kernel: 3,
                    stride: 2,
                    padding: 0,
                },
                BatchNorm,
                Relu,
                Flatten,
                Linear { out: 128 },
                Relu,
                Linear { out: classes },
            ],
            other => return Err(ModelError::UnknownPreset(other.to_owned())),
        };
        let spec = Self {
            input: input.to_vec(),
            classes,
            quant: QuantSpec::default(),
            layers,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Check every field and every layer against the values it reads; returns the shape after
    /// each layer (`layers.len()` entries).
    ///
    /// # Errors
    /// [`ModelError::Range`] for a field out of range, [`ModelError::Layer`] for a layer that
    /// does not fit what it reads, naming the layer and what to change.
    pub fn validate(&self) -> Result<Vec<Shape>, ModelError> {
        self.check_fields()?;
        let mut shape = match self.input[..] {
            [n] => Shape::Flat(n),
            [c, h, w] => Shape::Image([c, h, w]),
            _ => unreachable!("checked by check_fields"),
        };
        let mut shapes: Vec<Shape> = Vec::with_capacity(self.layers.len());
        // What the current values are: raw accumulators of a weighted layer (only an
        // activation, batch norm or the end may follow) or codes.
        let mut after_weighted = false;
        // Per layer: whether its output is the codes of an activation, unchanged (flatten
        // aside): `add` and `max_pool` read only such values.
        let mut direct: Vec<Option<Activation>> = Vec::with_capacity(self.layers.len());
        for (index, layer) in self.layers.iter().enumerate() {
            let current = index.checked_sub(1).and_then(|i| direct[i]);
            let kind = layer.kind();
            let err = |message: String| ModelError::Layer {
                index,
                kind,
                message,
            };
            let last = index + 1 == self.layers.len();
            if after_weighted
                && !(layer.activation().is_some() || matches!(layer, LayerSpec::BatchNorm))
            {
                return Err(err(
                    "it reads the raw accumulators of the weighted layer before it; only an activation (e.g. relu) or batch_norm may follow a linear or conv2d layer".into(),
                ));
            }
            shape = match *layer {
                LayerSpec::Linear { out } => {
                    let Shape::Flat(_) = shape else {
                        return Err(err(format!(
                            "it reads {shape:?}; add a flatten layer before it"
                        )));
                    };
                    Shape::Flat(out)
                }
                LayerSpec::Conv2d {
                    out_channels,
                    kernel,
                    stride,
                    padding,
                } => {
                    let Shape::Image([_, h, w]) = shape else {
                        return Err(err(format!("it reads flat values ({shape:?}), not images")));
                    };
                    let out = |n: usize| {
                        n.checked_add(2 * padding)
                            .and_then(|m| m.checked_sub(kernel))
                            .map(|m| m / stride + 1)
                    };
                    match (out(h), out(w)) {
                        (Some(oh), Some(ow)) => Shape::Image([out_channels, oh, ow]),
                        _ => {
                            return Err(err(format!(
                                "kernel {kernel} is larger than its {h}x{w} input plus padding {padding}"
                            )))
                        }
                    }
                }
                LayerSpec::BatchNorm => {
                    let follows_weighted = index > 0 && self.layers[index - 1].weighted();
                    if !follows_weighted {
                        return Err(err(
                            "batch norm is folded into the linear or conv2d layer right before it; place it there".into(),
                        ));
                    }
                    shape
                }
                LayerSpec::AvgPool { k } | LayerSpec::MaxPool { k } => {
                    let Shape::Image([c, h, w]) = shape else {
                        return Err(err("pooling reads images; place it before flatten".into()));
                    };
                    let unsigned = current.is_some_and(|a| !a.signed());
                    if matches!(layer, LayerSpec::MaxPool { .. }) && !unsigned {
                        return Err(err(
                            "max pooling reads the codes of a relu or sigmoid activation directly; place it right after one".into(),
                        ));
                    }
                    if matches!(layer, LayerSpec::MaxPool { .. }) && k != 2 {
                        return Err(err(format!(
                            "max pooling is lowered for 2x2 windows only (k = {k}); use k = 2 or avg_pool"
                        )));
                    }
                    if h / k == 0 || w / k == 0 {
                        return Err(err(format!("window {k} is larger than its {h}x{w} input")));
                    }
                    Shape::Image([c, h / k, w / k])
                }
                LayerSpec::Flatten => Shape::Flat(shape.len()),
                LayerSpec::Add { from } => {
                    if from >= index {
                        return Err(err(format!(
                            "from = {from} must name an earlier layer (0 to {})",
                            index.saturating_sub(1)
                        )));
                    }
                    if shapes[from] != shape {
                        return Err(err(format!(
                            "it adds layer {from}'s {:?} to {shape:?}; the shapes must be equal",
                            shapes[from]
                        )));
                    }
                    if direct[from].is_none() {
                        return Err(err(format!(
                            "layer {from} ({}) does not output an activation's codes; a residual add reads the output of an activation layer (or a flatten right after one)",
                            self.layers[from].kind()
                        )));
                    }
                    if current.is_none() {
                        return Err(err(format!(
                            "the layer before it ({}) does not output an activation's codes; place an activation (e.g. identity) before the add",
                            self.layers[index - 1].kind()
                        )));
                    }
                    if matches!(self.layers.get(from + 1), Some(LayerSpec::MaxPool { .. })) {
                        return Err(err(format!(
                            "layer {from}'s output also feeds a max_pool, whose stages must be its only reader; add from another activation"
                        )));
                    }
                    shape
                }
                _ => shape, // activations
            };
            if shape.len() > MAX_VALUES {
                return Err(err(format!(
                    "it makes {} values, at most {MAX_VALUES} are supported",
                    shape.len()
                )));
            }
            if layer.weighted() {
                after_weighted = true;
            } else if layer.activation().is_some() {
                after_weighted = false;
            }
            direct.push(match layer {
                LayerSpec::Flatten => current,
                other => other.activation(),
            });
            if last {
                let is_output = matches!(layer, LayerSpec::Linear { out } if *out == self.classes);
                if !is_output {
                    return Err(err(format!(
                        "the last layer must be a linear layer with {} outputs (classes)",
                        self.classes
                    )));
                }
            }
            shapes.push(shape);
        }
        Ok(shapes)
    }

    fn check_fields(&self) -> Result<(), ModelError> {
        self.quant.validate("quant.")?;
        let ok_shape = matches!(self.input.len(), 1 | 3)
            && self.input.iter().all(|&d| d >= 1)
            && self
                .input
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_some_and(|n| n <= MAX_VALUES);
        if !ok_shape {
            return Err(range(
                "input".into(),
                format!("{:?}", self.input),
                &format!("[features] or [channels, height, width], each ≥ 1, at most {MAX_VALUES} values"),
            ));
        }
        if !(2..=1 << 16).contains(&self.classes) {
            return Err(range("classes".into(), self.classes, "[2, 65536]"));
        }
        if self.layers.is_empty() || self.layers.len() > MAX_LAYERS {
            return Err(range(
                "layers".into(),
                self.layers.len(),
                &format!("1 to {MAX_LAYERS} layers"),
            ));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let f = |name: &str| format!("layers[{i}].{name}");
            let positive = |name: &str, v: usize, max: usize| {
                if (1..=max).contains(&v) {
                    Ok(())
                } else {
                    Err(range(f(name), v, &format!("[1, {max}]")))
                }
            };
            match *layer {
                LayerSpec::Linear { out } => positive("out", out, MAX_VALUES)?,
                LayerSpec::Conv2d {
                    out_channels,
                    kernel,
                    stride,
                    padding,
                } => {
                    positive("out_channels", out_channels, 1 << 14)?;
                    positive("kernel", kernel, 64)?;
                    positive("stride", stride, 64)?;
                    if padding > 64 {
                        return Err(range(f("padding"), padding, "[0, 64]"));
                    }
                }
                LayerSpec::AvgPool { k } | LayerSpec::MaxPool { k } => positive("k", k, 64)?,
                LayerSpec::LeakyRelu { slope } if !(0.0..1.0).contains(&slope) => {
                    return Err(range(f("slope"), slope, "[0, 1)"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The model with its dense tail replaced: everything before the first `linear` layer that
    /// follows the last `flatten` (or the start) is kept, then `linear(w) → relu` for each width
    /// in `hidden`, then the `linear(classes)` output.
    ///
    /// # Errors
    /// As [`ModelSpec::validate`]; [`ModelError::Range`] for a width of 0.
    pub fn with_hidden(&self, hidden: &[usize]) -> Result<Self, ModelError> {
        if let Some(&w) = hidden.iter().find(|&&w| w == 0 || w > MAX_VALUES) {
            return Err(range(
                "hidden".into(),
                w,
                &format!("widths in [1, {MAX_VALUES}]"),
            ));
        }
        let flatten = self.layers.iter().rposition(|l| *l == LayerSpec::Flatten);
        let tail = flatten.map_or(0, |f| f + 1);
        let first_linear = self.layers[tail..]
            .iter()
            .position(|l| matches!(l, LayerSpec::Linear { .. }))
            .map_or(self.layers.len(), |p| tail + p);
        let mut layers = self.layers[..first_linear].to_vec();
        for &out in hidden {
            layers.extend([LayerSpec::Linear { out }, LayerSpec::Relu]);
        }
        layers.push(LayerSpec::Linear { out: self.classes });
        let spec = Self {
            layers,
            ..self.clone()
        };
        spec.validate()?;
        Ok(spec)
    }

    /// The model without its `batch_norm` layers (`add` indices renumbered).
    pub fn without_batch_norm(&self) -> Self {
        let kept: Vec<usize> = (0..self.layers.len())
            .filter(|&i| self.layers[i] != LayerSpec::BatchNorm)
            .collect();
        let new_index = |old: usize| kept.iter().position(|&k| k >= old).unwrap_or(0);
        let layers = kept
            .iter()
            .map(|&i| match self.layers[i] {
                LayerSpec::Add { from } => LayerSpec::Add {
                    from: new_index(from),
                },
                ref other => other.clone(),
            })
            .collect();
        Self {
            layers,
            ..self.clone()
        }
    }

    /// The architecture in one line, e.g. `1x28x28 conv24k7s4 bn relu flatten linear256 relu
    /// linear10`.
    pub fn arch(&self) -> String {
        let mut parts = vec![self
            .input
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x")];
        for l in &self.layers {
            parts.push(match *l {
                LayerSpec::Linear { out } => format!("linear{out}"),
                LayerSpec::Conv2d {
                    out_channels,
                    kernel,
                    stride,
                    padding,
                } => format!("conv{out_channels}k{kernel}s{stride}p{padding}"),
                LayerSpec::AvgPool { k } => format!("avgpool{k}"),
                LayerSpec::MaxPool { k } => format!("maxpool{k}"),
                LayerSpec::Add { from } => format!("add{from}"),
                LayerSpec::BatchNorm => "bn".into(),
                ref other => other.kind().into(),
            });
        }
        parts.join(" ")
    }
}
