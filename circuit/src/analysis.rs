//! Per-stage analysis: why a circuit is fast, slow, exact, inexact or refused.

use crate::ir::{Circuit, Source};
use crate::simulate::{ExactTrace, NoiseModel};
use qfhe_core::bounds::signed_bit_width;
use qfhe_core::NoiseSpec;
use serde::Serialize;

/// What the noise model says about one layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// `hidden 1`, `hidden 2`, … (one per stage), `output`.
    pub name: String,
    /// Inputs per neuron.
    pub d_in: usize,
    /// Neurons.
    pub d_out: usize,
    /// Smallest worst-case accumulator over the layer's neurons.
    pub acc_min: i64,
    /// Largest worst-case accumulator.
    pub acc_max: i64,
    /// Signed bit width of `[acc_min, acc_max]`.
    pub acc_bits: u32,
    /// PBS per sample in this layer (0 for the output layer).
    pub pbs: usize,
    /// Narrowest table step over the layer's neurons, slots (hidden layers): the narrowest run
    /// that a reachable phase could jump past into a level more than one code away.
    pub min_slots_per_step: Option<f64>,
    /// Median over neurons of their narrowest step, slots (hidden layers).
    pub median_slots_per_step: Option<f64>,
    /// Largest ‖W_j‖₂ (times the row multiplier for hidden layers: what multiplies input noise).
    pub max_l2: f64,
    /// Largest noise std: slots at the PBS input (hidden) or accumulator units (output).
    pub max_sigma: f64,
    /// Mean probability that an activation differs from the exact circuit, given exact inputs,
    /// over the analysed samples (for the output layer: that a decrypted accumulator does).
    pub predicted_flip_rate: f64,
    /// log2 of the worst neuron's gross-error probability per PBS (wrap-around into the padding
    /// half, or a jump of more than one level); for the output layer, of a decoding wrap.
    pub log2_p_gross: f64,
    /// The neuron with that probability.
    pub worst_neuron: usize,
}

fn log2_erfc(x: f64) -> f64 {
    // erfc underflows past x ≈ 26; its asymptote e^{-x²}/(x√π) is exact enough there.
    let v = libm::erfc(x);
    if v > 0.0 {
        v.log2()
    } else {
        (-x * x) * std::f64::consts::LOG2_E - (x * std::f64::consts::PI.sqrt()).log2()
    }
}

fn log2_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (1.0 + (lo - hi).exp2()).log2()
}

/// Analyse every stage of `circuit` under `spec`, with predicted flip rates averaged over the
/// exact runs of `samples` (input codes; samples that do not fit the circuit are skipped).
pub fn analyze(circuit: &Circuit, spec: &NoiseSpec, samples: &[Vec<i32>]) -> Vec<LayerReport> {
    let noise = NoiseModel::new(circuit, spec);
    let traces: Vec<_> = samples
        .iter()
        .filter_map(|x| circuit.run_exact(x).ok().map(|t| (x, t)))
        .collect();
    let mut reports: Vec<LayerReport> = (0..circuit.stages.len())
        .map(|s| stage_report(circuit, &noise, s, &traces))
        .collect();
    reports.push(output_report(circuit, &noise));
    reports
}

