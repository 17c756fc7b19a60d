//! Training tree ensembles: CART decision trees (Breiman et al. 1984), random forests (Breiman
//! 2001) and gradient-boosted trees with XGBoost's second-order gain (Chen & Guestrin 2016).
//!
//! One split finder serves all three: a node's rows are sorted by each candidate feature and
//! every boundary between two distinct values is scored with the criterion's additive score
//! (`Σ_child score(child) − score(node)`). On feature codes the split `x < v + 0.5` is
//! `code ≤ v`, so the same trainer fits the quantized model (on codes) and the fp32 reference
//! (on the raw values).

use crate::ensemble::{Ensemble, FloatEnsemble, FloatNode, FloatTree, MAX_NODES, MAX_TREES};
use crate::error::TreeError;
use qfhe_circuit::Readout;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// What the trees are fitted to.
#[derive(Debug, Clone, Copy)]
pub enum TreeTarget<'a> {
    /// Class index per row, below `classes` (at least 2).
    Classes {
        /// One per row.
        labels: &'a [u32],
        /// Number of classes.
        classes: usize,
    },
    /// Real value per row.
    Values(&'a [f32]),
}

/// Which ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TreeKind {
    /// One CART tree: class probabilities (Gini) or the mean value (squared error) at its leaves.
    Tree,
    /// Bagged CART trees on bootstrap samples with a random subset of features per split,
    /// averaged (soft vote).
    Forest,
    /// Gradient-boosted trees, summed: logistic loss (one output) for two classes, softmax
    /// (one tree per class per round) for more, squared error for regression.
    Boosting,
}

impl TreeKind {
    /// The short name: `tree`, `forest`, `boosting`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tree => "tree",
            Self::Forest => "forest",
            Self::Boosting => "boosting",
        }
    }
}

/// Hyper-parameters of an ensemble. [`TreeConfig::new`] gives each kind Concrete ML's defaults
/// (`DecisionTreeClassifier` depth capped at 5 here, `RandomForestClassifier` 20 trees of depth
/// 4, `XGBClassifier` 20 rounds of depth 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeConfig {
    /// The ensemble.
    pub kind: TreeKind,
    /// Trees (forest) or boosting rounds.
    pub trees: usize,
    /// Deepest split level (a tree of depth `d` has at most `2^d − 1` splits, `2^d` leaves).
    pub max_depth: usize,
    /// Fewest training rows in a leaf.
    pub min_samples_leaf: usize,
    /// Features tried per split (`None`: all; forests default to `⌈√features⌉`).
    pub max_features: Option<usize>,
    /// Boosting: shrinkage of each tree's leaf values.
    pub learning_rate: f64,
    /// Boosting: L2 penalty on leaf values (XGBoost's λ).
    pub lambda: f64,
    /// Boosting: least Hessian sum in a child (XGBoost's `min_child_weight`).
    pub min_child_weight: f64,
    /// Seed of the bootstrap samples and feature subsets.
    pub seed: u64,
}

impl TreeConfig {
    /// The defaults for `kind`.
    pub fn new(kind: TreeKind) -> Self {
        let (trees, max_depth) = match kind {
            TreeKind::Tree => (1, 5),
            TreeKind::Forest => (20, 4),
            TreeKind::Boosting => (20, 3),
        };
        Self {
            kind,
            trees,
            max_depth,
            min_samples_leaf: 1,
            max_features: None,
            learning_rate: 0.3,
            lambda: 1.0,
            min_child_weight: 1.0,
            seed: 42,
        }
    }

    fn validate(&self) -> Result<(), TreeError> {
        let bad = |m: String| Err(TreeError::Data(m));
        if self.trees == 0 || self.trees > MAX_TREES {
            return bad(format!("{} trees; use 1 to {MAX_TREES}", self.trees));
        }
        if self.max_depth == 0 || self.max_depth > 15 {
            return bad(format!("max depth {}; use 1 to 15", self.max_depth));
        }
        if self.min_samples_leaf == 0 || self.max_features == Some(0) {
            return bad("min_samples_leaf and max_features must be at least 1".into());
        }
        let finite = [self.learning_rate, self.lambda, self.min_child_weight]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0);
        if !finite || self.learning_rate == 0.0 {
            return bad(
                "learning rate must be positive, lambda and min_child_weight non-negative".into(),
            );
        }
        Ok(())
    }
}

