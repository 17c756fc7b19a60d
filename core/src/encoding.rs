//! Placing accumulators on the PBS torus: the encoding that makes every hidden neuron's
//! accumulator narrow and noise-bounded by construction.
//!
//! # Model (see docs/DESIGN.md)
//! A PBS at polynomial size `N` reads its input phase modulo `2N` ("slots" of `2^64 / 2N` torus
//! units; `2^52` at `N = 2048`); with one padding bit only the half torus `[0, N)` slots is
//! usable. tfhe-rs's centered modulus switch subtracts half a slot from the body, so the slot
//! read is `floor(phase)` plus zero-mean noise.
//!
//! Phases are kept in integer **phase units** of `2^-R` slot (`R = frac_bits`). Neuron `j` of a
//! layer computes, on ciphertexts,
//! ```text
//! phase_j = mult_j · acc_j + offset_j            (phase units; acc_j = Σ_i W_ji x_i)
//! slot_j  = floor(phase_j / 2^R)                 (noise-free slot the PBS reads)
//! ```
//! where `mult_j = c_j · delta_in` is the neuron's integer row multiplier `c_j` times the shared
//! input scale `delta_in` (phase units per input unit, fixed by the previous layer's LUTs or by
//! the client's encryption), and `offset_j` places the worst-case range `[acc_min, acc_max]`
//! inside `[margin, N - margin)` slots. Half a phase unit is added on the torus so no phase sits
//! exactly on a slot boundary.
//!
//! The neuron's activation LUT is evaluated at the **slot centre** ([`NeuronEncoding::center_acc`]),
//! so rounding the accumulator to its slot ("approximate rounding" of its low bits) is part of
//! the exact semantics: the QAT forward pass, the clear simulator and the LUT all apply it.

use crate::bounds::RowStats;

/// Noise at a PBS input, in slots (units of `1/(2N)` of the torus).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NoiseSpec {
    /// Std added at every PBS input regardless of the GEMM: keyswitch plus centered modulus
    /// switch, `sqrt(σ_KS² + σ_MS²)`.
    pub base_sigma_slots: f64,
    /// Std of one PBS output ciphertext.
    pub pbs_sigma_slots: f64,
    /// Std of one fresh encryption (the client's input ciphertexts).
    pub fresh_sigma_slots: f64,
    /// Std the transport adds to each decrypted output ciphertext: outputs travel
    /// modulus-switched to 2^32 (`qfhe_fhe_runtime::messages`), `2^32·√((1 + k·N/2)/12)`
    /// torus units. 0 in circuit files written before outputs were switched.
    #[serde(default)]
    pub output_wire_sigma_slots: f64,
}

impl Default for NoiseSpec {
    /// tfhe-rs 1.8 `V1_8_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128` (n = 918, N = 2048), from
    /// `tfhe::core_crypto::commons::noise_formulas`; `qfhe-fhe-runtime` recomputes these and a
    /// test there checks they agree.
    fn default() -> Self {
        Self {
            base_sigma_slots: 4.8002,
            pbs_sigma_slots: 0.140911,
            fresh_sigma_slots: 1.68e-11,
            output_wire_sigma_slots: 8.814e-6,
        }
    }
}

/// Where a layer's input ciphertexts come from: their noise differs by orders of magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InputKind {
    /// Fresh encryptions by the client (first layer).
    Fresh,
    /// PBS outputs of the previous layer.
    Pbs,
}

/// Parameters of the encoding, shared by training, export and the runtime.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EncodingConfig {
    /// PBS polynomial size `N`: the half torus holds `N` slots.
    pub poly_size: u32,
    /// `R`: phases are integers in units of `2^-R` slot.
    pub frac_bits: u32,
    /// Slots kept free at both ends of the half torus so noise cannot wrap into the padding half.
    pub margin_slots: u32,
    /// Training target for the narrowest table step, in slots: the accumulator-aware (A2Q-style)
    /// bound keeps each neuron's worst-case range within `usable slots / min_step_slots` output
    /// steps.
    pub min_step_slots: f64,
    /// Noise assumed when choosing row multipliers.
    pub noise: NoiseSpec,
}

