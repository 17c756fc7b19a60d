//! Fake-quantized Burn modules and the quantized forward of one layer.
//!
//! Shapes follow `burn::nn::Linear`: weights `[d_in, d_out]`, inputs `[batch, d_in]`.

use crate::bounds::RowStats;
use crate::encoding::LayerEncoding;
use crate::scheme::{signed_qmax, unsigned_qmax};
use crate::ste::{round_ste, straight_through, LearnedStep};
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;

/// A linear layer with per-output-channel signed symmetric fake-quantized weights (LSQ scales).
#[derive(Module, Debug)]
pub struct QuantLinear {
    /// Float weights `[d_in, d_out]`.
    pub weight: Param<Tensor<2>>,
    /// Float bias `[d_out]` (kept float: the LUT applies it, so it costs no precision).
    pub bias: Param<Tensor<1>>,
    /// Per-output-channel weight step `[d_out]`.
    pub w_scale: LearnedStep,
    /// Weight bit width.
    pub w_bits: u32,
}

/// The accumulator-aware bound applied to a layer's weights (A2Q-style, Colbert et al. 2023):
/// each row's worst-case pre-activation range, `‖w_j‖₁ · x_max / s_out`, is scaled down to at
/// most `max_steps` output steps.
#[derive(Debug, Clone)]
pub struct AccumulatorBound {
    /// Largest input value in float units (`in_qmax · s_in`).
    pub x_max: f32,
    /// The next activation quantizer's step `[1]`.
    pub s_out: Tensor<1>,
    /// Allowed output steps over the worst-case range, `[1]` (whole layer) or `[d_out]`.
    pub max_steps: Tensor<1>,
}

impl QuantLinear {
    /// Kaiming-uniform weights, zero bias, unit scales (call [`QuantLinear::init_scales`] before
    /// quantizing).
    pub fn new(d_in: usize, d_out: usize, w_bits: u32, device: &Device) -> Self {
        let bound = (1.0 / d_in as f64).sqrt();
        Self {
            weight: Param::from_tensor(Tensor::random(
                [d_in, d_out],
                Distribution::Uniform(-bound, bound),
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([d_out], device)),
            w_scale: LearnedStep::ones(d_out, device),
            w_bits,
        }
    }

    /// Float forward `x·W + b`, `[batch, d_in] -> [batch, d_out]`.
    pub fn forward_float(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.val()) + self.bias.val().unsqueeze_dim(0)
    }

    /// LSQ initial steps from the current float weights: `2·mean|w_j| / sqrt(qmax)` per channel,
    /// as the reference with multiplier 1.
    pub fn init_scales(&mut self) {
        let qmax = signed_qmax(self.w_bits) as f64;
        let s = self
            .weight
            .val()
            .abs()
            .mean_dim(0)
            .squeeze_dim::<1>(0)
            .mul_scalar(2.0 / qmax.sqrt());
        self.w_scale = LearnedStep::calibrated(s.clamp_min(1e-6));
    }

    /// The effective float weights: the bound applied if given.
    fn bounded_weight(&self, bound: Option<&AccumulatorBound>) -> Tensor<2> {
        let w = self.weight.val();
        match bound {
            None => w,
            Some(b) => {
                let l1 = w.clone().abs().sum_dim(0).clamp_min(1e-12); // [1, d_out]
                let steps = l1.mul_scalar(b.x_max) / b.s_out.clone().unsqueeze_dim(0);
                let shrink = (b.max_steps.clone().unsqueeze_dim(0) / steps).clamp_max(1.0);
                w * shrink
            }
        }
    }

    /// Each row's worst-case pre-activation range in output steps, `‖w_j‖₁ · x_max / s_out`,
    /// of the unbounded float weights (`d_out` values).
    pub fn range_steps(&self, x_max: f32, s_out: f32) -> Vec<f32> {
        let l1 = self
            .weight
            .val()
            .detach()
            .abs()
            .sum_dim(0)
            .mul_scalar(x_max / s_out);
        l1.into_data().try_into_vec::<f32>().expect("f32 tensor")
    }

    /// Fold an inference-mode batch norm over this layer's outputs into its weights and bias
    /// (Jacob et al. 2018, §3.2): with `g_j = γ_j / sqrt(running_var_j + ε)`,
    /// `W'_{·j} = g_j · W_{·j}` and `b'_j = g_j · (b_j − running_mean_j) + β_j`.
    pub fn fold_batch_norm(&mut self, bn: &burn::nn::BatchNorm) {
        let var = bn.running_var.value_sync().detach();
        let mean = bn.running_mean.value_sync().detach();
        let g = bn.gamma.val().detach() / var.add_scalar(bn.epsilon).sqrt();
        let w = self.weight.val().detach() * g.clone().unsqueeze_dim::<2>(0);
        let b = (self.bias.val().detach() - mean) * g + bn.beta.val().detach();
        self.weight = Param::from_tensor(w.detach());
        self.bias = Param::from_tensor(b.detach());
    }

