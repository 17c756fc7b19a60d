//! A small two-hidden-layer circuit under real encryption equals the simulator, and the
//! compiler refuses circuits whose gross-error probability is too high.
use qfhe_export::circuit::{Circuit, HiddenLayer, Meta, Neuron, OutputLayer, FORMAT_VERSION};
use qfhe_fhe_runtime::{compile, Client, ClientKey, FheParams, Server};
use qfhe_quant::bounds::RowStats;
use qfhe_quant::EncodingConfig;

const SLOTS_PER_UNIT: i64 = 100;

/// A layer whose accumulators sit `SLOTS_PER_UNIT` slots apart, each at the centre of its own
/// level (output = clamp(acc, 0, out_qmax)): 50 slots = 10 σ from any table step.
fn wide_layer(
    weights: Vec<i32>,
    d_in: usize,
    in_qmax: i32,
    out_qmax: i32,
    delta_in: i64,
) -> HiddenLayer {
    sparse_wide_layer(weights, None, d_in, d_in, in_qmax, out_qmax, delta_in)
}

/// [`wide_layer`] with `fan_in` weights per neuron reading the inputs `inputs` names.
fn sparse_wide_layer(
    weights: Vec<i32>,
    inputs: Option<Vec<u32>>,
    fan_in: usize,
    d_in: usize,
    in_qmax: i32,
    out_qmax: i32,
    delta_in: i64,
) -> HiddenLayer {
    let d_out = weights.len() / fan_in;
    let unit = SLOTS_PER_UNIT << 10;
    assert_eq!(unit % delta_in, 0);
    let neurons = (0..d_out)
        .map(|j| {
            let r = RowStats::of_row(&weights[j * fan_in..(j + 1) * fan_in], in_qmax);
            let off_slots = 64 + 50 - SLOTS_PER_UNIT * r.acc_min;
            Neuron {
                mult: unit,
                offset: off_slots << 10,
                thresholds: (1..=out_qmax as i64)
                    .map(|k| SLOTS_PER_UNIT * k + off_slots - 50)
                    .collect(),
            }
        })
        .collect();
    HiddenLayer {
        d_in,
        d_out,
        in_qmax,
        out_qmax,
        w_bits: 3,
        weights,
        inputs,
        delta_in,
        neurons,
        label: None,
    }
}

fn circuit() -> Circuit {
    let h1 = wide_layer(vec![1, -1, 0, 2, 0, 1, 1, -1, -1, 0, 1, 1], 4, 3, 3, 1);
    let h2 = wide_layer(vec![1, 1, -1, -1, 1, 1], 3, 3, 3, SLOTS_PER_UNIT << 10);
    let c = Circuit {
        format: "qfhe-circuit".into(),
        version: FORMAT_VERSION,
        encoding: EncodingConfig::default(),
        features: 4,
        in_bits: 2,
        input_delta: 1,
        hidden: vec![h1, h2],
        output: OutputLayer {
            d_in: 2,
            d_out: 3,
            in_qmax: 3,
            w_bits: 3,
            weights: vec![1, -2, 3, 1, -1, -1],
            // Not a power of two: the client's decoding must not assume the torus divides by Δ.
            delta: (1 << 58) / 3 * 2 + 7,
            scale: vec![0.5, 0.25, 1.0],
            bias: vec![0.0, 0.1, -0.2],
        },
        meta: Meta::default(),
    };
    c.validate().unwrap();
    c
}

#[test]
fn encrypted_evaluation_equals_the_simulator() {
    let c = circuit();
    let params = FheParams::n2048();
    let report = compile(&c, &params, -40.0, &[]).unwrap();
    assert!(report.log2_p_error < -100.0, "{}", report.log2_p_error);
    let (ck, ek) = ClientKey::generate(params);
    let server = Server::new(&c, &ek).unwrap();
    let client = Client::new(&ck, &c).unwrap();
    let mut distinct_outputs = std::collections::HashSet::new();
    for s in 0..12u32 {
        let x: Vec<i32> = (0..4)
            .map(|i| ((s * 7 + i * 5 + s / 3) % 4) as i32)
            .collect();
        let exact = c.run_exact(&x);
        let out = server.evaluate(&client.encrypt(&x).unwrap()).unwrap();
        for l in 0..2 {
            assert_eq!(
                client.decrypt_hidden(l, &out.hidden[l]),
                exact.hidden[l],
                "sample {s} layer {l}"
            );
        }
        let acc = client.decrypt_output(&out.output);
        assert_eq!(acc, exact.out_acc, "sample {s}");
        distinct_outputs.insert(acc);
    }
    // The inputs exercise the circuit (not one constant output).
    assert!(distinct_outputs.len() > 3);

    // The same samples as one batch, hidden layers freed as soon as they are read.
    let xs: Vec<Vec<i32>> = (0..12u32)
        .map(|s| {
            (0..4)
                .map(|i| ((s * 7 + i * 5 + s / 3) % 4) as i32)
                .collect()
        })
        .collect();
    let cts: Vec<_> = xs.iter().map(|x| client.encrypt(x).unwrap()).collect();
    let refs: Vec<&[_]> = cts.iter().map(Vec::as_slice).collect();
    let outs = server.evaluate_batch(&refs, false).unwrap();
    assert_eq!(outs.len(), 12);
    let [d0, d1] = [c.hidden[0].d_out, c.hidden[1].d_out];
    // Inputs + both hidden layers while layer 2 is produced, then inputs + layer 2 + outputs.
    let peak = (c.features + d0 + d1).max(c.features + d1 + c.output.d_out);
    for (x, out) in xs.iter().zip(&outs) {
        assert!(out.hidden.is_empty());
        assert_eq!(out.peak_ciphertexts, peak);
        assert_eq!(client.decrypt_output(&out.output), c.run_exact(x).out_acc);
    }
    // Keeping the hidden layers (trace mode) holds everything at once.
    let kept = server.evaluate(&cts[0]).unwrap();
    assert_eq!(kept.peak_ciphertexts, c.features + d0 + d1 + c.output.d_out);
}