impl Default for EncodingConfig {
    fn default() -> Self {
        Self {
            poly_size: 2048,
            frac_bits: 10,
            margin_slots: 64,
            min_step_slots: 40.0,
            noise: NoiseSpec::default(),
        }
    }
}

impl EncodingConfig {
    /// Phase units per slot, `2^R`.
    pub fn units_per_slot(&self) -> i64 {
        1i64 << self.frac_bits
    }

    /// Usable slots, `N - 2·margin`.
    pub fn usable_slots(&self) -> i64 {
        self.poly_size as i64 - 2 * self.margin_slots as i64
    }

    /// Usable phase units, `(N - 2·margin) · 2^R`.
    pub fn usable_units(&self) -> i64 {
        self.usable_slots() << self.frac_bits
    }

    /// Torus value (out of `2^64`) of one phase unit: `2^(64 - log2(2N) - R)`.
    pub fn torus_per_unit(&self) -> u64 {
        let log2_2n = (2 * self.poly_size).trailing_zeros();
        1u64 << (64 - log2_2n - self.frac_bits)
    }

    /// Torus value (out of `2^64`) of one slot, `2^64 / 2N`, as `f64` (exact: a power of two).
    pub fn torus_per_slot(&self) -> f64 {
        (self.torus_per_unit() as f64) * (1u64 << self.frac_bits) as f64
    }

    /// The largest number of output steps a neuron's worst-case range may span so that each
    /// step is at least `min_step_slots` wide (the A2Q bound used in training).
    pub fn max_range_steps(&self) -> f64 {
        self.usable_slots() as f64 / self.min_step_slots
    }

    /// Largest std at a PBS input the margins tolerate: `margin_slots / 8` (8 σ from the
    /// range's edge to the padding half, a wrap probability below 2^-50).
    pub fn max_sigma_slots(&self) -> f64 {
        self.margin_slots as f64 / 8.0
    }

    /// Largest row multiplier `c` keeping neuron `row`'s PBS-input std within
    /// [`EncodingConfig::max_sigma_slots`]: `sqrt(max² − base²) / (‖W‖₂ · σ_in)` (at least 1;
    /// unbounded for rows without weights).
    pub fn max_row_multiplier(&self, row: &RowStats, input: InputKind) -> i64 {
        let sigma_in = match input {
            InputKind::Fresh => self.noise.fresh_sigma_slots,
            InputKind::Pbs => self.noise.pbs_sigma_slots,
        };
        let room = (self.max_sigma_slots().powi(2) - self.noise.base_sigma_slots.powi(2)).max(0.0);
        let c = room.sqrt() / (row.l2 * sigma_in);
        if c.is_finite() && c < i64::MAX as f64 {
            (c.floor() as i64).max(1)
        } else {
            i64::MAX
        }
    }

    /// Std at neuron `j`'s PBS input in slots: `sqrt(base² + (c_j · ‖W_j‖₂ · σ_in)²)`
    /// (variance of a linear combination, ‖w‖₂² · Var(c); tfhe-rs noise-formula convention).
    pub fn sigma_slots(&self, row: &RowStats, row_multiplier: i64, input: InputKind) -> f64 {
        let sigma_in = match input {
            InputKind::Fresh => self.noise.fresh_sigma_slots,
            InputKind::Pbs => self.noise.pbs_sigma_slots,
        };
        let gemm = row_multiplier as f64 * row.l2 * sigma_in;
        (self.noise.base_sigma_slots.powi(2) + gemm * gemm).sqrt()
    }
}

/// One neuron's placement on the torus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NeuronEncoding {
    /// Phase units per accumulator unit, `c_j · delta_in` (> 0).
    pub mult: i64,
    /// Phase offset in phase units.
    pub offset: i64,
}

impl NeuronEncoding {
    /// Noise-free phase of an accumulator, in phase units.
    pub fn phase(&self, acc: i64) -> i64 {
        self.mult * acc + self.offset
    }

