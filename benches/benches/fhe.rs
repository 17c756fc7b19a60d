//! Criterion benchmarks on N = 2048 (`V1_8_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128`):
//! one KS+PBS, one 784→128 GEMM layer (no PBS), and one full MNIST sample (encrypt, evaluate,
//! decrypt) on the rayon pool through each CPU backend side by side: one PBS at a time, and
//! batches sharing one pass over the keys. Run: `cargo bench -p qfhe-benches`.
use criterion::{criterion_group, criterion_main, Criterion};
use qfhe_benches::{mnist_circuit, random_codes};
use qfhe_fhe_runtime::server::{gemm_row, random_ciphertexts};
use qfhe_fhe_runtime::{Backend, Client, ClientKey, FheParams, Server};
use std::hint::black_box;
use std::sync::Arc;

fn benches(c: &mut Criterion) {
    let circuit = mnist_circuit(&[128]);
    let params = FheParams::n2048();
    let (ck, ek) = ClientKey::generate(params);
    let ek = Arc::new(ek);
    let server = Server::new(Arc::new(circuit.clone()), ek.clone()).unwrap();
    let client = Client::new(Arc::new(ck), Arc::new(circuit.clone())).unwrap();

    let ct = random_ciphertexts(1, params.big_dim()).pop().unwrap();
    let mut group = c.benchmark_group("ks_pbs_n2048");
    group.bench_function("qfhe", |b| b.iter(|| server.bootstrap_one(black_box(&ct))));
    // The same parameter set through tfhe's own shortint API, side by side: the reference our
    // core_crypto path should match.
    {
        use tfhe::shortint::parameters::v1_8::V1_8_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128 as P;
        let ck = tfhe::shortint::ClientKey::new(P);
        let sk = tfhe::shortint::ServerKey::new(&ck);
        let lut = sk.generate_lookup_table(|x| (x * 3 + 1) % 4);
        let ct = ck.encrypt(3);
        group.bench_function("tfhe_shortint", |b| {
            b.iter(|| sk.apply_lookup_table(black_box(&ct), &lut))
        });
    }
    group.finish();

    let inputs = random_ciphertexts(784, params.big_dim());
    let inputs: Vec<_> = inputs.iter().collect();
    let stage = &circuit.stages[0];
    c.bench_function("gemm_784x128_n2048", |b| {
        b.iter(|| {
            (0..stage.d_out())
                .map(|j| {
                    gemm_row(
                        stage.gemm.row(j),
                        None,
                        stage.neurons[j].mult,
                        black_box(&inputs),
                        0,
                    )
                })
                .collect::<Vec<_>>()
        })
    });

    let x = random_codes(784, 3);
    let mut group = c.benchmark_group("mnist_sample");
    group.sample_size(10);
    for batch in [1, 8, 16, 32, 64] {
        let backend = Backend::Cpu { batch };
        let server = Server::with_backend(Arc::new(circuit.clone()), ek.clone(), backend).unwrap();
        let name = format!("784-128-10_encrypt_eval_decrypt/cpu_batch_{batch}");
        group.bench_function(name, |b| {
            b.iter(|| {
                let out = server
                    .evaluate(&client.encrypt(black_box(&x)).unwrap())
                    .unwrap();
                client.decrypt_output(&out.output).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(fhe, benches);
criterion_main!(fhe);
