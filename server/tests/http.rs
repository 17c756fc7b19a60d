//! The HTTP server on loopback under real encryption: round trips equal the exact simulator;
//! every malformed request gets a 4xx JSON answer and the server keeps serving; registered keys
//! survive a restart and are shared by two servers on one keys directory; a full queue answers
//! 503 with Retry-After; the key cache evicts within its budget.

use qfhe_circuit::fixtures::{all_inputs, chain, residual};
use qfhe_circuit::Circuit;
use qfhe_fhe_runtime::wire::{self, Header, Kind};
use qfhe_fhe_runtime::{Client, ClientKey, FheParams};
use qfhe_server::api::{ErrorBody, KeyRegistered, KEY_ID_HEADER};
use qfhe_server::{App, Background, Remote, RemoteModel, ServeConfig, ServerError};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A key pair for the chain circuit, as files in a folder, plus its client.
struct Keys {
    dir: tempfile::TempDir,
    client_key: Vec<u8>,
    eval_key: Vec<u8>,
}

impl Keys {
    fn client(&self, circuit: &Arc<Circuit>) -> Client {
        let ck = ClientKey::from_bytes(&self.client_key, circuit).unwrap();
        Client::new(Arc::new(ck), circuit.clone()).unwrap()
    }

    /// A folder with this pair's files and no registrations yet.
    fn fresh_dir(&self) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in ["client.key", "eval.key"] {
            std::fs::copy(self.dir.path().join(f), d.path().join(f)).unwrap();
        }
        d
    }
}

fn circuit() -> Arc<Circuit> {
    static C: OnceLock<Arc<Circuit>> = OnceLock::new();
    C.get_or_init(|| Arc::new(chain())).clone()
}

fn make_keys() -> Keys {
    let c = circuit();
    let (ck, ek) = ClientKey::generate_compressed(FheParams::n2048());
    let dir = tempfile::tempdir().unwrap();
    ck.save(&dir.path().join("client.key"), &c).unwrap();
    ek.save(&dir.path().join("eval.key"), &c).unwrap();
    Keys {
        client_key: ck.to_bytes(&c),
        eval_key: ek.to_bytes(&c),
        dir,
    }
}

/// Two key pairs, made once for all tests.
fn keys() -> &'static [Keys; 2] {
    static K: OnceLock<[Keys; 2]> = OnceLock::new();
    K.get_or_init(|| [make_keys(), make_keys()])
}

fn start(keys_dir: &Path, tune: impl FnOnce(&mut ServeConfig)) -> Background {
    let mut config = ServeConfig::new(keys_dir.to_path_buf());
    config.threads = Some(2);
    tune(&mut config);
    let app = App::new(circuit(), config).unwrap();
    Background::start("127.0.0.1:0".parse().unwrap(), app).unwrap()
}

fn remote(server: &Background) -> Remote {
    Remote::new(&server.url(), Duration::from_secs(120)).unwrap()
}

fn model(server: &Background, keys: &Keys, dir: &Path) -> RemoteModel {
    RemoteModel::connect(remote(server), circuit(), keys.client(&circuit()), dir).unwrap()
}

/// The decrypted accumulators equal the exact simulator's for every sample.
fn assert_exact(model: &RemoteModel, samples: &[Vec<i32>]) {
    let answer = model.predict(samples).unwrap();
    assert_eq!(answer.accumulators.len(), samples.len());
    for (x, acc) in samples.iter().zip(&answer.accumulators) {
        assert_eq!(acc, &circuit().run_exact(x).unwrap().out_acc, "input {x:?}");
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build(),
    )
}

/// Status and JSON error body of a raw request; every error must be `{error, hint}`.
fn expect_error(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    status: u16,
    needle: &str,
) -> ErrorBody {
    let mut r = response.unwrap();
    let got = r.status().as_u16();
    let body = r.body_mut().read_to_vec().unwrap();
    let err: ErrorBody = serde_json::from_slice(&body).unwrap_or_else(|_| {
        panic!(
            "{got}: not a JSON error: {}",
            String::from_utf8_lossy(&body)
        )
    });
    assert_eq!(got, status, "{err:?}");
    assert!(!err.hint.is_empty());
    assert!(
        err.error.to_lowercase().contains(&needle.to_lowercase()),
        "expected '{needle}' in {err:?}"
    );
    err
}

