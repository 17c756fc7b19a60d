//! Linear models end to end: the circuit's dequantized scores stay within the quantization
//! error bound of the `f32` model, the quantized score is close to fp32, and real encryption
//! reproduces the exact circuit bit for bit (no PBS, so no noise flips).

use qfhe::datasets::bundled;
use qfhe::{fit_linear, LinearConfig, LinearKind, Metric, Mode, Table};

fn split(name: &str) -> (Table, Table) {
    bundled::load(name).unwrap().split(0.2, 1).unwrap()
}

/// `|Σ_i w_i x_i − dequantized circuit score| ≤ Σ_i |w_i| · step_i / 2 + Σ_i σ/2 · q_max +
/// f32 slack`: input rounding (half a step per feature; test rows outside the training range
/// are clamped, so only rows inside it are checked) plus weight rounding.
fn check_scores_within_bound(model: &qfhe::LinearModel, table: &Table) {
    let c = model.circuit();
    let q = c.input.quantizer.as_ref().unwrap();
    let f = model.float();
    let d = f.features;
    let qmax = (1i32 << c.input.bits) - 1;
    let mut checked = 0;
    for r in 0..table.rows() {
        let row: Vec<f32> = table.row(r).iter().map(|&v| v as f32).collect();
        let inside = row
            .iter()
            .enumerate()
            .all(|(i, &x)| x >= q.low[i] && x <= q.value(i, qmax));
        if !inside {
            continue;
        }
        checked += 1;
        let exact = c.run_exact(&c.encode_features(&row).unwrap()).unwrap();
        let float = f.scores(&row);
        for (j, (&e, &s)) in exact.logits.iter().zip(&float).enumerate() {
            let w = &f.weights[j * d..(j + 1) * d];
            let input_err: f64 = w
                .iter()
                .zip(&q.step)
                .map(|(&a, &st)| (a as f64 * st as f64).abs() / 2.0)
                .sum();
            let weight_err = c.output.scale[j] as f64 / 2.0 * qmax as f64 * d as f64;
            let slack = 1e-3 * (1.0 + s.abs() as f64);
            let err = (e as f64 - s as f64).abs();
            assert!(
                err <= input_err + weight_err + slack,
                "row {r} output {j}: circuit {e} vs f32 {s}, bound {}",
                input_err + weight_err + slack
            );
        }
    }
    assert!(
        checked > table.rows() / 2,
        "only {checked} rows inside the range"
    );
}

fn run(name: &str, kind: LinearKind, metric: Metric, fhe_rows: usize) {
    let (train, test) = split(name);
    let model = fit_linear(&train, name, &LinearConfig::new(kind)).unwrap();
    assert_eq!(model.circuit().pbs_count(), 0);
    check_scores_within_bound(&model, &test);
    let targets = qfhe::tabular::targets(&test);
    let fp32 = metric.score(&model.predict_float(&test).unwrap(), &targets);
    let compiled = model.compile(&train).unwrap();
    let eval = compiled.evaluate_table(&test, metric, fhe_rows, 3).unwrap();
    assert!(
        (eval.quantized_accuracy - fp32).abs() <= 0.015,
        "{name} {kind:?}: quantized {} vs fp32 {fp32}",
        eval.quantized_accuracy
    );
    // No PBS: the simulator adds only the output's decryption noise, far below one unit.
    assert_eq!(eval.simulated_accuracy, eval.quantized_accuracy);
    assert_eq!(eval.fhe_samples, fhe_rows);
    assert_eq!(eval.fhe_agreement, 1.0, "{name} {kind:?}");
    let idx: Vec<usize> = (0..fhe_rows).collect();
    let exact = compiled.predict_table(&test, &idx, Mode::Exact).unwrap();
    let fhe = compiled.predict_table(&test, &idx, Mode::Fhe).unwrap();
    for (e, f) in exact.iter().zip(&fhe) {
        assert_eq!(e.logits, f.logits, "{name} {kind:?}: FHE logits differ");
    }
}

#[test]
fn logistic_regression_multinomial_and_binary() {
    run("iris", LinearKind::LogisticRegression, Metric::Accuracy, 8);
    run(
        "breast-cancer",
        LinearKind::LogisticRegression,
        Metric::F1,
        8,
    );
}

#[test]
fn linear_svm_multiclass_and_binary() {
    run("wine", LinearKind::Svm, Metric::Accuracy, 8);
    run("breast-cancer", LinearKind::Svm, Metric::Accuracy, 8);
}

#[test]
fn linear_regression_on_diabetes() {
    run("diabetes", LinearKind::LinearRegression, Metric::R2, 8);
}

#[test]
fn mismatched_tasks_are_refused() {
    let (train, _) = split("diabetes");
    let e = fit_linear(&train, "diabetes", &LinearConfig::new(LinearKind::Svm)).unwrap_err();
    assert!(e.to_string().contains("class labels"), "{e}");
    let (train, _) = split("iris");
    let e = fit_linear(
        &train,
        "iris",
        &LinearConfig::new(LinearKind::LinearRegression),
    )
    .unwrap_err();
    assert!(e.to_string().contains("real-valued"), "{e}");
    let mut cfg = LinearConfig::new(LinearKind::LogisticRegression);
    cfg.quant.in_bits = 0;
    assert!(fit_linear(&train, "iris", &cfg).is_err());
}