    /// Noise-free slot the PBS reads: `floor(phase / 2^R)`.
    pub fn slot(&self, acc: i64, frac_bits: u32) -> i64 {
        self.phase(acc).div_euclid(1i64 << frac_bits)
    }

    /// The accumulator value at the centre of slot `u`, `(u·2^R + 2^(R-1) - offset) / mult`, in
    /// `f32` exactly as the QAT forward computes it (the integer numerator is exact in `f32`).
    pub fn center_acc(&self, slot: i64, frac_bits: u32) -> f32 {
        let num = (slot << frac_bits) + (1i64 << (frac_bits - 1)) - self.offset;
        num as f32 / self.mult as f32
    }

    /// Whether distinct integer accumulators land in distinct slots (`mult ≥ 2^R`, one slot
    /// or more per accumulator unit).
    pub fn resolves_integers(&self, frac_bits: u32) -> bool {
        self.mult >= 1i64 << frac_bits
    }

    /// The integer accumulator slot `u` stands for when the encoding
    /// [resolves integers](Self::resolves_integers): the one whose phase lies in the slot, or,
    /// for a slot no integer reaches, the one whose phase is nearer the slot's centre. A table
    /// built on it computes the function of the accumulator itself — slot rounding loses
    /// nothing — which is what a model trained elsewhere (without slot rounding) computes.
    /// Otherwise the slot centre ([`Self::center_acc`]).
    pub fn integer_acc(&self, slot: i64, frac_bits: u32) -> f32 {
        if !self.resolves_integers(frac_bits) {
            return self.center_acc(slot, frac_bits);
        }
        let unit = 1i64 << frac_bits;
        // The largest accumulator whose phase is at most the slot's last phase unit.
        let a = (slot * unit + unit - 1 - self.offset).div_euclid(self.mult);
        if self.phase(a) >= slot * unit {
            return a as f32;
        }
        let centre = 2 * slot * unit + unit;
        let (da, db) = (centre - 2 * self.phase(a), 2 * self.phase(a + 1) - centre);
        if db < da {
            (a + 1) as f32
        } else {
            a as f32
        }
    }
}

/// The encoding of one layer's neurons.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerEncoding {
    /// Phase units per unit of input value (`Δ_in / torus_per_unit`).
    pub delta_in: i64,
    /// One entry per output neuron.
    pub neurons: Vec<NeuronEncoding>,
}

impl LayerEncoding {
    /// Std at each neuron's PBS input, slots (`d_out` values): [`EncodingConfig::sigma_slots`]
    /// with the neuron's row multiplier `mult_j / delta_in`. `rows` are the neurons' weight
    /// statistics (with any noise gain already applied to `l2`).
    pub fn sigma_slots(
        &self,
        rows: &[RowStats],
        input: InputKind,
        cfg: &EncodingConfig,
    ) -> Vec<f64> {
        rows.iter()
            .zip(&self.neurons)
            .map(|(r, n)| cfg.sigma_slots(r, n.mult / self.delta_in, input))
            .collect()
    }
}

/// Why no encoding exists for a layer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodingError {
    /// A neuron's worst-case range needs more phase units than the half torus holds.
    #[error("neuron {neuron}: worst-case accumulator range {range} exceeds the {max} phase units the half torus holds; lower the weight or activation bit width, or train with a larger minimum table step (min_step_slots), which tightens the accumulator bound")]
    RangeTooWide {
        /// Neuron index.
        neuron: usize,
        /// Its worst-case accumulator range.
        range: i64,
        /// The most the torus holds at `delta_in = 1`.
        max: i64,
    },
}

/// Accumulator units per output step of each neuron, `s_out / (s_in · s_w_j)`, from the `f32`
/// scales (computed in `f64` so training and export derive identical encodings).
pub fn acc_per_step(s_in: f32, s_w: &[f32], s_out: f32) -> Vec<f64> {
    s_w.iter()
        .map(|&s| s_out as f64 / (s_in as f64 * s as f64))
        .collect()
}

