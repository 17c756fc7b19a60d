//! The quantized forward on a batch, following a [`Plan`]: exactly the integers the circuit
//! computes (with [`PhaseNoise::Exact`]).
//!
//! Every PBS point reads its accumulator at the slot centre of its encoding, dequantizes it
//! (`c · s_in · s_w + bias`), applies its activation and quantizes. ReLU is computed directly,
//! bit for bit as the table [`super::PbsPlan::tables`] would give it; other activations read
//! those tables, so the forward and the circuit share one `f32` evaluation of the function,
//! with the gradient of Burn's own evaluation (straight-through).

use super::plan::{floats, PbsPlan, Plan, WeightCodes};
use super::{apply_float, flat, image, input_shape, roles, QSequential, Role};
use crate::qat::PhaseNoise;
use burn::prelude::*;
use burn::tensor::Int;
use qfhe_core::{Activation, LayerSpec};
use qfhe_quant::conv::{max_pool, sum_pool};
use qfhe_quant::layers::{round_to_noisy_slots, round_to_slots, slots};
use qfhe_quant::ste::{round_ste, straight_through};
use qfhe_quant::EncodingConfig;

/// What a quantized forward computed.
#[derive(Debug, Clone)]
pub struct QatOutput {
    /// Logits `[batch, classes]`.
    pub logits: Tensor<2>,
    /// The codes after each spec layer `[batch, values]` (after a weighted layer: its raw
    /// integer accumulators).
    pub layers: Vec<Tensor<2>>,
}

/// The quantized forward of `model` on input codes `[batch, inputs]` under `plan` (made for
/// this batch size).
pub fn forward(
    model: &QSequential,
    plan: &Plan,
    x_codes: Tensor<2>,
    noise: PhaseNoise,
) -> QatOutput {
    let spec = &model.spec;
    let cfg = &model.encoding;
    let roles = roles(spec);
    let shapes = model.shapes();
    let batch = x_codes.dims()[0];
    let mut h = x_codes;
    let mut shape = input_shape(spec);
    let mut layers: Vec<Tensor<2>> = Vec::with_capacity(spec.layers.len());
    let mut logits = None;
    for (i, layer) in spec.layers.iter().enumerate() {
        h = match (roles[i], layer) {
            (Role::Linear(_), _) if i == plan.output.layer => {
                let o = &plan.output;
                let y = h.clone().matmul(o.codes.clone()) * o.k.clone() + o.bias.clone();
                logits = Some(y);
                h
            }
            (Role::Linear(_) | Role::Conv(_), _) => {
                let point = plan
                    .pbs
                    .iter()
                    .find(|p| p.weighted.as_ref().is_some_and(|(w, _)| *w == i))
                    .expect("planned: every hidden weighted layer feeds an activation");
                match &point.weighted.as_ref().expect("found by it").1 {
                    WeightCodes::Linear(c) => h.matmul(c.clone()),
                    WeightCodes::Conv(c, _) => {
                        let conv = match roles[i] {
                            Role::Conv(k) => &model.convs[k],
                            _ => unreachable!("conv codes belong to a conv"),
                        };
                        flat(conv.accumulate(image(h, shape), c.clone()))
                    }
                }
            }
            (Role::Act(a), _) => activate(model, &plan.pbs[a], h, cfg, noise),
            (_, LayerSpec::AvgPool { k }) => flat(sum_pool(image(h, shape), *k)),
            (_, LayerSpec::MaxPool { k }) => flat(max_pool(image(h, shape), *k)),
            (_, LayerSpec::Add { from }) => h + layers[*from].clone(),
            _ => h, // flatten, a folded batch norm
        };
        debug_assert_eq!(h.dims(), [batch, shapes[i].len()]);
        shape = shapes[i];
        layers.push(h.clone());
    }
    QatOutput {
        logits: logits.expect("planned: the last layer is the output"),
        layers,
    }
}

