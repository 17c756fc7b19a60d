//! XGBoost JSON import: the fixtures written by `tests/fixtures/make_xgb.py` (real xgboost
//! models with xgboost's own margins and predictions), and malformed or unsupported files.

use qfhe_circuit::Readout;
use qfhe_trees::{from_xgboost_json, load_xgboost, FloatEnsemble, TreeError};
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

fn read_json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-4 * b.abs().max(1.0)
}

/// Loads `xgb_<name>.json` and checks it against `xgb_<name>_expected.json` row by row.
fn check_fixture(name: &str, readout: Readout, outputs: usize) -> FloatEnsemble {
    let model = load_xgboost(&fixture(&format!("xgb_{name}.json"))).unwrap();
    let expected = read_json(&format!("xgb_{name}_expected.json"));
    assert_eq!(model.readout, readout);
    assert_eq!(model.outputs, outputs);
    let rows = expected["features"].as_array().unwrap();
    assert_eq!(rows.len(), 40);
    for (r, row) in rows.iter().enumerate() {
        let x: Vec<f32> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(x.len(), model.features, "{name} row {r}");
        let got = model.outputs(&x);
        let want: Vec<f64> = expected["margins"][r]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), want.len(), "{name} row {r}");
        for (j, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                close(g as f64, w),
                "{name} row {r} output {j}: {g} vs xgboost {w}"
            );
        }
        let predicted = expected["predicted"][r].as_f64().unwrap();
        let p = model.predict(&x);
        if readout == Readout::Value {
            assert!(close(p, predicted), "{name} row {r}: {p} vs {predicted}");
        } else {
            assert_eq!(p, predicted, "{name} row {r}");
        }
    }
    model
}

#[test]
fn binary_logistic_matches_xgboost() {
    let m = check_fixture("breast_cancer", Readout::Sign, 1);
    assert_eq!(m.features, 30);
    assert_eq!(m.trees.len(), 5);
    // Stored as a probability; the margin is its logit.
    let p = read_json("xgb_breast_cancer_expected.json")["base_score"]
        .as_str()
        .unwrap()
        .trim_matches(['[', ']'])
        .parse::<f64>()
        .unwrap();
    assert!((m.base[0] as f64 - (p / (1.0 - p)).ln()).abs() < 1e-6);
}

#[test]
fn multi_softprob_matches_xgboost() {
    let m = check_fixture("iris", Readout::Argmax, 3);
    assert_eq!(m.features, 4);
    assert_eq!(m.trees.len(), 12);
}

#[test]
fn squared_error_matches_xgboost() {
    let m = check_fixture("diabetes", Readout::Value, 1);
    assert_eq!(m.features, 10);
    assert_eq!(m.trees.len(), 5);
}

/// Parses `model` as a file named `origin`.
fn import(model: &Value) -> Result<FloatEnsemble, TreeError> {
    from_xgboost_json(&serde_json::to_vec(model).unwrap(), "crafted.json")
}

/// The error for `name`'s fixture after `edit`; it must be a format or validation error.
fn refused(name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut m = read_json(&format!("xgb_{name}.json"));
    edit(&mut m);
    match import(&m) {
        Ok(_) => panic!("the edited {name} model was accepted"),
        Err(e @ (TreeError::Format { .. } | TreeError::Invalid(_))) => e.to_string(),
        Err(e) => panic!("unexpected error kind: {e:?}"),
    }
}

fn tree0(m: &mut Value) -> &mut Value {
    &mut m["learner"]["gradient_booster"]["model"]["trees"][0]
}

fn param(m: &mut Value) -> &mut Value {
    &mut m["learner"]["learner_model_param"]
}

#[test]
fn base_score_forms_are_read() {
    let x = [5.1f32, 3.5, 1.4, 0.2];
    let original = read_json("xgb_iris.json");
    let reference = import(&original).unwrap();
    let trees_only: Vec<f32> = reference
        .outputs(&x)
        .iter()
        .zip(&reference.base)
        .map(|(o, b)| o - b)
        .collect();
    // One value per class (xgboost ≥ 3.1), one in brackets (2.x) and a bare one (1.x): margins
    // for every objective but binary:logistic.
    for (text, base) in [
        ("[1E-1,2E-1,-3E-1]", [0.1f32, 0.2, -0.3]),
        ("[5E-1]", [0.5; 3]),
        ("5E-1", [0.5; 3]),
    ] {
        let mut m = original.clone();
        param(&mut m)["base_score"] = json!(text);
        let e = import(&m).unwrap();
        assert_eq!(e.base, base, "{text}");
        for (j, o) in e.outputs(&x).iter().enumerate() {
            assert!((o - trees_only[j] - base[j]).abs() < 1e-6, "{text}");
        }
    }
    // binary:logistic: a probability, whose logit is the margin.
    let mut m = read_json("xgb_breast_cancer.json");
    for text in ["5E-1", "[5E-1]", " [ 5E-1 ] "] {
        param(&mut m)["base_score"] = json!(text);
        assert_eq!(import(&m).unwrap().base, [0.0], "{text}");
    }
    param(&mut m)["base_score"] = json!("[8E-1]");
    assert!((import(&m).unwrap().base[0] - 4f32.ln()).abs() < 1e-6);
}

