//! Small hand-built circuits: examples of the structure, and fixtures for tests of the
//! simulators and the FHE runtime.
//!
//! Every neuron places its accumulator [`SLOTS_PER_UNIT`] slots per unit, each value at the
//! centre of its own run of the table, so an accumulator sits 50 slots (≈ 10 σ at N = 2048)
//! from any step: under real encryption these circuits compute exactly what the exact
//! simulator computes.

use crate::error::CircuitError;
use crate::ir::{Circuit, Gemm, Input, Meta, Neuron, OutputLayer, Source, Stage, Table};
use qfhe_core::EncodingConfig;

/// Slots per accumulator unit.
pub const SLOTS_PER_UNIT: i64 = 100;
const FIRST_SLOT: i64 = 64;

/// Phase units per accumulator unit of every fixture neuron.
pub fn unit_phase(enc: &EncodingConfig) -> i64 {
    SLOTS_PER_UNIT << enc.frac_bits
}

/// The Δ at which a fixture stage writes when another stage reads it: one accumulator unit of
/// the reader is then exactly [`SLOTS_PER_UNIT`] slots.
pub fn stage_delta(enc: &EncodingConfig) -> u64 {
    unit_phase(enc) as u64 * enc.torus_per_unit()
}

/// A stage of `gemm` computing `f(acc)` on every neuron, writing codes in `out` at scale
/// `delta`. The sources' code ranges and scale come from `circuit` (which must already hold
/// the sources).
///
/// # Errors
/// [`CircuitError::Invalid`] if a neuron's worst-case range needs more than the half torus at
/// [`SLOTS_PER_UNIT`] slots per unit.
pub fn wide_stage(
    circuit: &Circuit,
    gemm: Gemm,
    out: (i32, i32),
    f: impl Fn(i64) -> i32,
    delta: u64,
) -> Result<Stage, CircuitError> {
    let enc = &circuit.encoding;
    let in_units = (circuit.gemm_delta(&gemm) / enc.torus_per_unit()) as i64;
    let unit = unit_phase(enc);
    if in_units < 1 || unit % in_units != 0 {
        return Err(CircuitError::Invalid(format!(
            "fixture: input scale of {in_units} phase units does not divide {unit}"
        )));
    }
    let neurons = (0..gemm.d_out)
        .map(|j| {
            let r = circuit.row_stats(&gemm, j);
            let last = FIRST_SLOT + SLOTS_PER_UNIT * (r.range() + 1);
            if last > enc.poly_size as i64 - FIRST_SLOT {
                return Err(CircuitError::Invalid(format!(
                    "fixture: neuron {j}'s range {} does not fit",
                    r.range()
                )));
            }
            let off_slots = FIRST_SLOT + SLOTS_PER_UNIT / 2 - SLOTS_PER_UNIT * r.acc_min;
            let table = Table::from_fn(enc.poly_size, |u| {
                let k = ((u as i64 - FIRST_SLOT).max(0) / SLOTS_PER_UNIT).min(r.range());
                f(r.acc_min + k)
            });
            Ok(Neuron {
                mult: unit,
                offset: off_slots << enc.frac_bits,
                table,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Stage {
        label: None,
        gemm,
        neurons,
        out_min: out.0,
        out_max: out.1,
        delta,
        exclusive: None,
    })
}

/// A dense GEMM over `sources` with `d_in` inputs and `w_bits`-bit weights.
pub fn dense(sources: Vec<Source>, d_in: usize, weights: Vec<i32>) -> Gemm {
    Gemm {
        sources,
        d_in,
        d_out: weights.len() / d_in,
        w_bits: 3,
        weights,
        inputs: None,
    }
}

fn start(features: usize, bits: u32, output_sources: Vec<Source>) -> Circuit {
    let encoding = EncodingConfig::default();
    Circuit {
        format: crate::ir::FORMAT_TAG.into(),
        version: crate::ir::FORMAT_VERSION,
        input: Input {
            features,
            bits,
            delta: encoding.torus_per_unit(),
            quantizer: None,
        },
        encoding,
        stages: Vec::new(),
        output: OutputLayer {
            gemm: dense(output_sources, 1, vec![0]),
            scale: vec![],
            bias: vec![],
            readout: Default::default(),
        },
        meta: Meta {
            dataset: "fixture".into(),
            ..Meta::default()
        },
    }
}

/// A two-stage chain: 4 inputs of 2 bits → 3 neurons `clamp(acc, 0, 3)` → 2 neurons
/// `clamp(acc, 0, 3)` → 3 outputs, the output Δ not a power of two (so decoding cannot assume
/// the torus divides by Δ).
///
/// # Panics
/// Never: the fixture is valid by construction (a test checks it).
pub fn chain() -> Circuit {
    let mut c = start(4, 2, vec![Source::Stage(1)]);
    let relu3 = |a: i64| a.clamp(0, 3) as i32;
    let delta = stage_delta(&c.encoding);
    let s0 = dense(
        vec![Source::Input],
        4,
        vec![1, -1, 0, 2, 0, 1, 1, -1, -1, 0, 1, 1],
    );
    let s0 = wide_stage(&c, s0, (0, 3), relu3, delta).expect("fixture");
    c.stages.push(s0);
    let s1 = dense(vec![Source::Stage(0)], 3, vec![1, 1, -1, -1, 1, 1]);
    let out_delta = (1u64 << 58) / 3 * 2 + 7;
    let s1 = wide_stage(&c, s1, (0, 3), relu3, out_delta).expect("fixture");
    c.stages.push(s1);
    c.output = OutputLayer {
        gemm: dense(vec![Source::Stage(1)], 2, vec![1, -2, 3, 1, -1, -1]),
        scale: vec![0.5, 0.25, 1.0],
        bias: vec![0.0, 0.1, -0.2],
        readout: Default::default(),
    };
    c.validate().expect("the chain fixture is valid");
    c
}

/// A non-monotone signed activation on accumulators: `0` up to −2, `−1` on `[−1, 0]`, then
/// `min(acc − 1, 2)` — a dip below zero like GELU's or SiLU's.
pub fn dip(acc: i64) -> i32 {
    if acc <= -2 {
        0
    } else if acc <= 0 {
        -1
    } else {
        (acc - 1).min(2) as i32
    }
}

/// A residual circuit with a non-monotone signed table: 3 inputs of 2 bits → stage 0, 4
/// neurons of [`dip`] (codes in `[−1, 2]`) → stage 1, 4 neurons `clamp(acc, 0, 3)` of stage 0 →
/// stage 2, the residual add `x₀ + x₁` of stages 0 and 1 element by element (codes in
/// `[−1, 5]`) → 3 outputs. Stage 0 is read by two stages, so stages 0 and 1 share one Δ.
///
/// # Panics
/// Never: the fixture is valid by construction (a test checks it).
pub fn residual() -> Circuit {
    let mut c = start(3, 2, vec![Source::Stage(2)]);
    let delta = stage_delta(&c.encoding);
    let s0 = dense(
        vec![Source::Input],
        3,
        vec![1, -1, 0, -1, 1, 1, 0, -2, 1, 2, -1, -1],
    );
    let s0 = wide_stage(&c, s0, (-1, 2), dip, delta).expect("fixture");
    c.stages.push(s0);
    let s1 = dense(
        vec![Source::Stage(0)],
        4,
        vec![1, 0, -1, 1, 0, 1, 1, 0, -1, 1, 0, 1, 1, 1, 0, -1],
    );
    let s1 = wide_stage(&c, s1, (0, 3), |a| a.clamp(0, 3) as i32, delta).expect("fixture");
    c.stages.push(s1);
    // Element j of the add reads stage 0's j-th and stage 1's j-th value.
    let add = Gemm {
        sources: vec![Source::Stage(0), Source::Stage(1)],
        d_in: 8,
        d_out: 4,
        w_bits: 2,
        weights: vec![1; 8],
        inputs: Some((0..4).flat_map(|j| [j, 4 + j]).collect()),
    };
    let out_delta = (1u64 << 57) + 12_345;
    let s2 = wide_stage(&c, add, (-1, 5), |a| a as i32, out_delta).expect("fixture");
    c.stages.push(s2);
    c.output = OutputLayer {
        gemm: dense(
            vec![Source::Stage(2)],
            4,
            vec![1, -1, 2, 0, 0, 1, -1, 3, -2, 1, 1, 1],
        ),
        scale: vec![1.0, 0.5, 0.25],
        bias: vec![0.0, -0.1, 0.2],
        readout: Default::default(),
    };
    c.validate().expect("the residual fixture is valid");
    c
}

/// A circuit without PBS, as a linear model compiles: 30 inputs of 8 bits → 3 outputs with
/// 8-bit weights over the whole range `[−127, 127]`, decrypted at full width (worst-case
/// accumulator ranges of ~19 bits). The input Δ is the output layer's, chosen by
/// [`crate::lut::output_delta`] for the rows' worst-case ranges and noise.
///
/// # Panics
/// Never: the fixture is valid by construction (a test checks it).
pub fn linear() -> Circuit {
    let features = 30;
    let mut c = start(features, 8, vec![Source::Input]);
    let weights: Vec<i32> = (0..3 * features as i32)
        .map(|i| (i * 37 + 11) % 255 - 127)
        .collect();
    c.output = OutputLayer {
        gemm: Gemm {
            sources: vec![Source::Input],
            d_in: features,
            d_out: 3,
            w_bits: 8,
            weights,
            inputs: None,
        },
        scale: vec![0.01, 0.02, 0.005],
        bias: vec![0.5, -1.0, 0.0],
        readout: Default::default(),
    };
    let rows: Vec<_> = (0..3).map(|j| c.output_row_stats(j)).collect();
    c.input.delta =
        crate::lut::output_delta_for(&rows, c.encoding.noise.fresh_sigma_slots, &c.encoding);
    c.validate().expect("the linear fixture is valid");
    c
}

/// Every input of `circuit` (all codes of every feature) for small fixtures, in a fixed order;
/// at most `limit` of them.
pub fn all_inputs(circuit: &Circuit, limit: usize) -> Vec<Vec<i32>> {
    let q = (1i64 << circuit.input.bits) as usize;
    let n = circuit.input.features;
    let total = q.checked_pow(n as u32).unwrap_or(usize::MAX).min(limit);
    (0..total)
        .map(|mut i| {
            (0..n)
                .map(|_| {
                    let v = (i % q) as i32;
                    i /= q;
                    v
                })
                .collect()
        })
        .collect()
}
