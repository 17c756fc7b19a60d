//! The quantized MLP.

use burn::prelude::*;
use qfhe_quant::encoding::{acc_per_step, choose_layer_encoding, step_shortfall, InputKind};
use qfhe_quant::layers::{round_to_slots, row_stats, AccumulatorBound, ActQuant, QuantLinear};
use qfhe_quant::scheme::{input_scale, unsigned_qmax};
use qfhe_quant::{EncodingConfig, EncodingError, LayerEncoding};

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

impl MlpConfig {
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

    /// The A2Q bound's allowed output steps.
    fn max_steps(&self) -> f32 {
        self.config.encoding.max_range_steps() as f32
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

    /// [`QMlp::forward_qat`], also returning each hidden layer's codes, encoding and outputs,
    /// and the output layer's weight codes.
    ///
    /// # Errors
    /// As [`QMlp::forward_qat`].
    pub fn forward_qat_traced(
        &self,
        x_codes: Tensor<2>,
    ) -> Result<(Tensor<2>, QatTrace), EncodingError> {
        let device = x_codes.device();
        let cfg = &self.config;
        let batch = x_codes.dims()[0];
        let mut x = x_codes;
        let mut s_in = Tensor::<1>::from_floats([input_scale(cfg.in_bits)], &device);
        let mut s_in_value = input_scale(cfg.in_bits);
        let mut in_qmax = unsigned_qmax(cfg.in_bits);
        let mut traces = Vec::new();
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let s_w = layer.scale();
            let k = (s_w * s_in.clone()).unsqueeze_dim::<2>(0);
            let bias = layer.bias.val().unsqueeze_dim::<2>(0);
            if l == last {
                let codes = layer.codes(None);
                let logits = x.matmul(codes.clone()) * k + bias;
                return Ok((
                    logits,
                    QatTrace {
                        hidden: traces,
                        output_codes: codes,
                    },
                ));
            }
            let act = &self.acts[l];
            let d_out = layer.weight.val().dims()[1];
            let step = act.step(batch * d_out);
            let kind = if l == 0 {
                InputKind::Fresh
            } else {
                InputKind::Pbs
            };
            let s_out_value = act.scale.val().into_scalar::<f32>();
            let (codes, encoding) =
                self.hidden_codes(l, in_qmax, s_in_value, step.clone(), s_out_value, kind)?;
            let acc = x.matmul(codes.clone());
            let acc = round_to_slots(acc, &encoding, cfg.encoding.frac_bits);
            let z = acc * k + bias;
            x = act.quantize(z, step.clone());
            traces.push(HiddenTrace {
                codes,
                encoding,
                out_codes: x.clone(),
            });
            s_in = step;
            s_in_value = s_out_value;
            in_qmax = act.qmax();
        }
        unreachable!("an MLP has at least one layer")
    }

    /// Hidden layer `l`'s weight codes under the accumulator bound, and the encoding chosen for
    /// them. For layers fed by PBS outputs, neurons whose table step falls short of the target
    /// under the chosen encoding get a tighter bound and everything is re-derived (a few rounds,
    /// since the layer's shared input scale can move).
    fn hidden_codes(
        &self,
        l: usize,
        in_qmax: i32,
        s_in: f32,
        step: Tensor<1>,
        s_out: f32,
        kind: InputKind,
    ) -> Result<(Tensor<2>, LayerEncoding), EncodingError> {
        let layer = &self.layers[l];
        let enc_cfg = &self.config.encoding;
        let device = step.device();
        let x_max = in_qmax as f32 * s_in;
        let s_w: Vec<f32> = layer
            .w_scale
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 scales");
        let aps = acc_per_step(s_in, &s_w, s_out);
        let mut max_steps = vec![self.max_steps(); s_w.len()];
        let mut bound = AccumulatorBound {
            x_max,
            s_out: step,
            max_steps: Tensor::from_floats([self.max_steps()], &device),
        };
        let encode = |codes: &Tensor<2>| {
            let rows = row_stats(codes, in_qmax);
            choose_layer_encoding(&rows, &aps, kind, enc_cfg).map(|e| (rows, e))
        };
        let mut codes = layer.codes(Some(&bound));
        let (mut rows, mut encoding) = encode(&codes)?;
        if kind == InputKind::Pbs {
            let range_steps = layer.range_steps(x_max, s_out);
            for _ in 0..4 {
                let short = step_shortfall(&rows, &encoding, &aps, kind, enc_cfg);
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
        Ok((codes, encoding))
    }

    /// The per-layer input scales `s_in` (input quantizer, then each activation quantizer).
    pub fn input_scales(&self) -> Vec<f32> {
        let mut v = vec![input_scale(self.config.in_bits)];
        v.extend(self.acts.iter().map(|a| a.scale.val().into_scalar::<f32>()));
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

    fn forward_qat(&self, x_codes: Tensor<2>) -> Result<Tensor<2>, EncodingError> {
        QMlp::forward_qat(self, x_codes)
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
