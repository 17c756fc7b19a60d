//! The client side of the HTTP API (blocking, on `ureq`), and the registrations a client keeps
//! next to its keys.
//!
//! Plain `http://` only: put TLS in front of the servers (the load balancer) and run the client
//! where it reaches them over a trusted network, or tunnel.

use crate::api::{
    CircuitInfo, ErrorBody, Health, KeyRegistered, ENVELOPE_MEDIA_TYPE, EVAL_SECONDS_HEADER,
    KEY_ID_HEADER,
};
use crate::error::ServerError;
use qfhe_circuit::Circuit;
use qfhe_fhe_runtime::keys::{envelope_limit, params_of};
use qfhe_fhe_runtime::wire::{circuit_digest, hex};
use qfhe_fhe_runtime::{Client, CompressedEvalKey, OutputBatch};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ureq::http::Response;
use ureq::Body;

/// Largest JSON answer read, bytes.
const MAX_JSON_BYTES: u64 = 1 << 20;

/// A server at a base URL.
pub struct Remote {
    base: String,
    agent: ureq::Agent,
}

impl Remote {
    /// A client for the server at `url` (`http://host:port`, optionally with a path prefix),
    /// giving each request at most `timeout`.
    ///
    /// # Errors
    /// [`ServerError::Config`] for a URL that is not `http://…`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, ServerError> {
        let base = url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(ServerError::Config(format!(
                "'{url}' is not an http:// URL; give the server as http://HOST:PORT"
            )));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build();
        Ok(Self {
            base,
            agent: ureq::Agent::new_with_config(config),
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn transport(&self, e: ureq::Error) -> ServerError {
        ServerError::Transport(format!("{}: {e}", self.base))
    }

    /// An error answer as [`ServerError::Remote`], a success as itself.
    fn check(&self, mut response: Response<Body>) -> Result<Response<Body>, ServerError> {
        let status = response.status().as_u16();
        if status < 400 {
            return Ok(response);
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_JSON_BYTES)
            .read_to_vec()
            .unwrap_or_default();
        let body: ErrorBody = serde_json::from_slice(&text).unwrap_or_else(|_| ErrorBody {
            error: String::from_utf8_lossy(&text).chars().take(200).collect(),
            hint: "the answer is not a qfhe error; is this URL a qfhe server?".into(),
        });
        Err(ServerError::Remote {
            status,
            error: body.error,
            hint: body.hint,
        })
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: Response<Body>,
    ) -> Result<T, ServerError> {
        let mut response = self.check(response)?;
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_JSON_BYTES + 1)
            .read_to_vec()
            .map_err(|e| self.transport(e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ServerError::Transport(format!(
                "{}: the answer is not what a qfhe server sends ({e})",
                self.base
            ))
        })
    }

    /// `GET /v1/health`.
    ///
    /// # Errors
    /// [`ServerError::Transport`] if unreachable; [`ServerError::Remote`] for an error answer.
    pub fn health(&self) -> Result<Health, ServerError> {
        let r = self
            .agent
            .get(format!("{}/v1/health", self.base))
            .call()
            .map_err(|e| self.transport(e))?;
        self.json(r)
    }

    /// `GET /v1/circuit`.
    ///
    /// # Errors
    /// As [`Remote::health`].
    pub fn circuit(&self) -> Result<CircuitInfo, ServerError> {
        let r = self
            .agent
            .get(format!("{}/v1/circuit", self.base))
            .call()
            .map_err(|e| self.transport(e))?;
        self.json(r)
    }

    /// `POST /v1/keys` with an `eval.key` envelope.
    ///
    /// # Errors
    /// As [`Remote::health`].
    pub fn register(&self, eval_key: &[u8]) -> Result<KeyRegistered, ServerError> {
        let r = self
            .agent
            .post(format!("{}/v1/keys", self.base))
            .content_type(ENVELOPE_MEDIA_TYPE)
            .send(eval_key)
            .map_err(|e| self.transport(e))?;
        self.json(r)
    }

    /// `POST /v1/infer`: an input envelope in, the output envelope (at most `max_response`
    /// bytes) and the server's evaluation seconds out.
    ///
    /// # Errors
    /// As [`Remote::health`]; [`ServerError::Transport`] for an answer over `max_response`.
    pub fn infer(
        &self,
        key: &KeyRegistered,
        inputs: &[u8],
        max_response: u64,
    ) -> Result<(Vec<u8>, f64), ServerError> {
        let r = self
            .agent
            .post(format!("{}/v1/infer", self.base))
            .header(KEY_ID_HEADER, &key.key_id)
            .header("authorization", format!("Bearer {}", key.token))
            .content_type(ENVELOPE_MEDIA_TYPE)
            .send(inputs)
            .map_err(|e| self.transport(e))?;
        let mut r = self.check(r)?;
        let seconds = r
            .headers()
            .get(EVAL_SECONDS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        let bytes = r
            .body_mut()
            .with_config()
            // The reader fails once it has read `limit` bytes and is asked for more.
            .limit(max_response.saturating_add(1))
            .read_to_vec()
            .map_err(|e| self.transport(e))?;
        Ok((bytes, seconds))
    }

    /// `DELETE /v1/keys/{id}`.
    ///
    /// # Errors
    /// As [`Remote::health`].
    pub fn delete(&self, key: &KeyRegistered) -> Result<(), ServerError> {
        let r = self
            .agent
            .delete(format!("{}/v1/keys/{}", self.base, key.key_id))
            .header("authorization", format!("Bearer {}", key.token))
            .call()
            .map_err(|e| self.transport(e))?;
        self.check(r).map(|_| ())
    }
}

/// The keys a client has registered, per server URL: `servers.json` next to `client.key`,
/// mode 0600 (the tokens are credentials).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Registrations {
    #[serde(flatten)]
    servers: BTreeMap<String, KeyRegistered>,
    #[serde(skip)]
    path: PathBuf,
}

impl Registrations {
    /// The file name in the keys folder.
    pub const FILE: &'static str = "servers.json";

