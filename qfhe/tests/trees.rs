//! Tree ensembles end to end: the circuit's exact simulator computes what the quantized
//! ensemble predicts on every test row, and real encryption reproduces the simulator on a few.

use qfhe::datasets::bundled;
use qfhe::{fit_trees, import_trees, Metric, Mode, Table, TreeKind, TreesConfig};

fn small(kind: TreeKind) -> TreesConfig {
    let mut cfg = TreesConfig::new(kind);
    if kind != TreeKind::Tree {
        cfg.trees.trees = 3;
        cfg.trees.max_depth = 2;
    } else {
        cfg.trees.max_depth = 3;
    }
    cfg
}

/// Exact circuit ≡ the quantized ensemble on every row; FHE ≡ exact on `fhe_rows` (at most
/// one off-by-one comparison flip allowed, which the noise model predicts at < 0.1% per
/// comparison next to its threshold).
fn check(model: &qfhe::TreeModel, test: &Table, metric: Metric, fhe_rows: usize) {
    let c = model.circuit();
    let quantized = model.quantized();
    // One leaf per tree writes a value: the output's worst case counts one leaf per tree (at
    // most ±leaf_max each), and its row still sees every leaf's noise.
    let leaves = &c.stages[1];
    let groups = leaves
        .exclusive
        .as_ref()
        .expect("leaves are grouped by tree");
    let trees = groups
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(trees <= quantized.trees.len());
    for j in 0..c.output.d_out() {
        let row = c.output_row_stats(j);
        let one_per_tree = trees as i64 * (leaves.out_max - leaves.out_min) as i64;
        assert!(
            row.range() <= one_per_tree,
            "{} > {one_per_tree}",
            row.range()
        );
        let read = c.output.gemm.row(j).iter().filter(|&&w| w != 0).count();
        assert!((row.l2 - (read as f64).sqrt()).abs() < 1e-9);
    }
    let codes = qfhe::tabular::codes(c, test).unwrap();
    for (r, x) in codes.iter().enumerate() {
        let exact = c.run_exact(x).unwrap();
        let value = c.output.predicted_value(&exact.logits);
        let want = quantized.predict(x);
        let tol = 1e-4 * (1.0 + want.abs());
        assert!(
            (value - want).abs() <= tol,
            "row {r}: circuit {value}, ensemble {want}"
        );
    }
    if fhe_rows == 0 {
        return;
    }
    let compiled = model.compile(test).unwrap();
    let eval = compiled.evaluate_table(test, metric, fhe_rows, 5).unwrap();
    assert!(
        eval.fhe_agreement >= (fhe_rows as f64 - 1.0) / fhe_rows as f64,
        "{eval:?}"
    );
    let idx: Vec<usize> = (0..fhe_rows).collect();
    let exact = compiled.predict_table(test, &idx, Mode::Exact).unwrap();
    assert_eq!(exact.len(), fhe_rows);
}

#[test]
fn decision_tree_classifier_and_regressor() {
    let (train, test) = bundled::load("iris").unwrap().split(0.2, 1).unwrap();
    let model = fit_trees(&train, "iris", &small(TreeKind::Tree)).unwrap();
    assert!(model.circuit().pbs_count() > 0);
    check(&model, &test, Metric::Accuracy, 4);
    let (train, test) = bundled::load("diabetes").unwrap().split(0.2, 1).unwrap();
    let model = fit_trees(&train, "diabetes", &small(TreeKind::Tree)).unwrap();
    check(&model, &test, Metric::R2, 3);
}

#[test]
fn forest_and_boosting() {
    let (train, test) = bundled::load("breast-cancer")
        .unwrap()
        .split(0.2, 1)
        .unwrap();
    for kind in [TreeKind::Forest, TreeKind::Boosting] {
        let model = fit_trees(&train, "breast-cancer", &small(kind)).unwrap();
        check(&model, &test, Metric::F1, 3);
    }
    let (train, test) = bundled::load("wine").unwrap().split(0.2, 1).unwrap();
    let model = fit_trees(&train, "wine", &small(TreeKind::Boosting)).unwrap();
    check(&model, &test, Metric::Accuracy, 3);
}

