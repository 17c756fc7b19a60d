//! Circuit files: round trip, upgrades of older versions, and clear rejection of corrupt or
//! inconsistent ones.

use qfhe_circuit::fixtures::{chain, residual};
use qfhe_circuit::{Circuit, CircuitError, Source, FORMAT_VERSION};

fn reload(c: &Circuit) -> Result<Circuit, CircuitError> {
    Circuit::from_json(&serde_json::to_vec(c).unwrap(), "test.json")
}

fn message(c: &Circuit) -> String {
    reload(c).unwrap_err().to_string()
}

#[test]
fn round_trip_through_a_file() {
    for c in [chain(), residual()] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        c.save(&path).unwrap();
        assert_eq!(Circuit::load(&path).unwrap(), c);
    }
    assert_eq!(residual().pbs_count(), 12);
}

#[test]
fn truncated_or_missing_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    let bytes = chain().to_json();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Circuit::load(&path).unwrap_err();
    assert!(matches!(err, CircuitError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("export the trained model again"));
    let missing = Circuit::load(&dir.path().join("nope.json")).unwrap_err();
    assert!(matches!(missing, CircuitError::Io { .. }));
}

#[test]
fn other_versions_are_refused_with_the_version_named() {
    let mut json: serde_json::Value = serde_json::to_value(chain()).unwrap();
    json["version"] = 99.into();
    let err = Circuit::from_json(&serde_json::to_vec(&json).unwrap(), "x").unwrap_err();
    assert!(matches!(err, CircuitError::Version { found: 99 }), "{err}");
    assert!(err.to_string().contains("version 99"));
    let mut c = chain();
    c.version = 3;
    assert!(matches!(
        c.validate(),
        Err(CircuitError::Version { found: 3 })
    ));
}

/// A version-3 file written by qfhe 0.1 (a 12-5-4-3 MLP), with the exact simulator's values
/// that version computed for eight inputs: the upgraded circuit computes the same.
#[test]
fn version_3_files_load_and_compute_what_they_computed() {
    let bytes = include_bytes!("data/v3_mlp.json");
    let c = Circuit::from_json(bytes, "v3_mlp.json").unwrap();
    assert_eq!(c.version, FORMAT_VERSION);
    assert_eq!(c.stages.len(), 2);
    assert_eq!(c.stages[1].gemm.sources, vec![Source::Stage(0)]);
    let expected: serde_json::Value =
        serde_json::from_slice(include_bytes!("data/v3_mlp_expected.json")).unwrap();
    let cases = expected.as_array().unwrap();
    assert_eq!(cases.len(), 8);
    let mut nonzero = 0;
    for case in cases {
        let x: Vec<i32> = serde_json::from_value(case["input"].clone()).unwrap();
        let stages: Vec<Vec<i32>> = serde_json::from_value(case["stages"].clone()).unwrap();
        let out: Vec<i64> = serde_json::from_value(case["out_acc"].clone()).unwrap();
        let t = c.run_exact(&x).unwrap();
        assert_eq!(t.stages, stages, "input {x:?}");
        assert_eq!(t.out_acc, out, "input {x:?}");
        nonzero += stages[0].iter().filter(|&&v| v != 0).count();
    }
    assert!(nonzero > 10, "the fixture exercises its tables");
    // Saved again, it is a version-4 file that reads back unchanged.
    assert_eq!(reload(&c).unwrap(), c);

    // Versions 1 and 2 stored the output Δ as a power of two.
    let mut json: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    json["version"] = 2.into();
    let output = json["output"].as_object_mut().unwrap();
    output.remove("delta");
    output.insert("delta_log2".into(), 50.into());
    let v2 = Circuit::from_json(&serde_json::to_vec(&json).unwrap(), "v2.json").unwrap();
    assert_eq!(v2.stages[1].delta, 1 << 50);
    assert_eq!(v2.output_delta(), 1 << 50);
    json["version"] = 1.into();
    let v1 = Circuit::from_json(&serde_json::to_vec(&json).unwrap(), "v1.json").unwrap();
    assert_eq!(v1.stages, v2.stages);
}

