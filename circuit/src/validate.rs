//! Every invariant the simulators and the runtime rely on, checked with checked arithmetic so a
//! crafted file is an error naming the field and the bound, never a panic or a wrapped value.

use crate::error::CircuitError;
use crate::ir::{capacity, Circuit, Gemm, Source, Stage, FORMAT_TAG, FORMAT_VERSION};

/// Largest polynomial size a circuit may assume.
pub const MAX_POLY_SIZE: u32 = 1 << 16;
/// Largest number of values one GEMM may read, and of input features.
pub const MAX_WIDTH: usize = 1 << 24;
/// Largest magnitude of a stage's output codes.
pub const MAX_CODE: i32 = 1 << 16;
/// Largest number of stages.
pub const MAX_STAGES: usize = 1 << 12;
/// Largest input code bit width.
pub const MAX_INPUT_BITS: u32 = 16;

fn invalid(m: String) -> Result<(), CircuitError> {
    Err(CircuitError::Invalid(m))
}

impl Circuit {
    /// Check every invariant the simulators and the runtime rely on: the format tag and
    /// version, the encoding's geometry, every GEMM's sources (earlier stages only), widths,
    /// weight ranges and sparse indices, that all sources of a GEMM share one Δ, every table's
    /// runs and codes, that every neuron's worst-case phase stays inside the half torus (so no
    /// accumulator can wrap into the padding half), and that every output's worst-case range
    /// fits the torus at its Δ.
    ///
    /// # Errors
    /// [`CircuitError::Version`] or [`CircuitError::Invalid`] naming the first problem.
    pub fn validate(&self) -> Result<(), CircuitError> {
        if self.format != FORMAT_TAG {
            return invalid(format!(
                "format tag '{}', expected '{FORMAT_TAG}'",
                self.format
            ));
        }
        // Older files are upgraded when read, so a circuit in memory is of the current version.
        if self.version != FORMAT_VERSION {
            return Err(CircuitError::Version {
                found: self.version,
            });
        }
        self.validate_encoding()?;
        self.validate_input()?;
        if self.stages.len() > MAX_STAGES {
            return invalid(format!(
                "{} stages, at most {MAX_STAGES} are supported",
                self.stages.len()
            ));
        }
        for (s, stage) in self.stages.iter().enumerate() {
            self.validate_stage(s, stage)?;
        }
        self.validate_output()?;
        let last = self.last_readers();
        for (s, &r) in last.iter().enumerate() {
            if r <= s {
                return invalid(format!(
                    "{}: no later stage or the output layer reads its outputs",
                    self.stages[s].name(s)
                ));
            }
        }
        Ok(())
    }

    fn validate_encoding(&self) -> Result<(), CircuitError> {
        let e = &self.encoding;
        if !e.poly_size.is_power_of_two() || !(256..=MAX_POLY_SIZE).contains(&e.poly_size) {
            return invalid(format!(
                "encoding.poly_size {} is not a power of two in [256, {MAX_POLY_SIZE}]",
                e.poly_size
            ));
        }
        if !(1..=20).contains(&e.frac_bits) {
            return invalid(format!(
                "encoding.frac_bits {} is outside [1, 20]",
                e.frac_bits
            ));
        }
        if e.margin_slots
            .checked_mul(2)
            .is_none_or(|m| m >= e.poly_size)
        {
            return invalid(format!(
                "encoding.margin_slots {} leaves no usable slots at N = {}",
                e.margin_slots, e.poly_size
            ));
        }
        let n = &e.noise;
        let finite = |v: f64| v.is_finite() && v >= 0.0;
        let step_ok = e.min_step_slots.is_finite() && e.min_step_slots > 0.0;
        let noise_ok = [
            n.base_sigma_slots,
            n.pbs_sigma_slots,
            n.fresh_sigma_slots,
            n.output_wire_sigma_slots,
        ]
        .into_iter()
        .all(finite);
        if !(step_ok && noise_ok) {
            return invalid(
                "encoding: min_step_slots must be positive and the noise figures finite and non-negative"
                    .into(),
            );
        }
        Ok(())
    }

