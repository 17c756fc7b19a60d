//! Seeded synthetic tabular data with the semantics of scikit-learn's `make_regression` and
//! `make_classification` (simplified as documented on each function), for tests and the
//! `synthetic-*` datasets.

use crate::tabular::{Table, Target};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

fn normal(rng: &mut impl Rng) -> f64 {
    StandardNormal.sample(rng)
}

fn names(features: usize) -> Vec<String> {
    (0..features).map(|j| format!("x{j}")).collect()
}

/// A linear regression problem: `X` is `rows × features` standard normal; the first
/// `informative` features get weights drawn uniformly from `[0, 100)`, the others 0; the target
/// is `y = X·w + ε` with `ε ~ N(0, noise²)` (scikit-learn's `make_regression` with no bias and
/// no low-rank structure, informative features first instead of shuffled).
///
/// # Panics
/// If `informative > features`.
pub fn regression(
    rows: usize,
    features: usize,
    informative: usize,
    noise: f64,
    seed: u64,
) -> Table {
    assert!(
        informative <= features,
        "more informative features than features"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let w: Vec<f64> = (0..features)
        .map(|j| {
            if j < informative {
                rng.random_range(0.0..100.0)
            } else {
                0.0
            }
        })
        .collect();
    let mut x = Vec::with_capacity(rows * features);
    let mut y = Vec::with_capacity(rows);
    for _ in 0..rows {
        let row: Vec<f64> = (0..features).map(|_| normal(&mut rng)).collect();
        y.push(row.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + noise * normal(&mut rng));
        x.extend(row);
    }
    Table {
        feature_names: names(features),
        target_name: "y".into(),
        features: x,
        target: Target::Values(y),
    }
}

/// What [`classification`] generates.
#[derive(Debug, Clone)]
pub struct ClassificationSpec {
    /// Rows.
    pub rows: usize,
    /// Features in all: informative, then redundant, then pure noise.
    pub features: usize,
    /// Features that carry the classes (at least 1; `2^informative ≥ classes`).
    pub informative: usize,
    /// Random linear combinations of the informative features.
    pub redundant: usize,
    /// Classes (at least 2).
    pub classes: usize,
    /// Half the side of the hypercube whose vertices are the class centres.
    pub class_sep: f64,
    /// Fraction of rows whose label is replaced by a random class.
    pub flip: f64,
}

impl Default for ClassificationSpec {
    /// scikit-learn's `make_classification` defaults with 1000 rows: 20 features, 2
    /// informative, 2 redundant, 2 classes, separation 1, 1% flipped.
    fn default() -> Self {
        Self {
            rows: 1000,
            features: 20,
            informative: 2,
            redundant: 2,
            classes: 2,
            class_sep: 1.0,
            flip: 0.01,
        }
    }
}

/// A classification problem: class `k`'s rows are standard normal around a centre at a vertex
/// of the hypercube `[−class_sep, class_sep]^informative`, the classes spread over the vertices:
/// class `k` sits at vertex `v_k = round(k · (2^informative − 1) / (classes − 1))`, whose binary
/// digits give the signs (so two classes sit on opposite corners, at distance
/// `2 · class_sep · √informative`, and `2^informative` classes take every vertex; scikit-learn
/// picks the vertices at random and adds a random covariance per cluster); then come
/// `redundant` features, each a random combination (weights in `[−1, 1)`) of the informative
/// ones, and standard normal noise features. Classes are balanced (rows dealt in turn, then
/// shuffled), and a fraction `flip` of labels is replaced by a random class.
///
/// # Panics
/// If the spec is inconsistent (`informative + redundant > features`, fewer than 2 classes,
/// or more classes than vertices).
pub fn classification(spec: &ClassificationSpec, seed: u64) -> Table {
    let s = spec;
    assert!(s.informative >= 1 && s.informative + s.redundant <= s.features);
    assert!(s.classes >= 2 && (s.classes as f64) <= 2f64.powi(s.informative.min(60) as i32));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mix: Vec<Vec<f64>> = (0..s.redundant)
        .map(|_| {
            (0..s.informative)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect()
        })
        .collect();
    let mut labels: Vec<u32> = (0..s.rows).map(|i| (i % s.classes) as u32).collect();
    labels.shuffle(&mut rng);
    let last_vertex = 2f64.powi(s.informative.min(60) as i32) - 1.0;
    let vertex = |k: u32| (k as f64 * last_vertex / (s.classes - 1) as f64).round() as u64;
    let mut x = Vec::with_capacity(s.rows * s.features);
    for &k in &labels {
        let v = vertex(k);
        let inf: Vec<f64> = (0..s.informative)
            .map(|b| {
                let sign = if b < 64 && (v >> b) & 1 == 1 {
                    1.0
                } else {
                    -1.0
                };
                sign * s.class_sep + normal(&mut rng)
            })
            .collect();
        x.extend_from_slice(&inf);
        for m in &mix {
            x.push(m.iter().zip(&inf).map(|(a, b)| a * b).sum());
        }
        for _ in s.informative + s.redundant..s.features {
            x.push(normal(&mut rng));
        }
    }
    for l in labels.iter_mut() {
        if rng.random::<f64>() < s.flip {
            *l = rng.random_range(0..s.classes as u32);
        }
    }
    Table {
        feature_names: names(s.features),
        target_name: "class".into(),
        features: x,
        target: Target::Classes {
            labels,
            names: (0..s.classes).map(|k| k.to_string()).collect(),
        },
    }
}
