//! The PBS backends compute the same ciphertexts: the CPU backend one PBS at a time and in
//! batches of every size give bit-identical stage outputs under real keys, and these decrypt to
//! the exact simulator's levels. Backend names and batch sizes are validated.
use qfhe_circuit::fixtures::{all_inputs, chain, residual};
use qfhe_circuit::Circuit;
use qfhe_fhe_runtime::{Backend, Client, ClientKey, FheParams, Server};
use std::sync::Arc;

fn check_backends_agree(c: &Circuit, samples: usize) {
    let all = all_inputs(c, usize::MAX);
    let step = (all.len() / samples).max(1);
    let inputs: Vec<_> = all.into_iter().step_by(step).take(samples).collect();
    let (ck, ek) = ClientKey::generate(FheParams::n2048());
    let (ek, circuit) = (Arc::new(ek), Arc::new(c.clone()));
    let client = Client::new(Arc::new(ck), circuit.clone()).unwrap();
    let cts: Vec<_> = inputs.iter().map(|x| client.encrypt(x).unwrap()).collect();
    let refs: Vec<&[_]> = cts.iter().map(Vec::as_slice).collect();
    let run = |backend: Backend| {
        let server = Server::with_backend(circuit.clone(), ek.clone(), backend).unwrap();
        assert_eq!(server.backend(), backend);
        server.evaluate_batch(&refs, true).unwrap()
    };
    let one_at_a_time = run(Backend::Cpu { batch: 1 });
    for (x, out) in inputs.iter().zip(&one_at_a_time) {
        let exact = c.run_exact(x).unwrap();
        for (s, stage) in out.stages.iter().enumerate() {
            assert_eq!(
                client.decrypt_stage(s, stage).unwrap(),
                exact.stages[s],
                "{x:?} stage {s}"
            );
        }
        assert_eq!(
            client.decrypt_output(&out.output).unwrap(),
            exact.out_acc,
            "{x:?}"
        );
    }
    // 3 does not divide the stage widths, so batches straddle samples and the last is short.
    for batch in [2, 3, Backend::DEFAULT_CPU_BATCH, 64] {
        let batched = run(Backend::Cpu { batch });
        for (a, b) in one_at_a_time.iter().zip(&batched) {
            for (sa, sb) in a.stages.iter().zip(&b.stages) {
                let words = |v: &Vec<_>| {
                    v.iter()
                        .map(|ct: &tfhe::core_crypto::prelude::LweCiphertextOwned<u64>| {
                            ct.as_ref().to_vec()
                        })
                        .collect::<Vec<_>>()
                };
                assert_eq!(words(sa), words(sb), "batch {batch}");
            }
        }
    }
}

#[test]
fn batched_cpu_backend_equals_one_pbs_at_a_time_and_the_simulator_on_a_chain() {
    check_backends_agree(&chain(), 3);
}

#[test]
fn batched_cpu_backend_equals_one_pbs_at_a_time_and_the_simulator_on_a_residual_graph() {
    check_backends_agree(&residual(), 2);
}

#[test]
fn backend_names_and_batches_are_validated() {
    assert_eq!(Backend::from_name("cpu", None).unwrap(), Backend::default());
    assert_eq!(
        Backend::from_name("cpu", Some(1)).unwrap(),
        Backend::Cpu { batch: 1 }
    );
    let err = |name, batch| Backend::from_name(name, batch).unwrap_err().to_string();
    assert!(
        err("cpu", Some(0)).contains("choose 1"),
        "{}",
        err("cpu", Some(0))
    );
    assert!(err("cpu", Some(Backend::MAX_CPU_BATCH + 1)).contains("choose 1"));
    assert!(
        err("gpu", None).contains("--backend cpu"),
        "{}",
        err("gpu", None)
    );
    assert!(err("tpu", None).contains("choose cpu or gpu"));
}
