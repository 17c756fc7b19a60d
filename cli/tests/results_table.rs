//! `qfhe table`: two of its rows (a PBS-free linear model and a tree) into table.md,
//! table.json and table.svg; unknown rows refused with the known ones named.

use std::process::Command;

fn qfhe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qfhe"))
}

#[test]
fn two_rows_make_a_table_a_json_and_a_chart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("table");
    let run = qfhe()
        .args(["table", "--only", "linreg-synthetic,tree-bc"])
        .args(["--max-fhe-samples", "3", "--threads", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("table.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let (linear, tree) = (&rows[0], &rows[1]);
    assert_eq!(linear["key"], "linreg-synthetic");
    assert_eq!(linear["metric"], "r2");
    assert_eq!(linear["pbs_per_sample"], 0);
    // A PBS-free circuit decrypts exactly what the exact circuit computes.
    assert_eq!(linear["fhe_agreement"], 1.0);
    assert!(linear["quantized"].as_f64().unwrap() > 0.8, "{linear}");
    assert_eq!(tree["key"], "tree-bc");
    assert_eq!(tree["metric"], "accuracy");
    assert_eq!(tree["fhe_samples"], 3);
    assert!(tree["pbs_per_sample"].as_u64().unwrap() > 0);
    assert!(tree["eval_key_bytes"].as_u64().unwrap() > 1 << 20);
    assert!(tree["latency_s"].as_f64().unwrap() > 0.0);
    for r in rows {
        // Each row is a full `qfhe run` with its own report.
        let report = out.join("rows").join(r["key"].as_str().unwrap());
        assert!(report.join("report.json").is_file() && report.join("circuit.json").is_file());
    }

    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        md.contains("| Linear Regression | synthetic-regression | r2 |"),
        "{md}"
    );
    assert!(
        md.contains("| Decision Tree | breast-cancer | accuracy |"),
        "{md}"
    );
    assert!(md.contains("Concrete ML 1.9"), "{md}");
    let svg = std::fs::read_to_string(out.join("table.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("Decision Tree · breast-cancer (accuracy)"));
    // Six score bars, two latency bars, and the Concrete ML latency of the tree row.
    assert!(svg.matches("<rect").count() >= 9);
}

#[test]
fn an_unknown_row_is_refused_with_the_known_ones_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = qfhe()
        .args(["table", "--only", "tree-bc,spambase", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("no row 'spambase'") && stderr.contains("mlp-mnist"),
        "{stderr}"
    );
}
