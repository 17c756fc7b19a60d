//! Scores of predictions against targets: accuracy, F1 and r².

use serde::{Deserialize, Serialize};

/// How predictions are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Fraction of predicted classes equal to the label, in `[0, 1]`.
    Accuracy,
    /// F1 score, in `[0, 1]`: of class 1 for two classes, the unweighted mean over classes
    /// (macro F1, scikit-learn's `f1_score(average="macro")`) for more.
    F1,
    /// Coefficient of determination `1 − Σ(y − ŷ)² / Σ(y − ȳ)²` (scikit-learn's `r2_score`);
    /// at most 1, negative for a model worse than the mean.
    R2,
}

impl Metric {
    /// Its name in reports and on the command line: `accuracy`, `f1`, `r2`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Accuracy => "accuracy",
            Self::F1 => "f1",
            Self::R2 => "r2",
        }
    }

    /// The metric of that name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "accuracy" => Some(Self::Accuracy),
            "f1" => Some(Self::F1),
            "r2" => Some(Self::R2),
            _ => None,
        }
    }

    /// Whether it scores class predictions (accuracy, F1) rather than values (r²).
    pub fn is_classification(self) -> bool {
        !matches!(self, Self::R2)
    }

    /// The score of `predicted` against `target` (equal lengths; class indices as whole
    /// numbers for accuracy and F1). 0 for empty input.
    pub fn score(self, predicted: &[f64], target: &[f64]) -> f64 {
        let n = predicted.len().min(target.len());
        if n == 0 {
            return 0.0;
        }
        let (p, t) = (&predicted[..n], &target[..n]);
        match self {
            Self::Accuracy => p.iter().zip(t).filter(|(a, b)| a == b).count() as f64 / n as f64,
            Self::F1 => f1(p, t),
            Self::R2 => r2(p, t),
        }
    }
}

fn f1_of_class(p: &[f64], t: &[f64], c: f64) -> f64 {
    let tp = p
        .iter()
        .zip(t)
        .filter(|(a, b)| **a == c && **b == c)
        .count() as f64;
    let fp = p
        .iter()
        .zip(t)
        .filter(|(a, b)| **a == c && **b != c)
        .count() as f64;
    let fn_ = p
        .iter()
        .zip(t)
        .filter(|(a, b)| **a != c && **b == c)
        .count() as f64;
    if tp == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fn_)
    }
}

fn f1(p: &[f64], t: &[f64]) -> f64 {
    let mut classes: Vec<f64> = t.iter().chain(p).copied().collect();
    classes.sort_by(f64::total_cmp);
    classes.dedup();
    if classes.len() <= 2 && classes.iter().all(|&c| c == 0.0 || c == 1.0) {
        return f1_of_class(p, t, 1.0);
    }
    classes.iter().map(|&c| f1_of_class(p, t, c)).sum::<f64>() / classes.len() as f64
}

fn r2(p: &[f64], t: &[f64]) -> f64 {
    let mean = t.iter().sum::<f64>() / t.len() as f64;
    let ss_res: f64 = p.iter().zip(t).map(|(a, b)| (b - a).powi(2)).sum();
    let ss_tot: f64 = t.iter().map(|b| (b - mean).powi(2)).sum();
    if ss_tot == 0.0 {
        if ss_res == 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        1.0 - ss_res / ss_tot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_match_hand_computed_values() {
        let t = [0.0, 1.0, 1.0, 0.0, 1.0];
        let p = [0.0, 1.0, 0.0, 1.0, 1.0];
        assert_eq!(Metric::Accuracy.score(&p, &t), 0.6);
        // class 1: tp 2, fp 1, fn 1 -> 4 / 6
        assert!((Metric::F1.score(&p, &t) - 2.0 / 3.0).abs() < 1e-12);
        // three classes: macro mean of per-class F1
        let t3 = [0.0, 1.0, 2.0, 2.0];
        let p3 = [0.0, 2.0, 2.0, 1.0];
        let expect = (1.0 + 0.0 + 0.5) / 3.0;
        assert!((Metric::F1.score(&p3, &t3) - expect).abs() < 1e-12);
        let y = [1.0, 2.0, 3.0];
        assert_eq!(Metric::R2.score(&y, &y), 1.0);
        // predicting the mean scores 0
        assert!(Metric::R2.score(&[2.0, 2.0, 2.0], &y).abs() < 1e-12);
        assert_eq!(Metric::from_name("f1"), Some(Metric::F1));
        assert_eq!(Metric::from_name("auc"), None);
    }
}
