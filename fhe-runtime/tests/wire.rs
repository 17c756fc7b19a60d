//! Keys and ciphertext batches through their envelopes: a real round trip (seeded evaluation
//! key, seeded inputs, modulus-switched outputs) equals the exact simulator; every reader
//! refuses what is not its own, and never panics on mutated envelopes.
use proptest::prelude::*;
use qfhe_circuit::fixtures::{all_inputs, chain, residual};
use qfhe_circuit::Circuit;
use qfhe_fhe_runtime::wire::{self, Kind};
use qfhe_fhe_runtime::{
    Client, ClientKey, CompressedEvalKey, FheParams, InputBatch, OutputBatch, RuntimeError, Server,
};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::OnceLock;

struct Fixture {
    circuit: Circuit,
    client_key: Vec<u8>,
    eval_key: Vec<u8>,
    inputs: Vec<u8>,
    outputs: Vec<u8>,
}

/// One key pair for the chain fixture, its files, and one batch each way.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let circuit = chain();
        let (ck, ek) = ClientKey::generate_compressed(FheParams::n2048());
        let eval_key = ek.to_bytes(&circuit);
        let server_key = CompressedEvalKey::from_bytes(&eval_key, &circuit)
            .unwrap()
            .decompress();
        let server = Server::new(Arc::new(circuit.clone()), Arc::new(server_key)).unwrap();
        let client_key = ck.to_bytes(&circuit);
        let client = Client::new(Arc::new(ck), Arc::new(circuit.clone())).unwrap();
        let samples: Vec<_> = all_inputs(&circuit, 3);
        let inputs = client
            .encrypt_batch(&samples)
            .unwrap()
            .to_bytes(&circuit)
            .unwrap();
        let received = InputBatch::from_bytes(&inputs, &circuit, 8).unwrap();
        let outputs = server
            .evaluate_message(&received)
            .unwrap()
            .to_bytes(&circuit)
            .unwrap();
        Fixture {
            client_key,
            circuit,
            eval_key,
            inputs,
            outputs,
        }
    })
}

#[test]
fn files_round_trip_under_real_encryption_equals_the_simulator() {
    let c = residual();
    let params = FheParams::n2048();
    let (ck, ek) = ClientKey::generate_compressed(params);
    let dir = tempfile::tempdir().unwrap();
    ck.save(&dir.path().join("client.key"), &c).unwrap();
    ek.save(&dir.path().join("eval.key"), &c).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("client.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "client.key must be private");
    }
    let eval_len = std::fs::metadata(dir.path().join("eval.key"))
        .unwrap()
        .len();
    assert_eq!(
        eval_len,
        CompressedEvalKey::payload_bytes(&params) + wire_overhead(&params),
    );
    // Seeded: a quarter of the 120.4 MB Fourier BSK + KSK.
    assert!(eval_len < 32 << 20, "eval.key is {eval_len} bytes");

    let ck = ClientKey::load(&dir.path().join("client.key"), &c).unwrap();
    let ek = CompressedEvalKey::load(&dir.path().join("eval.key"), &c).unwrap();
    assert_eq!(ck.key_id(), ek.key_id());
    let ek = ek.decompress();
    assert_eq!(ek.size_bytes() as u64, params.eval_key_bytes());
    let server = Server::new(Arc::new(c.clone()), Arc::new(ek)).unwrap();
    let client = Client::new(Arc::new(ck), Arc::new(c.clone())).unwrap();
    let samples = all_inputs(&c, 6);
    let batch = client.encrypt_batch(&samples).unwrap();
    let up = batch.to_bytes(&c).unwrap();
    // 8 bytes per input ciphertext plus a 16-byte seed per sample.
    assert_eq!(
        up.len() as u64,
        InputBatch::payload_bytes(samples.len() as u64, c.features() as u64)
            + wire_overhead(&params)
    );
    let received = InputBatch::from_bytes(&up, &c, 64).unwrap();
    let down = server
        .evaluate_message(&received)
        .unwrap()
        .to_bytes(&c)
        .unwrap();
    let decrypted = client
        .decrypt_batch(&OutputBatch::from_bytes(&down, &c, 64).unwrap())
        .unwrap();
    assert_eq!(decrypted.len(), samples.len());
    for (x, acc) in samples.iter().zip(&decrypted) {
        assert_eq!(acc, &c.run_exact(x).unwrap().out_acc, "input {x:?}");
    }
}

