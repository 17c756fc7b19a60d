//! The quantized CNN: conv → activation quantizer → average (sum) pooling → flatten → output.
//!
//! One PBS per convolution output; the pooling is a sum of PBS outputs whose `1/p²` folds into
//! the output layer's scale, so it costs no PBS.

use crate::qat::QatModel;
use burn::prelude::*;
use qfhe_quant::conv::{conv_row_stats, sum_pool, ConvGeometry, QuantConv2d};
use qfhe_quant::encoding::{acc_per_step, choose_layer_encoding, InputKind};
use qfhe_quant::layers::{round_to_slots, AccumulatorBound, ActQuant, QuantLinear};
use qfhe_quant::scheme::{input_scale, unsigned_qmax};
use qfhe_quant::{EncodingConfig, EncodingError, LayerEncoding};

/// Architecture and quantization of a CNN.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CnnConfig {
    /// Input channels, height, width (`[1, 28, 28]` for MNIST).
    pub input: [usize; 3],
    /// Convolution output channels.
    pub channels: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Convolution stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
    /// Average-pooling window and stride (1: none).
    pub pool: usize,
    /// Output classes.
    pub classes: usize,
    /// Convolution weight bits.
    pub w_bits: u32,
    /// Output layer weight bits.
    pub out_w_bits: u32,
    /// Activation bits.
    pub a_bits: u32,
    /// Input bits.
    pub in_bits: u32,
    /// The PBS encoding the QAT forward reproduces.
    pub encoding: EncodingConfig,
}

impl CnnConfig {
    /// The convolution's geometry.
    pub fn geometry(&self) -> ConvGeometry {
        let [c_in, h, w] = self.input;
        ConvGeometry {
            c_in,
            h,
            w,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
        }
    }

    /// Convolution outputs `[channels, h', w']`.
    pub fn conv_shape(&self) -> [usize; 3] {
        let (oh, ow) = self.geometry().output_hw();
        [self.channels, oh, ow]
    }

    /// Pooled shape `[channels, h'/pool, w'/pool]`.
    pub fn pooled_shape(&self) -> [usize; 3] {
        let [c, oh, ow] = self.conv_shape();
        [c, oh / self.pool, ow / self.pool]
    }

    /// A name like `cnn 1x28x28 c8k5s2p0 pool2 -10`.
    pub fn arch(&self) -> String {
        let [c, h, w] = self.input;
        format!(
            "cnn {c}x{h}x{w}-c{}k{}s{}p{}-pool{}-{}",
            self.channels, self.kernel, self.stride, self.padding, self.pool, self.classes
        )
    }
}

/// The CNN's parameters.
#[derive(Module, Debug)]
pub struct QCnn {
    /// The convolution.
    pub conv: QuantConv2d,
    /// Its activation quantizer.
    pub act: ActQuant,
    /// The output layer on the flattened pooled activations.
    pub output: QuantLinear,
    /// Architecture and quantization.
    #[module(skip)]
    pub config: CnnConfig,
}

/// What a CNN QAT forward used.
#[derive(Debug, Clone)]
pub struct CnnTrace {
    /// Convolution weight codes `[c_out, c_in, k, k]`.
    pub conv_codes: Tensor<4>,
    /// The convolution neurons' encoding (NCHW order).
    pub encoding: LayerEncoding,
    /// Convolution activation codes `[batch, c·h'·w']`.
    pub conv_out: Tensor<2>,
    /// Output weight codes `[c·(h'/p)·(w'/p), classes]`.
    pub output_codes: Tensor<2>,
}

impl QCnn {
    /// A randomly initialised model.
    pub fn new(config: CnnConfig, device: &Device) -> Self {
        let [c_in, ..] = config.input;
        let conv = QuantConv2d::new(
            c_in,
            config.channels,
            config.kernel,
            config.stride,
            config.padding,
            config.w_bits,
            device,
        );
        let [c, ph, pw] = config.pooled_shape();
        let output = QuantLinear::new(c * ph * pw, config.classes, config.out_w_bits, device);
        Self {
            conv,
            act: ActQuant::new(config.a_bits, device),
            output,
            config,
        }
    }

    fn image(&self, x: Tensor<2>) -> Tensor<4> {
        let [c, h, w] = self.config.input;
        let b = x.dims()[0];
        x.reshape([b, c, h, w])
    }