#[test]
fn a_legacy_file_with_a_zero_scale_is_an_error() {
    // A crafted version-3 file once divided by zero while loading.
    let mut json: serde_json::Value =
        serde_json::from_slice(include_bytes!("data/v3_mlp.json")).unwrap();
    json["hidden"][1]["delta_in"] = 0.into();
    let err = Circuit::from_json(&serde_json::to_vec(&json).unwrap(), "v3.json").unwrap_err();
    assert!(matches!(err, CircuitError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("delta_in 0"), "{err}");
}

#[test]
fn a_zero_or_foreign_scale_is_an_error() {
    let mut c = residual();
    c.stages[0].delta = 0;
    assert!(message(&c).contains("Δ is 0"));
    let mut c = residual();
    c.stages[1].delta += 1;
    assert!(message(&c).contains("different scales"), "{}", message(&c));
    let mut c = chain();
    c.input.delta = 0;
    assert!(message(&c).contains("input.delta is 0"));
    let mut c = chain();
    c.stages[0].delta = 3;
    assert!(message(&c).contains("not a multiple of the phase unit"));
}

#[test]
fn sources_must_be_earlier_stages_and_every_stage_must_be_read() {
    let mut c = residual();
    c.stages[1].gemm.sources = vec![Source::Stage(1)];
    assert!(message(&c).contains("not an earlier stage"));
    let mut c = residual();
    c.stages[0].gemm.sources = vec![Source::Stage(7)];
    assert!(message(&c).contains("not an earlier stage"));
    let mut c = chain();
    c.stages[1].gemm.sources = vec![Source::Input];
    c.stages[1].gemm.d_in = 4;
    c.stages[1].gemm.weights = vec![1; 8];
    assert!(message(&c).contains("no later stage"), "{}", message(&c));
}

#[test]
fn sparse_gemms_with_bad_indices_are_refused() {
    let mut c = residual();
    let ix = c.stages[2].gemm.inputs.clone().unwrap();
    c.stages[2].gemm.inputs = Some(vec![8; ix.len()]);
    assert!(message(&c).contains("input index 8 out of range for 8 inputs"));
    c.stages[2].gemm.inputs = Some(ix[1..].to_vec());
    assert!(message(&c).contains("input indices for"));
}

#[test]
fn inconsistent_circuits_are_refused() {
    let base = chain();
    let mut c = base.clone();
    c.stages[0].gemm.weights.pop();
    assert!(message(&c).contains("non-empty rows"), "{}", message(&c));

    let mut c = base.clone();
    c.stages[0].gemm.weights[3] = 9;
    assert!(message(&c).contains("outside the 3-bit range"));

    let mut c = base.clone();
    c.stages[1].gemm.d_in = 6;
    assert!(message(&c).contains("does not match its sources"));

    let mut c = base.clone();
    c.stages[0].neurons[2].table.starts = vec![0, 900, 800];
    c.stages[0].neurons[2].table.levels = vec![0, 1, 2];
    assert!(message(&c).contains("increase strictly"));

    let mut c = base.clone();
    c.stages[0].neurons[2].table.levels[1] = 9;
    assert!(message(&c).contains("outside the stage's output range"));

    // An offset that pushes the worst case past the half torus would wrap: refused.
    let mut c = base.clone();
    c.stages[0].neurons[1].offset += (2048i64 << 10) - (64 << 10);
    assert!(message(&c).contains("wrap"));
    let mut c = base.clone();
    c.stages[0].neurons[1].mult = i64::MAX;
    assert!(message(&c).contains("wrap"));

    let mut c = base.clone();
    c.output.scale[0] = f32::NAN;
    // (JSON has no NaN, so this is checked on the structure.)
    assert!(c.validate().unwrap_err().to_string().contains("finite"));

    let mut c = base;
    c.format = "something-else".into();
    assert!(message(&c).contains("format tag"));
}

#[test]
fn version_5_files_load_as_they_are() {
    let c = chain();
    let mut json: serde_json::Value = serde_json::to_value(&c).unwrap();
    json["version"] = 5.into();
    let read = Circuit::from_json(&serde_json::to_vec(&json).unwrap(), "v5.json").unwrap();
    assert_eq!(read, c);
}

#[test]
fn exclusive_groups_narrow_the_readers_ranges_and_are_checked() {
    let c = chain();
    let s = c.stages.len() - 1;
    let d_out = c.stages[s].d_out();
    let wide: Vec<i64> = (0..c.output.d_out())
        .map(|j| c.output_row_stats(j).range())
        .collect();
    // One group: the output reads at most one of the stage's neurons.
    let mut grouped = c.clone();
    grouped.stages[s].exclusive = Some(vec![0; d_out]);
    let (lo, hi) = (grouped.stages[s].out_min, grouped.stages[s].out_max);
    for (j, &w) in wide.iter().enumerate() {
        let r = grouped.output_row_stats(j);
        let largest = c
            .output
            .gemm
            .row(j)
            .iter()
            .map(|&w| {
                (w as i64 * lo as i64)
                    .abs()
                    .max((w as i64 * hi as i64).abs())
            })
            .max()
            .unwrap();
        assert!(
            r.range() <= 2 * largest && r.range() <= w,
            "{} vs {w}",
            r.range()
        );
        assert_eq!(
            r.l2,
            c.output_row_stats(j).l2,
            "noise still comes from every input"
        );
    }
    let mut bad = c.clone();
    bad.stages[s].exclusive = Some(vec![0; d_out + 1]);
    assert!(message(&bad).contains("exclusive-group entries"));
    bad.stages[s].exclusive = Some(vec![d_out as u32; d_out]);
    assert!(message(&bad).contains("is not below"));
}