    fn validate_input(&self) -> Result<(), CircuitError> {
        let i = &self.input;
        if !(1..=MAX_WIDTH).contains(&i.features) {
            return invalid(format!(
                "input.features {} is outside [1, {MAX_WIDTH}]",
                i.features
            ));
        }
        if !(1..=MAX_INPUT_BITS).contains(&i.bits) {
            return invalid(format!(
                "input.bits {} is outside [1, {MAX_INPUT_BITS}]",
                i.bits
            ));
        }
        if i.delta == 0 {
            return invalid(
                "input.delta is 0: the client's encryptions would carry no value".into(),
            );
        }
        if let Some(q) = &i.quantizer {
            if q.features() != i.features || !q.is_valid(i.bits) {
                return invalid(format!(
                    "input.quantizer needs {} finite lows and {} finite positive steps, one per feature, and, with edges, {} lists of at most {} strictly increasing finite edges",
                    i.features, i.features, i.features, (1u32 << i.bits) - 1
                ));
            }
        }
        Ok(())
    }

    /// Shapes, sources, weights and the common Δ of a GEMM that is read by reader `reader`
    /// (a stage index, or `stages.len()` for the output layer). Returns that Δ.
    fn validate_gemm(&self, name: &str, g: &Gemm, reader: usize) -> Result<u64, CircuitError> {
        if g.sources.is_empty() {
            return Err(CircuitError::Invalid(format!("{name}: no sources")));
        }
        let mut d_in = 0usize;
        let mut delta = None;
        for &src in &g.sources {
            if let Source::Stage(k) = src {
                if k >= reader {
                    return Err(CircuitError::Invalid(format!(
                        "{name}: reads stage {k}, which is not an earlier stage"
                    )));
                }
            }
            d_in = d_in.saturating_add(self.width(src));
            let d = self.delta(src);
            if *delta.get_or_insert(d) != d {
                return Err(CircuitError::Invalid(format!(
                    "{name}: its sources write at different scales (Δ {} and {d}); every stage one GEMM reads must share one Δ",
                    delta.unwrap_or(0)
                )));
            }
        }
        if d_in != g.d_in || d_in > MAX_WIDTH {
            return Err(CircuitError::Invalid(format!(
                "{name}: d_in {} does not match its sources' {d_in} values (at most {MAX_WIDTH})",
                g.d_in
            )));
        }
        if g.d_out == 0 || g.weights.is_empty() || !g.weights.len().is_multiple_of(g.d_out) {
            return Err(CircuitError::Invalid(format!(
                "{name}: {} weights do not make {} non-empty rows",
                g.weights.len(),
                g.d_out
            )));
        }
        let fan_in = g.weights.len() / g.d_out;
        match &g.inputs {
            None if fan_in != g.d_in => {
                return Err(CircuitError::Invalid(format!(
                    "{name}: {} weights for {}x{} (dense)",
                    g.weights.len(),
                    g.d_in,
                    g.d_out
                )));
            }
            None => {}
            Some(ix) => {
                if ix.len() != g.weights.len() {
                    return Err(CircuitError::Invalid(format!(
                        "{name}: {} input indices for {} weights",
                        ix.len(),
                        g.weights.len()
                    )));
                }
                if let Some(i) = ix.iter().find(|&&i| i as usize >= g.d_in) {
                    return Err(CircuitError::Invalid(format!(
                        "{name}: input index {i} out of range for {} inputs",
                        g.d_in
                    )));
                }
            }
        }
        if !(2..=8).contains(&g.w_bits) {
            return Err(CircuitError::Invalid(format!(
                "{name}: weight bit width {} out of range [2, 8]",
                g.w_bits
            )));
        }
        let q = (1i32 << (g.w_bits - 1)) - 1;
        if let Some(v) = g.weights.iter().find(|v| !(-q..=q).contains(*v)) {
            return Err(CircuitError::Invalid(format!(
                "{name}: weight {v} outside the {}-bit range [-{q}, {q}]",
                g.w_bits
            )));
        }
        Ok(delta.unwrap_or(1))
    }

