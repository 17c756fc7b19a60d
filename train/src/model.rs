//! The quantized MLP.

pub use crate::dense::HiddenTrace;
use crate::dense::{dense_stack_forward, DenseInput};
use crate::qat::PhaseNoise;
use burn::prelude::*;
use qfhe_core::{ModelError, QuantSpec};
use qfhe_quant::encoding::InputKind;
use qfhe_quant::layers::{ActQuant, QuantLinear};
use qfhe_quant::scheme::{input_scale, unsigned_qmax};
use qfhe_quant::{EncodingConfig, EncodingError};

/// Architecture and quantization of an MLP.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MlpConfig {
    /// Input features (784 for MNIST).
    pub inputs: usize,
    /// Hidden layer widths; each hidden neuron costs one PBS.
    pub hidden: Vec<usize>,
    /// Output classes.
    pub classes: usize,
    /// Weight bit width of the hidden layers (signed symmetric, per output channel).
    pub w_bits: u32,
    /// Weight bit width of the output layer (no PBS follows it, so it may be wider).
    pub out_w_bits: u32,
    /// Activation bit width (unsigned, after ReLU).
    pub a_bits: u32,
    /// Input bit width (pixels on `[0, 1]`).
    pub in_bits: u32,
    /// The PBS encoding the QAT forward reproduces.
    pub encoding: EncodingConfig,
}

/// Check bit widths ([`QuantSpec::validate`]): weights and activations in `[2, 8]`, inputs in
/// `[1, 8]`.
///
/// # Errors
/// [`ModelError::Range`] naming the field.
pub fn check_bits(
    w_bits: u32,
    out_w_bits: u32,
    a_bits: u32,
    in_bits: u32,
) -> Result<(), ModelError> {
    QuantSpec {
        w_bits,
        out_w_bits,
        a_bits,
        in_bits,
    }
    .validate("")
}

impl MlpConfig {
    /// Check widths and bit widths (a configuration read from a file may hold anything).
    ///
    /// # Errors
    /// [`ModelError::Range`] naming the field and its bound.
    pub fn validate(&self) -> Result<(), ModelError> {
        let widths = self.widths();
        if let Some(&d) = widths.iter().find(|&&d| d == 0 || d > 1 << 22) {
            return Err(ModelError::Range {
                field: "inputs, hidden or classes".into(),
                value: d.to_string(),
                bound: "widths in [1, 4194304]".into(),
            });
        }
        check_bits(self.w_bits, self.out_w_bits, self.a_bits, self.in_bits)
    }

    /// Layer widths from input to output, e.g. `[784, 128, 10]`.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.inputs];
        w.extend(&self.hidden);
        w.push(self.classes);
        w
    }

    /// A name like `784-128-10`.
    pub fn arch(&self) -> String {
        self.widths()
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("-")
    }
}

/// An MLP of fake-quantized layers: `layers[l]` is followed by `acts[l]` for every hidden layer.
#[derive(Module, Debug)]
pub struct QMlp {
    /// Linear layers, input to output.
    pub layers: Vec<QuantLinear>,
    /// One activation quantizer per hidden layer.
    pub acts: Vec<ActQuant>,
    /// Architecture and quantization.
    #[module(skip)]
    pub config: MlpConfig,
}

/// What a QAT forward pass used, layer by layer.
#[derive(Debug, Clone)]
pub struct QatTrace {
    /// One entry per hidden layer.
    pub hidden: Vec<HiddenTrace>,
    /// The output layer's integer weight codes `[d_in, classes]`.
    pub output_codes: Tensor<2>,
}

impl QMlp {
    /// A randomly initialised model on `device`.
    pub fn new(config: MlpConfig, device: &Device) -> Self {
        let widths = config.widths();
        let n = widths.len() - 1;
        let layers = (0..n)
            .map(|l| {
                let bits = if l + 1 == n {
                    config.out_w_bits
                } else {
                    config.w_bits
                };
                QuantLinear::new(widths[l], widths[l + 1], bits, device)
            })
            .collect();
        let acts = (0..n - 1)
            .map(|_| ActQuant::new(config.a_bits, device))
            .collect();
        Self {
            layers,
            acts,
            config,
        }
    }