/// A 1-D convolution lowered by index: 6 inputs, kernel [1, -1, 1], stride 1, padding 1, so the
/// border neurons have a padded tap (weight 0).
fn conv_circuit() -> Circuit {
    let kernel = [1, -1, 1];
    let (mut weights, mut inputs) = (Vec::new(), Vec::new());
    for y in 0..6i64 {
        for (t, &k) in kernel.iter().enumerate() {
            let i = y - 1 + t as i64;
            let inside = (0..6).contains(&i);
            weights.push(if inside { k } else { 0 });
            inputs.push(if inside { i as u32 } else { 0 });
        }
    }
    let mut c = circuit();
    c.features = 6;
    c.hidden = vec![sparse_wide_layer(weights, Some(inputs), 3, 6, 3, 3, 1)];
    c.output = OutputLayer {
        d_in: 6,
        d_out: 2,
        in_qmax: 3,
        w_bits: 3,
        weights: vec![1, 2, -1, 0, 3, 1, -2, 1, 1, 1, -3, 2],
        delta: 1 << 57,
        scale: vec![1.0, 0.5],
        bias: vec![0.0, 0.0],
    };
    c.validate().unwrap();
    c
}

#[test]
fn sparse_convolution_layer_under_encryption_equals_the_simulator() {
    let c = conv_circuit();
    let (ck, ek) = ClientKey::generate(FheParams::n2048());
    let server = Server::new(&c, &ek).unwrap();
    let client = Client::new(&ck, &c).unwrap();
    for s in 0..6u32 {
        let x: Vec<i32> = (0..6)
            .map(|i| ((s * 5 + i * 3 + s * i) % 4) as i32)
            .collect();
        let exact = c.run_exact(&x);
        // The simulator really convolves: neuron y sees x[y-1] - x[y] + x[y+1].
        for y in 0..6usize {
            let conv =
                (if y > 0 { x[y - 1] } else { 0 }) - x[y] + x.get(y + 1).copied().unwrap_or(0);
            assert_eq!(
                exact.hidden[0][y],
                conv.clamp(0, 3),
                "sample {s} neuron {y}"
            );
        }
        let out = server.evaluate(&client.encrypt(&x).unwrap()).unwrap();
        assert_eq!(
            client.decrypt_hidden(0, &out.hidden[0]),
            exact.hidden[0],
            "sample {s}"
        );
        assert_eq!(
            client.decrypt_output(&out.output),
            exact.out_acc,
            "sample {s}"
        );
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let c = circuit();
    let (ck, ek) = ClientKey::generate(FheParams::n2048());
    let client = Client::new(&ck, &c).unwrap();
    assert!(client
        .encrypt(&[0, 1, 2])
        .unwrap_err()
        .to_string()
        .contains("3 input codes"));
    assert!(client
        .encrypt(&[0, 1, 2, 4])
        .unwrap_err()
        .to_string()
        .contains("outside [0, 3]"));
    let server = Server::new(&c, &ek).unwrap();
    assert!(server.evaluate(&[]).is_err());
}

#[test]
fn compile_refuses_narrow_table_steps_and_mismatched_parameters() {
    let mut c = circuit();
    // Squeeze layer 1's steps to 4 slots (< σ): two-level jumps become likely.
    for n in &mut c.hidden[0].neurons {
        let t0 = n.thresholds[0];
        for (k, t) in n.thresholds.iter_mut().enumerate() {
            *t = t0 + 4 * k as i64;
        }
    }
    let err = compile(&c, &FheParams::n2048(), -40.0, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hidden 1") && err.contains("--min-step-slots"),
        "{err}"
    );
    let err = compile(&circuit(), &FheParams::n8192(), -40.0, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("N = 2048") && err.contains("N = 8192"),
        "{err}"
    );
}