#[test]
fn nodes_are_renumbered_parents_first() {
    // Number tree 0's nodes other than the root backwards, so every child id is smaller than
    // its parent's (but for the root's children): predictions must not change.
    let original = read_json("xgb_diabetes.json");
    let mut m = original.clone();
    let t = tree0(&mut m);
    let n = t["left_children"].as_array().unwrap().len();
    let new = |k: usize| if k == 0 { 0 } else { n - k };
    for key in [
        "left_children",
        "right_children",
        "split_indices",
        "split_conditions",
        "base_weights",
        "default_left",
        "split_type",
        "parents",
    ] {
        let old = t[key].as_array().unwrap().clone();
        let mut moved = old.clone();
        for (k, v) in old.into_iter().enumerate() {
            moved[new(k)] = v;
        }
        t[key] = Value::Array(moved);
    }
    for key in ["left_children", "right_children"] {
        for c in t[key].as_array_mut().unwrap() {
            let v = c.as_i64().unwrap();
            if v >= 0 {
                *c = json!(new(v as usize));
            }
        }
    }
    assert!(t["left_children"][0].as_i64().unwrap() > 1);
    let a = import(&original).unwrap();
    let b = import(&m).unwrap();
    let expected = read_json("xgb_diabetes_expected.json");
    for row in expected["features"].as_array().unwrap() {
        let x: Vec<f32> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(a.outputs(&x), b.outputs(&x));
    }
}

#[test]
fn truncated_arrays_are_refused() {
    let e = refused("diabetes", |m| {
        tree0(m)["split_conditions"].as_array_mut().unwrap().pop();
    });
    assert!(e.contains("split_conditions has"), "{e}");
    let e = refused("iris", |m| {
        m["learner"]["gradient_booster"]["model"]["tree_info"]
            .as_array_mut()
            .unwrap()
            .pop();
    });
    assert!(e.contains("tree_info"), "{e}");
}

#[test]
fn bad_indices_are_refused() {
    let e = refused("breast_cancer", |m| {
        tree0(m)["left_children"][0] = json!(1000)
    });
    assert!(e.contains("outside the tree"), "{e}");
    let e = refused("breast_cancer", |m| {
        tree0(m)["right_children"][0] = json!(-7)
    });
    assert!(e.contains("child -7"), "{e}");
    // A child pointing back to the root: a cycle.
    let e = refused("breast_cancer", |m| tree0(m)["left_children"][1] = json!(0));
    assert!(e.contains("reached twice"), "{e}");
    let e = refused("breast_cancer", |m| {
        tree0(m)["split_indices"][0] = json!(30)
    });
    assert!(e.contains("feature 30"), "{e}");
    let e = refused("iris", |m| {
        m["learner"]["gradient_booster"]["model"]["tree_info"][5] = json!(3)
    });
    assert!(e.contains("tree_info is 3"), "{e}");
    let e = refused("breast_cancer", |m| param(m)["num_feature"] = json!("0"));
    assert!(e.contains("num_feature is 0"), "{e}");
}

