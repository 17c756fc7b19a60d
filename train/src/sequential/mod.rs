//! One quantized model for any [`ModelSpec`]: the Burn parameters of its layers, the float
//! forward (fp32 training and calibration) and the quantized forward whose integers are exactly
//! the circuit's.
//!
//! * [`plan`]: the data-independent part of the quantized forward — weight codes under the
//!   accumulator bound, each PBS point's encoding, the scale `Δ` every stage writes at — which the
//!   lowering (`qfhe-export`) reads too, so the two cannot disagree;
//! * [`forward`]: the quantized forward on a batch, following that plan.
//!
//! Layer kinds and how each is lowered are in docs/DESIGN.md ("Model descriptions").

pub mod forward;
mod params;
pub mod plan;

use crate::qat::{PhaseNoise, QatModel};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::activation;
use qfhe_core::{Activation, InputQuant, LayerSpec, ModelError, ModelSpec, Shape};
use qfhe_quant::conv::{max_pool, sum_pool, QuantConv2d};
use qfhe_quant::layers::{ActQuant, QuantLinear};
use qfhe_quant::{EncodingConfig, EncodingError};

pub use forward::QatOutput;
pub use plan::{OutputPlan, PbsPlan, Plan, Src, WeightCodes};

/// What one layer of the spec uses of the model's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `linears[i]`.
    Linear(usize),
    /// `convs[i]`.
    Conv(usize),
    /// `norms[i]` while not folded; nothing after.
    Norm(usize),
    /// `acts[i]`.
    Act(usize),
    /// No parameters (pooling, flatten, add).
    None,
}

/// The roles of `spec`'s layers, in order.
pub fn roles(spec: &ModelSpec) -> Vec<Role> {
    let (mut lin, mut conv, mut norm, mut act) = (0, 0, 0, 0);
    let take = |n: &mut usize| {
        *n += 1;
        *n - 1
    };
    spec.layers
        .iter()
        .map(|l| match l {
            LayerSpec::Linear { .. } => Role::Linear(take(&mut lin)),
            LayerSpec::Conv2d { .. } => Role::Conv(take(&mut conv)),
            LayerSpec::BatchNorm => Role::Norm(take(&mut norm)),
            l if l.activation().is_some() => Role::Act(take(&mut act)),
            _ => Role::None,
        })
        .collect()
}

/// The activation whose codes layer `index`'s output is (itself, or the one before a flatten),
/// as an index into `acts`.
fn producing_act(spec: &ModelSpec, roles: &[Role], index: usize) -> Option<usize> {
    match (roles[index], &spec.layers[index]) {
        (Role::Act(a), _) => Some(a),
        (_, LayerSpec::Flatten) if index > 0 => producing_act(spec, roles, index - 1),
        _ => None,
    }
}

/// For each activation quantizer, the one whose step it uses: itself, or for the activation
/// feeding a residual `add`, the step of the activation the add reads from (the two addends
/// must share one step for their codes to add). Owners come first, so one pass resolves chains.
pub fn step_owners(spec: &ModelSpec) -> Vec<usize> {
    let roles = roles(spec);
    let n = roles.iter().filter(|r| matches!(r, Role::Act(_))).count();
    let mut owner: Vec<usize> = (0..n).collect();
    for (index, layer) in spec.layers.iter().enumerate() {
        if let LayerSpec::Add { from } = *layer {
            let cur = index
                .checked_sub(1)
                .and_then(|i| producing_act(spec, &roles, i));
            let src = producing_act(spec, &roles, from);
            if let (Some(cur), Some(src)) = (cur, src) {
                if cur != src {
                    owner[cur] = owner[src];
                }
            }
        }
    }
    owner
}

/// A sequential quantized network built from a [`ModelSpec`].
#[derive(Module, Debug)]
pub struct QSequential {
    /// Dense layers, in spec order; the last is the output layer.
    pub linears: Vec<QuantLinear>,
    /// Convolutions, in spec order.
    pub convs: Vec<QuantConv2d>,
    /// Batch norms (fp32 phase); empty once folded into their layers.
    pub norms: Vec<BatchNorm>,
    /// Activation quantizers, one per activation layer.
    pub acts: Vec<ActQuant>,
    /// The architecture.
    #[module(skip)]
    pub spec: ModelSpec,
    /// The PBS encoding the quantized forward reproduces.
    #[module(skip)]
    pub encoding: EncodingConfig,
    /// Whether the batch norms have been folded (true after calibration).
    #[module(skip)]
    pub folded: bool,
    /// The input quantizer of a model built from given parameters
    /// ([`QSequential::from_params`]); `None`: pixels on `[0, 1]` at `spec.quant.in_bits`.
    #[module(skip)]
    pub input: Option<InputQuant>,
    /// Whether the weight codes are given ([`QSequential::from_params`]): they are kept as they
    /// are, no accumulator bound reshapes them.
    #[module(skip)]
    pub fixed_codes: bool,
}