    /// The output layer's input scale: the activation step over the pooling window, `s / p²`.
    pub fn pooled_scale(s_act: f32, pool: usize) -> f32 {
        s_act / (pool * pool) as f32
    }

    /// [`QatModel::forward_qat`] with its trace.
    ///
    /// # Errors
    /// [`EncodingError`] when a neuron's range cannot be encoded.
    pub fn forward_qat_traced(
        &self,
        x_codes: Tensor<2>,
    ) -> Result<(Tensor<2>, CnnTrace), EncodingError> {
        let cfg = &self.config;
        let device = x_codes.device();
        let batch = x_codes.dims()[0];
        let [c, oh, ow] = cfg.conv_shape();
        let d = c * oh * ow;
        let s_in = input_scale(cfg.in_bits);
        let in_qmax = unsigned_qmax(cfg.in_bits);
        let step = self.act.step(batch * d);
        let bound = AccumulatorBound {
            x_max: in_qmax as f32 * s_in,
            s_out: step.clone(),
            max_steps: Tensor::from_floats([cfg.encoding.max_range_steps() as f32], &device),
        };
        let codes = self.conv.codes(Some(&bound));
        let rows = conv_row_stats(&codes, &cfg.geometry(), in_qmax);
        let s_w: Vec<f32> = self
            .conv
            .w_scale
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 scales");
        let s_out = self.act.scale.val().into_scalar::<f32>();
        let aps: Vec<f64> = acc_per_step(s_in, &s_w, s_out)
            .into_iter()
            .flat_map(|a| std::iter::repeat_n(a, oh * ow))
            .collect();
        let encoding = choose_layer_encoding(&rows, &aps, InputKind::Fresh, &cfg.encoding)?;
        let acc = self
            .conv
            .accumulate(self.image(x_codes), codes.clone())
            .reshape([batch, d]);
        let acc = round_to_slots(acc, &encoding, cfg.encoding.frac_bits);
        let per_neuron = |t: Tensor<1>| {
            t.unsqueeze_dim::<2>(1)
                .repeat_dim(1, oh * ow)
                .reshape([1, d])
        };
        let s_in_t = Tensor::<1>::from_floats([s_in], &device);
        let k = per_neuron(self.conv.scale() * s_in_t);
        let z = acc * k + per_neuron(self.conv.bias.val());
        let y = self.act.quantize(z, step.clone());
        let pooled = sum_pool(y.clone().reshape([batch, c, oh, ow]), cfg.pool);
        let [_, ph, pw] = cfg.pooled_shape();
        let pooled = pooled.reshape([batch, c * ph * pw]);
        let out_codes = self.output.codes(None);
        let k_out = (self.output.scale() * step.div_scalar((cfg.pool * cfg.pool) as f32))
            .unsqueeze_dim::<2>(0);
        let logits =
            pooled.matmul(out_codes.clone()) * k_out + self.output.bias.val().unsqueeze_dim(0);
        Ok((
            logits,
            CnnTrace {
                conv_codes: codes,
                encoding,
                conv_out: y,
                output_codes: out_codes,
            },
        ))
    }
}

impl QatModel for QCnn {
    fn inputs(&self) -> usize {
        self.config.input.iter().product()
    }

    fn classes(&self) -> usize {
        self.config.classes
    }

    fn in_bits(&self) -> u32 {
        self.config.in_bits
    }

    fn device(&self) -> Device {
        self.conv.weight.val().device()
    }

    fn forward_float(&self, x: Tensor<2>) -> (Tensor<2>, Vec<Tensor<2>>) {
        let z = self.conv.forward_float(self.image(x));
        let [b, c, oh, ow] = z.dims();
        let h = burn::tensor::activation::relu(z.clone());
        let p = self.config.pool;
        let pooled = sum_pool(h, p).div_scalar((p * p) as f32);
        let [_, _, ph, pw] = pooled.dims();
        let logits = self.output.forward_float(pooled.reshape([b, c * ph * pw]));
        (logits, vec![z.reshape([b, c * oh * ow])])
    }

    fn forward_qat(&self, x_codes: Tensor<2>) -> Result<Tensor<2>, EncodingError> {
        self.forward_qat_traced(x_codes).map(|(l, _)| l)
    }

    fn init_quantizers(&mut self, pre: Vec<Tensor<2>>) {
        self.conv.init_scales();
        self.output.init_scales();
        if let Some(z) = pre.into_iter().next() {
            self.act.calibrate(z);
        }
    }
}
