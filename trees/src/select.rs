//! Choosing `min_samples_leaf` by k-fold cross-validation on the training rows, as a
//! scikit-learn user would with `GridSearchCV`: the test rows never take part.

use crate::error::TreeError;
use crate::train::{fit, TreeConfig, TreeTarget};
use qfhe_circuit::Metric;

/// The `min_samples_leaf` values [`select_min_samples_leaf`] tries by default.
pub const LEAF_CANDIDATES: [usize; 5] = [1, 2, 3, 5, 8];

/// Folds of the cross-validation.
pub const FOLDS: usize = 5;

/// The outcome of [`select_min_samples_leaf`].
#[derive(Debug, Clone, PartialEq)]
pub struct LeafSelection {
    /// The candidate with the best mean score (the first of equals).
    pub chosen: usize,
    /// Each candidate and its mean score over the folds: accuracy (fraction) for classes,
    /// r2 for values.
    pub scores: Vec<(usize, f64)>,
}

/// Cross-validate `cfg` on `x` (`[n, features]` row-major) with each of `candidates` as its
/// `min_samples_leaf`: row `i` is held out in fold `i mod folds` (the rows of a seeded split
/// are already shuffled, so the folds are too), and the candidate with the best mean held-out
/// score wins — accuracy for classes, r2 for values.
///
/// # Errors
/// [`TreeError::Data`] when `candidates` is empty or holds 0, `folds` is below 2, or there
/// are fewer than `2 · folds` rows; as [`fit`] for data it cannot use.
pub fn select_min_samples_leaf(
    x: &[f32],
    features: usize,
    target: TreeTarget<'_>,
    cfg: &TreeConfig,
    candidates: &[usize],
    folds: usize,
) -> Result<LeafSelection, TreeError> {
    if candidates.is_empty() || candidates.contains(&0) {
        return Err(TreeError::Data(
            "give at least one min_samples_leaf candidate, each at least 1".into(),
        ));
    }
    let rows = match target {
        TreeTarget::Classes { labels, .. } => labels.len(),
        TreeTarget::Values(v) => v.len(),
    };
    if folds < 2 || rows < folds.saturating_mul(2) {
        return Err(TreeError::Data(format!(
            "{folds}-fold cross-validation on {rows} rows: use at least 2 folds and 2 rows per fold"
        )));
    }
    if features == 0 || x.len() != rows.saturating_mul(features) {
        return Err(TreeError::Data(format!(
            "{} values are not {rows} rows of {features} features",
            x.len()
        )));
    }
    let mut scores = Vec::with_capacity(candidates.len());
    for &leaf in candidates {
        let cfg = TreeConfig {
            min_samples_leaf: leaf,
            ..cfg.clone()
        };
        let mut total = 0.0;
        for fold in 0..folds {
            total += fold_score(x, features, target, &cfg, fold, folds)?;
        }
        scores.push((leaf, total / folds as f64));
    }
    // The first of equal best scores: candidates[0] unless a later one scores strictly more.
    let mut chosen = scores[0];
    for &(leaf, score) in &scores[1..] {
        if score > chosen.1 {
            chosen = (leaf, score);
        }
    }
    Ok(LeafSelection {
        chosen: chosen.0,
        scores,
    })
}

/// Fit on the rows outside `fold`, score on the rows in it ([`Metric::Accuracy`] for classes,
/// [`Metric::R2`] for values).
fn fold_score(
    x: &[f32],
    features: usize,
    target: TreeTarget<'_>,
    cfg: &TreeConfig,
    fold: usize,
    folds: usize,
) -> Result<f64, TreeError> {
    let rows = x.len() / features;
    let (test, train): (Vec<usize>, Vec<usize>) = (0..rows).partition(|i| i % folds == fold);
    let gather = |idx: &[usize]| -> Vec<f32> {
        idx.iter()
            .flat_map(|&i| &x[i * features..(i + 1) * features])
            .copied()
            .collect()
    };
    let (model, truth, metric) = match target {
        TreeTarget::Classes { labels, classes } => {
            let y: Vec<u32> = train.iter().map(|&i| labels[i]).collect();
            let part = TreeTarget::Classes {
                labels: &y,
                classes,
            };
            let truth = test.iter().map(|&i| f64::from(labels[i])).collect();
            (
                fit(&gather(&train), features, part, cfg)?,
                truth,
                Metric::Accuracy,
            )
        }
        TreeTarget::Values(values) => {
            let y: Vec<f32> = train.iter().map(|&i| values[i]).collect();
            let part = TreeTarget::Values(&y);
            let truth = test
                .iter()
                .map(|&i| f64::from(values[i]))
                .collect::<Vec<_>>();
            (
                fit(&gather(&train), features, part, cfg)?,
                truth,
                Metric::R2,
            )
        }
    };
    let predicted: Vec<f64> = gather(&test)
        .chunks_exact(features)
        .map(|row| model.predict(row))
        .collect();
    Ok(metric.score(&predicted, &truth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::TreeKind;

    /// Labels that follow feature 0 except for a few flipped rows: a tree with one-row leaves
    /// memorises the flips, larger leaves ignore them and score better held out.
    #[test]
    fn larger_leaves_win_on_label_noise() {
        let rows = 200;
        let x: Vec<f32> = (0..rows).map(|i| ((i * 37) % rows) as f32).collect();
        let labels: Vec<u32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| u32::from(v >= 100.0) ^ u32::from(i % 10 == 3))
            .collect();
        let cfg = TreeConfig::new(TreeKind::Tree);
        let target = TreeTarget::Classes {
            labels: &labels,
            classes: 2,
        };
        let s = select_min_samples_leaf(&x, 1, target, &cfg, &[1, 20], FOLDS).unwrap();
        assert_eq!(s.scores.len(), 2);
        assert!(s.scores[1].1 > s.scores[0].1, "{:?}", s.scores);
        assert_eq!(s.chosen, 20);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = vec![0.0f32; 20];
        let y = vec![0.0f32; 20];
        let cfg = TreeConfig::new(TreeKind::Tree);
        let t = TreeTarget::Values(&y);
        assert!(select_min_samples_leaf(&x, 1, t, &cfg, &[], 5).is_err());
        assert!(select_min_samples_leaf(&x, 1, t, &cfg, &[0], 5).is_err());
        assert!(select_min_samples_leaf(&x, 1, t, &cfg, &[1], 1).is_err());
        assert!(select_min_samples_leaf(&x, 1, t, &cfg, &[1], 11).is_err());
        assert!(select_min_samples_leaf(&x[..19], 1, t, &cfg, &[1], 5).is_err());
    }
}
