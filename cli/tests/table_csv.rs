//! `qfhe run --data-csv`: a CSV that is not bundled, with a header and string class labels,
//! through a tree to FHE; and malformed CSVs refused with the row and column named.

use std::fmt::Write as _;
use std::process::Command;

fn qfhe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qfhe"))
}

fn assert_success(run: &std::process::Output) {
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// 120 rows, three features, label `"high"` when `a + 2b > 10` else `"low"`; `c` is noise.
fn csv() -> String {
    let mut s = String::from("a,b,c,verdict\n");
    for i in 0..120u32 {
        let a = (i * 7 % 13) as f32;
        let b = (i * 5 % 11) as f32 / 2.0;
        let c = (i * 3 % 17) as f32;
        let label = if a + 2.0 * b > 10.0 { "high" } else { "low" };
        let _ = writeln!(s, "{a},{b},{c},{label}");
    }
    s
}

#[test]
fn a_csv_with_string_labels_runs_through_a_tree_to_fhe() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("verdicts.csv");
    std::fs::write(&file, csv()).unwrap();
    let out = dir.path().join("out");
    let run = qfhe()
        .args(["run", "--data-csv"])
        .arg(&file)
        .args(["--target", "verdict", "--model", "tree", "--metric", "f1"])
        .args([
            "--max-depth",
            "3",
            "--pbs-batch",
            "1",
            "--fhe-samples",
            "2",
            "--threads",
            "2",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_success(&run);
    let report: serde_json::Value = json(&out.join("report.json"));
    assert_eq!(report["metric"], "f1");
    assert_eq!(report["dataset"], "verdicts.csv");
    assert_eq!(report["test_samples"], 24);
    assert_eq!(report["fhe"]["samples"], 2);
    assert_eq!(report["fhe"]["backend"], "cpu (one PBS at a time)");
    assert!(report["fhe"]["pbs_per_sample"].as_u64().unwrap() > 0);
    // The rule is a threshold on two features: a depth-3 tree on 6-bit codes learns it well.
    assert!(
        report["quantized_accuracy"].as_f64().unwrap() > 0.8,
        "{report}"
    );
    assert!(report["fhe"]["agreement_with_quantized"].as_f64().unwrap() >= 0.5);
    assert!(out.join("circuit.json").exists());

    // `qfhe eval` on the same CSV splits it as `run` did and scores the circuit the same way.
    let again = dir.path().join("eval");
    let eval = qfhe()
        .args(["eval", "--circuit"])
        .arg(out.join("circuit.json"))
        .arg("--data-csv")
        .arg(&file)
        .args([
            "--target",
            "verdict",
            "--metric",
            "f1",
            "--fhe-samples",
            "0",
        ])
        .args(["--threads", "2", "--out"])
        .arg(&again)
        .output()
        .unwrap();
    assert_success(&eval);
    let evaluated = json(&again.join("report.json"));
    assert_eq!(evaluated["metric"], "f1");
    assert_eq!(evaluated["test_samples"], 24);
    assert_eq!(
        evaluated["quantized_accuracy"], report["quantized_accuracy"],
        "{evaluated}"
    );
}

#[test]
fn malformed_csvs_name_the_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("a,b,y\n1,2,x\n3,oops,y\n", "row 3"),
        ("a,b,y\n1,2,x\n3,4\n", "row 3"),
        ("", "no rows"),
        ("a,b,y\n1,2,x\n3,4,x\n", "class"),
    ];
    for (i, (text, expect)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.csv"));
        std::fs::write(&file, text).unwrap();
        let run = qfhe()
            .args(["run", "--data-csv"])
            .arg(&file)
            .args(["--model", "logreg", "--fhe-samples", "0", "--out"])
            .arg(dir.path().join("out"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "case {i}: {err}");
        assert!(
            err.contains(expect),
            "case {i}: expected '{expect}' in: {err}"
        );
    }
    let run = qfhe()
        .args(["run", "--data-csv", "/no/such.csv", "--model", "tree"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
}

#[test]
fn an_xgboost_model_is_imported_and_run_under_fhe() {
    let dir = tempfile::tempdir().unwrap();
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../trees/tests/fixtures/xgb_iris.json"
    );
    let out = dir.path().join("out");
    let run = qfhe()
        .args(["run", "--dataset", "iris", "--import-xgboost", model])
        .args(["--fhe-samples", "1", "--threads", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_success(&run);
    let report: serde_json::Value = json(&out.join("report.json"));
    assert_eq!(report["model"], "xgboost");
    assert_eq!(report["fhe"]["samples"], 1);
    // The imported model scores in f32 as xgboost does; 6-bit codes cost at most a few rows.
    assert!(report["fp32_accuracy"].as_f64().unwrap() > 0.85, "{report}");
    assert!(
        report["quantized_accuracy"].as_f64().unwrap() > 0.8,
        "{report}"
    );

    // A model for other features is refused before anything is trained or encrypted.
    let breast = model.replace("xgb_iris", "xgb_breast_cancer");
    let run = qfhe()
        .args(["run", "--dataset", "iris", "--import-xgboost", &breast])
        .args(["--fhe-samples", "0", "--out"])
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("features"), "{err}");
}

#[test]
fn a_network_trains_on_a_table_and_runs_under_fhe() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = qfhe()
        .args([
            "run",
            "--dataset",
            "iris",
            "--model",
            "mlp",
            "--hidden",
            "8",
        ])
        .args(["--fhe-samples", "2", "--threads", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_success(&run);
    let report: serde_json::Value = json(&out.join("report.json"));
    assert_eq!(report["model"], "mlp");
    assert_eq!(report["test_samples"], 30);
    assert_eq!(report["fhe"]["pbs_per_sample"], 8);
    assert_eq!(report["fhe"]["backend"], "cpu (batches of 32)");
    // The client encodes raw feature values: the circuit carries their quantizer.
    let circuit: serde_json::Value = json(&out.join("circuit.json"));
    assert_eq!(
        circuit["input"]["quantizer"]["low"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // Iris is nearly separable: far better than the 1/3 of chance even with 8 neurons.
    assert!(
        report["quantized_accuracy"].as_f64().unwrap() > 0.8,
        "{report}"
    );

    let run = qfhe()
        .args(["run", "--dataset", "diabetes", "--model", "mlp", "--out"])
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("regression"), "{err}");
}

#[test]
fn an_unavailable_backend_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = qfhe()
        .args([
            "run",
            "--dataset",
            "iris",
            "--model",
            "tree",
            "--backend",
            "gpu",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("gpu backend is not in this build"), "{err}");
    assert!(!out.join("report.json").exists());
    let run = qfhe()
        .args(["run", "--dataset", "iris", "--pbs-batch", "0"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "clap refuses a batch of 0");
}