/// Choose `delta_in` and each neuron's multiplier and offset.
///
/// Each neuron's worst-case range is stretched over the usable half torus as far as its integer
/// multiplier allows. For fresh inputs (negligible noise) `delta_in = 1` phase unit, so every
/// neuron gets nearly its ideal multiplier. For PBS inputs, whose noise the row multiplier
/// amplifies, candidates `delta_in = floor(usable / (max_range · k))`, `k = 1..=8`, are tried and
/// the one maximising the worst neuron's `step width / σ` is kept.
///
/// `acc_per_step[j]` is the width of one output step in accumulator units (see [`acc_per_step`]).
///
/// # Errors
/// [`EncodingError::RangeTooWide`] when a range cannot fit even at the finest scale.
pub fn choose_layer_encoding(
    rows: &[RowStats],
    acc_per_step: &[f64],
    input: InputKind,
    cfg: &EncodingConfig,
) -> Result<LayerEncoding, EncodingError> {
    let usable = cfg.usable_units();
    if let Some((neuron, r)) = rows.iter().enumerate().find(|(_, r)| r.range() > usable) {
        return Err(EncodingError::RangeTooWide {
            neuron,
            range: r.range(),
            max: usable,
        });
    }
    let max_range = rows.iter().map(RowStats::range).max().unwrap_or(0).max(1);
    let candidates: Vec<i64> = match input {
        InputKind::Fresh => vec![1],
        InputKind::Pbs => {
            let mut c: Vec<i64> = (1..=8).map(|k| (usable / (max_range * k)).max(1)).collect();
            c.dedup();
            c
        }
    };
    let mut best: Option<(f64, LayerEncoding)> = None;
    for delta_in in candidates {
        let enc = encode_with_delta(rows, delta_in, input, cfg);
        let score = rows
            .iter()
            .zip(&enc.neurons)
            .zip(acc_per_step)
            .filter(|((r, _), _)| r.range() > 0)
            .map(|((r, n), &aps)| {
                let step_slots = n.mult as f64 / cfg.units_per_slot() as f64 * aps;
                step_slots / cfg.sigma_slots(r, n.mult / delta_in, input)
            })
            .fold(f64::INFINITY, f64::min);
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, enc));
        }
    }
    Ok(best.expect("at least one candidate").1)
}

/// For each neuron, how far its table step falls short of the target under `enc`:
/// `min(1, achieved / required)`, where achieved = `mult/2^R · acc_per_step` slots and
/// required = `min_step_slots · σ_j / σ_base` (the step-to-noise ratio of a neuron fed by fresh
/// inputs). 1 means no shortfall. Layers fed by PBS outputs need this because their row
/// multipliers are coarse integers and amplify input noise.
pub fn step_shortfall(
    rows: &[RowStats],
    enc: &LayerEncoding,
    acc_per_step: &[f64],
    input: InputKind,
    cfg: &EncodingConfig,
) -> Vec<f64> {
    rows.iter()
        .zip(&enc.neurons)
        .zip(acc_per_step)
        .map(|((r, n), &aps)| {
            if r.range() == 0 {
                return 1.0;
            }
            let achieved = n.mult as f64 / cfg.units_per_slot() as f64 * aps;
            let required = cfg.min_step_slots * cfg.sigma_slots(r, n.mult / enc.delta_in, input)
                / cfg.noise.base_sigma_slots;
            (achieved / required).min(1.0)
        })
        .collect()
}

