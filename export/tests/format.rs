//! An exported circuit: its file round trip and its output scale.

use burn::prelude::*;
use qfhe_circuit::Circuit;
use qfhe_core::{LayerSpec::*, ModelSpec, QuantSpec};
use qfhe_export::lower;
use qfhe_quant::EncodingConfig;
use qfhe_train::QSequential;

fn small_circuit() -> Circuit {
    let spec = ModelSpec {
        input: vec![12],
        classes: 3,
        quant: QuantSpec::default(),
        layers: vec![
            Linear { out: 5 },
            Relu,
            Linear { out: 4 },
            Relu,
            Linear { out: 3 },
        ],
    };
    let device = Device::flex();
    device.seed(5);
    let mut model = QSequential::new(spec, EncodingConfig::default(), &device).unwrap();
    model.init_weight_scales();
    lower(&model, "test").unwrap()
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
fn output_delta_fills_the_torus_and_decodes_through_noise() {
    let c = small_circuit();
    let o = &c.output;
    let delta = c.output_delta();
    let capacity = qfhe_circuit::ir::capacity(delta);
    // The exporter's Δ is not restricted to powers of two: the worst case fills the torus
    // minus the noise margin.
    let widest = (0..o.d_out())
        .map(|j| c.output_row_stats(j).range())
        .max()
        .unwrap();
    assert!(capacity > widest as i128);
    assert!(delta.count_ones() > 1, "Δ = {delta} is a power of two");
    // Every value of the torus after placement (the worst-case range and the noise margins on
    // both sides of it) decodes back with noise up to just under Δ/2 either way. Only the two
    // outermost values share the < Δ gap where the 2^64 cycle wraps, so they are left out.
    let noise = (delta / 2 - 1) as i64;
    assert!(capacity < 100_000, "small circuit, small range");
    for j in 0..o.d_out() {
        for placed in 1..capacity as i64 - 1 {
            let clean = (placed as u64).wrapping_mul(delta);
            for e in [-noise, -1, 0, 1, noise] {
                let decoded = c.decode_output(j, clean.wrapping_add(e as u64));
                assert_eq!(
                    decoded,
                    placed - c.output_placement(j),
                    "output {j}, noise {e}"
                );
            }
        }
    }
}