fn register_raw(url: &str, body: &[u8]) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    agent().post(format!("{url}/v1/keys")).send(body)
}

fn infer_raw(
    url: &str,
    key_id: Option<&str>,
    token: Option<&str>,
    body: &[u8],
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut req = agent().post(format!("{url}/v1/infer"));
    if let Some(id) = key_id {
        req = req.header(KEY_ID_HEADER, id);
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send(body)
}

#[test]
fn http_round_trip_under_real_encryption_equals_the_simulator() {
    let k = &keys()[0];
    let store = tempfile::tempdir().unwrap();
    let server = start(store.path(), |_| {});
    let info = remote(&server).circuit().unwrap();
    assert_eq!(info.input_features, circuit().features());
    assert_eq!(info.pbs_per_sample, circuit().pbs_count());
    assert_eq!(
        info.circuit_sha256,
        wire::hex(&wire::circuit_digest(&circuit()))
    );
    let dir = k.fresh_dir();
    let m = model(&server, k, dir.path());
    assert_exact(&m, &all_inputs(&circuit(), 12));
    // The registration was kept next to the keys and is reused by the next connection.
    let first = m.registration();
    let again = model(&server, k, dir.path());
    assert_eq!(again.registration(), first);
    assert_exact(&again, &all_inputs(&circuit(), 3));
    let health = remote(&server).health().unwrap();
    assert_eq!(health.keys_cached, 1);
    assert_eq!(health.jobs_admitted, 0);
}

#[test]
fn malformed_requests_get_4xx_and_the_server_keeps_serving() {
    let [k, other] = keys();
    let store = tempfile::tempdir().unwrap();
    let server = start(store.path(), |c| c.max_batch = 64);
    let url = server.url();
    let info = remote(&server).circuit().unwrap();
    let c = circuit();

    // Keys.
    expect_error(register_raw(&url, b"random bytes"), 400, "magic");
    expect_error(
        register_raw(&url, &k.eval_key[..k.eval_key.len() / 2]),
        400,
        "truncated",
    );
    let mut oversized = k.eval_key.clone();
    oversized.resize(info.max_key_bytes as usize + 1, 0);
    expect_error(register_raw(&url, &oversized), 413, "");
    let secret = expect_error(register_raw(&url, &k.client_key), 400, "secret");
    assert!(secret.error.contains("never send it"), "{secret:?}");
    let other_params = FheParams::n8192();
    let foreign = wire::seal(
        &Header {
            kind: Kind::EvalKey,
            params: other_params.name.to_owned(),
            circuit: wire::circuit_digest(&c),
            key_id: [7; 16],
        },
        &[0; 64],
    );
    expect_error(register_raw(&url, &foreign), 400, "parameter set");
    let residual = residual();
    let ek = qfhe_fhe_runtime::CompressedEvalKey::from_bytes(&k.eval_key, &c).unwrap();
    expect_error(
        register_raw(&url, &ek.to_bytes(&residual)),
        400,
        "made for circuit",
    );
    let mut corrupted = k.eval_key.clone();
    let mid = corrupted.len() / 2;
    corrupted[mid] ^= 1;
    expect_error(register_raw(&url, &corrupted), 400, "checksum");

    // A real registration, then requests that misuse it.
    let dir = k.fresh_dir();
    let m = model(&server, k, dir.path());
    let reg: KeyRegistered = m.registration();
    let samples = all_inputs(&c, 2);
    let good = k
        .client(&c)
        .encrypt_batch(&samples)
        .unwrap()
        .to_bytes(&c)
        .unwrap();
    let id = Some(reg.key_id.as_str());
    let token = Some(reg.token.as_str());
    expect_error(infer_raw(&url, None, token, &good), 400, KEY_ID_HEADER);
    expect_error(
        infer_raw(&url, Some("../../etc"), token, &good),
        400,
        "not a key id",
    );
    let unknown = "0".repeat(32);
    expect_error(infer_raw(&url, Some(&unknown), token, &good), 404, "no key");
    expect_error(infer_raw(&url, id, None, &good), 401, "token");
    expect_error(infer_raw(&url, id, Some("wrong"), &good), 403, "token");
    expect_error(infer_raw(&url, id, token, b"random bytes"), 400, "magic");
    expect_error(
        infer_raw(&url, id, token, &good[..good.len() - 1]),
        400,
        "truncated",
    );
    expect_error(
        infer_raw(&url, id, token, &vec![0; info.max_infer_bytes as usize + 1]),
        413,
        "",
    );
    let over: Vec<Vec<i32>> = all_inputs(&c, 65);
    let too_many = k
        .client(&c)
        .encrypt_batch(&over)
        .unwrap()
        .to_bytes(&c)
        .unwrap();
    // More samples than --max-batch: over the body limit derived from it.
    expect_error(infer_raw(&url, id, token, &too_many), 413, "limit");
    // Inputs made for another circuit.
    let res_inputs = k
        .client(&c)
        .encrypt_batch(&samples)
        .unwrap()
        .to_bytes(&residual)
        .unwrap();
    expect_error(
        infer_raw(&url, id, token, &res_inputs),
        400,
        "made for circuit",
    );
    // Ciphertexts of the wrong size: one input too many per sample.
    let params = FheParams::n2048();
    let mut payload = Vec::new();
    payload.extend_from_slice(&1u32.to_le_bytes());
    payload.extend_from_slice(&(c.features() as u32 + 1).to_le_bytes());
    payload.extend_from_slice(&0u128.to_le_bytes());
    payload.extend(std::iter::repeat_n(0u8, 8 * (c.features() + 1)));
    let wrong_size = wire::seal(
        &Header {
            kind: Kind::Inputs,
            params: params.name.to_owned(),
            circuit: wire::circuit_digest(&c),
            key_id: k.client(&c).encrypt_batch(&samples).unwrap().key_id(),
        },
        &payload,
    );
    expect_error(
        infer_raw(&url, id, token, &wrong_size),
        400,
        "ciphertexts per sample",
    );
    // Inputs under another client's key.
    let under_other = other
        .client(&c)
        .encrypt_batch(&samples)
        .unwrap()
        .to_bytes(&c)
        .unwrap();
    expect_error(infer_raw(&url, id, token, &under_other), 400, "under key");
    // A secret key sent as inputs is refused by its kind.
    expect_error(infer_raw(&url, id, token, &k.client_key), 400, "secret");
    // Routes and methods.
    expect_error(
        agent().get(format!("{url}/v2/nothing")).call(),
        404,
        "route",
    );
    expect_error(
        agent().delete(format!("{url}/v1/health")).call(),
        405,
        "method",
    );
    expect_error(
        agent()
            .delete(format!("{url}/v1/keys/{}", reg.key_id))
            .header("authorization", "Bearer wrong")
            .call(),
        403,
        "token",
    );

    // Still serving, with the same registration.
    assert_eq!(remote(&server).health().unwrap().status, "ok");
    assert_exact(&m, &samples);
}

#[test]
fn registered_keys_survive_a_restart_and_are_shared_by_two_servers() {
    let k = &keys()[0];
    let store = tempfile::tempdir().unwrap();
    // Debris a crash could leave: a temporary file, and an unrelated file.
    std::fs::write(store.path().join(".x.reg.0123.tmp"), b"half").unwrap();
    std::fs::write(store.path().join("README"), b"keys").unwrap();
    let a = start(store.path(), |_| {});
    let b = start(store.path(), |_| {});
    let dir = k.fresh_dir();
    let via_a = model(&a, k, dir.path());
    let reg = via_a.registration();
    let samples = all_inputs(&circuit(), 4);
    assert_exact(&via_a, &samples);

    // Registered through a, used through b (which loads it from the shared folder).
    let dir_b = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("client.key"),
        dir_b.path().join("client.key"),
    )
    .unwrap();
    std::fs::copy(dir.path().join("eval.key"), dir_b.path().join("eval.key")).unwrap();
    let body = k
        .client(&circuit())
        .encrypt_batch(&samples)
        .unwrap()
        .to_bytes(&circuit())
        .unwrap();
    let (out, _) = remote(&b).infer(&reg, &body, 1 << 24).unwrap();
    let out = qfhe_fhe_runtime::OutputBatch::from_bytes(&out, &circuit(), 8).unwrap();
    let acc = k.client(&circuit()).decrypt_batch(&out).unwrap();
    for (x, a) in samples.iter().zip(&acc) {
        assert_eq!(a, &circuit().run_exact(x).unwrap().out_acc);
    }

    // A restarted server serves the key registered before.
    drop(a);
    let a2 = start(store.path(), |_| {});
    remote(&a2).infer(&reg, &body, 1 << 24).unwrap();

    // Deleted through b: unknown everywhere, even where it was cached.
    remote(&b).delete(&reg).unwrap();
    for s in [&a2, &b] {
        match remote(s).infer(&reg, &body, 1 << 24) {
            Err(ServerError::Remote { status: 404, .. }) => {}
            other => panic!("expected 404 after delete, got {:?}", other.map(|_| ())),
        }
    }
    // The client registers again by itself.
    let again = model(&a2, k, dir.path());
    assert_exact(&again, &samples[..1]);
    assert_ne!(again.registration().key_id, reg.key_id);
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let k = &keys()[0];
    let store = tempfile::tempdir().unwrap();
    let server = start(store.path(), |c| {
        c.max_queue = 1;
        c.threads = Some(1);
    });
    let dir = k.fresh_dir();
    let m = Arc::new(model(&server, k, dir.path()));
    let url = server.url();
    let reg = m.registration();
    let c = circuit();
    let big: Vec<Vec<i32>> = all_inputs(&c, 48);
    let slow = {
        let m = m.clone();
        std::thread::spawn(move || m.predict(&big).map(|a| a.accumulators.len()))
    };
    let r = remote(&server);
    while r.health().unwrap().jobs_admitted == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let body = k
        .client(&c)
        .encrypt_batch(&all_inputs(&c, 1))
        .unwrap()
        .to_bytes(&c)
        .unwrap();
    let mut resp = infer_raw(&url, Some(&reg.key_id), Some(&reg.token), &body).unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let err: ErrorBody = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    assert!(err.error.contains("queue is full"), "{err:?}");
    assert_eq!(slow.join().unwrap().unwrap(), 48);
    assert_exact(&m, &all_inputs(&c, 1));
}

