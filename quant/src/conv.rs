//! Fake-quantized 2-D convolution, its lowering by index, and exact sum pooling.
//!
//! Shapes follow `burn::nn::conv::Conv2d`: weights `[c_out, c_in, k, k]`, inputs
//! `[batch, c_in, h, w]`, outputs `[batch, c_out, h', w']` with
//! `h' = (h + 2·padding - k) / stride + 1`. Output neuron `(c, y, x)` is neuron
//! `c·h'·w' + y·w' + x` of the circuit layer (NCHW flatten order).

use crate::bounds::RowStats;
use crate::layers::AccumulatorBound;
use crate::scheme::signed_qmax;
use crate::ste::{round_ste, LearnedStep};
use burn::module::Param;
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::Distribution;

/// Geometry of a square-kernel convolution on a `[c_in, h, w]` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConvGeometry {
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel size `k` (`k × k`).
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl ConvGeometry {
    /// Output height and width.
    pub fn output_hw(&self) -> (usize, usize) {
        let o = |n: usize| (n + 2 * self.padding - self.kernel) / self.stride + 1;
        (o(self.h), o(self.w))
    }

    /// Taps per output neuron, `c_in · k · k`.
    pub fn fan_in(&self) -> usize {
        self.c_in * self.kernel * self.kernel
    }

    /// im2col by index: for output position `(y, x)` (row-major, `h'·w'` positions), the flat
    /// input index (`ci·h·w + iy·w + ix`) of each tap `(ci, ky, kx)`, or `None` where the tap
    /// falls on padding. `[h'·w'][c_in·k·k]`.
    pub fn taps(&self) -> Vec<Vec<Option<u32>>> {
        let (oh, ow) = self.output_hw();
        let mut out = Vec::with_capacity(oh * ow);
        for y in 0..oh {
            for x in 0..ow {
                let mut row = Vec::with_capacity(self.fan_in());
                for ci in 0..self.c_in {
                    for ky in 0..self.kernel {
                        for kx in 0..self.kernel {
                            let iy = (y * self.stride + ky) as isize - self.padding as isize;
                            let ix = (x * self.stride + kx) as isize - self.padding as isize;
                            let inside = (0..self.h as isize).contains(&iy)
                                && (0..self.w as isize).contains(&ix);
                            row.push(inside.then(|| {
                                (ci * self.h * self.w) as u32
                                    + (iy as usize * self.w + ix as usize) as u32
                            }));
                        }
                    }
                }
                out.push(row);
            }
        }
        out
    }

    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1)
    }
}

/// A convolution with per-output-channel signed symmetric fake-quantized weights (LSQ scales).
#[derive(Module, Debug)]
pub struct QuantConv2d {
    /// Float weights `[c_out, c_in, k, k]`.
    pub weight: Param<Tensor<4>>,
    /// Float bias `[c_out]` (applied by the LUT).
    pub bias: Param<Tensor<1>>,
    /// Per-output-channel weight step `[c_out]`.
    pub w_scale: LearnedStep,
    /// Weight bit width.
    pub w_bits: u32,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl QuantConv2d {
    /// Kaiming-uniform weights, zero bias, unit scales.
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        w_bits: u32,
        device: &Device,
    ) -> Self {
        let bound = (1.0 / (c_in * kernel * kernel) as f64).sqrt();
        Self {
            weight: Param::from_tensor(Tensor::random(
                [c_out, c_in, kernel, kernel],
                Distribution::Uniform(-bound, bound),
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([c_out], device)),
            w_scale: LearnedStep::ones(c_out, device),
            w_bits,
            stride,
            padding,
        }
    }

    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1)
    }

    /// The geometry on an input of `h × w` pixels.
    pub fn geometry(&self, h: usize, w: usize) -> ConvGeometry {
        let [_, c_in, k, _] = self.weight.val().dims();
        ConvGeometry {
            c_in,
            h,
            w,
            kernel: k,
            stride: self.stride,
            padding: self.padding,
        }
    }

    /// Float forward `[batch, c_in, h, w] -> [batch, c_out, h', w']`.
    pub fn forward_float(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(x, self.weight.val(), Some(self.bias.val()), self.options())
    }

    /// Convolution of input codes with weight codes, no bias: the integer accumulators
    /// (exact in `f32` below 2^24).
    pub fn accumulate(&self, x_codes: Tensor<4>, codes: Tensor<4>) -> Tensor<4> {
        conv2d(x_codes, codes, None, self.options())
    }

    /// LSQ initial steps: `2·mean|w_c| / sqrt(qmax)` per output channel, as the reference with
    /// multiplier 1.
    pub fn init_scales(&mut self) {
        let [c_out, ..] = self.weight.val().dims();
        let qmax = signed_qmax(self.w_bits) as f64;
        let mean = self
            .weight
            .val()
            .abs()
            .reshape([c_out as i32, -1])
            .mean_dim(1)
            .squeeze_dim::<1>(1);
        self.w_scale = LearnedStep::calibrated(mean.mul_scalar(2.0 / qmax.sqrt()).clamp_min(1e-6));
    }

    /// Fold an inference-mode batch norm that follows this convolution into its weights and
    /// bias: with `g_c = γ_c / sqrt(running_var_c + ε)`, `W'_c = g_c · W_c` and
    /// `b'_c = g_c · (b_c − running_mean_c) + β_c` (Jacob et al. 2018, §3.2). The folded
    /// convolution's float forward equals conv → batch norm (evaluation mode); call this before
    /// quantizing, so the quantized weights are the folded ones the circuit uses.
    pub fn fold_batch_norm(&mut self, bn: &BatchNorm) {
        let [c_out, ..] = self.weight.val().dims();
        let var = bn.running_var.value_sync().detach();
        let mean = bn.running_mean.value_sync().detach();
        let g = bn.gamma.val().detach() / var.add_scalar(bn.epsilon).sqrt();
        let w = self.weight.val().detach() * g.clone().reshape([c_out, 1, 1, 1]);
        let b = (self.bias.val().detach() - mean) * g + bn.beta.val().detach();
        self.weight = Param::from_tensor(w.detach());
        self.bias = Param::from_tensor(b.detach());
    }

    /// Each output channel's worst-case pre-activation range in output steps,
    /// `‖w_c‖₁ · x_max / s_out`, of the unbounded float weights (`c_out` values).
    pub fn range_steps(&self, x_max: f32, s_out: f32) -> Vec<f32> {
        let [c_out, ..] = self.weight.val().dims();
        self.weight
            .val()
            .detach()
            .abs()
            .reshape([c_out as i32, -1])
            .sum_dim(1)
            .mul_scalar(x_max / s_out)
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 tensor")
    }

    /// The per-channel step `[c_out]` with LSQ gradient scaling ([`LearnedStep`]).
    pub fn scale(&self) -> Tensor<1> {
        let [_, c_in, k, _] = self.weight.val().dims();
        let g = 1.0 / ((c_in * k * k) as f32 * signed_qmax(self.w_bits) as f32).sqrt();
        self.w_scale.step(g)
    }

    /// The values of [`QuantConv2d::scale`] (`c_out` steps, all ≥ 0).
    pub fn scale_values(&self) -> Vec<f32> {
        self.w_scale.values()
    }

    /// Integer weight codes `[c_out, c_in, k, k]`, straight-through, under the accumulator
    /// bound if given (per output channel: an interior position sees the whole kernel).
    pub fn codes(&self, bound: Option<&AccumulatorBound>) -> Tensor<4> {
        let w = self.weight.val();
        let [c_out, ..] = w.dims();
        let w = match bound {
            None => w,
            Some(b) => {
                let l1 = w
                    .clone()
                    .abs()
                    .reshape([c_out as i32, -1])
                    .sum_dim(1)
                    .clamp_min(1e-12); // [c_out, 1]
                let steps = l1.mul_scalar(b.x_max) / b.s_out.clone().unsqueeze_dim(0);
                let shrink = (b.max_steps.clone().unsqueeze_dim::<2>(1) / steps).clamp_max(1.0);
                w * shrink.reshape([c_out, 1, 1, 1])
            }
        };
        let qmax = signed_qmax(self.w_bits) as f32;
        let s = self.scale().reshape([c_out, 1, 1, 1]);
        round_ste((w / s).clamp(-qmax, qmax))
    }
}

