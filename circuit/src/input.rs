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
        Ok(Self {
            low,
            step,
            edges: None,
        })
    }

    /// Features quantized.
    pub fn features(&self) -> usize {
        self.low.len()
    }

    /// Code of value `x` of feature `i`. Affine: `clamp(round_half_even((x − low_i) / step_i),
    /// 0, qmax)` in `f32`, this exact order (the quantized model and the client both call this).
    /// Binned: the number of the feature's edges `≤ x`, at most `qmax`.
    pub fn code(&self, i: usize, x: f32, qmax: i32) -> i32 {
        match &self.edges {
            Some(edges) => {
                let below = edges[i].partition_point(|&e| e <= x);
                i32::try_from(below).map_or(qmax, |c| c.min(qmax))
            }
            None => ((x - self.low[i]) / self.step[i])
                .round_ties_even()
                .clamp(0.0, qmax as f32) as i32,
        }
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

    /// The real value code `q` of feature `i` stands for. Affine: `low_i + q · step_i`.
    /// Binned: the lower end of the code's bin, `edges_i[q − 1]`, and for code 0 the largest
    /// `f32` below the first edge (`low_i` for every code of a feature without edges; codes
    /// past the last edge stand for it); so a threshold `t`
    /// that is an edge satisfies `value(q) < t` exactly for the codes of values below `t`.
    pub fn value(&self, i: usize, q: i32) -> f32 {
        match &self.edges {
            Some(edges) => {
                let e = &edges[i];
                match usize::try_from(q) {
                    Ok(0) | Err(_) => e.first().map_or(self.low[i], |f| f.next_down()),
                    Ok(k) => e.get(k - 1).or(e.last()).copied().unwrap_or(self.low[i]),
                }
            }
            None => self.low[i] + q as f32 * self.step[i],
        }
    }

    /// This quantizer with threshold bins: feature `i`'s codes split its values at
    /// `thresholds[i]` (any order, duplicates allowed). A feature with more than
    /// `2^bits − 1` distinct thresholds keeps that many of them, evenly spaced by rank (the
    /// thresholds between them then round to a neighbouring edge, as an affine code would).
    ///
    /// # Errors
    /// [`CircuitError::Input`] when `thresholds` does not have one list per feature, a
    /// threshold is not finite, or `bits` is outside `[1, 16]`.
    pub fn with_edges(mut self, thresholds: &[Vec<f32>], bits: u32) -> Result<Self, CircuitError> {
        if thresholds.len() != self.features() {
            return Err(CircuitError::Input(format!(
                "{} threshold lists for {} features",
                thresholds.len(),
                self.features()
            )));
        }
        if !(1..=16).contains(&bits) {
            return Err(CircuitError::Input(format!(
                "input bit width {bits} is outside [1, 16]"
            )));
        }
        let most = (1usize << bits) - 1;
        let mut edges = Vec::with_capacity(thresholds.len());
        for (i, t) in thresholds.iter().enumerate() {
            if t.iter().any(|v| !v.is_finite()) {
                return Err(CircuitError::Input(format!(
                    "feature {i}: a threshold is not a finite number"
                )));
            }
            let mut sorted = t.clone();
            sorted.sort_by(f32::total_cmp);
            sorted.dedup();
            if sorted.len() > most {
                sorted = evenly_by_rank(&sorted, most);
            }
            edges.push(sorted);
        }
        self.edges = Some(edges);
        Ok(self)
    }

    /// Whether every low is finite, every step finite and positive and, with edges, every
    /// feature's edges finite, strictly increasing and at most `2^bits − 1`.
    pub fn is_valid(&self, bits: u32) -> bool {
        let affine = self.low.len() == self.step.len()
            && self.low.iter().all(|v| v.is_finite())
            && self.step.iter().all(|s| s.is_finite() && *s > 0.0);
        let most = 1usize.checked_shl(bits).map_or(usize::MAX, |m| m - 1);
        affine
            && self.edges.as_ref().is_none_or(|edges| {
                edges.len() == self.low.len()
                    && edges.iter().all(|e| {
                        e.len() <= most
                            && e.iter().all(|v| v.is_finite())
                            && e.windows(2).all(|w| w[0] < w[1])
                    })
            })
    }
}

/// `count` of the sorted `values` (more than `count` ≥ 1 of them), evenly spaced by rank from
/// the first to the last.
fn evenly_by_rank(values: &[f32], count: usize) -> Vec<f32> {
    let last = values.len() - 1;
    if count == 1 {
        return vec![values[last / 2]];
    }
    (0..count)
        .map(|k| values[(k * last + (count - 1) / 2) / (count - 1)])
        .collect()
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

    #[test]
    fn threshold_bins_follow_every_comparison() {
        let rows = [0.0, 1.0, 10.0, 1.0];
        let thresholds = vec![vec![5.0, 2.5, 5.0, 7.25], vec![]];
        let q = FeatureQuantizer::calibrate(&rows, 2, 2)
            .unwrap()
            .with_edges(&thresholds, 2)
            .unwrap();
        assert_eq!(q.edges.as_ref().unwrap()[0], vec![2.5, 5.0, 7.25]);
        assert!(q.is_valid(2));
        for x in [-1e9f32, 0.0, 2.4999, 2.5, 3.0, 5.0, 7.0, 7.25, 1e9] {
            let code = q.code(0, x, 3);
            for (k, &t) in [2.5f32, 5.0, 7.25].iter().enumerate() {
                // x < t exactly when the code is at most t's rank.
                assert_eq!(x < t, code <= k as i32, "x {x}, t {t}, code {code}");
                assert_eq!(q.value(0, code) < t, x < t, "x {x}, t {t}");
            }
        }
        // A feature without thresholds has one bin.
        assert_eq!(q.code(1, 123.0, 3), 0);
        assert_eq!(q.value(1, 0), 1.0);
        // The largest f32 below the first edge stands for code 0.
        assert!(q.value(0, 0) < 2.5 && q.value(0, 0).next_up() == 2.5);
    }

    #[test]
    fn too_many_thresholds_keep_evenly_ranked_edges() {
        let thresholds = vec![(0..100).map(|v| v as f32).rev().collect::<Vec<_>>()];
        let q = FeatureQuantizer::calibrate(&[0.0, 99.0], 1, 3)
            .unwrap()
            .with_edges(&thresholds, 3)
            .unwrap();
        let e = &q.edges.as_ref().unwrap()[0];
        assert_eq!(e.len(), 7);
        assert_eq!((e[0], e[6]), (0.0, 99.0));
        assert!(e
            .windows(2)
            .all(|w| w[1] - w[0] >= 16.0 && w[1] - w[0] <= 17.0));
        assert!(q.is_valid(3));
        assert!(!q.is_valid(2), "7 edges need 3 bits");
    }

    #[test]
    fn bad_edges_are_refused() {
        let base = FeatureQuantizer::calibrate(&[0.0, 1.0], 1, 2).unwrap();
        assert!(base.clone().with_edges(&[], 2).is_err());
        assert!(base.clone().with_edges(&[vec![f32::NAN]], 2).is_err());
        assert!(base.clone().with_edges(&[vec![1.0]], 0).is_err());
        for edges in [vec![2.0, 1.0], vec![1.0, 1.0], vec![f32::INFINITY]] {
            let q = FeatureQuantizer {
                edges: Some(vec![edges.clone()]),
                ..base.clone()
            };
            assert!(!q.is_valid(2), "{edges:?}");
        }
        let wrong_count = FeatureQuantizer {
            edges: Some(vec![vec![], vec![]]),
            ..base
        };
        assert!(!wrong_count.is_valid(2));
    }
}
