//! Per-feature input quantization of tabular data: how the client turns a row of real-valued
//! features into the circuit's input codes.

use crate::error::CircuitError;
use crate::ir::{Circuit, FeatureQuantizer};

impl FeatureQuantizer {
    /// Min–max calibration on `rows` (row-major `[n, features]`): feature `i` maps
    /// `[min_i, max_i]` of the rows onto the codes `[0, 2^bits − 1]` (uniform, asymmetric, as
    /// Concrete ML's per-feature `QuantizedArray`). A feature constant on the rows gets step 1,
    /// so it quantizes to code 0 there.
    ///
    /// # Errors
    /// [`CircuitError::Input`] when `rows` is empty or not a whole number of rows, a value is
    /// not finite, or `bits` is outside `[1, 16]`.
    pub fn calibrate(rows: &[f32], features: usize, bits: u32) -> Result<Self, CircuitError> {
        if features == 0 || rows.is_empty() || !rows.len().is_multiple_of(features) {
            return Err(CircuitError::Input(format!(
                "{} values are not a non-empty set of rows of {features} features",
                rows.len()
            )));
        }
        if !(1..=16).contains(&bits) {
            return Err(CircuitError::Input(format!(
                "input bit width {bits} is outside [1, 16]"
            )));
        }
        if let Some(p) = rows.iter().position(|v| !v.is_finite()) {
            return Err(CircuitError::Input(format!(
                "row {} feature {} is not a finite number",
                p / features,
                p % features
            )));
        }
        let qmax = ((1u32 << bits) - 1) as f32;
        let mut low = vec![f32::INFINITY; features];
        let mut high = vec![f32::NEG_INFINITY; features];
        for row in rows.chunks_exact(features) {
            for (i, &v) in row.iter().enumerate() {
                low[i] = low[i].min(v);
                high[i] = high[i].max(v);
            }
        }
        let step = low
            .iter()
            .zip(&high)
            .map(|(&lo, &hi)| {
                let s = (hi - lo) / qmax;
                if s.is_normal() {
                    s
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Self { low, step })
    }

    /// Features quantized.
    pub fn features(&self) -> usize {
        self.low.len()
    }

    /// Code of value `x` of feature `i`: `clamp(round_half_even((x − low_i) / step_i), 0, qmax)`
    /// in `f32`, this exact order (the quantized model and the client both call this).
    pub fn code(&self, i: usize, x: f32, qmax: i32) -> i32 {
        ((x - self.low[i]) / self.step[i])
            .round_ties_even()
            .clamp(0.0, qmax as f32) as i32
    }

    /// Codes of `rows` (`[n, features]` values, row-major) by [`FeatureQuantizer::code`],
    /// row-major.
    pub fn codes(&self, rows: &[f32], qmax: i32) -> Vec<i32> {
        let d = self.features().max(1);
        rows.chunks_exact(d)
            .flat_map(|row| {
                row.iter()
                    .enumerate()
                    .map(move |(i, &x)| self.code(i, x, qmax))
            })
            .collect()
    }

    /// The real value code `q` of feature `i` stands for: `low_i + q · step_i`.
    pub fn value(&self, i: usize, q: i32) -> f32 {
        self.low[i] + q as f32 * self.step[i]
    }

    /// Whether every low is finite and every step finite and positive.
    pub fn is_valid(&self) -> bool {
        self.low.len() == self.step.len()
            && self.low.iter().all(|v| v.is_finite())
            && self.step.iter().all(|s| s.is_finite() && *s > 0.0)
    }
}

impl Circuit {
    /// Input codes of one row of real-valued features through the circuit's
    /// [`FeatureQuantizer`] (`features` values).
    ///
    /// # Errors
    /// [`CircuitError::Input`] when the circuit has no feature quantizer (it takes images), the
    /// row has the wrong length, or a value is not finite.
    pub fn encode_features(&self, row: &[f32]) -> Result<Vec<i32>, CircuitError> {
        let q = self.input.quantizer.as_ref().ok_or_else(|| {
            CircuitError::Input(
                "this circuit takes 8-bit images, not rows of features; give it images".into(),
            )
        })?;
        if row.len() != self.input.features {
            return Err(CircuitError::Input(format!(
                "{} features, the circuit takes {}",
                row.len(),
                self.input.features
            )));
        }
        if let Some(i) = row.iter().position(|v| !v.is_finite()) {
            return Err(CircuitError::Input(format!(
                "feature {i} is not a finite number"
            )));
        }
        Ok(q.codes(row, (1i32 << self.input.bits) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_maps_each_feature_range_onto_all_codes() {
        // Two features: one on [-1, 3], one constant.
        let rows = [-1.0, 5.0, 3.0, 5.0, 1.0, 5.0];
        let q = FeatureQuantizer::calibrate(&rows, 2, 2).unwrap();
        assert_eq!(q.low, vec![-1.0, 5.0]);
        assert!((q.step[0] - 4.0 / 3.0).abs() < 1e-6);
        assert_eq!(q.step[1], 1.0);
        assert_eq!(q.code(0, -1.0, 3), 0);
        assert_eq!(q.code(0, 3.0, 3), 3);
        assert_eq!(q.code(0, 1.0, 3), 2); // 1.5 rounds half to even
        assert_eq!(q.code(0, 100.0, 3), 3);
        assert_eq!(q.code(0, -100.0, 3), 0);
        assert_eq!(q.code(1, 5.0, 3), 0);
        assert!((q.value(0, 3) - 3.0).abs() < 1e-6);
    }

    #[test]
    fn calibration_refuses_bad_rows() {
        assert!(FeatureQuantizer::calibrate(&[], 2, 8).is_err());
        assert!(FeatureQuantizer::calibrate(&[1.0, 2.0, 3.0], 2, 8).is_err());
        let e = FeatureQuantizer::calibrate(&[1.0, f32::NAN], 2, 8).unwrap_err();
        assert!(e.to_string().contains("row 0 feature 1"), "{e}");
        assert!(FeatureQuantizer::calibrate(&[1.0, 2.0], 2, 0).is_err());
    }
}
