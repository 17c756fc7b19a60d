//! Straight-through estimators for Burn (Burn's `round` and `floor` have zero gradient).
//!
//! Each function returns *exactly* the forward value (`v.detach() + (x - x.detach())`, and
//! `x - x == 0`), so the QAT forward equals the integer simulator bit for bit, while the gradient
//! is the identity with respect to `x`.

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

/// A learned step `reference · |multiplier|`, with LSQ gradient scale `g` on the multiplier.
///
/// Adam's updates have a fixed size (about the learning rate) whatever the gradient's scale, so a
/// step stored directly would move by ~1e-3 per update however small it is (a 0.03 weight step
/// random-walked to several times its size within an epoch). Storing a multiplier near 1 on a
/// frozen calibrated reference makes every update relative. `|·|` keeps the step positive: a step
/// crossing zero would turn a neuron's table upside down.
pub fn relative_step<const D: usize>(
    reference: Tensor<D>,
    multiplier: Tensor<D>,
    g: f32,
) -> Tensor<D> {
    grad_scale(multiplier, g).abs() * reference.detach()
}