    fn validate_stage(&self, s: usize, stage: &Stage) -> Result<(), CircuitError> {
        let name = stage.name(s);
        let delta_in = self.validate_gemm(&name, &stage.gemm, s)?;
        let tpu = self.encoding.torus_per_unit();
        if !delta_in.is_multiple_of(tpu) {
            return invalid(format!(
                "{name}: its input scale Δ = {delta_in} is not a multiple of the phase unit {tpu}, so a PBS cannot read it"
            ));
        }
        let delta_units = (delta_in / tpu) as i64;
        if delta_units == 0 {
            return invalid(format!("{name}: its input scale Δ is 0"));
        }
        let g = &stage.gemm;
        if stage.neurons.len() != g.d_out {
            return invalid(format!(
                "{name}: {} neurons for d_out {}",
                stage.neurons.len(),
                g.d_out
            ));
        }
        if stage.out_min > stage.out_max || stage.out_min < -MAX_CODE || stage.out_max > MAX_CODE {
            return invalid(format!(
                "{name}: output range [{}, {}] is empty or outside [-{MAX_CODE}, {MAX_CODE}]",
                stage.out_min, stage.out_max
            ));
        }
        if stage.delta == 0 {
            return invalid(format!("{name}: output scale Δ is 0"));
        }
        if let Some(groups) = &stage.exclusive {
            if groups.len() != g.d_out {
                return invalid(format!(
                    "{name}: {} exclusive-group entries for {} neurons",
                    groups.len(),
                    g.d_out
                ));
            }
            if let Some((i, id)) = groups
                .iter()
                .enumerate()
                .find(|(_, &id)| id as usize >= g.d_out)
            {
                return invalid(format!(
                    "{name} neuron {i}: exclusive group {id} is not below the stage's {} neurons",
                    g.d_out
                ));
            }
            if stage.out_min > 0 || stage.out_max < 0 {
                return invalid(format!(
                    "{name}: exclusive groups need code 0 (the silent neurons' output) in the range [{}, {}]",
                    stage.out_min, stage.out_max
                ));
            }
        }
        let n = self.encoding.poly_size;
        let half_torus_units = (n as i64) << self.encoding.frac_bits;
        for (j, neuron) in stage.neurons.iter().enumerate() {
            if neuron.mult < 1 || neuron.mult % delta_units != 0 {
                return invalid(format!(
                    "{name} neuron {j}: multiplier {} is not a positive multiple of the input's {delta_units} phase units",
                    neuron.mult
                ));
            }
            let t = &neuron.table;
            if t.starts.is_empty()
                || t.starts.len() != t.levels.len()
                || t.starts[0] != 0
                || t.starts.windows(2).any(|w| w[0] >= w[1])
                || t.starts.last().is_some_and(|&u| u >= n)
            {
                return invalid(format!(
                    "{name} neuron {j}: table runs must start at slot 0 and increase strictly below N = {n}, one code per run"
                ));
            }
            if let Some(v) = t
                .levels
                .iter()
                .find(|v| !(stage.out_min..=stage.out_max).contains(*v))
            {
                return invalid(format!(
                    "{name} neuron {j}: table code {v} outside the stage's output range [{}, {}]",
                    stage.out_min, stage.out_max
                ));
            }
            let r = self.row_stats(g, j);
            let phase = |acc: i64| {
                (neuron.mult as i128)
                    .checked_mul(acc as i128)
                    .and_then(|p| p.checked_add(neuron.offset as i128))
            };
            match (phase(r.acc_min), phase(r.acc_max)) {
                (Some(lo), Some(hi)) if lo >= 0 && hi < half_torus_units as i128 => {}
                (lo, hi) => {
                    return invalid(format!(
                        "{name} neuron {j}: worst-case phase [{}, {}] leaves the half torus [0, {half_torus_units}) and would wrap around; re-export the model",
                        lo.unwrap_or(i128::MIN),
                        hi.unwrap_or(i128::MAX)
                    ))
                }
            }
        }
        Ok(())
    }

    fn validate_output(&self) -> Result<(), CircuitError> {
        let o = &self.output;
        let delta = self.validate_gemm("output layer", &o.gemm, self.stages.len())?;
        if o.scale.len() != o.d_out()
            || o.bias.len() != o.d_out()
            || o.scale.iter().chain(&o.bias).any(|v| !v.is_finite())
        {
            return invalid("output layer: scale and bias need one finite value per output".into());
        }
        if !o.readout.is_argmax() && o.d_out() != 1 {
            return invalid(format!(
                "output layer: the {} readout reads one output, the layer has {}",
                o.readout.name(),
                o.d_out()
            ));
        }
        if delta < 1 << 8 {
            return invalid(format!(
                "output layer: Δ = {delta} is below 2^8 (no room for noise)"
            ));
        }
        for j in 0..o.d_out() {
            let r = self.output_row_stats(j);
            if r.range() as i128 >= capacity(delta) {
                return invalid(format!(
                    "output {j}: accumulator range {} does not fit the torus at Δ = {delta}",
                    r.range()
                ));
            }
        }
        Ok(())
    }
}
