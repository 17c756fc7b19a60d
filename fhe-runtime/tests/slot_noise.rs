//! The PBS reads slot floor(phase) plus zero-mean Gaussian noise of the modelled std.
use qfhe_circuit::fixtures::dense;
use qfhe_circuit::{Circuit, Input, Meta, Neuron, OutputLayer, Source, Stage, Table};
use qfhe_core::EncodingConfig;
use qfhe_fhe_runtime::{Client, ClientKey, FheParams, Server};
use std::sync::Arc;

/// One input, one neuron whose table is the identity on slots [base, base + 255).
fn staircase(mult: i64, base: i64) -> Circuit {
    let enc = EncodingConfig::default();
    let table = Table::from_fn(enc.poly_size, |u| {
        (u as i64 - base + 1).clamp(0, 255) as i32
    });
    let stage = Stage {
        label: None,
        gemm: dense(vec![Source::Input], 1, vec![1]),
        neurons: vec![Neuron {
            mult,
            offset: (base + 20) << 10,
            table,
        }],
        out_min: 0,
        out_max: 255,
        delta: 1 << 52,
        exclusive: None,
    };
    let output = OutputLayer {
        gemm: dense(vec![Source::Stage(0)], 1, vec![1]),
        scale: vec![1.0],
        bias: vec![0.0],
        readout: Default::default(),
    };
    let input = Input {
        features: 1,
        bits: 8,
        delta: enc.torus_per_unit(),
        quantizer: None,
    };
    Circuit::new(enc, input, vec![stage], output, Meta::default()).unwrap()
}

#[test]
fn slot_read_error_has_zero_mean_and_the_modelled_std() {
    let c = staircase(700, 900);
    let params = FheParams::n2048();
    let (ck, ek) = ClientKey::generate(params);
    let server = Server::new(Arc::new(c.clone()), Arc::new(ek)).unwrap();
    let client = Client::new(Arc::new(ck), Arc::new(c.clone())).unwrap();
    let mut errs = Vec::new();
    for x in 0..=255 {
        let out = server.evaluate(&client.encrypt(&[x]).unwrap()).unwrap();
        let got = client.decrypt_stage(0, &out.stages[0]).unwrap()[0] as f64;
        // Level = slot - base + 1 inside the staircase; phase in slots (half a unit added).
        let phase = ((700 * x as i64 + ((900 + 20) << 10)) as f64 + 0.5) / 1024.0;
        let exact_level = phase.floor() - 900.0 + 1.0;
        errs.push(got - exact_level);
    }
    let n = errs.len() as f64;
    let mean = errs.iter().sum::<f64>() / n;
    let std = (errs.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / n).sqrt();
    let model = params.noise_spec().base_sigma_slots;
    // 256 samples: the standard error of the mean is σ/16 ≈ 0.3 slot, so 1.5 is 5 of them.
    assert!(mean.abs() < 1.5, "mean {mean}");
    assert!(
        std > 0.6 * model && std < 1.5 * model,
        "std {std} vs {model}"
    );
}
