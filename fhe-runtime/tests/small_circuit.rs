//! Small circuits under real encryption equal the exact simulator — a chain, a sparse
//! convolution, a residual graph with a non-monotone signed table, and a linear model without
//! PBS decrypted at full width — and the compiler refuses circuits whose gross-error
//! probability is too high.
use qfhe_circuit::fixtures::{all_inputs, chain, linear, residual, wide_stage};
use qfhe_circuit::{Circuit, Gemm, OutputLayer, Source};
use qfhe_fhe_runtime::{
    compile, Client, ClientKey, CompressedEvalKey, FheParams, InputBatch, OutputBatch, Server,
};
use std::sync::Arc;

/// Real encryption, evaluation and decryption of `inputs` equal the exact simulator on every
/// stage and every output accumulator; returns how many distinct outputs were seen.
fn check_against_simulator(c: &Circuit, inputs: &[Vec<i32>]) -> usize {
    let params = FheParams::n2048();
    let report = compile(c, &params, -40.0, &[]).unwrap();
    assert!(report.log2_p_error < -60.0, "{}", report.log2_p_error);
    let (ck, ek) = ClientKey::generate(params);
    let server = Server::new(Arc::new(c.clone()), Arc::new(ek)).unwrap();
    let client = Client::new(Arc::new(ck), Arc::new(c.clone())).unwrap();
    let mut distinct = std::collections::HashSet::new();
    for x in inputs {
        let exact = c.run_exact(x).unwrap();
        let out = server.evaluate(&client.encrypt(x).unwrap()).unwrap();
        for (s, cts) in out.stages.iter().enumerate() {
            assert_eq!(
                client.decrypt_stage(s, cts).unwrap(),
                exact.stages[s],
                "input {x:?} stage {s}"
            );
        }
        let acc = client.decrypt_output(&out.output).unwrap();
        assert_eq!(acc, exact.out_acc, "input {x:?}");
        distinct.insert(acc);
    }
    distinct.len()
}

fn spread_inputs(c: &Circuit, n: usize) -> Vec<Vec<i32>> {
    let all = all_inputs(c, usize::MAX);
    let step = (all.len() / n).max(1);
    all.into_iter().step_by(step).take(n).collect()
}

#[test]
fn encrypted_chain_equals_the_simulator_and_frees_stages_once_read() {
    let c = chain();
    let inputs = spread_inputs(&c, 12);
    assert!(check_against_simulator(&c, &inputs) > 3);

    // The same samples as one batch, stages freed as soon as they are read.
    let (ck, ek) = ClientKey::generate(FheParams::n2048());
    let server = Server::new(Arc::new(c.clone()), Arc::new(ek)).unwrap();
    let client = Client::new(Arc::new(ck), Arc::new(c.clone())).unwrap();
    let cts: Vec<_> = inputs.iter().map(|x| client.encrypt(x).unwrap()).collect();
    let refs: Vec<&[_]> = cts.iter().map(Vec::as_slice).collect();
    let outs = server.evaluate_batch(&refs, false).unwrap();
    assert_eq!(outs.len(), inputs.len());
    let [d0, d1] = [c.stages[0].d_out(), c.stages[1].d_out()];
    // Inputs + both stages while stage 2 is produced, then inputs + stage 2 + outputs.
    let peak = (c.features() + d0 + d1).max(c.features() + d1 + c.output.d_out());
    for (x, out) in inputs.iter().zip(&outs) {
        assert!(out.stages.is_empty());
        assert_eq!(out.peak_ciphertexts, peak);
        assert_eq!(
            client.decrypt_output(&out.output).unwrap(),
            c.run_exact(x).unwrap().out_acc
        );
    }
    // Keeping the stages (trace mode) holds everything at once.
    let kept = server.evaluate(&cts[0]).unwrap();
    assert_eq!(
        kept.peak_ciphertexts,
        c.features() + d0 + d1 + c.output.d_out()
    );
}

