//! The PBS reads slot floor(phase) plus zero-mean Gaussian noise of the modelled std.
use qfhe_export::circuit::{Circuit, HiddenLayer, Meta, Neuron, OutputLayer, FORMAT_VERSION};
use qfhe_fhe_runtime::{Client, ClientKey, FheParams, Server};
use qfhe_quant::EncodingConfig;

/// One input, one hidden neuron whose table is the identity on slots [base, base + 255).
fn staircase(mult: i64, base: i64) -> Circuit {
    let enc = EncodingConfig::default();
    let thresholds: Vec<i64> = (0..255).map(|k| base + k).collect();
    Circuit {
        format: "qfhe-circuit".into(),
        version: FORMAT_VERSION,
        encoding: enc,
        features: 1,
        in_bits: 8,
        input_delta: 1,
        hidden: vec![HiddenLayer {
            d_in: 1,
            d_out: 1,
            in_qmax: 255,
            out_qmax: 255,
            w_bits: 2,
            weights: vec![1],
            inputs: None,
            delta_in: 1,
            neurons: vec![Neuron {
                mult,
                offset: (base + 20) << 10,
                thresholds,
            }],
            label: None,
        }],
        output: OutputLayer {
            d_in: 1,
            d_out: 1,
            in_qmax: 255,
            w_bits: 2,
            weights: vec![1],
            delta: 1 << 52,
            scale: vec![1.0],
            bias: vec![0.0],
        },
        meta: Meta::default(),
    }
}

#[test]
fn slot_read_error_has_zero_mean_and_the_modelled_std() {
    let c = staircase(700, 900);
    c.validate().unwrap();
    let params = FheParams::n2048();
    let (ck, ek) = ClientKey::generate(params);
    let server = Server::new(&c, &ek).unwrap();
    let client = Client::new(&ck, &c).unwrap();
    let mut errs = Vec::new();
    for x in 0..=255 {
        let out = server.evaluate(&client.encrypt(&[x]).unwrap()).unwrap();
        let got = client.decrypt_hidden(0, &out.hidden[0])[0] as f64;
        // Level = slot - base + 1 inside the staircase; phase in slots (half a unit added).
        let phase = ((700 * x as i64 + ((900 + 20) << 10)) as f64 + 0.5) / 1024.0;
        let exact_level = phase.floor() - 900.0 + 1.0;
        errs.push(got - exact_level);
    }
    let n = errs.len() as f64;
    let mean = errs.iter().sum::<f64>() / n;
    let std = (errs.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / n).sqrt();
    let model = params.noise_spec().base_sigma_slots;
    eprintln!("slot error: mean {mean:.2}, std {std:.2} (model {model:.2}), n {n}");
    // 256 samples: the standard error of the mean is σ/16 ≈ 0.3 slot, so 1.5 is 5 of them.
    assert!(mean.abs() < 1.5, "mean {mean}");
    assert!(
        std > 0.6 * model && std < 1.5 * model,
        "std {std} vs {model}"
    );
}
