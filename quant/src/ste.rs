//! Straight-through estimators for Burn (Burn's `round` and `floor` have zero gradient).
//!
//! Each function returns *exactly* the forward value (`v.detach() + (x - x.detach())`, and
//! `x - x == 0`), so the QAT forward equals the integer simulator bit for bit, while the gradient
//! is the identity with respect to `x`.

use burn::module::Param;
use burn::prelude::*;

/// Forward `value`, backward identity with respect to `x` (`value` carries no gradient).
pub fn straight_through<const D: usize>(value: Tensor<D>, x: Tensor<D>) -> Tensor<D> {
    value.detach() + (x.clone() - x.detach())
}

/// Forward `round(x)` (ties to even), backward identity.
pub fn round_ste<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    straight_through(x.clone().round(), x)
}

/// Forward `floor(x)`, backward identity.
pub fn floor_ste<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    straight_through(x.clone().floor(), x)
}

/// Forward `s` unchanged, backward `g · grad`: LSQ's step-size gradient scale
/// (Esser et al. 2020, "Learned Step Size Quantization", g = 1/sqrt(N · Qp)).
pub fn grad_scale<const D: usize>(s: Tensor<D>, g: f32) -> Tensor<D> {
    let sg = s.clone().mul_scalar(g);
    s.detach() + (sg.clone() - sg.detach())
}

/// A learned quantizer step per channel, `reference · |multiplier|` (`[n]` steps).
///
/// Adam's updates have a fixed size (about the learning rate) whatever the gradient's scale, so a
/// step stored directly would move by ~1e-3 per update however small it is (a 0.03 weight step
/// random-walked to several times its size within an epoch). Storing a multiplier near 1 on a
/// frozen calibrated reference makes every update relative. `|·|` keeps the step positive: a step
/// crossing zero would turn a neuron's table upside down.
#[derive(Module, Debug)]
pub struct LearnedStep {
    /// Learned multiplier `[n]` (1 after calibration).
    pub multiplier: Param<Tensor<1>>,
    /// Calibrated reference step `[n]`, not trained (used detached).
    pub reference: Param<Tensor<1>>,
}

impl LearnedStep {
    /// `n` unit steps (before calibration).
    pub fn ones(n: usize, device: &Device) -> Self {
        Self::calibrated(Tensor::ones([n], device))
    }

    /// Steps equal to `reference` `[n]`, multiplier 1.
    pub fn calibrated(reference: Tensor<1>) -> Self {
        let multiplier = Tensor::ones(reference.dims(), &reference.device());
        Self {
            multiplier: Param::from_tensor(multiplier),
            reference: Param::from_tensor(reference.detach()),
        }
    }

    /// The steps `[n]`, with LSQ gradient scale `g` on the multiplier ([`grad_scale`]).
    pub fn step(&self, g: f32) -> Tensor<1> {
        grad_scale(self.multiplier.val(), g).abs() * self.reference.val().detach()
    }

    /// The values of [`LearnedStep::step`] (`n` steps, all ≥ 0), computed by the same device
    /// ops, so export reads the forward's exact `f32`s.
    pub fn values(&self) -> Vec<f32> {
        self.step(1.0)
            .detach()
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 steps")
    }
}