fn stage_report(
    circuit: &Circuit,
    noise: &NoiseModel,
    s: usize,
    traces: &[(&Vec<i32>, ExactTrace)],
) -> LayerReport {
    let stage = &circuit.stages[s];
    let r = circuit.encoding.frac_bits;
    let n_slots = circuit.encoding.poly_size;
    let units = circuit.delta_in_units(s).max(1);
    let mut acc_lo = i64::MAX;
    let mut acc_hi = i64::MIN;
    let mut steps = Vec::new();
    let mut worst = (f64::NEG_INFINITY, 0usize);
    let mut max_l2 = 0f64;
    for j in 0..stage.d_out() {
        let row = circuit.row_stats(&stage.gemm, j);
        let n = &stage.neurons[j];
        acc_lo = acc_lo.min(row.acc_min);
        acc_hi = acc_hi.max(row.acc_max);
        max_l2 = max_l2.max(row.l2 * (n.mult / units) as f64);
        let sigma = noise.stage_sigma[s][j] * std::f64::consts::SQRT_2;
        let lo = NoiseModel::phase_slots(n, row.acc_min, r);
        let hi = NoiseModel::phase_slots(n, row.acc_max, r);
        // Wrap-around: the reachable phases must stay inside [0, N).
        let mut log2_p = log2_add(
            log2_erfc(lo / sigma) - 1.0,
            log2_erfc((n_slots as f64 - hi) / sigma) - 1.0,
        );
        // Jumps past a neighbouring run: from any reachable run k, crossing all of run k±1
        // into run k±2. Gross only when that lands more than one level away: a narrow run of a
        // non-monotone table (SiLU's dip, one code below two equal neighbours) can be jumped
        // without any error.
        let t = &n.table;
        let gross = |k: usize, beyond: usize| {
            t.levels
                .get(beyond)
                .is_some_and(|&v| (i64::from(v) - i64::from(t.levels[k])).abs() > 1)
        };
        let width = |m: usize| (t.run_end(m, n_slots) - t.starts[m] as i64) as f64;
        // Only runs lying wholly inside (0, N) can be jumped over; a jump past either edge of
        // the half torus is a wrap, counted above.
        let interior = |m: usize| t.starts[m] >= 1 && t.run_end(m, n_slots) < n_slots as i64;
        let (k_lo, k_hi) = (
            t.run_at(lo.floor() as i64, n_slots).0,
            t.run_at(hi.floor() as i64, n_slots).0,
        );
        let mut narrowest = f64::INFINITY;
        for k in k_lo..=k_hi {
            for (m, beyond) in [(k + 1, k + 2), (k.wrapping_sub(1), k.wrapping_sub(2))] {
                if m < t.runs() && interior(m) && gross(k, beyond) {
                    narrowest = narrowest.min(width(m));
                    log2_p = log2_add(log2_p, log2_erfc(width(m) / sigma) - 1.0);
                }
            }
        }
        if narrowest.is_finite() {
            steps.push(narrowest);
        }
        if log2_p > worst.0 {
            worst = (log2_p, j);
        }
    }
    let mut flips = 0.0;
    let mut count = 0usize;
    for (x, t) in traces {
        let input = circuit.gather(&stage.gemm, |src| match src {
            Source::Input => x.as_slice(),
            Source::Stage(k) => &t.stages[k],
        });
        for j in 0..stage.d_out() {
            flips += noise.flip_probability(circuit, s, j, stage.gemm.accumulate(j, &input));
            count += 1;
        }
    }
    steps.sort_by(f64::total_cmp);
    LayerReport {
        name: stage.name(s),
        d_in: stage.gemm.d_in,
        d_out: stage.d_out(),
        acc_min: acc_lo,
        acc_max: acc_hi,
        acc_bits: signed_bit_width(acc_lo, acc_hi),
        pbs: stage.d_out(),
        min_slots_per_step: steps.first().copied(),
        median_slots_per_step: steps.get(steps.len() / 2).copied(),
        max_l2,
        max_sigma: noise.stage_sigma[s].iter().copied().fold(0.0, f64::max),
        predicted_flip_rate: flips / count.max(1) as f64,
        log2_p_gross: worst.0,
        worst_neuron: worst.1,
    }
}

fn output_report(circuit: &Circuit, noise: &NoiseModel) -> LayerReport {
    let o = &circuit.output;
    let capacity = crate::ir::capacity(circuit.output_delta()) as f64;
    let mut acc_lo = i64::MAX;
    let mut acc_hi = i64::MIN;
    let mut worst = (f64::NEG_INFINITY, 0usize);
    let mut max_l2 = 0f64;
    let mut flip = 0.0;
    for j in 0..o.d_out() {
        let row = circuit.output_row_stats(j);
        acc_lo = acc_lo.min(row.acc_min);
        acc_hi = acc_hi.max(row.acc_max);
        max_l2 = max_l2.max(row.l2);
        let sigma = noise.output_sigma[j] * std::f64::consts::SQRT_2;
        // The client centres the range in the torus: half the spare capacity on each side.
        let margin = (capacity - row.range() as f64) / 2.0;
        let log2_p = log2_erfc(margin / sigma);
        if log2_p > worst.0 {
            worst = (log2_p, j);
        }
        // Decryption rounds to the nearest integer: off when |noise| > 1/2.
        flip += libm::erfc(0.5 / sigma);
    }
    LayerReport {
        name: "output".into(),
        d_in: o.gemm.d_in,
        d_out: o.d_out(),
        acc_min: acc_lo,
        acc_max: acc_hi,
        acc_bits: signed_bit_width(acc_lo, acc_hi),
        pbs: 0,
        min_slots_per_step: None,
        median_slots_per_step: None,
        max_l2,
        max_sigma: noise.output_sigma.iter().copied().fold(0.0, f64::max),
        predicted_flip_rate: flip / o.d_out() as f64,
        log2_p_gross: worst.0,
        worst_neuron: worst.1,
    }
}
