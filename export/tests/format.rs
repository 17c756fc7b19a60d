//! Circuit files: round trip, and clear rejection of corrupt or inconsistent ones.
mod common;

use burn::prelude::*;
use qfhe_export::{export_mlp, Circuit, CircuitError};
use qfhe_quant::EncodingConfig;
use qfhe_train::{MlpConfig, QMlp};

fn small_circuit() -> Circuit {
    let cfg = MlpConfig {
        inputs: 12,
        hidden: vec![5, 4],
        classes: 3,
        w_bits: 3,
        out_w_bits: 4,
        a_bits: 3,
        in_bits: 3,
        encoding: EncodingConfig::default(),
    };
    let device = Device::flex();
    device.seed(5);
    let mut model = QMlp::new(cfg, &device);
    for l in &mut model.layers {
        l.init_scales();
    }
    export_mlp(&model, "test").unwrap()
}

fn reload(c: &Circuit) -> Result<Circuit, CircuitError> {
    Circuit::from_json(&serde_json::to_vec(c).unwrap(), "test.json")
}

#[test]
fn round_trip_through_a_file() {
    let c = small_circuit();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    c.save(&path).unwrap();
    assert_eq!(Circuit::load(&path).unwrap(), c);
    assert_eq!(c.pbs_count(), 9);
}

#[test]
fn truncated_file_is_a_parse_error() {
    let c = small_circuit();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    c.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Circuit::load(&path).unwrap_err();
    assert!(matches!(err, CircuitError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("qfhe export"));
    let missing = Circuit::load(&dir.path().join("nope.json")).unwrap_err();
    assert!(matches!(missing, CircuitError::Io { .. }));
}

#[test]
fn other_versions_are_refused_with_the_version_named() {
    let mut c = small_circuit();
    c.version = 99;
    let err = reload(&c).unwrap_err();
    assert!(matches!(err, CircuitError::Version { found: 99 }), "{err}");
    assert!(err.to_string().contains("version 99"));
}

#[test]
fn version_1_files_still_load() {
    let c = small_circuit();
    let mut json: serde_json::Value = serde_json::to_value(&c).unwrap();
    json["version"] = 1.into();
    assert!(json["hidden"][0].get("inputs").is_none());
    let back = Circuit::from_json(&serde_json::to_vec(&json).unwrap(), "v1.json").unwrap();
    assert_eq!(back.version, 1);
    assert_eq!(back.hidden, c.hidden);
}

#[test]
fn version_2_files_with_a_power_of_two_delta_still_load() {
    let c = small_circuit();
    let mut json: serde_json::Value = serde_json::to_value(&c).unwrap();
    json["version"] = 2.into();
    let output = json["output"].as_object_mut().unwrap();
    output.remove("delta");
    output.insert("delta_log2".into(), 50.into());
    let back = Circuit::from_json(&serde_json::to_vec(&json).unwrap(), "v2.json").unwrap();
    assert_eq!(back.version, 2);
    assert_eq!(back.output.delta, 1 << 50);
    assert_eq!(back.output.weights, c.output.weights);
}

#[test]
fn output_delta_fills_the_torus_and_decodes_through_noise() {
    let c = small_circuit();
    let o = &c.output;
    // The exporter's Δ is not restricted to powers of two: the worst case fills the torus
    // minus the noise margin, within a part in 2^39.
    let widest = (0..o.d_out).map(|j| o.row_stats(j).range()).max().unwrap();
    assert!(o.capacity() > widest as i128);
    assert!(
        o.delta.count_ones() > 1,
        "Δ = {} is a power of two",
        o.delta
    );
    // Every value of the torus after placement (the worst-case range and the noise margins on
    // both sides of it) decodes back with noise up to just under Δ/2 either way. Only the two
    // outermost values share the < Δ gap where the 2^64 cycle wraps, so they are left out.
    let noise = (o.delta / 2 - 1) as i64;
    assert!(o.capacity() < 100_000, "small circuit, small range");
    for j in 0..o.d_out {
        for placed in 1..o.capacity() as i64 - 1 {
            let clean = (placed as u64).wrapping_mul(o.delta);
            for e in [-noise, -1, 0, 1, noise] {
                let decoded = o.decode(j, clean.wrapping_add(e as u64));
                assert_eq!(decoded, placed - o.placement(j), "output {j}, noise {e}");
            }
        }
    }
}

#[test]
fn sparse_layers_with_bad_indices_are_refused() {
    let mut c = small_circuit();
    let n = c.hidden[0].weights.len();
    c.hidden[0].inputs = Some(vec![3; n]);
    reload(&c).unwrap();
    c.hidden[0].inputs = Some(vec![12; n]);
    assert!(reload(&c)
        .unwrap_err()
        .to_string()
        .contains("input index 12 out of range"));
    c.hidden[0].inputs = Some(vec![0; n - 1]);
    assert!(reload(&c)
        .unwrap_err()
        .to_string()
        .contains("input indices for"));
}

#[test]
fn inconsistent_circuits_are_refused() {
    let base = small_circuit();
    let mut c = base.clone();
    c.hidden[0].weights.pop();
    assert!(reload(&c)
        .unwrap_err()
        .to_string()
        .contains("weights for 12x5"));

    let mut c = base.clone();
    c.hidden[0].weights[3] = 9;
    assert!(reload(&c)
        .unwrap_err()
        .to_string()
        .contains("outside the 3-bit range"));

    let mut c = base.clone();
    c.hidden[1].d_in = 6;
    assert!(reload(&c)
        .unwrap_err()
        .to_string()
        .contains("does not match the previous stage"));

    let mut c = base.clone();
    c.hidden[0].neurons[2].thresholds = vec![900, 800, 700, 600, 500, 400, 300];
    assert!(reload(&c)
        .unwrap_err()
        .to_string()
        .contains("non-decreasing"));

    // An offset that pushes the worst case past the half torus would wrap: refused.
    let mut c = base.clone();
    c.hidden[0].neurons[1].offset += (2048i64 << 10) - (64 << 10);
    assert!(reload(&c).unwrap_err().to_string().contains("wrap"));

    let mut c = base;
    c.format = "something-else".into();
    assert!(reload(&c).unwrap_err().to_string().contains("format tag"));
}