impl QSequential {
    /// A randomly initialised model of `spec` (validated first) on `device`, with its batch
    /// norms unfolded, for training.
    ///
    /// # Errors
    /// As [`ModelSpec::validate`].
    pub fn new(
        spec: ModelSpec,
        encoding: EncodingConfig,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Self::build(spec, encoding, false, device)
    }

    /// A model of `spec` with its batch norms already folded: the shape of a trained model's
    /// saved weights, to load them into.
    ///
    /// # Errors
    /// As [`ModelSpec::validate`].
    pub fn new_folded(
        spec: ModelSpec,
        encoding: EncodingConfig,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Self::build(spec, encoding, true, device)
    }

    fn build(
        spec: ModelSpec,
        encoding: EncodingConfig,
        folded: bool,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let shapes = spec.validate()?;
        let input = input_shape(&spec);
        let q = spec.quant;
        let last = spec.layers.len() - 1;
        let (mut linears, mut convs, mut norms, mut acts) = (vec![], vec![], vec![], vec![]);
        for (i, layer) in spec.layers.iter().enumerate() {
            let before = if i == 0 { input } else { shapes[i - 1] };
            match *layer {
                LayerSpec::Linear { out } => {
                    let bits = if i == last { q.out_w_bits } else { q.w_bits };
                    linears.push(QuantLinear::new(before.len(), out, bits, device));
                }
                LayerSpec::Conv2d {
                    out_channels,
                    kernel,
                    stride,
                    padding,
                } => {
                    let Shape::Image([c_in, ..]) = before else {
                        unreachable!("validated: a convolution reads images")
                    };
                    convs.push(QuantConv2d::new(
                        c_in,
                        out_channels,
                        kernel,
                        stride,
                        padding,
                        q.w_bits,
                        device,
                    ));
                }
                LayerSpec::BatchNorm if !folded => {
                    let channels = match before {
                        Shape::Image([c, ..]) => c,
                        Shape::Flat(n) => n,
                    };
                    norms.push(BatchNormConfig::new(channels).init(device));
                }
                ref l => {
                    if let Some(a) = l.activation() {
                        acts.push(ActQuant::with_range(
                            q.a_bits,
                            a.code_range(q.a_bits),
                            device,
                        ));
                    }
                }
            }
        }
        Ok(Self {
            linears,
            convs,
            norms,
            acts,
            spec,
            encoding,
            folded,
            input: None,
            fixed_codes: false,
        })
    }

    /// The device holding the parameters.
    pub fn device(&self) -> Device {
        self.linears[0].weight.val().device()
    }

    /// The shape after each layer (the spec is validated when the model is built).
    pub fn shapes(&self) -> Vec<Shape> {
        self.spec.validate().expect("validated when built")
    }

    /// Fold every batch norm into the layer before it; afterwards `norms` is empty and
    /// `folded` true, so a model rebuilt with [`QSequential::new_folded`] matches the weights.
    pub fn fold_batch_norms(&mut self) {
        if self.folded {
            return;
        }
        let norms = std::mem::take(&mut self.norms);
        let roles = roles(&self.spec);
        for (i, role) in roles.iter().enumerate() {
            if let Role::Norm(n) = *role {
                match roles[i - 1] {
                    Role::Linear(l) => self.linears[l].fold_batch_norm(&norms[n]),
                    Role::Conv(c) => self.convs[c].fold_batch_norm(&norms[n]),
                    _ => unreachable!("validated: batch norm follows a weighted layer"),
                }
            }
        }
        self.folded = true;
    }

    /// Fold the batch norms and set every weight step from its weights (LSQ initial steps), the
    /// activation steps left at 1: an untrained model with the shape and encodings of a trained
    /// one, for benchmarks of FHE cost (which does not depend on what a model learned).
    pub fn init_weight_scales(&mut self) {
        self.fold_batch_norms();
        for l in &mut self.linears {
            l.init_scales();
        }
        for c in &mut self.convs {
            c.init_scales();
        }
    }

    /// Float forward on `[batch, inputs]` values in `[0, 1]`: the logits `[batch, classes]` and
    /// each activation layer's outputs `[batch, values]` (for calibration), in `acts` order.
    pub fn forward_float(&self, x: Tensor<2>) -> (Tensor<2>, Vec<Tensor<2>>) {
        let shapes = self.shapes();
        let roles = roles(&self.spec);
        let batch = x.dims()[0];
        let mut outputs: Vec<Tensor<2>> = Vec::with_capacity(shapes.len());
        let mut acts_out = Vec::with_capacity(self.acts.len());
        let mut h = x;
        let mut shape = input_shape(&self.spec);
        for (i, layer) in self.spec.layers.iter().enumerate() {
            h = match (roles[i], layer) {
                (Role::Linear(l), _) => self.linears[l].forward_float(h),
                (Role::Conv(c), _) => flat(self.convs[c].forward_float(image(h, shape))),
                (Role::Norm(n), _) if !self.folded => match shapes[i] {
                    Shape::Image(_) => flat(self.norms[n].forward(image(h, shape))),
                    Shape::Flat(_) => self.norms[n].forward(h),
                },
                (Role::Act(_), l) => {
                    let a = apply_float(l.activation().expect("an activation"), h);
                    acts_out.push(a.clone());
                    a
                }
                (_, LayerSpec::AvgPool { k }) => {
                    flat(sum_pool(image(h, shape), *k).div_scalar((k * k) as f32))
                }
                (_, LayerSpec::MaxPool { k }) => flat(max_pool(image(h, shape), *k)),
                (_, LayerSpec::Add { from }) => h + outputs[*from].clone(),
                _ => h, // flatten; a folded batch norm
            };
            debug_assert_eq!(h.dims(), [batch, shapes[i].len()]);
            shape = shapes[i];
            outputs.push(h.clone());
        }
        (h, acts_out)
    }