#[test]
fn encrypted_residual_graph_with_a_signed_table_equals_the_simulator() {
    let c = residual();
    let inputs = spread_inputs(&c, 16);
    // Negative codes are written modulo 2^64 and read back signed.
    let negatives: usize = inputs
        .iter()
        .map(|x| {
            c.run_exact(x).unwrap().stages[0]
                .iter()
                .filter(|&&v| v < 0)
                .count()
        })
        .sum();
    assert!(negatives > 5, "{negatives}");
    assert!(check_against_simulator(&c, &inputs) > 5);
    // Stage 0 is read by stages 1 and 2: it stays alive until stage 2 has run.
    let (ck, ek) = ClientKey::generate(FheParams::n2048());
    let server = Server::new(Arc::new(c.clone()), Arc::new(ek)).unwrap();
    let client = Client::new(Arc::new(ck), Arc::new(c.clone())).unwrap();
    let ct = client.encrypt(&inputs[3]).unwrap();
    let out = server.evaluate_batch(&[&ct], false).unwrap();
    let d = 4;
    assert_eq!(out[0].peak_ciphertexts, c.features() + 3 * d);
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
    let mut c = chain();
    c.input.features = 6;
    let gemm = Gemm {
        sources: vec![Source::Input],
        d_in: 6,
        d_out: 6,
        w_bits: 3,
        weights,
        inputs: Some(inputs),
    };
    let stage = wide_stage(&c, gemm, (0, 3), |a| a.clamp(0, 3) as i32, 1 << 57).unwrap();
    c.stages = vec![stage];
    c.output = OutputLayer {
        gemm: qfhe_circuit::fixtures::dense(
            vec![Source::Stage(0)],
            6,
            vec![1, 2, -1, 0, 3, 1, -2, 1, 1, 1, -3, 2],
        ),
        scale: vec![1.0, 0.5],
        bias: vec![0.0, 0.0],
        readout: Default::default(),
    };
    c.validate().unwrap();
    c
}

#[test]
fn sparse_convolution_stage_under_encryption_equals_the_simulator() {
    let c = conv_circuit();
    let inputs: Vec<Vec<i32>> = (0..6u32)
        .map(|s| {
            (0..6)
                .map(|i| ((s * 5 + i * 3 + s * i) % 4) as i32)
                .collect()
        })
        .collect();
    for x in &inputs {
        let exact = c.run_exact(x).unwrap();
        // The simulator really convolves: neuron y sees x[y-1] - x[y] + x[y+1].
        for y in 0..6usize {
            let conv =
                (if y > 0 { x[y - 1] } else { 0 }) - x[y] + x.get(y + 1).copied().unwrap_or(0);
            assert_eq!(
                exact.stages[0][y],
                conv.clamp(0, 3),
                "input {x:?} neuron {y}"
            );
        }
    }
    check_against_simulator(&c, &inputs);
}

#[test]
fn bad_inputs_and_ciphertexts_are_errors_not_panics() {
    let c = chain();
    let (ck, ek) = ClientKey::generate(FheParams::n2048());
    let client = Client::new(Arc::new(ck), Arc::new(c.clone())).unwrap();
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
    let server = Server::new(Arc::new(c.clone()), Arc::new(ek)).unwrap();
    assert!(server.evaluate(&[]).is_err());
    let mut cts = client.encrypt(&[0, 1, 2, 3]).unwrap();
    let out = server.evaluate(&cts).unwrap();
    // Too many, too few or wrongly sized ciphertexts for the client.
    assert!(client.decrypt_output(&out.output[1..]).is_err());
    assert!(client.decrypt_output(&cts).is_err());
    assert!(client.decrypt_stage(5, &out.stages[0]).is_err());
    // A ciphertext of another size for the server.
    let small = tfhe::core_crypto::prelude::LweCiphertext::new(
        0u64,
        tfhe::core_crypto::prelude::LweSize(10),
        tfhe::core_crypto::prelude::CiphertextModulus::new_native(),
    );
    cts[2] = small;
    let Err(err) = server.evaluate(&cts) else {
        panic!("a wrongly sized ciphertext was accepted");
    };
    let err = err.to_string();
    assert!(
        err.contains("ciphertext 2") && err.contains("10 words"),
        "{err}"
    );
}