/// Per-row statistics a criterion sums, `dims` values per row.
trait Criterion: Sync {
    fn dims(&self) -> usize;
    /// Additive score of a set of rows from its summed statistics (higher is better).
    fn score(&self, s: &[f64]) -> f64;
    /// Whether a child with these sums may exist.
    fn allowed(&self, s: &[f64], rows: usize) -> bool;
    /// Leaf values from the sums.
    fn leaf(&self, s: &[f64]) -> Vec<f32>;
}

/// Gini impurity on class counts: minimizing `n − Σ c_k² / n` is maximizing `Σ c_k² / n`;
/// leaves hold the class frequencies.
struct Gini {
    classes: usize,
    min_leaf: usize,
}

impl Criterion for Gini {
    fn dims(&self) -> usize {
        self.classes
    }
    fn score(&self, s: &[f64]) -> f64 {
        let n: f64 = s.iter().sum();
        if n == 0.0 {
            0.0
        } else {
            s.iter().map(|c| c * c).sum::<f64>() / n
        }
    }
    fn allowed(&self, _: &[f64], rows: usize) -> bool {
        rows >= self.min_leaf
    }
    fn leaf(&self, s: &[f64]) -> Vec<f32> {
        let n: f64 = s.iter().sum::<f64>().max(1.0);
        s.iter().map(|c| (c / n) as f32).collect()
    }
}

/// Squared error on `(1, y)` sums: minimizing `Σ y² − (Σ y)² / n` is maximizing `(Σ y)² / n`;
/// leaves hold the mean.
struct Squared {
    min_leaf: usize,
}

impl Criterion for Squared {
    fn dims(&self) -> usize {
        2
    }
    fn score(&self, s: &[f64]) -> f64 {
        if s[0] == 0.0 {
            0.0
        } else {
            s[1] * s[1] / s[0]
        }
    }
    fn allowed(&self, _: &[f64], rows: usize) -> bool {
        rows >= self.min_leaf
    }
    fn leaf(&self, s: &[f64]) -> Vec<f32> {
        vec![(s[1] / s[0].max(1.0)) as f32]
    }
}

/// XGBoost's second-order criterion on `(g, h)` sums: score `G² / (H + λ)`, leaf
/// `−η G / (H + λ)` placed at output `output` of `outputs`.
struct Newton {
    lambda: f64,
    eta: f64,
    min_child_weight: f64,
    min_leaf: usize,
    output: usize,
    outputs: usize,
}

impl Criterion for Newton {
    fn dims(&self) -> usize {
        2
    }
    fn score(&self, s: &[f64]) -> f64 {
        s[0] * s[0] / (s[1] + self.lambda)
    }
    fn allowed(&self, s: &[f64], rows: usize) -> bool {
        rows >= self.min_leaf && s[1] >= self.min_child_weight
    }
    fn leaf(&self, s: &[f64]) -> Vec<f32> {
        let mut v = vec![0f32; self.outputs];
        v[self.output] = (-self.eta * s[0] / (s[1] + self.lambda)) as f32;
        v
    }
}

/// The rows (`[n, d]` values) and per-row statistics a tree is grown on.
struct Grower<'a, C: Criterion> {
    x: &'a [f32],
    d: usize,
    stats: &'a [f64],
    crit: &'a C,
    max_depth: usize,
    max_features: usize,
    nodes: Vec<FloatNode>,
}