fn wire_overhead(params: &FheParams) -> u64 {
    (4 + 2 + 1 + 1 + params.name.len() + 32 + 16 + 8 + 32) as u64
}

fn message(err: RuntimeError) -> String {
    match err {
        RuntimeError::Envelope { .. } | RuntimeError::Input(_) => err.to_string(),
        other => panic!("expected an envelope error, got {other:?}"),
    }
}

#[test]
fn readers_refuse_what_is_not_theirs_and_say_why() {
    let f = fixture();
    let c = &f.circuit;
    // A secret key where the evaluation key belongs.
    let e = message(
        CompressedEvalKey::from_bytes(&f.client_key, c)
            .err()
            .unwrap(),
    );
    assert!(e.contains("SECRET"), "{e}");
    // Another circuit.
    let e = message(
        InputBatch::from_bytes(&f.inputs, &residual(), 8)
            .err()
            .unwrap(),
    );
    assert!(e.contains("circuit"), "{e}");
    // Truncated, extended, corrupted.
    let e = message(
        InputBatch::from_bytes(&f.inputs[..f.inputs.len() - 1], c, 8)
            .err()
            .unwrap(),
    );
    assert!(e.contains("truncated"), "{e}");
    let mut longer = f.inputs.clone();
    longer.push(0);
    let e = message(InputBatch::from_bytes(&longer, c, 8).err().unwrap());
    assert!(e.contains("extra bytes"), "{e}");
    let mut flipped = f.inputs.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    let e = message(InputBatch::from_bytes(&flipped, c, 8).err().unwrap());
    assert!(e.contains("checksum"), "{e}");
    // More samples than the reader accepts.
    let e = message(InputBatch::from_bytes(&f.inputs, c, 1).err().unwrap());
    assert!(e.contains("at most"), "{e}");
    // Outputs are not inputs.
    let e = message(InputBatch::from_bytes(&f.outputs, c, 8).err().unwrap());
    assert!(e.contains("holds a batch of output"), "{e}");
    // Not a qfhe file at all.
    let e = message(ClientKey::from_bytes(b"{\"stages\": []}", c).err().unwrap());
    assert!(e.contains("magic"), "{e}");
}

#[test]
fn a_server_refuses_inputs_under_another_key() {
    let f = fixture();
    let c = &f.circuit;
    let (_, other) = ClientKey::generate(FheParams::n2048());
    let server = Server::new(Arc::new(c.clone()), Arc::new(other)).unwrap();
    let batch = InputBatch::from_bytes(&f.inputs, c, 8).unwrap();
    let e = message(server.evaluate_message(&batch).err().unwrap());
    assert!(e.contains("register the client's evaluation key"), "{e}");
}

/// Recompute the trailing checksum so a mutation reaches the field checks behind it.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= 32 {
        let body = bytes.len() - 32;
        let digest = Sha256::digest(&bytes[..body]);
        bytes[body..].copy_from_slice(&digest);
    }
    bytes
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, value: u8 },
    SetWord { at: usize, value: u64 },
    Truncate { len: usize },
    Insert { at: usize, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        (
            any::<usize>(),
            prop_oneof![
                Just(0u64),
                Just(u64::MAX),
                Just(u32::MAX as u64 + 1),
                any::<u64>()
            ]
        )
            .prop_map(|(at, value)| Mutation::SetWord { at, value }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
    ]
}

fn mutate(mut b: Vec<u8>, muts: &[Mutation], header_bias: bool) -> Vec<u8> {
    for m in muts {
        let n = b.len().max(1);
        // Most of the interesting fields are in the first ~150 bytes.
        let pos = |at: usize| if header_bias { at % n.min(160) } else { at % n };
        match m {
            Mutation::Flip { at, bit } => {
                if !b.is_empty() {
                    let i = pos(*at);
                    b[i] ^= 1 << bit;
                }
            }
            Mutation::Set { at, value } => {
                if !b.is_empty() {
                    let i = pos(*at);
                    b[i] = *value;
                }
            }
            Mutation::SetWord { at, value } => {
                if b.len() >= 8 {
                    let i = pos(*at).min(b.len() - 8);
                    b[i..i + 8].copy_from_slice(&value.to_le_bytes());
                }
            }
            Mutation::Truncate { len } => b.truncate(len % n),
            Mutation::Insert { at, bytes } => {
                let i = pos(*at).min(b.len());
                b.splice(i..i, bytes.iter().copied());
            }
        }
    }
    b
}

