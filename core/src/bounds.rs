//! Worst-case accumulator ranges, known exactly from the integer weights and the input range.

/// Per-neuron statistics of an integer weight row `W_j` (codes) applied to unsigned inputs in
/// `[0, in_qmax]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowStats {
    /// Smallest possible accumulator `Σ_i min(0, W_ji) · in_qmax`.
    pub acc_min: i64,
    /// Largest possible accumulator `Σ_i max(0, W_ji) · in_qmax`.
    pub acc_max: i64,
    /// ‖W_j‖₂, the factor by which the GEMM multiplies the noise std of its inputs.
    pub l2: f64,
}

impl RowStats {
    /// Statistics of one row of integer weights.
    pub fn of_row(row: &[i32], in_qmax: i32) -> Self {
        let (mut neg, mut pos, mut sq) = (0i64, 0i64, 0f64);
        for &w in row {
            if w < 0 {
                neg += w as i64;
            } else {
                pos += w as i64;
            }
            sq += (w as f64) * (w as f64);
        }
        Self {
            acc_min: neg * in_qmax as i64,
            acc_max: pos * in_qmax as i64,
            l2: sq.sqrt(),
        }
    }

    /// Width of the worst-case range, `acc_max - acc_min` (accumulator units; saturating).
    pub fn range(&self) -> i64 {
        self.acc_max.saturating_sub(self.acc_min)
    }
}

/// Builds the [`RowStats`] of a row whose inputs have their own (possibly signed) ranges.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowAccumulator {
    acc_min: i64,
    acc_max: i64,
    sq: f64,
}

impl RowAccumulator {
    /// Add weight `w` reading an input in `[lo, hi]`: the worst cases move by `min(w·lo, w·hi)`
    /// and `max(w·lo, w·hi)`, saturating at the `i64` range (a saturated range can never be
    /// encoded, so it is refused downstream rather than wrapped).
    pub fn add(&mut self, w: i32, lo: i32, hi: i32) {
        let (a, b) = (w as i64 * lo as i64, w as i64 * hi as i64);
        self.acc_min = self.acc_min.saturating_add(a.min(b));
        self.acc_max = self.acc_max.saturating_add(a.max(b));
        self.sq += (w as f64) * (w as f64);
    }

    /// Add a term whose value lies in `[lo, hi]` (already weighted; e.g. the largest of a
    /// group of terms of which only one is non-zero), saturating like [`RowAccumulator::add`].
    /// Its weights' noise goes in with [`RowAccumulator::add_noise`].
    pub fn add_span(&mut self, lo: i64, hi: i64) {
        self.acc_min = self.acc_min.saturating_add(lo.min(hi));
        self.acc_max = self.acc_max.saturating_add(lo.max(hi));
    }

    /// Count weight `w` in ‖W‖₂ only (its term's range goes in with
    /// [`RowAccumulator::add_span`]): every input ciphertext carries noise, zero or not.
    pub fn add_noise(&mut self, w: i32) {
        self.sq += (w as f64) * (w as f64);
    }

    /// The statistics of the weights added so far.
    pub fn finish(self) -> RowStats {
        RowStats {
            acc_min: self.acc_min,
            acc_max: self.acc_max,
            l2: self.sq.sqrt(),
        }
    }
}

/// Bits needed to hold every value of `[acc_min, acc_max]` as a signed integer
/// (the accumulator bit width Concrete ML reports): `ceil(log2(max(|min|, |max|+1))) + 1`.
pub fn signed_bit_width(acc_min: i64, acc_max: i64) -> u32 {
    let mag = acc_min.unsigned_abs().max(acc_max.unsigned_abs() + 1);
    64 - (mag - 1).leading_zeros() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_stats_are_exact_worst_cases() {
        let s = RowStats::of_row(&[3, -2, 0, 1, -3], 7);
        assert_eq!(s.acc_min, -35);
        assert_eq!(s.acc_max, 28);
        assert_eq!(s.range(), 63);
        assert!((s.l2 - 23f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn signed_input_ranges_accumulate_exact_worst_cases() {
        let mut a = RowAccumulator::default();
        for (w, lo, hi) in [(3, -2, 5), (-2, -2, 5), (1, 0, 7)] {
            a.add(w, lo, hi);
        }
        let s = a.finish();
        // 3·[-2, 5] = [-6, 15]; -2·[-2, 5] = [-10, 4]; 1·[0, 7] = [0, 7].
        assert_eq!((s.acc_min, s.acc_max), (-16, 26));
        assert!((s.l2 - 14f64.sqrt()).abs() < 1e-12);
        let unsigned = RowStats::of_row(&[3, -2, 1], 7);
        let mut a = RowAccumulator::default();
        for w in [3, -2, 1] {
            a.add(w, 0, 7);
        }
        let same = a.finish();
        assert_eq!(same, unsigned);
    }

    #[test]
    fn bit_widths() {
        assert_eq!(signed_bit_width(-8, 7), 4);
        assert_eq!(signed_bit_width(-9, 7), 5);
        assert_eq!(signed_bit_width(0, 8), 5);
        assert_eq!(signed_bit_width(-35, 28), 7);
    }
}