impl<C: Criterion> Grower<'_, C> {
    fn sums(&self, rows: &[usize]) -> Vec<f64> {
        let k = self.crit.dims();
        let mut s = vec![0f64; k];
        for &r in rows {
            for (a, b) in s.iter_mut().zip(&self.stats[r * k..(r + 1) * k]) {
                *a += b;
            }
        }
        s
    }

    /// Best `(gain, feature, threshold)` over `features` for `rows`.
    fn best_split(
        &self,
        rows: &[usize],
        total: &[f64],
        features: &[usize],
    ) -> Option<(f64, usize, f32)> {
        let k = self.crit.dims();
        let parent = self.crit.score(total);
        let mut best: Option<(f64, usize, f32)> = None;
        let mut order = rows.to_vec();
        for &f in features {
            let value = |r: usize| self.x[r * self.d + f];
            order.sort_by(|&a, &b| value(a).total_cmp(&value(b)));
            let mut left = vec![0f64; k];
            let mut right = total.to_vec();
            for i in 0..order.len() - 1 {
                let r = order[i];
                for c in 0..k {
                    let v = self.stats[r * k + c];
                    left[c] += v;
                    right[c] -= v;
                }
                let (a, b) = (value(r), value(order[i + 1]));
                if a == b {
                    continue;
                }
                let (nl, nr) = (i + 1, order.len() - i - 1);
                if !self.crit.allowed(&left, nl) || !self.crit.allowed(&right, nr) {
                    continue;
                }
                let gain = self.crit.score(&left) + self.crit.score(&right) - parent;
                // Strictly better only: ties keep the first feature and the lowest threshold.
                if gain > 1e-9 * (1.0 + parent.abs()) && best.is_none_or(|(g, ..)| gain > g) {
                    best = Some((gain, f, midpoint(a, b)));
                }
            }
        }
        best
    }

    fn grow(
        &mut self,
        rows: Vec<usize>,
        depth: usize,
        rng: &mut impl Rng,
    ) -> Result<usize, TreeError> {
        let id = self.nodes.len();
        if id >= MAX_NODES {
            return Err(TreeError::Data(format!(
                "a tree would exceed {MAX_NODES} nodes; lower the depth"
            )));
        }
        let total = self.sums(&rows);
        self.nodes.push(FloatNode::Leaf {
            value: self.crit.leaf(&total),
        });
        if depth >= self.max_depth || rows.len() < 2 {
            return Ok(id);
        }
        let mut features: Vec<usize> = (0..self.d).collect();
        if self.max_features < self.d {
            features.shuffle(rng);
            features.truncate(self.max_features);
            features.sort_unstable();
        }
        let Some((_, f, threshold)) = self.best_split(&rows, &total, &features) else {
            return Ok(id);
        };
        let (l, r): (Vec<usize>, Vec<usize>) = rows
            .into_iter()
            .partition(|&i| self.x[i * self.d + f] < threshold);
        let left = self.grow(l, depth + 1, rng)?;
        let right = self.grow(r, depth + 1, rng)?;
        self.nodes[id] = FloatNode::Split {
            feature: f,
            threshold,
            left,
            right,
        };
        Ok(id)
    }
}

/// A split value strictly between `a < b` (their midpoint, or `b` when `f32` cannot hold one
/// between them).
fn midpoint(a: f32, b: f32) -> f32 {
    let m = a + (b - a) / 2.0;
    if m > a && m < b {
        m
    } else {
        b
    }
}

#[allow(clippy::too_many_arguments)]
fn grow_tree<C: Criterion>(
    x: &[f32],
    d: usize,
    stats: &[f64],
    rows: Vec<usize>,
    crit: &C,
    cfg: &TreeConfig,
    max_features: usize,
    rng: &mut impl Rng,
) -> Result<FloatTree, TreeError> {
    let mut g = Grower {
        x,
        d,
        stats,
        crit,
        max_depth: cfg.max_depth,
        max_features,
        nodes: Vec::new(),
    };
    g.grow(rows, 0, rng)?;
    Ok(FloatTree { nodes: g.nodes })
}