/// Each neuron's multiplier `c · delta_in` with the largest `c` that fits its range in the usable
/// window, capped so that the noise the GEMM amplifies stays below
/// [`EncodingConfig::max_sigma_slots`]: past the point where input noise dominates, a larger `c`
/// no longer widens steps relative to the noise, it only eats into the margins. Used directly
/// when several readers of one stage must share its `delta_in` (a residual connection).
pub fn encode_with_delta(
    rows: &[RowStats],
    delta_in: i64,
    input: InputKind,
    cfg: &EncodingConfig,
) -> LayerEncoding {
    let usable = cfg.usable_units();
    let margin = (cfg.margin_slots as i64) << cfg.frac_bits;
    let neurons = rows
        .iter()
        .map(|r| {
            let fit = (usable / (r.range().max(1) * delta_in)).max(1);
            let c = fit.min(cfg.max_row_multiplier(r, input)).max(1);
            let mult = c * delta_in;
            // Centre the range in the usable window.
            let spare = usable - mult * r.range();
            NeuronEncoding {
                mult,
                offset: margin + spare / 2 - mult * r.acc_min,
            }
        })
        .collect();
    LayerEncoding { delta_in, neurons }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EncodingConfig {
        EncodingConfig::default()
    }

    #[test]
    fn worst_case_range_lands_inside_the_margins() {
        let rows = [
            RowStats::of_row(&[3, -3, 2, 1, 0, -1], 7),
            RowStats::of_row(&[1, 1, 1], 15),
        ];
        for input in [InputKind::Fresh, InputKind::Pbs] {
            let enc = choose_layer_encoding(&rows, &[10.0, 10.0], input, &cfg()).unwrap();
            for (r, n) in rows.iter().zip(&enc.neurons) {
                let lo = n.slot(r.acc_min, 10);
                let hi = n.slot(r.acc_max, 10);
                assert!(lo >= 64 && hi < 2048 - 64, "{lo}..{hi}");
                // The range is stretched over most of the usable window.
                assert!(
                    (hi - lo) as f64 > 0.45 * cfg().usable_slots() as f64,
                    "{lo}..{hi}"
                );
                assert_eq!(n.mult % enc.delta_in, 0);
            }
        }
    }

    #[test]
    fn slot_centres_invert_the_slot_function() {
        let n = NeuronEncoding {
            mult: 37,
            offset: 65_536 + 11,
        };
        for acc in -500..500 {
            let u = n.slot(acc, 10);
            let c = n.center_acc(u, 10) as f64;
            // The centre lies within half a slot (in accumulator units) of the accumulator.
            assert!((c - acc as f64).abs() <= 1024.0 / 37.0 / 2.0 + 1e-3);
            assert_eq!(n.slot(c.round() as i64, 10), u);
        }
    }

    #[test]
    fn integer_reads_give_each_accumulator_back_where_slots_resolve_them() {
        for (mult, offset) in [
            (1024, 65_536 + 512),
            (1024, 70_000),
            (1900, 65_537),
            (5000, 3),
        ] {
            let n = NeuronEncoding { mult, offset };
            assert!(n.resolves_integers(10));
            for acc in -300..300 {
                assert_eq!(
                    n.integer_acc(n.slot(acc, 10), 10),
                    acc as f32,
                    "{n:?} {acc}"
                );
            }
            // A slot no accumulator reaches reads a neighbouring one: an integer whose own slot
            // is at most one accumulator step away.
            for u in n.slot(-300, 10)..n.slot(300, 10) {
                let a = n.integer_acc(u, 10);
                assert_eq!(a.fract(), 0.0);
                let away = (n.slot(a as i64, 10) - u).abs();
                assert!(away * 1024 <= mult, "slot {u} reads {a}, {away} slots away");
            }
        }
        let coarse = NeuronEncoding {
            mult: 37,
            offset: 11,
        };
        assert_eq!(coarse.integer_acc(5, 10), coarse.center_acc(5, 10));
    }

    #[test]
    fn a_range_wider_than_the_torus_is_refused() {
        let huge = RowStats {
            acc_min: 0,
            acc_max: 1 << 40,
            l2: 1.0,
        };
        let err = choose_layer_encoding(&[huge], &[1.0], InputKind::Fresh, &cfg()).unwrap_err();
        assert!(err.to_string().contains("neuron 0"));
    }

    #[test]
    fn torus_units() {
        assert_eq!(cfg().torus_per_unit(), 1u64 << 42);
        assert_eq!(cfg().units_per_slot(), 1024);
    }
}