/// One PBS point on accumulators `acc` `[batch, d_out]`: slot rounding (exact or through the
/// noise model), dequantization, activation, quantization.
fn activate(
    model: &QSequential,
    p: &PbsPlan,
    acc: Tensor<2>,
    cfg: &EncodingConfig,
    noise: PhaseNoise,
) -> Tensor<2> {
    let centres = match noise {
        PhaseNoise::Exact if p.integer_tables => integer_reads(acc.clone(), p, cfg),
        PhaseNoise::Exact => round_to_slots(acc.clone(), &p.encoding, cfg.frac_bits),
        PhaseNoise::Modelled { scale } => {
            let mut sigma = p.encoding.sigma_slots(&p.rows, p.input.kind, cfg);
            sigma.iter_mut().for_each(|s| *s *= f64::from(scale));
            round_to_noisy_slots(acc.clone(), &p.encoding, cfg.frac_bits, &sigma)
        }
    };
    let z = centres * p.k.clone() + p.bias.clone();
    // Integer tables are computed in f64; the forward reads them rather than recomputing.
    if p.activation == Activation::Relu && !p.integer_tables {
        return model.acts[p.act].quantize(z, p.step.clone());
    }
    let (lo, hi) = p.range;
    let surrogate = (apply_float(p.activation, z) / p.step.clone().unsqueeze_dim(0))
        .clamp(lo as f32, hi as f32);
    match noise {
        PhaseNoise::Exact => straight_through(lookup(p, acc, cfg), surrogate),
        PhaseNoise::Modelled { .. } => round_ste(surrogate),
    }
}

/// What integer tables read for accumulators `acc` `[batch, d_out]`: the accumulator itself
/// for neurons whose encoding resolves integers, the slot centre for the others.
fn integer_reads(acc: Tensor<2>, p: &PbsPlan, cfg: &EncodingConfig) -> Tensor<2> {
    let device = acc.device();
    let exact: Vec<f32> = p
        .encoding
        .neurons
        .iter()
        .map(|n| f32::from(u8::from(n.resolves_integers(cfg.frac_bits))))
        .collect();
    let mask = Tensor::<1>::from_floats(exact.as_slice(), &device).unsqueeze_dim::<2>(0);
    let centres = round_to_slots(acc.clone(), &p.encoding, cfg.frac_bits);
    centres * mask.clone().neg().add_scalar(1.0) + acc * mask
}

/// The codes the neurons' tables hold at the slots `acc` `[batch, d_out]` lands in.
fn lookup(p: &PbsPlan, acc: Tensor<2>, cfg: &EncodingConfig) -> Tensor<2> {
    let device = acc.device();
    let [batch, d_out] = acc.dims();
    let n = cfg.poly_size as usize;
    let mut flat_tables = Vec::with_capacity(d_out * n);
    for t in p.tables(cfg) {
        flat_tables.extend((0..n as i64).map(|u| t.level_at(u) as f32));
    }
    let tables = Tensor::<1>::from_data(TensorData::new(flat_tables, [d_out * n]), &device);
    let slot = slots(acc, &p.encoding, cfg.frac_bits)
        .clamp(0.0, (n - 1) as f32)
        .int();
    let base: Vec<i64> = (0..d_out as i64).map(|j| j * n as i64).collect();
    let base = Tensor::<1, Int>::from_data(TensorData::new(base, [d_out]), &device);
    let index = (slot + base.unsqueeze_dim::<2>(0)).reshape([batch * d_out]);
    tables.select(0, index).reshape([batch, d_out])
}

/// Each activation layer's output codes as integers, `[batch][values]` per `acts` entry (for
/// comparing with the circuit's stages).
pub fn activation_codes(model: &QSequential, out: &QatOutput) -> Vec<Vec<i32>> {
    roles(&model.spec)
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Role::Act(_)))
        .map(|(i, _)| {
            floats(out.layers[i].clone())
                .into_iter()
                .map(|v| v as i32)
                .collect()
        })
        .collect()
}