#[test]
fn compile_refuses_narrow_table_steps_and_mismatched_parameters() {
    let mut c = chain();
    // Squeeze stage 1's runs to 4 slots (< σ): jumps past a neighbouring run become likely.
    for n in &mut c.stages[0].neurons {
        let first = n.table.starts[1];
        for (k, s) in n.table.starts.iter_mut().enumerate().skip(1) {
            *s = first + 4 * (k as u32 - 1);
        }
    }
    c.validate().unwrap();
    let err = compile(&c, &FheParams::n2048(), -40.0, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hidden 1") && err.contains("min_step_slots"),
        "{err}"
    );
    let err = compile(&chain(), &FheParams::n8192(), -40.0, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("N = 2048") && err.contains("N = 8192"),
        "{err}"
    );
}

#[test]
fn a_circuit_without_pbs_decrypts_its_full_width_accumulators_exactly() {
    let c = linear();
    assert_eq!(c.pbs_count(), 0);
    let w = |j: usize| c.output.gemm.row(j).to_vec();
    let max = (1 << c.input.bits) - 1;
    // The extremes of every row (all inputs at 0 or at the top code where the weight is
    // positive, or negative), and spread codes.
    let mut inputs = vec![vec![0; c.features()], vec![max; c.features()]];
    for j in 0..c.output.d_out() {
        inputs.push(w(j).iter().map(|&v| if v > 0 { max } else { 0 }).collect());
        inputs.push(w(j).iter().map(|&v| if v < 0 { max } else { 0 }).collect());
    }
    inputs.extend((0..6).map(|s| {
        (0..c.features() as i32)
            .map(|i| (i * 53 + s * 97 + 7) % (max + 1))
            .collect()
    }));
    let extremes: i64 = (0..c.output.d_out())
        .map(|j| {
            let r = c.output_row_stats(j);
            r.acc_max - r.acc_min
        })
        .max()
        .unwrap();
    assert!(extremes > 1 << 18, "worst-case range {extremes}");
    assert_eq!(check_against_simulator(&c, &inputs), inputs.len());

    // Through the wire too: outputs rounded to 32 bits per coefficient stay exact, and the
    // evaluation key, with no PBS to serve, carries no BSK or KSK.
    let (ck, ek) = ClientKey::generate_compressed_for(FheParams::n2048(), &c);
    assert!(!ek.has_pbs_keys());
    let ek_bytes = ek.to_bytes(&c);
    assert!(ek_bytes.len() < 256, "{} bytes", ek_bytes.len());
    let ek = CompressedEvalKey::from_bytes(&ek_bytes, &c)
        .unwrap()
        .decompress();
    assert_eq!((ek.size_bytes(), ek.key_id()), (0, ck.key_id()));
    let server = Server::new(Arc::new(c.clone()), Arc::new(ek)).unwrap();
    assert_eq!(server.seconds_per_pbs(4), 0.0);
    let client = Client::new(Arc::new(ck), Arc::new(c.clone())).unwrap();
    let up = client.encrypt_batch(&inputs).unwrap().to_bytes(&c).unwrap();
    let received = InputBatch::from_bytes(&up, &c, 64).unwrap();
    let down = server
        .evaluate_message(&received)
        .unwrap()
        .to_bytes(&c)
        .unwrap();
    let acc = client
        .decrypt_batch(&OutputBatch::from_bytes(&down, &c, 64).unwrap())
        .unwrap();
    for (x, a) in inputs.iter().zip(&acc) {
        assert_eq!(a, &c.run_exact(x).unwrap().out_acc, "input {x:?}");
    }
}