    /// The plan of the quantized forward for batches of `batch` samples (the batch size only
    /// scales the LSQ step gradients).
    ///
    /// # Errors
    /// [`EncodingError`] when a neuron's worst-case range cannot be encoded.
    pub fn plan(&self, batch: usize) -> Result<Plan, EncodingError> {
        plan::plan(self, batch)
    }

    /// Quantized forward on input codes `[batch, inputs]`: logits `[batch, classes]`.
    ///
    /// # Errors
    /// [`EncodingError`] when a neuron's worst-case range cannot be encoded.
    pub fn forward_qat(
        &self,
        x_codes: Tensor<2>,
        noise: PhaseNoise,
    ) -> Result<Tensor<2>, EncodingError> {
        let plan = self.plan(x_codes.dims()[0])?;
        Ok(forward::forward(self, &plan, x_codes, noise).logits)
    }
}

/// The input shape of `spec` (validated).
pub fn input_shape(spec: &ModelSpec) -> Shape {
    match spec.input[..] {
        [n] => Shape::Flat(n),
        [c, h, w] => Shape::Image([c, h, w]),
        _ => unreachable!("validated: [features] or [c, h, w]"),
    }
}

/// Flat `[batch, n]` values as images `[batch, c, h, w]` of `shape` (flat shapes become
/// `[batch, n, 1, 1]`).
pub(crate) fn image(x: Tensor<2>, shape: Shape) -> Tensor<4> {
    let b = x.dims()[0];
    match shape {
        Shape::Image([c, h, w]) => x.reshape([b, c, h, w]),
        Shape::Flat(n) => x.reshape([b, n, 1, 1]),
    }
}

/// Images `[batch, c, h, w]` as flat values in NCHW order.
pub(crate) fn flat(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c * h * w])
}

/// The activation function on float tensors (the same functions as [`Activation::apply`];
/// the quantized forward reads tables built by `apply` itself, so Burn's own `tanh` or `exp`
/// may differ from it in the last bit without changing any code).
pub fn apply_float(a: Activation, z: Tensor<2>) -> Tensor<2> {
    match a {
        Activation::Relu => activation::relu(z),
        Activation::LeakyRelu { slope } => activation::leaky_relu(z, slope as f64),
        Activation::Sigmoid => activation::sigmoid(z),
        Activation::Tanh => z.tanh(),
        Activation::Gelu => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let inner = (z.clone() + z.clone().powi_scalar(3).mul_scalar(0.044_715)).mul_scalar(c);
            z.mul_scalar(0.5) * inner.tanh().add_scalar(1.0)
        }
        Activation::GeluErf => {
            let cdf = z
                .clone()
                .mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
                .erf()
                .add_scalar(1.0);
            z.mul_scalar(0.5) * cdf
        }
        Activation::Silu => z.clone() * activation::sigmoid(z),
        Activation::Identity => z,
        Activation::Sign => z
            .greater_equal_elem(0.0)
            .float()
            .mul_scalar(2.0)
            .sub_scalar(1.0),
    }
}

impl QatModel for QSequential {
    fn inputs(&self) -> usize {
        self.spec.input.iter().product()
    }

    fn classes(&self) -> usize {
        self.spec.classes
    }

    fn in_bits(&self) -> u32 {
        self.spec.quant.in_bits
    }

    fn device(&self) -> Device {
        QSequential::device(self)
    }

    fn forward_float(&self, x: Tensor<2>) -> (Tensor<2>, Vec<Tensor<2>>) {
        QSequential::forward_float(self, x)
    }

    fn forward_qat(
        &self,
        x_codes: Tensor<2>,
        noise: PhaseNoise,
    ) -> Result<Tensor<2>, EncodingError> {
        QSequential::forward_qat(self, x_codes, noise)
    }

    /// Folds the batch norms, then LSQ steps: weights from their values, each activation's
    /// step from its float outputs (`pre` are the outputs [`QSequential::forward_float`]
    /// returned; shared steps are calibrated by their owner).
    fn init_quantizers(&mut self, pre: Vec<Tensor<2>>) {
        self.init_weight_scales();
        let owners = step_owners(&self.spec);
        for (i, (act, a)) in self.acts.iter_mut().zip(pre).enumerate() {
            if owners[i] == i {
                act.calibrate_outputs(a);
            }
        }
    }
}
