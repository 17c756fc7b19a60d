//! The quantized CNN: conv (→ batch norm, folded before QAT) → activation quantizer → average
//! (sum) pooling → flatten → fully connected hidden layers → output.
//!
//! One PBS per convolution output and per hidden neuron; the pooling is a sum of PBS outputs
//! whose `1/p²` folds into the next layer's scale, so it costs no PBS.

use crate::dense::{dense_stack_forward, read_slots, DenseInput, HiddenTrace};
use crate::model::check_bits;
use crate::qat::{PhaseNoise, QatModel};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use qfhe_core::ModelError;
use qfhe_quant::conv::{conv_row_stats, max_pool, sum_pool, ConvGeometry, QuantConv2d};
use qfhe_quant::encoding::{acc_per_step, choose_layer_encoding, InputKind};
use qfhe_quant::layers::{AccumulatorBound, ActQuant, QuantLinear};
use qfhe_quant::scheme::{input_scale, unsigned_qmax};
use qfhe_quant::{EncodingConfig, EncodingError, LayerEncoding};

/// How the CNN pools its convolution's activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average pooling: a sum of PBS outputs folded into the next layer's weights, its `1/p²`
    /// into that layer's scale. No PBS.
    #[default]
    Average,
    /// 2×2 max pooling: `max(a, b) = a + relu(b − a)` as two PBS layers, 6 PBS per window
    /// (4 for `a, relu(b − a), c, relu(d − c)`, then 2 for `m₁ = a + relu(b − a)` and
    /// `relu(m₂ − m₁)`, which the next layer sums).
    Max,
}

impl Pooling {
    /// PBS per pooling window of a `p × p` pool (`p = 2` for max pooling).
    pub fn pbs_per_window(self) -> usize {
        match self {
            Self::Average => 0,
            Self::Max => 6,
        }
    }
}

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
    /// Pooling window and stride (1: none).
    pub pool: usize,
    /// Average (free) or max (6 PBS per 2×2 window) pooling.
    #[serde(default)]
    pub pooling: Pooling,
    /// Widths of the fully connected hidden layers between pooling and the output layer.
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Train the fp32 phase with batch norm after the convolution (folded into the convolution
    /// before QAT; `false` once folded).
    #[serde(default)]
    pub batch_norm: bool,
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

    /// Flattened pooled features, the first dense layer's inputs.
    pub fn pooled_features(&self) -> usize {
        self.pooled_shape().iter().product()
    }

    /// Check the geometry and bit widths (a configuration read from a file may hold
    /// anything): every size at least 1, the kernel inside the padded input, a pooled output
    /// of at least one value, max pooling only with 2×2 windows, bits in range.
    ///
    /// # Errors
    /// [`ModelError::Range`] naming the field and its bound.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &str, value: usize, bound: String| {
            Err(ModelError::Range {
                field: field.into(),
                value: value.to_string(),
                bound,
            })
        };
        let [c_in, h, w] = self.input;
        for (field, v) in [
            ("input", c_in.min(h).min(w)),
            ("channels", self.channels),
            ("kernel", self.kernel),
            ("stride", self.stride),
            ("pool", self.pool),
            ("classes", self.classes),
        ] {
            if v == 0 || v > 1 << 16 {
                return bad(field, v, "[1, 65536]".into());
            }
        }
        if let Some(&d) = self.hidden.iter().find(|&&d| d == 0 || d > 1 << 20) {
            return bad("hidden", d, "widths in [1, 1048576]".into());
        }
        let fits = |n: usize| self.padding <= 64 && self.kernel <= n + 2 * self.padding;
        if !fits(h) || !fits(w) {
            return bad(
                "kernel",
                self.kernel,
                format!(
                    "at most the {h}x{w} input plus twice the padding {}",
                    self.padding
                ),
            );
        }
        let [_, ph, pw] = self.pooled_shape();
        if ph == 0 || pw == 0 {
            return bad(
                "pool",
                self.pool,
                format!("at most the {:?} convolution output", self.conv_shape()),
            );
        }
        if self.pooling == Pooling::Max && self.pool != 2 {
            return bad(
                "pool",
                self.pool,
                "2 for max pooling (it is lowered for 2x2 windows only), or use average pooling"
                    .into(),
            );
        }
        check_bits(self.w_bits, self.out_w_bits, self.a_bits, self.in_bits)
    }

    /// PBS spent on pooling per sample (0 for average pooling).
    pub fn pooling_pbs(&self) -> usize {
        let [c, ph, pw] = self.pooled_shape();
        c * ph * pw * self.pooling.pbs_per_window()
    }

    /// A name like `cnn 1x28x28-c8k5s2p0-pool2-64-10` (`maxpool2` for max pooling).
    pub fn arch(&self) -> String {
        let [c, h, w] = self.input;
        let pool = match self.pooling {
            Pooling::Average => "pool",
            Pooling::Max => "maxpool",
        };
        let mut s = format!(
            "cnn {c}x{h}x{w}-c{}k{}s{}p{}-{pool}{}",
            self.channels, self.kernel, self.stride, self.padding, self.pool
        );
        for d in &self.hidden {
            s += &format!("-{d}");
        }
        s + &format!("-{}", self.classes)
    }
}