/// The feature codes are bins split at the fp32 ensemble's thresholds: the ensemble on codes
/// sums the very leaves the fp32 ensemble sums, on every test row (not only the training rows
/// the thresholds came from), while a feature has at most `2^in_bits − 1` thresholds.
fn assert_fp32_paths(model: &qfhe::TreeModel, test: &Table) {
    let float = model.float().expect("fp32 reference");
    let raw = qfhe::tabular::float_rows(test);
    let codes = qfhe::tabular::codes(model.circuit(), test).unwrap();
    for (row, x) in raw.chunks_exact(float.features).zip(&codes) {
        assert_eq!(
            float.outputs(row),
            model.codes().outputs(x),
            "{row:?} → {x:?}"
        );
    }
}

#[test]
fn trees_on_threshold_bins_compute_the_fp32_ensemble() {
    let (train, test) = bundled::load("breast-cancer")
        .unwrap()
        .split(0.2, 3)
        .unwrap();
    for kind in [TreeKind::Tree, TreeKind::Forest, TreeKind::Boosting] {
        let model = fit_trees(&train, "breast-cancer", &small(kind)).unwrap();
        let selection = model.leaf_selection().expect("leaf size cross-validated");
        assert_eq!(selection.scores.len(), qfhe::LEAF_CANDIDATES.len());
        assert_fp32_paths(&model, &test);
        // The codes are as narrow as the most-split feature's bins allow.
        let c = model.circuit();
        let most = c.input.quantizer.as_ref().unwrap().edges.as_ref().unwrap();
        let most = most.iter().map(Vec::len).max().unwrap();
        assert!(
            most < (1 << c.input.bits),
            "{most} edges, {} bits",
            c.input.bits
        );
        assert!(c.input.bits == 1 || most >= (1 << (c.input.bits - 1)));
    }
    // A circuit file with a bin edge that is not a number is refused.
    let mut c = fit_trees(&train, "breast-cancer", &small(TreeKind::Tree))
        .unwrap()
        .circuit()
        .clone();
    let edges = c.input.quantizer.as_mut().unwrap().edges.as_mut().unwrap();
    let used = edges.iter_mut().find(|e| !e.is_empty()).unwrap();
    used[0] = f32::NAN;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("strictly increasing finite edges"), "{e}");
    // Two input bits hold three edges per feature: a deeper forest has more thresholds on some
    // feature, so its bins merge them and the codes no longer follow every fp32 path, but the
    // circuit still computes the ensemble on codes exactly.
    let mut cfg = TreesConfig::new(TreeKind::Forest);
    cfg.quant.in_bits = 2;
    cfg.leaf_candidates.clear();
    let model = fit_trees(&train, "breast-cancer", &cfg).unwrap();
    let bins = model.circuit().input.quantizer.as_ref().unwrap();
    let thresholds = model.float().unwrap().thresholds();
    assert!(bins.edges.as_ref().unwrap().iter().all(|e| e.len() <= 3));
    assert!(thresholds.iter().any(|t| t.len() > 3));
    check(&model, &test, Metric::Accuracy, 0);
}

#[test]
fn an_xgboost_model_compiles_and_keeps_its_predictions() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../trees/tests/fixtures/xgb_breast_cancer.json");
    let float = qfhe_trees::load_xgboost(&path).unwrap();
    let table = bundled::load("breast-cancer").unwrap();
    let (train, test) = table.split(0.2, 1).unwrap();
    let mut cfg = TreesConfig::new(TreeKind::Boosting);
    cfg.quant.in_bits = 8;
    let model = import_trees(float.clone(), &train, "breast-cancer", &cfg).unwrap();
    // On each row's dequantized values the imported model takes the circuit's paths, so
    // before leaf rounding the code ensemble predicts what xgboost's model predicts there.
    let c = model.circuit();
    let q = c.input.quantizer.as_ref().unwrap();
    let codes = qfhe::tabular::codes(c, &test).unwrap();
    for x in &codes {
        let dequantized: Vec<f32> = x.iter().enumerate().map(|(i, &k)| q.value(i, k)).collect();
        let a = float.outputs(&dequantized);
        let b = model.codes().outputs(x);
        assert!((a[0] - b[0]).abs() < 1e-4, "{a:?} vs {b:?}");
    }
    assert_fp32_paths(&model, &test);
    check(&model, &test, Metric::Accuracy, 2);
}