    /// The per-channel step `[d_out]` with LSQ gradient scaling ([`LearnedStep`]).
    pub fn scale(&self) -> Tensor<1> {
        let [d_in, _] = self.weight.val().dims();
        let g = 1.0 / ((d_in as f32) * signed_qmax(self.w_bits) as f32).sqrt();
        self.w_scale.step(g)
    }

    /// The values of [`QuantLinear::scale`] (`d_out` steps, all ≥ 0).
    pub fn scale_values(&self) -> Vec<f32> {
        self.w_scale.values()
    }

    /// Integer weight codes `[d_in, d_out]` (as `f32`, exact integers in `[-qmax, qmax]`):
    /// `round(clamp(w / s, -qmax, qmax))`, straight-through gradient to `w` and `s`.
    pub fn codes(&self, bound: Option<&AccumulatorBound>) -> Tensor<2> {
        let qmax = signed_qmax(self.w_bits) as f32;
        let v = self.bounded_weight(bound) / self.scale().unsqueeze_dim(0);
        round_ste(v.clamp(-qmax, qmax))
    }
}

/// An activation quantizer with a learned (LSQ) step and codes in `[lo, hi]` (code 0 is the
/// value 0): unsigned `[0, 2^bits − 1]` after ReLU, signed for activations that go negative
/// ([`qfhe_core::Activation::code_range`]).
#[derive(Module, Debug)]
pub struct ActQuant {
    /// The step `[1]`.
    pub scale: LearnedStep,
    /// Activation bit width.
    pub bits: u32,
    /// Smallest code.
    pub lo: i32,
    /// Largest code.
    pub hi: i32,
}

impl ActQuant {
    /// An unsigned quantizer (codes `[0, 2^bits − 1]`) with step 1 (call
    /// [`ActQuant::calibrate`]).
    pub fn new(bits: u32, device: &Device) -> Self {
        Self::with_range(bits, (0, unsigned_qmax(bits)), device)
    }

    /// A quantizer with codes in `[lo, hi]` (`lo ≤ 0 < hi`) and step 1.
    pub fn with_range(bits: u32, (lo, hi): (i32, i32), device: &Device) -> Self {
        Self {
            scale: LearnedStep::ones(1, device),
            bits,
            lo,
            hi,
        }
    }

    /// Largest code.
    pub fn qmax(&self) -> i32 {
        self.hi
    }

    /// LSQ initial step from a batch of activation outputs `a` (after the function):
    /// `2·mean|a| / sqrt(hi)`, as the reference with multiplier 1. For ReLU this is
    /// [`ActQuant::calibrate`] on the pre-activations.
    pub fn calibrate_outputs(&mut self, a: Tensor<2>) {
        let m = a.abs().mean().into_scalar::<f32>();
        let s = (2.0 * m / (self.qmax() as f32).sqrt()).max(1e-4);
        let device = self.scale.reference.val().device();
        self.scale = LearnedStep::calibrated(Tensor::from_floats([s], &device));
    }

    /// LSQ initial step from a batch of float pre-activations: `2·mean(relu(z)) / sqrt(qmax)`,
    /// as the reference with multiplier 1.
    pub fn calibrate(&mut self, z: Tensor<2>) {
        let m = burn::tensor::activation::relu(z)
            .mean()
            .into_scalar::<f32>();
        let s = (2.0 * m / (self.qmax() as f32).sqrt()).max(1e-4);
        let device = self.scale.reference.val().device();
        self.scale = LearnedStep::calibrated(Tensor::from_floats([s], &device));
    }

    /// The step `[1]` with LSQ gradient scaling for `n` values per batch ([`LearnedStep`]).
    pub fn step(&self, n: usize) -> Tensor<1> {
        self.scale
            .step(1.0 / ((n as f32) * self.qmax() as f32).sqrt())
    }

    /// The value of [`ActQuant::step`].
    pub fn step_value(&self) -> f32 {
        self.scale.values()[0]
    }

    /// Codes `clamp(round(z / s), lo, hi)` `[batch, d]`, straight-through (LSQ gradients).
    pub fn quantize(&self, z: Tensor<2>, step: Tensor<1>) -> Tensor<2> {
        round_ste((z / step.unsqueeze_dim(0)).clamp(self.lo as f32, self.hi as f32))
    }
}

/// Read the worst-case statistics of integer weight codes `[d_in, d_out]` for inputs in
/// `[0, in_qmax]`: one [`RowStats`] per output neuron. Reductions run on the device; only
/// `3 · d_out` values are copied back.
pub fn row_stats(codes: &Tensor<2>, in_qmax: i32) -> Vec<RowStats> {
    row_stats_in(codes, (0, in_qmax as i64))
}