    /// Read `dir/servers.json` (none yet: empty).
    ///
    /// # Errors
    /// [`ServerError::Io`] if it exists and cannot be read, or is not a registrations file.
    pub fn load(dir: &Path) -> Result<Self, ServerError> {
        let path = dir.join(Self::FILE);
        let io = |source| ServerError::Io {
            path: path.clone(),
            source,
        };
        let mut regs = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Registrations>(&bytes).map_err(|e| {
                io(std::io::Error::other(format!(
                    "not a registrations file ({e}); delete it to register again"
                )))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Registrations::default(),
            Err(e) => return Err(io(e)),
        };
        regs.path = path;
        Ok(regs)
    }

    /// The registration at `url`.
    pub fn get(&self, url: &str) -> Option<&KeyRegistered> {
        self.servers.get(url)
    }

    /// Record (or forget, with `None`) the registration at `url` and write the file.
    ///
    /// # Errors
    /// [`ServerError::Runtime`] if the file cannot be written.
    pub fn set(&mut self, url: &str, key: Option<KeyRegistered>) -> Result<(), ServerError> {
        match key {
            Some(k) => self.servers.insert(url.to_owned(), k),
            None => self.servers.remove(url),
        };
        let json = serde_json::to_vec_pretty(&self.servers).expect("plain strings serialize");
        qfhe_fhe_runtime::keys::write_atomic(&self.path, &json, true)?;
        Ok(())
    }
}

/// One request's answer, decrypted.
#[derive(Debug, Clone)]
pub struct RemoteAnswer {
    /// Per sample, the output accumulators ([`Client::decrypt_batch`]).
    pub accumulators: Vec<Vec<i64>>,
    /// Bytes sent (the input envelope).
    pub upload_bytes: u64,
    /// Bytes received (the output envelope).
    pub download_bytes: u64,
    /// Seconds the server spent evaluating.
    pub server_seconds: f64,
}

/// A circuit evaluated by a remote server under this client's keys: checks that the server
/// serves the same circuit, registers the evaluation key if the server does not know it yet,
/// and encrypts, sends and decrypts. Shareable across threads.
pub struct RemoteModel {
    remote: Remote,
    circuit: Arc<Circuit>,
    client: Client,
    keys_dir: PathBuf,
    key: Mutex<KeyRegistered>,
}

impl RemoteModel {
    /// Connect `client` (its key and circuit) to `remote`, with `keys_dir` holding `eval.key`
    /// and the registrations file.
    ///
    /// # Errors
    /// [`ServerError::Config`] if the server runs another circuit; as [`Remote::register`] and
    /// [`Registrations::load`].
    pub fn connect(
        remote: Remote,
        circuit: Arc<Circuit>,
        client: Client,
        keys_dir: &Path,
    ) -> Result<Self, ServerError> {
        let info = remote.circuit()?;
        let ours = hex(&circuit_digest(&circuit));
        if info.circuit_sha256 != ours {
            return Err(ServerError::Config(format!(
                "{} serves circuit {} ({}), but this circuit file is {}: use the circuit file the server was started with",
                remote.url(),
                info.circuit_sha256.chars().take(16).collect::<String>(),
                info.arch,
                &ours[..16]
            )));
        }
        let mut regs = Registrations::load(keys_dir)?;
        let key = match regs.get(remote.url()) {
            Some(k) => k.clone(),
            None => {
                let k = register_from(&remote, &circuit, keys_dir)?;
                regs.set(remote.url(), Some(k.clone()))?;
                k
            }
        };
        Ok(Self {
            remote,
            circuit,
            client,
            keys_dir: keys_dir.to_path_buf(),
            key: Mutex::new(key),
        })
    }