fn read_all(c: &Circuit, bytes: &[u8]) {
    let _ = ClientKey::from_bytes(bytes, c);
    let _ = CompressedEvalKey::from_bytes(bytes, c);
    let _ = InputBatch::from_bytes(bytes, c, 16);
    let _ = OutputBatch::from_bytes(bytes, c, 16);
    let _ = wire::open(
        bytes,
        wire::Expect {
            kind: Kind::Inputs,
            params: &FheParams::n2048(),
            circuit: &wire::circuit_digest(c),
            max_payload: 1 << 20,
        },
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// Mutated envelopes of every kind (with the checksum recomputed, so that the mutation
    /// reaches the field checks, or not) are an error or a valid object, never a panic.
    #[test]
    fn mutated_envelopes_never_panic(
        which in 0usize..3,
        muts in prop::collection::vec(mutation(), 1..4),
        reseal_it in any::<bool>(),
        header_bias in any::<bool>(),
    ) {
        let f = fixture();
        let original = match which {
            0 => &f.client_key,
            1 => &f.inputs,
            _ => &f.outputs,
        };
        let mut b = mutate(original.clone(), &muts, header_bias);
        if reseal_it {
            b = reseal(b);
        }
        read_all(&f.circuit, &b);
    }
}

#[test]
fn an_evaluation_key_of_the_wrong_size_is_refused_before_allocation() {
    let f = fixture();
    let c = &f.circuit;
    // Keep the header, announce a smaller payload, reseal: refused by size, not by a panic.
    let header_len =
        f.eval_key.len() - 32 - CompressedEvalKey::payload_bytes(&FheParams::n2048()) as usize;
    let mut short = f.eval_key[..header_len - 8].to_vec();
    short.extend_from_slice(&1000u64.to_le_bytes());
    short.extend_from_slice(&f.eval_key[header_len..header_len + 1000]);
    short.extend_from_slice(&[0; 32]);
    let e = message(
        CompressedEvalKey::from_bytes(&reseal(short), c)
            .err()
            .unwrap(),
    );
    assert!(e.contains("keys take"), "{e}");
    // A payload length beyond any key is refused from the header alone.
    let mut huge = f.eval_key[..header_len - 8].to_vec();
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    huge.extend_from_slice(&[0; 32]);
    let e = message(
        CompressedEvalKey::from_bytes(&reseal(huge), c)
            .err()
            .unwrap(),
    );
    assert!(e.contains("at most"), "{e}");
}

#[test]
fn a_key_without_pbs_keys_is_refused_for_a_circuit_with_pbs() {
    let (pbs_free, with_pbs) = (qfhe_circuit::fixtures::linear(), chain());
    let (_, ek) = ClientKey::generate_compressed_for(FheParams::n2048(), &pbs_free);
    // Bound to the PBS-free circuit by its digest, so first re-seal it for the chain: the
    // size check must refuse it on its own, not the digest.
    let bytes = ek.to_bytes(&pbs_free);
    let (h, payload) = wire::open(
        &bytes,
        wire::Expect {
            kind: Kind::EvalKey,
            params: &FheParams::n2048(),
            circuit: &wire::circuit_digest(&pbs_free),
            max_payload: 0,
        },
    )
    .unwrap();
    assert!(payload.is_empty());
    let resealed = wire::seal(
        &wire::Header {
            circuit: wire::circuit_digest(&with_pbs),
            ..h
        },
        payload,
    );
    let err = CompressedEvalKey::from_bytes(&resealed, &with_pbs)
        .err()
        .expect("an empty key for a circuit with PBS");
    assert!(err.to_string().contains("no bootstrapping"), "{err}");

    let (_, ek) = ClientKey::generate_for(FheParams::n2048(), &pbs_free);
    let err = Server::new(Arc::new(with_pbs), Arc::new(ek))
        .err()
        .expect("a server for a circuit with PBS and no PBS keys");
    assert!(matches!(err, RuntimeError::Input(_)), "{err}");
    assert!(err.to_string().contains("PBS per sample"), "{err}");
}

#[test]
fn inputs_in_the_earlier_layout_are_refused_with_what_to_do() {
    let f = fixture();
    let mut b = f.inputs.clone();
    // magic (4 bytes), version (2), then the kind byte: 3 was one seeded LWE list per sample.
    b[6] = 3;
    let err = InputBatch::from_bytes(&reseal(b), &f.circuit, 16)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("encrypt them again"), "{err}");
}