/// Fit an ensemble of `cfg.kind` to `x` (row-major `[n, features]`: feature codes for the
/// quantized model, raw values for an fp32 reference) and `target`. Splits go left when
/// `x < threshold`.
///
/// # Errors
/// [`TreeError::Data`] for no rows, ragged or non-finite values, a target of the wrong length,
/// fewer than two classes, a label past them, or an out-of-range configuration.
pub fn fit(
    x: &[f32],
    features: usize,
    target: TreeTarget<'_>,
    cfg: &TreeConfig,
) -> Result<FloatEnsemble, TreeError> {
    cfg.validate()?;
    let bad = |m: String| Err(TreeError::Data(m));
    if features == 0 || x.is_empty() || !x.len().is_multiple_of(features) {
        return bad(format!(
            "{} values are not a non-empty set of rows of {features} features",
            x.len()
        ));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return bad("a feature value is not a finite number".into());
    }
    let n = x.len() / features;
    match target {
        TreeTarget::Classes { labels, classes } => {
            if labels.len() != n {
                return bad(format!("{} labels for {n} rows", labels.len()));
            }
            if classes < 2 {
                return bad(format!(
                    "trees need at least two classes, the data has {classes}"
                ));
            }
            if let Some(l) = labels.iter().find(|&&l| l as usize >= classes) {
                return bad(format!("label {l} is not below the {classes} classes"));
            }
        }
        TreeTarget::Values(y) => {
            if y.len() != n || y.iter().any(|v| !v.is_finite()) {
                return bad(format!("{n} finite target values needed, one per row"));
            }
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    match cfg.kind {
        TreeKind::Tree | TreeKind::Forest => bagged(x, features, n, target, cfg, &mut rng),
        TreeKind::Boosting => boosted(x, features, n, target, cfg, &mut rng),
    }
}

fn bagged(
    x: &[f32],
    d: usize,
    n: usize,
    target: TreeTarget<'_>,
    cfg: &TreeConfig,
    rng: &mut impl Rng,
) -> Result<FloatEnsemble, TreeError> {
    let forest = cfg.kind == TreeKind::Forest;
    let max_features = cfg
        .max_features
        .unwrap_or(if forest {
            (d as f64).sqrt().ceil() as usize
        } else {
            d
        })
        .min(d);
    let (stats, outputs, readout) = match target {
        TreeTarget::Classes { labels, classes } => {
            let mut s = vec![0f64; n * classes];
            for (r, &l) in labels.iter().enumerate() {
                s[r * classes + l as usize] = 1.0;
            }
            (s, classes, Readout::Argmax)
        }
        TreeTarget::Values(y) => (
            y.iter().flat_map(|&v| [1.0, v as f64]).collect(),
            1,
            Readout::Value,
        ),
    };
    let trees = if forest { cfg.trees } else { 1 };
    let mut out = Vec::with_capacity(trees);
    for _ in 0..trees {
        let rows: Vec<usize> = if forest {
            (0..n).map(|_| rng.random_range(0..n)).collect()
        } else {
            (0..n).collect()
        };
        let mut tree = match target {
            TreeTarget::Classes { classes, .. } => {
                let crit = Gini {
                    classes,
                    min_leaf: cfg.min_samples_leaf,
                };
                grow_tree(x, d, &stats, rows, &crit, cfg, max_features, rng)?
            }
            TreeTarget::Values(_) => {
                let crit = Squared {
                    min_leaf: cfg.min_samples_leaf,
                };
                grow_tree(x, d, &stats, rows, &crit, cfg, max_features, rng)?
            }
        };
        // The forest's mean, folded into the leaves.
        for node in &mut tree.nodes {
            if let FloatNode::Leaf { value } = node {
                value.iter_mut().for_each(|v| *v /= trees as f32);
            }
        }
        out.push(tree);
    }
    let e = Ensemble {
        features: d,
        outputs,
        base: vec![0.0; outputs],
        trees: out,
        readout,
    };
    e.validate()?;
    Ok(e)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn boosted(
    x: &[f32],
    d: usize,
    n: usize,
    target: TreeTarget<'_>,
    cfg: &TreeConfig,
    rng: &mut impl Rng,
) -> Result<FloatEnsemble, TreeError> {
    let max_features = cfg.max_features.unwrap_or(d).min(d);
    // Outputs, base margins, readout, and each row's target per output.
    let (outputs, base, readout, y): (usize, Vec<f64>, Readout, Vec<f64>) = match target {
        TreeTarget::Classes { labels, classes: 2 } => {
            let p = labels.iter().filter(|&&l| l == 1).count() as f64 / n as f64;
            let p = p.clamp(1e-6, 1.0 - 1e-6);
            let y = labels.iter().map(|&l| l as f64).collect();
            (1, vec![(p / (1.0 - p)).ln()], Readout::Sign, y)
        }
        TreeTarget::Classes { labels, classes } => {
            let mut y = vec![0f64; n * classes];
            for (r, &l) in labels.iter().enumerate() {
                y[r * classes + l as usize] = 1.0;
            }
            (classes, vec![0.0; classes], Readout::Argmax, y)
        }
        TreeTarget::Values(v) => {
            let mean = v.iter().map(|&a| a as f64).sum::<f64>() / n as f64;
            (
                1,
                vec![mean],
                Readout::Value,
                v.iter().map(|&a| a as f64).collect(),
            )
        }
    };
    let classification = readout != Readout::Value;
    let mut margin: Vec<f64> = (0..n).flat_map(|_| base.iter().copied()).collect();
    let mut trees = Vec::new();
    let mut stats = vec![0f64; 2 * n];
    for _ in 0..cfg.trees {
        // Softmax probabilities (or the sigmoid) of the current margins.
        let probs: Vec<f64> = if outputs == 1 {
            margin.iter().map(|&m| sigmoid(m)).collect()
        } else {
            margin
                .chunks_exact(outputs)
                .flat_map(|m| {
                    let top = m.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = m.iter().map(|v| (v - top).exp()).collect();
                    let s: f64 = e.iter().sum();
                    e.into_iter().map(move |v| v / s)
                })
                .collect()
        };
        let mut round = Vec::with_capacity(outputs);
        for k in 0..outputs {
            for r in 0..n {
                let i = r * outputs + k;
                let (g, h) = if !classification {
                    (margin[i] - y[i], 1.0)
                } else if outputs == 1 {
                    (probs[i] - y[i], (probs[i] * (1.0 - probs[i])).max(1e-16))
                } else {
                    // XGBoost's softmax Hessian, 2 p (1 − p).
                    (
                        probs[i] - y[i],
                        (2.0 * probs[i] * (1.0 - probs[i])).max(1e-16),
                    )
                };
                stats[2 * r] = g;
                stats[2 * r + 1] = h;
            }
            let crit = Newton {
                lambda: cfg.lambda,
                eta: cfg.learning_rate,
                min_child_weight: cfg.min_child_weight,
                min_leaf: cfg.min_samples_leaf,
                output: k,
                outputs,
            };
            round.push(grow_tree(
                x,
                d,
                &stats,
                (0..n).collect(),
                &crit,
                cfg,
                max_features,
                rng,
            )?);
        }
        for tree in round {
            for r in 0..n {
                let leaf = tree.leaf(&x[r * d..(r + 1) * d]);
                for k in 0..outputs {
                    margin[r * outputs + k] += leaf[k] as f64;
                }
            }
            trees.push(tree);
        }
        if trees.len() > MAX_TREES {
            return Err(TreeError::Data(format!(
                "more than {MAX_TREES} trees; use fewer rounds"
            )));
        }
    }
    let e = Ensemble {
        features: d,
        outputs,
        base: base.iter().map(|&b| b as f32).collect(),
        trees,
        readout,
    };
    e.validate()?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two features; class 1 iff x0 > 2 and x1 > 5 (an AND a depth-2 tree learns exactly).
    fn and_data() -> (Vec<f32>, Vec<u32>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for a in 0..6 {
            for b in 0..10 {
                x.extend([a as f32, b as f32]);
                y.push(u32::from(a > 2 && b > 5));
            }
        }
        (x, y)
    }

    #[test]
    fn a_tree_learns_a_conjunction_exactly() {
        let (x, y) = and_data();
        let mut cfg = TreeConfig::new(TreeKind::Tree);
        cfg.max_depth = 2;
        let t = fit(
            &x,
            2,
            TreeTarget::Classes {
                labels: &y,
                classes: 2,
            },
            &cfg,
        )
        .unwrap();
        for (r, &l) in y.iter().enumerate() {
            assert_eq!(t.predict(&x[2 * r..2 * r + 2]), l as f64, "row {r}");
        }
        // Thresholds sit between codes: 2.5 and 5.5.
        let splits: Vec<f32> = t.trees[0]
            .nodes
            .iter()
            .filter_map(|n| match n {
                FloatNode::Split { threshold, .. } => Some(*threshold),
                FloatNode::Leaf { .. } => None,
            })
            .collect();
        assert!(splits.contains(&2.5) && splits.contains(&5.5), "{splits:?}");
    }

    #[test]
    fn forest_and_boosting_fit_the_training_data() {
        let (x, y) = and_data();
        for kind in [TreeKind::Forest, TreeKind::Boosting] {
            let cfg = TreeConfig::new(kind);
            let e = fit(
                &x,
                2,
                TreeTarget::Classes {
                    labels: &y,
                    classes: 2,
                },
                &cfg,
            )
            .unwrap();
            let ok = (0..y.len())
                .filter(|&r| e.predict(&x[2 * r..2 * r + 2]) == y[r] as f64)
                .count();
            assert!(ok >= y.len() - 2, "{kind:?}: {ok}/{}", y.len());
        }
    }

    #[test]
    fn boosting_regression_reduces_the_error() {
        let x: Vec<f32> = (0..50).map(|i| i as f32).collect();
        let y: Vec<f32> = x.iter().map(|v| (v / 10.0).floor() * 3.0).collect();
        let e = fit(
            &x,
            1,
            TreeTarget::Values(&y),
            &TreeConfig::new(TreeKind::Boosting),
        )
        .unwrap();
        let mse: f64 = (0..50)
            .map(|r| (e.predict(&x[r..r + 1]) - y[r] as f64).powi(2))
            .sum::<f64>()
            / 50.0;
        assert!(mse < 0.1, "mse {mse}");
        assert_eq!(e.readout, Readout::Value);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let cfg = TreeConfig::new(TreeKind::Tree);
        let one = TreeTarget::Classes {
            labels: &[0, 0],
            classes: 1,
        };
        assert!(fit(&[1.0, 2.0], 1, one, &cfg).is_err());
        let y = TreeTarget::Values(&[1.0]);
        assert!(fit(&[1.0, 2.0], 1, y, &cfg).is_err());
        assert!(fit(&[f32::NAN], 1, y, &cfg).is_err());
        let mut deep = cfg.clone();
        deep.max_depth = 0;
        assert!(fit(&[1.0], 1, y, &deep).is_err());
    }
}