/// [`row_stats`] for inputs in `[lo, hi]` (`lo ≤ 0 ≤ hi`, signed activations): a row's largest
/// accumulator is `pos·hi + neg·lo` and its smallest `neg·hi + pos·lo`, with `pos` and `neg`
/// the sums of its positive and negative weights.
pub fn row_stats_in(codes: &Tensor<2>, range: (i64, i64)) -> Vec<RowStats> {
    let c = codes.clone().detach();
    let to_vec = |t: Tensor<2>| t.into_data().try_into_vec::<f32>().expect("f32 tensor");
    let neg = to_vec(c.clone().clamp_max(0.0).sum_dim(0));
    let pos = to_vec(c.clone().clamp_min(0.0).sum_dim(0));
    let sq = to_vec(c.powi_scalar(2).sum_dim(0));
    stats_from_sums(&pos, &neg, &sq, range)
}

/// Row statistics from each row's sums of positive weights, negative weights and squares, for
/// inputs in `[lo, hi]`.
pub fn stats_from_sums(
    pos: &[f32],
    neg: &[f32],
    sq: &[f32],
    (lo, hi): (i64, i64),
) -> Vec<RowStats> {
    pos.iter()
        .zip(neg)
        .zip(sq)
        .map(|((&p, &n), &s)| {
            let (p, n) = (p as i64, n as i64);
            RowStats {
                acc_min: n * hi + p * lo,
                acc_max: p * hi + n * lo,
                l2: (s as f64).sqrt(),
            }
        })
        .collect()
}

/// Round accumulators `[batch, d_out]` to their slot centres under `enc` (see
/// [`crate::encoding`]), straight-through. Exact: every intermediate is an integer below 2^24
/// until the final division, which is the same IEEE `f32` division the simulator performs.
pub fn round_to_slots(acc: Tensor<2>, enc: &LayerEncoding, frac_bits: u32) -> Tensor<2> {
    slot_centres(acc, enc, frac_bits, None)
}

/// [`round_to_slots`] with the FHE noise the circuit will see: before the slot is read, each
/// neuron's phase gets half a phase unit (as on the torus) plus Gaussian noise of std
/// `sigma_slots[j]` slots (`d_out` values, from [`LayerEncoding::sigma_slots`]). Noise-aware
/// QAT trains through this so the model learns to tolerate off-by-one table reads; it does not
/// model the (< 2^-40) wrap into the padding half.
pub fn round_to_noisy_slots(
    acc: Tensor<2>,
    enc: &LayerEncoding,
    frac_bits: u32,
    sigma_slots: &[f64],
) -> Tensor<2> {
    slot_centres(acc, enc, frac_bits, Some(sigma_slots))
}

/// The slots `[batch, d_out]` the PBS reads for accumulators `acc` under `enc`, noise-free
/// (`floor(phase / 2^R)`, as [`round_to_slots`] computes them; no gradient).
pub fn slots(acc: Tensor<2>, enc: &LayerEncoding, frac_bits: u32) -> Tensor<2> {
    let device = acc.device();
    let unit = (1i64 << frac_bits) as f32;
    let row = |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), &device).unsqueeze_dim::<2>(0);
    let mult = row(enc.neurons.iter().map(|n| n.mult as f32).collect());
    let offset = row(enc.neurons.iter().map(|n| n.offset as f32).collect());
    (acc.detach() * mult + offset)
        .mul_scalar(1.0 / unit)
        .floor()
}

fn slot_centres(
    acc: Tensor<2>,
    enc: &LayerEncoding,
    frac_bits: u32,
    sigma_slots: Option<&[f64]>,
) -> Tensor<2> {
    let device = acc.device();
    let unit = (1i64 << frac_bits) as f32;
    let half = 1i64 << (frac_bits - 1);
    let row = |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), &device).unsqueeze_dim::<2>(0);
    let mult = row(enc.neurons.iter().map(|n| n.mult as f32).collect());
    let offset = row(enc.neurons.iter().map(|n| n.offset as f32).collect());
    let half_minus_offset = row(enc
        .neurons
        .iter()
        .map(|n| (half - n.offset) as f32)
        .collect());
    let phase = acc.clone().detach() * mult.clone() + offset;
    let phase_slots = match sigma_slots {
        None => phase.mul_scalar(1.0 / unit),
        Some(sigma) => {
            let sigma = row(sigma.iter().map(|&s| s as f32).collect());
            let z = Tensor::<2>::random(phase.dims(), Distribution::Normal(0.0, 1.0), &device);
            phase.add_scalar(0.5).mul_scalar(1.0 / unit) + z * sigma
        }
    };
    let slot = phase_slots.floor();
    let center = (slot.mul_scalar(unit) + half_minus_offset) / mult;
    straight_through(center, acc)
}