/// The CNN's parameters.
#[derive(Module, Debug)]
pub struct QCnn {
    /// The convolution.
    pub conv: QuantConv2d,
    /// Batch norm after the convolution (fp32 phase only: folded into `conv` before QAT).
    pub bn: Option<BatchNorm>,
    /// Its activation quantizer.
    pub act: ActQuant,
    /// Fully connected hidden layers on the flattened pooled activations.
    pub fc: Vec<QuantLinear>,
    /// One activation quantizer per fully connected layer.
    pub fc_acts: Vec<ActQuant>,
    /// The output layer.
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
    /// The fully connected hidden layers.
    pub hidden: Vec<HiddenTrace>,
    /// Output weight codes `[d_in, classes]` (`d_in = c·(h'/p)·(w'/p)` without hidden layers).
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
        let mut widths = vec![config.pooled_features()];
        widths.extend(&config.hidden);
        let fc = widths
            .windows(2)
            .map(|w| QuantLinear::new(w[0], w[1], config.w_bits, device))
            .collect();
        let fc_acts = config
            .hidden
            .iter()
            .map(|_| ActQuant::new(config.a_bits, device))
            .collect();
        let output = QuantLinear::new(
            *widths.last().expect("widths"),
            config.classes,
            config.out_w_bits,
            device,
        );
        let bn = config
            .batch_norm
            .then(|| BatchNormConfig::new(config.channels).init(device));
        Self {
            conv,
            bn,
            act: ActQuant::new(config.a_bits, device),
            fc,
            fc_acts,
            output,
            config,
        }
    }

    fn image(&self, x: Tensor<2>) -> Tensor<4> {
        let [c, h, w] = self.config.input;
        let b = x.dims()[0];
        x.reshape([b, c, h, w])
    }

    /// The next layer's input scale: the activation step over the pooling window, `s / p²`.
    pub fn pooled_scale(s_act: f32, pool: usize) -> f32 {
        s_act / (pool * pool) as f32
    }

    /// Fold the batch norm into the convolution (see [`QuantConv2d::fold_batch_norm`]); a model
    /// without one is unchanged. Afterwards `config.batch_norm` is `false`, so a model rebuilt
    /// from the config matches the saved weights.
    pub fn fold_batch_norm(&mut self) {
        if let Some(bn) = self.bn.take() {
            self.conv.fold_batch_norm(&bn);
            self.config.batch_norm = false;
        }
    }

    /// The activation steps of the dense layers' inputs: `s_act / p²` for the first after
    /// average pooling (`s_act` after max pooling), then each hidden layer's activation step.
    pub fn dense_input_scales(&self) -> Vec<f32> {
        let first = match self.config.pooling {
            Pooling::Average => Self::pooled_scale(self.act.step_value(), self.config.pool),
            Pooling::Max => self.act.step_value(),
        };
        let mut v = vec![first];
        v.extend(self.fc_acts.iter().map(|a| a.step_value()));
        v
    }

    /// [`QatModel::forward_qat`] on the exact circuit, with its trace.
    ///
    /// # Errors
    /// [`EncodingError`] when a neuron's range cannot be encoded.
    pub fn forward_qat_traced(
        &self,
        x_codes: Tensor<2>,
    ) -> Result<(Tensor<2>, CnnTrace), EncodingError> {
        self.forward_qat_with(x_codes, PhaseNoise::Exact)
    }

    /// [`QatModel::forward_qat`] with its trace.
    ///
    /// # Errors
    /// [`EncodingError`] when a neuron's range cannot be encoded.
    pub fn forward_qat_with(
        &self,
        x_codes: Tensor<2>,
        noise: PhaseNoise,
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
        let s_w: Vec<f32> = self.conv.scale_values();
        let s_out = self.act.step_value();
        let aps: Vec<f64> = acc_per_step(s_in, &s_w, s_out)
            .into_iter()
            .flat_map(|a| std::iter::repeat_n(a, oh * ow))
            .collect();
        let encoding = choose_layer_encoding(&rows, &aps, InputKind::Fresh, &cfg.encoding)?;
        let acc = self
            .conv
            .accumulate(self.image(x_codes), codes.clone())
            .reshape([batch, d]);
        let acc = read_slots(
            acc,
            &encoding,
            &rows,
            InputKind::Fresh,
            &cfg.encoding,
            noise,
        );
        let per_neuron = |t: Tensor<1>| {
            t.unsqueeze_dim::<2>(1)
                .repeat_dim(1, oh * ow)
                .reshape([1, d])
        };
        let s_in_t = Tensor::<1>::from_floats([s_in], &device);
        let k = per_neuron(self.conv.scale() * s_in_t);
        let z = acc * k + per_neuron(self.conv.bias.val());
        let y = self.act.quantize(z, step.clone());
        let conv_codes = y.clone().reshape([batch, c, oh, ow]);
        let input = match cfg.pooling {
            Pooling::Average => {
                let p2 = (cfg.pool * cfg.pool) as f32;
                DenseInput {
                    codes: sum_pool(conv_codes, cfg.pool).reshape([batch, cfg.pooled_features()]),
                    qmax: self.act.qmax() * (cfg.pool * cfg.pool) as i32,
                    step: step.div_scalar(p2),
                    step_value: Self::pooled_scale(s_out, cfg.pool),
                    kind: InputKind::Pbs,
                    noise_gain: cfg.pool as f64,
                }
            }
            // The circuit's next layer reads `m₁` and `relu(m₂ − m₁)` (each in `[0, qmax]`)
            // with the pooled weight on both: its worst case is that of inputs in
            // `[0, 2·qmax]`, and its noise gain √2.
            Pooling::Max => DenseInput {
                codes: max_pool(conv_codes, cfg.pool).reshape([batch, cfg.pooled_features()]),
                qmax: 2 * self.act.qmax(),
                step,
                step_value: s_out,
                kind: InputKind::Pbs,
                noise_gain: std::f64::consts::SQRT_2,
            },
        };
        let dense = dense_stack_forward(
            &self.fc,
            &self.fc_acts,
            &self.output,
            input,
            &cfg.encoding,
            noise,
        )?;
        Ok((
            dense.logits,
            CnnTrace {
                conv_codes: codes,
                encoding,
                conv_out: y,
                hidden: dense.hidden,
                output_codes: dense.output_codes,
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
        let mut z = self.conv.forward_float(self.image(x));
        if let Some(bn) = &self.bn {
            z = bn.forward(z);
        }
        let [b, c, oh, ow] = z.dims();
        let p = self.config.pool;
        let a = burn::tensor::activation::relu(z.clone());
        let pooled = match self.config.pooling {
            Pooling::Average => sum_pool(a, p).div_scalar((p * p) as f32),
            Pooling::Max => max_pool(a, p),
        };
        let mut h = pooled.reshape([b, self.config.pooled_features()]);
        let mut pre = vec![z.reshape([b, c * oh * ow])];
        for layer in &self.fc {
            let z = layer.forward_float(h);
            pre.push(z.clone());
            h = burn::tensor::activation::relu(z);
        }
        (self.output.forward_float(h), pre)
    }

    fn forward_qat(
        &self,
        x_codes: Tensor<2>,
        noise: PhaseNoise,
    ) -> Result<Tensor<2>, EncodingError> {
        self.forward_qat_with(x_codes, noise).map(|(l, _)| l)
    }

    fn init_quantizers(&mut self, pre: Vec<Tensor<2>>) {
        self.fold_batch_norm();
        self.conv.init_scales();
        for layer in &mut self.fc {
            layer.init_scales();
        }
        self.output.init_scales();
        let acts = std::iter::once(&mut self.act).chain(&mut self.fc_acts);
        for (act, z) in acts.zip(pre) {
            act.calibrate(z);
        }
    }
}