#[test]
fn the_key_cache_keeps_within_its_budget_and_reloads_evicted_keys() {
    let store = tempfile::tempdir().unwrap();
    let one_key = FheParams::n2048().eval_key_bytes();
    let server = start(store.path(), |c| c.key_cache_bytes = one_key);
    let samples = all_inputs(&circuit(), 2);
    let dirs: Vec<_> = keys().iter().map(Keys::fresh_dir).collect();
    let models: Vec<_> = keys()
        .iter()
        .zip(&dirs)
        .map(|(k, d)| model(&server, k, d.path()))
        .collect();
    for _ in 0..2 {
        for m in &models {
            assert_exact(m, &samples);
            let h = remote(&server).health().unwrap();
            assert_eq!(h.keys_cached, 1);
            assert!(h.key_cache_bytes <= one_key);
        }
    }
    let too_small = ServeConfig {
        key_cache_bytes: one_key - 1,
        ..ServeConfig::new(store.path().to_path_buf())
    };
    let err = App::new(circuit(), too_small).err().expect("refused");
    assert!(err.to_string().contains("--key-cache-mb"), "{err}");
}

#[test]
fn a_request_over_the_timeout_gets_408_and_the_server_keeps_serving() {
    let k = &keys()[0];
    let store = tempfile::tempdir().unwrap();
    let registrar = start(store.path(), |_| {});
    let dir = k.fresh_dir();
    let reg = model(&registrar, k, dir.path()).registration();
    // A second server on the folder must load the key before evaluating 64 samples on one
    // thread: far over its 1 s limit.
    let slow = start(store.path(), |c| {
        c.request_timeout = Duration::from_secs(1);
        c.threads = Some(1);
    });
    let c = circuit();
    let body = k
        .client(&c)
        .encrypt_batch(&all_inputs(&c, 64))
        .unwrap()
        .to_bytes(&c)
        .unwrap();
    match remote(&slow).infer(&reg, &body, 1 << 24) {
        Err(ServerError::Remote { status, error, .. }) => {
            assert_eq!(status, 408);
            assert!(error.contains("longer than 1 s"), "{error}");
        }
        other => panic!("expected 408, got {:?}", other.map(|_| ())),
    }
    assert_eq!(remote(&slow).health().unwrap().status, "ok");
}