    /// The server.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The registration in use.
    pub fn registration(&self) -> KeyRegistered {
        self.key.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Encrypt `samples` (input codes), have the server evaluate them, decrypt. A key the
    /// server no longer knows (404: deleted, or a new keys folder) is registered again once.
    ///
    /// # Errors
    /// As [`Remote::infer`]; [`ServerError::Runtime`] for inputs that do not fit the circuit
    /// or an answer that is not a valid output envelope.
    pub fn predict(&self, samples: &[Vec<i32>]) -> Result<RemoteAnswer, ServerError> {
        let params = params_of(&self.circuit)?;
        let body = self
            .client
            .encrypt_batch(samples)?
            .to_bytes(&self.circuit)?;
        let max_response = envelope_limit(
            &params,
            OutputBatch::payload_bytes(
                samples.len() as u64,
                self.circuit.output.d_out() as u64,
                params.big_dim() as u64 + 1,
            ),
        );
        let key = self.registration();
        let (bytes, server_seconds) = match self.remote.infer(&key, &body, max_response) {
            Err(ServerError::Remote { status: 404, .. }) => {
                let fresh = register_from(&self.remote, &self.circuit, &self.keys_dir)?;
                Registrations::load(&self.keys_dir)?.set(self.remote.url(), Some(fresh.clone()))?;
                *self.key.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
                self.remote.infer(&fresh, &body, max_response)?
            }
            other => other?,
        };
        let outputs = OutputBatch::from_bytes(&bytes, &self.circuit, samples.len() as u32)?;
        if outputs.len() != samples.len() {
            return Err(ServerError::Transport(format!(
                "{} answered {} samples for {}",
                self.remote.url(),
                outputs.len(),
                samples.len()
            )));
        }
        Ok(RemoteAnswer {
            accumulators: self.client.decrypt_batch(&outputs)?,
            upload_bytes: body.len() as u64,
            download_bytes: bytes.len() as u64,
            server_seconds,
        })
    }
}

/// Register `keys_dir/eval.key` (read within its size limit) with `remote`.
fn register_from(
    remote: &Remote,
    circuit: &Circuit,
    keys_dir: &Path,
) -> Result<KeyRegistered, ServerError> {
    let path = keys_dir.join("eval.key");
    // Loading validates the envelope (circuit, parameters, size) before it is sent.
    let key = CompressedEvalKey::load(&path, circuit)?;
    remote.register(&key.to_bytes(circuit))
}