#[test]
fn unsupported_models_are_refused() {
    let e = refused("breast_cancer", |m| {
        m["learner"]["objective"]["name"] = json!("rank:pairwise")
    });
    assert!(
        e.contains("rank:pairwise") && e.contains("reg:squarederror"),
        "{e}"
    );
    let e = refused("diabetes", |m| {
        m["learner"]["gradient_booster"] = json!({"name": "gblinear", "model": {"weights": [0.5]}})
    });
    assert!(e.contains("gblinear") && e.contains("gbtree"), "{e}");
    let e = refused("diabetes", |m| {
        let gb = m["learner"]["gradient_booster"].take();
        m["learner"]["gradient_booster"] =
            json!({"name": "dart", "gbtree": gb, "weight_drop": [1.0, 1.0, 1.0, 1.0, 1.0]});
    });
    assert!(e.contains("dart"), "{e}");
    let e = refused("diabetes", |m| tree0(m)["split_type"][0] = json!(1));
    assert!(e.contains("categorical"), "{e}");
    let e = refused("diabetes", |m| tree0(m)["categories"] = json!([0, 2]));
    assert!(e.contains("categorical"), "{e}");
    let e = refused("diabetes", |m| {
        tree0(m)["tree_param"]["size_leaf_vector"] = json!("3")
    });
    assert!(e.contains("multi_output_tree"), "{e}");
    let e = refused("diabetes", |m| param(m)["num_target"] = json!("2"));
    assert!(e.contains("targets"), "{e}");
    let e = refused("breast_cancer", |m| param(m)["base_score"] = json!("1E0"));
    assert!(e.contains("probability"), "{e}");
    let e = refused("iris", |m| param(m)["base_score"] = json!("[1E0,2E0]"));
    assert!(e.contains("base_score has 2 values"), "{e}");
    let e = refused("iris", |m| param(m)["base_score"] = json!("[1E0,inf,0]"));
    assert!(e.contains("finite"), "{e}");
    let e = refused("diabetes", |m| {
        m["learner"]["gradient_booster"]["model"]["trees"] = json!([]);
        m["learner"]["gradient_booster"]["model"]["tree_info"] = json!([]);
    });
    assert!(e.contains("no trees"), "{e}");
}

#[test]
fn values_beyond_f32_are_refused() {
    let e = refused("diabetes", |m| {
        tree0(m)["split_conditions"][0] = json!(1e39)
    });
    assert!(e.contains("not a finite f32"), "{e}");
    let e = refused("diabetes", |m| {
        let leaf = tree0(m)["left_children"]
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c == -1)
            .unwrap();
        tree0(m)["split_conditions"][leaf] = json!(-1e300);
    });
    assert!(e.contains("not a finite f32"), "{e}");
}

#[test]
fn huge_sizes_are_refused_before_allocating() {
    let e = refused("diabetes", |m| {
        tree0(m)["tree_param"]["num_nodes"] = json!("1000000000")
    });
    assert!(e.contains("num_nodes is 1000000000"), "{e}");
    let e = refused("diabetes", |m| {
        tree0(m)["tree_param"]["num_nodes"] = json!("18446744073709551616")
    });
    assert!(e.contains("num_nodes"), "{e}");
    // An array longer than any tree may be is refused while it is parsed.
    let e = refused("diabetes", |m| {
        tree0(m)["default_left"] = Value::Array(vec![json!(0); (1 << 16) + 1]);
    });
    assert!(e.contains("65536 nodes"), "{e}");
    let e = refused("iris", |m| param(m)["num_class"] = json!("100000000"));
    assert!(e.contains("num_class"), "{e}");
}

#[test]
fn broken_files_are_refused_without_panicking() {
    let bytes = std::fs::read(fixture("xgb_iris.json")).unwrap();
    for cut in (0..bytes.len()).step_by(53) {
        match from_xgboost_json(&bytes[..cut], "cut.json") {
            Err(TreeError::Format { path, .. }) => assert_eq!(path, "cut.json"),
            other => panic!("prefix of {cut} bytes: {other:?}"),
        }
    }
    // Single-byte corruptions may yield another valid model, but never a panic.
    for k in (0..bytes.len()).step_by(17) {
        let mut b = bytes.clone();
        b[k] = match b[k] {
            b'0'..=b'8' => b[k] + 1,
            b',' => b']',
            _ => b'-',
        };
        let _ = from_xgboost_json(&b, "corrupt.json");
    }
    // How xgboost's UBJSON (`save_model("model.ubj")`) begins.
    let ubj = b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner{L";
    assert!(from_xgboost_json(ubj, "model.ubj")
        .unwrap_err()
        .to_string()
        .contains("UBJSON"));
    assert!(matches!(
        from_xgboost_json(b"  ", "empty.json"),
        Err(TreeError::Format { .. })
    ));
    assert!(matches!(
        from_xgboost_json(b"{\"learner\": 3}", "odd.json"),
        Err(TreeError::Format { .. })
    ));
    assert!(matches!(
        load_xgboost(&fixture("no_such_model.json")),
        Err(TreeError::Io { .. })
    ));
}