/// Worst-case statistics of every output neuron of a convolution, in NCHW flatten order
/// (`c_out·h'·w'` entries): the convolution of a validity mask (ones on the input, zeros on the
/// padding) with the positive parts, negative parts and squares of the codes. Border neurons
/// see fewer taps, so their ranges are narrower. Computed on the device; `3·c_out·h'·w'` values
/// are copied back.
pub fn conv_row_stats(codes: &Tensor<4>, geometry: &ConvGeometry, in_qmax: i32) -> Vec<RowStats> {
    conv_row_stats_in(codes, geometry, (0, in_qmax as i64))
}

/// [`conv_row_stats`] for inputs in `[lo, hi]` (`lo ≤ 0 ≤ hi`; see
/// [`crate::layers::row_stats_in`]). A padded tap reads code 0, inside every such range.
pub fn conv_row_stats_in(
    codes: &Tensor<4>,
    geometry: &ConvGeometry,
    range: (i64, i64),
) -> Vec<RowStats> {
    let c = codes.clone().detach();
    let ones = Tensor::<4>::ones([1, geometry.c_in, geometry.h, geometry.w], &c.device());
    let map = |k: Tensor<4>| {
        conv2d(ones.clone(), k, None, geometry.options())
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32")
    };
    let pos = map(c.clone().clamp_min(0.0));
    let neg = map(c.clone().clamp_max(0.0));
    let sq = map(c.powi_scalar(2));
    crate::layers::stats_from_sums(&pos, &neg, &sq, range)
}

/// Sum pooling, `k × k` windows with stride `k`, on integer codes `[batch, c, h, w]` (a depthwise
/// convolution with a kernel of ones, exact on integers). Average pooling in the circuit is this
/// sum, with the `1/k²` folded into the next layer's scale, so it costs no PBS.
pub fn sum_pool(x: Tensor<4>, k: usize) -> Tensor<4> {
    let [_, c, ..] = x.dims();
    let ones = Tensor::<4>::ones([c, 1, k, k], &x.device());
    conv2d(x, ones, None, ConvOptions::new([k, k], [0, 0], [1, 1], c))
}

/// Max pooling, `k × k` windows with stride `k`, `[batch, c, h, w]` (exact on integer codes;
/// gradient to each window's maximum). In the circuit a 2×2 window costs 6 PBS
/// (`max(a, b) = a + relu(b − a)`, two levels), which is why average pooling is the default.
pub fn max_pool(x: Tensor<4>, k: usize) -> Tensor<4> {
    burn::tensor::module::max_pool2d(x, MaxPoolOptions::new([k, k]))
}