    /// The device holding the parameters.
    pub fn device(&self) -> Device {
        self.layers[0].weight.val().device()
    }

    /// Float forward on `[batch, inputs]` pixels in `[0, 1]`; returns logits and the hidden
    /// pre-activations (for calibration).
    pub fn forward_float(&self, x: Tensor<2>) -> (Tensor<2>, Vec<Tensor<2>>) {
        let mut h = x;
        let mut pre = Vec::new();
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let z = layer.forward_float(h);
            if l == last {
                return (z, pre);
            }
            pre.push(z.clone());
            h = burn::tensor::activation::relu(z);
        }
        unreachable!("an MLP has at least one layer")
    }

    /// Quantized forward on input codes `[batch, inputs]`: logits `[batch, classes]`.
    ///
    /// Every hidden layer computes the integer accumulator, rounds it to the slot grid of the
    /// encoding chosen from its current weights, dequantizes with `s_in · s_w` and the float bias,
    /// and quantizes the activation: exactly the circuit's semantics.
    ///
    /// # Errors
    /// [`EncodingError`] when a layer's worst-case range cannot be encoded.
    pub fn forward_qat(&self, x_codes: Tensor<2>) -> Result<Tensor<2>, EncodingError> {
        self.forward_qat_traced(x_codes).map(|(logits, _)| logits)
    }

    /// [`QMlp::forward_qat_with`] on the exact circuit.
    ///
    /// # Errors
    /// As [`QMlp::forward_qat`].
    pub fn forward_qat_traced(
        &self,
        x_codes: Tensor<2>,
    ) -> Result<(Tensor<2>, QatTrace), EncodingError> {
        self.forward_qat_with(x_codes, PhaseNoise::Exact)
    }

    /// [`QMlp::forward_qat`], also returning each hidden layer's codes, encoding and outputs,
    /// and the output layer's weight codes.
    ///
    /// # Errors
    /// As [`QMlp::forward_qat`].
    pub fn forward_qat_with(
        &self,
        x_codes: Tensor<2>,
        noise: PhaseNoise,
    ) -> Result<(Tensor<2>, QatTrace), EncodingError> {
        let device = x_codes.device();
        let cfg = &self.config;
        let input = DenseInput {
            codes: x_codes,
            qmax: unsigned_qmax(cfg.in_bits),
            step: Tensor::<1>::from_floats([input_scale(cfg.in_bits)], &device),
            step_value: input_scale(cfg.in_bits),
            kind: InputKind::Fresh,
            noise_gain: 1.0,
        };
        let (output, hidden) = self.layers.split_last().expect("an MLP has a layer");
        let dense = dense_stack_forward(hidden, &self.acts, output, input, &cfg.encoding, noise)?;
        Ok((
            dense.logits,
            QatTrace {
                hidden: dense.hidden,
                output_codes: dense.output_codes,
            },
        ))
    }

    /// The per-layer input scales `s_in` (input quantizer, then each activation quantizer).
    pub fn input_scales(&self) -> Vec<f32> {
        let mut v = vec![input_scale(self.config.in_bits)];
        v.extend(self.acts.iter().map(|a| a.step_value()));
        v
    }
}

impl crate::qat::QatModel for QMlp {
    fn inputs(&self) -> usize {
        self.config.inputs
    }

    fn classes(&self) -> usize {
        self.config.classes
    }

    fn in_bits(&self) -> u32 {
        self.config.in_bits
    }

    fn device(&self) -> Device {
        QMlp::device(self)
    }

    fn forward_float(&self, x: Tensor<2>) -> (Tensor<2>, Vec<Tensor<2>>) {
        QMlp::forward_float(self, x)
    }

    fn forward_qat(
        &self,
        x_codes: Tensor<2>,
        noise: PhaseNoise,
    ) -> Result<Tensor<2>, EncodingError> {
        self.forward_qat_with(x_codes, noise)
            .map(|(logits, _)| logits)
    }

    fn init_quantizers(&mut self, pre: Vec<Tensor<2>>) {
        for layer in &mut self.layers {
            layer.init_scales();
        }
        for (act, z) in self.acts.iter_mut().zip(pre) {
            act.calibrate(z);
        }
    }
}
