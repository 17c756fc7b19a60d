//! The HTTP application: routes, authorization, limits and the mapping of every failure to a
//! JSON `{error, hint}` answer. The evaluation itself is [`qfhe_fhe_runtime::Server`]'s,
//! the same code the in-process path runs.

use crate::api::{
    CircuitInfo, Health, KeyRegistered, ENVELOPE_MEDIA_TYPE, EVAL_SECONDS_HEADER, KEY_ID_HEADER,
};
use crate::cache::KeyCache;
use crate::error::{ApiError, ServerError};
use crate::queue::{JobError, WorkQueue};
use crate::store::{new_token, same_digest, token_hash, KeyId, KeyStore};
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use qfhe_circuit::Circuit;
use qfhe_fhe_runtime::keys::{envelope_limit, params_of};
use qfhe_fhe_runtime::{CompressedEvalKey, FheParams, InputBatch, RuntimeError, Server};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a server runs (the options of `qfhe serve`).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where registrations are persisted; replicas may share it.
    pub keys_dir: PathBuf,
    /// Evaluation threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Most jobs admitted at once, running or waiting; beyond it: 503 with `Retry-After`.
    pub max_queue: usize,
    /// Most samples per `/v1/infer` request.
    pub max_batch: u32,
    /// Memory budget of decompressed keys, bytes.
    pub key_cache_bytes: u64,
    /// Longest a request may take, upload and evaluation included.
    pub request_timeout: Duration,
    /// Most registrations the keys directory may hold.
    pub max_keys: usize,
    /// Where each evaluation's KS + PBS run.
    pub backend: qfhe_fhe_runtime::Backend,
}

impl ServeConfig {
    /// Defaults: all cores, 16 jobs, 64 samples per request, 1 GiB of keys, 300 s, 1000 keys,
    /// the default CPU backend.
    pub fn new(keys_dir: PathBuf) -> Self {
        Self {
            keys_dir,
            threads: None,
            max_queue: 16,
            max_batch: 64,
            key_cache_bytes: 1 << 30,
            request_timeout: Duration::from_secs(300),
            max_keys: 1000,
            backend: qfhe_fhe_runtime::Backend::default(),
        }
    }
}

/// A running server's state, shared by its handlers.
pub struct App {
    circuit: Arc<Circuit>,
    params: FheParams,
    info: CircuitInfo,
    config: ServeConfig,
    store: KeyStore,
    cache: KeyCache,
    queue: WorkQueue,
}

impl App {
    /// Check the configuration against the circuit and open the keys directory.
    ///
    /// # Errors
    /// [`ServerError::Config`] for a cache too small for one key, a batch limit out of range or
    /// a queue of 0; [`ServerError::Io`] if the keys directory is unusable; as
    /// [`params_of`] for a circuit without a parameter set.
    pub fn new(circuit: Arc<Circuit>, config: ServeConfig) -> Result<Arc<App>, ServerError> {
        let params = params_of(&circuit)?;
        let key_bytes = params.eval_key_bytes();
        if config.key_cache_bytes < key_bytes {
            return Err(ServerError::Config(format!(
                "--key-cache-mb {} holds no key: one decompressed evaluation key of {} takes {:.1} MB; give at least {}",
                config.key_cache_bytes >> 20,
                params.name,
                key_bytes as f64 / 1e6,
                key_bytes.div_ceil(1 << 20)
            )));
        }
        if config.max_batch == 0 || config.max_batch > qfhe_fhe_runtime::messages::MAX_BATCH {
            return Err(ServerError::Config(format!(
                "--max-batch {} is out of range: 1 to {}",
                config.max_batch,
                qfhe_fhe_runtime::messages::MAX_BATCH
            )));
        }
        let max_key_bytes = envelope_limit(&params, CompressedEvalKey::payload_bytes(&params));
        let max_infer_bytes = envelope_limit(
            &params,
            InputBatch::payload_bytes(config.max_batch as u64, circuit.features() as u64),
        );
        let queue =
            WorkQueue::new(config.threads, config.max_queue).map_err(ServerError::Config)?;
        let store = KeyStore::open(&config.keys_dir, max_key_bytes)?;
        let info = CircuitInfo {
            circuit_sha256: qfhe_fhe_runtime::wire::hex(&qfhe_fhe_runtime::wire::circuit_digest(
                &circuit,
            )),
            params: params.name.to_owned(),
            input_features: circuit.features(),
            input_bits: circuit.input.bits,
            outputs: circuit.output.d_out(),
            pbs_per_sample: circuit.pbs_count(),
            dataset: circuit.meta.dataset.clone(),
            arch: circuit.meta.arch.clone(),
            max_batch: config.max_batch,
            max_key_bytes,
            max_infer_bytes,
        };
        Ok(Arc::new(App {
            cache: KeyCache::new(config.key_cache_bytes),
            circuit,
            params,
            info,
            config,
            store,
            queue,
        }))
    }

    /// The parameter set.
    pub fn params(&self) -> &FheParams {
        &self.params
    }

    /// What `GET /v1/circuit` answers.
    pub fn info(&self) -> &CircuitInfo {
        &self.info
    }

    /// The routes, with per-route body limits and the request timeout.
    pub fn router(self: &Arc<Self>) -> Router {
        let timeout = self.config.request_timeout;
        Router::new()
            .route("/v1/health", get(health))
            .route("/v1/circuit", get(circuit_info))
            .route(
                "/v1/keys",
                post(register).layer(DefaultBodyLimit::max(
                    usize::try_from(self.info.max_key_bytes).unwrap_or(usize::MAX),
                )),
            )
            .route("/v1/keys/{id}", delete(unregister))
            .route(
                "/v1/infer",
                post(infer).layer(DefaultBodyLimit::max(
                    usize::try_from(self.info.max_infer_bytes).unwrap_or(usize::MAX),
                )),
            )
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(
                tower::ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(move |_: tower::BoxError| async move {
                        ApiError::new(
                            StatusCode::REQUEST_TIMEOUT,
                            format!("the request took longer than {} s", timeout.as_secs()),
                            "send fewer samples per request, or ask the operator to raise --request-timeout-s",
                        )
                    }))
                    .timeout(timeout),
            )
            .with_state(self.clone())
    }

    /// The cached server for `id`, `None` if it must be loaded; checks the token first.
    fn authorize(&self, id: &KeyId, token: &str) -> Result<Option<Arc<Server>>, ApiError> {
        let presented = token_hash(token);
        let check = |stored: &[u8; 32]| {
            if same_digest(stored, &presented) {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("the token does not match key {}", id.hex()),
                    "send the token that POST /v1/keys returned with this key id",
                ))
            }
        };
        if let Some((server, stored)) = self.cache.get(id) {
            // Another replica may have deleted it.
            if !self.store.contains(id) {
                self.cache.remove(id);
                return Err(unknown_key(id));
            }
            check(&stored)?;
            return Ok(Some(server));
        }
        match self.store.token_hash(id) {
            Ok(Some(stored)) => check(&stored).map(|()| None),
            Ok(None) => Err(unknown_key(id)),
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }

    /// Read, decompress and cache `id`'s key (on the pool).
    fn load(&self, id: &KeyId) -> Result<Arc<Server>, ApiError> {
        let (hash, envelope) = self
            .store
            .load(id)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| unknown_key(id))?;
        let key = CompressedEvalKey::from_bytes(&envelope, &self.circuit)
            .map_err(|e| ApiError::internal(format!("stored key {}: {e}", id.hex())))?;
        let server = Arc::new(
            Server::with_backend(
                self.circuit.clone(),
                Arc::new(key.decompress()),
                self.config.backend,
            )
            .map_err(|e| ApiError::internal(e.to_string()))?,
        );
        self.cache.insert(*id, server.clone(), hash);
        Ok(server)
    }

    fn registrations(&self) -> usize {
        std::fs::read_dir(self.store.dir()).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".reg"))
                .count()
        })
    }
}

fn unknown_key(id: &KeyId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no key {} is registered", id.hex()),
        "register the evaluation key with POST /v1/keys (it may have been deleted) and use the id it returns",
    )
}

fn envelope_error(e: RuntimeError) -> ApiError {
    ApiError::bad_request(
        e.to_string(),
        "send an envelope written by qfhe for this server's circuit (GET /v1/circuit gives its SHA-256 and parameter set)",
    )
}

fn body_error(rejection: BytesRejection, limit: u64) -> ApiError {
    let status = rejection.status();
    let hint = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("this route takes at most {limit} bytes; send fewer samples per request")
    } else {
        "send the whole body".to_owned()
    };
    ApiError::new(status, rejection.body_text(), hint)
}

fn job_error(e: JobError) -> ApiError {
    match e {
        JobError::Full { retry_after_s } => ApiError {
            retry_after_s: Some(retry_after_s),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server's work queue is full",
                format!("retry after {retry_after_s} s, or add replicas"),
            )
        },
        JobError::Panicked(msg) => ApiError::internal(format!("evaluation failed: {msg}")),
    }
}

fn key_id_from(headers: &HeaderMap) -> Result<KeyId, ApiError> {
    let text = headers
        .get(KEY_ID_HEADER)
        .ok_or_else(|| {
            ApiError::bad_request(
                format!("no {KEY_ID_HEADER} header"),
                "send the key id that POST /v1/keys returned",
            )
        })?
        .to_str()
        .map_err(|_| ApiError::bad_request("the key id is not text", "send 32 hex digits"))?;
    KeyId::parse(text).map_err(|e| ApiError::bad_request(e, "send 32 hex digits"))
}

fn id_from_path(text: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(text).map_err(|e| ApiError::bad_request(e, "DELETE /v1/keys/<32 hex digits>"))
}

fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    let missing = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no bearer token",
            "send 'Authorization: Bearer <token>' with the token that POST /v1/keys returned",
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    value
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(missing)
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

async fn health(State(app): State<Arc<App>>) -> Json<Health> {
    let (keys_cached, key_cache_bytes) = app.cache.usage();
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        jobs_admitted: app.queue.admitted(),
        queue_capacity: app.queue.capacity(),
        threads: app.queue.threads(),
        keys_cached,
        key_cache_bytes,
        key_cache_budget_bytes: app.cache.budget(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

async fn circuit_info(State(app): State<Arc<App>>) -> Json<CircuitInfo> {
    Json(app.info.clone())
}

async fn register(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<KeyRegistered>), ApiError> {
    let body = body.map_err(|r| body_error(r, app.info.max_key_bytes))?;
    if app.registrations() >= app.config.max_keys {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("the server holds {} keys, its limit", app.config.max_keys),
            "delete keys you no longer use (DELETE /v1/keys/{id}), or ask the operator to raise --max-keys",
        ));
    }
    let job = app.clone();
    let registered = app
        .queue
        .run(move || -> Result<KeyRegistered, ApiError> {
            let key = CompressedEvalKey::from_bytes(&body, &job.circuit).map_err(envelope_error)?;
            let id = KeyId::random();
            let token = new_token();
            let hash = token_hash(&token);
            job.store
                .save(&id, &hash, &body)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let client_key_id = qfhe_fhe_runtime::wire::hex(&key.key_id());
            let server = Server::with_backend(
                job.circuit.clone(),
                Arc::new(key.decompress()),
                job.config.backend,
            )
            .map_err(|e| ApiError::internal(e.to_string()))?;
            job.cache.insert(id, Arc::new(server), hash);
            Ok(KeyRegistered {
                key_id: id.hex(),
                token,
                client_key_id,
            })
        })
        .await
        .map_err(job_error)??;
    Ok((StatusCode::CREATED, Json(registered)))
}

async fn infer(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = key_id_from(&headers)?;
    let token = bearer(&headers)?;
    let body = body.map_err(|r| body_error(r, app.info.max_infer_bytes))?;
    let cached = app.authorize(&id, &token)?;
    let batch = InputBatch::from_bytes(&body, &app.circuit, app.config.max_batch)
        .map_err(envelope_error)?;
    drop(body);
    let job = app.clone();
    let (bytes, seconds) = app
        .queue
        .run(move || -> Result<(Vec<u8>, f64), ApiError> {
            // An earlier job may have loaded the key meanwhile (jobs run one at a time).
            let server = match cached.or_else(|| job.cache.get(&id).map(|(s, _)| s)) {
                Some(s) => s,
                None => job.load(&id)?,
            };
            let start = Instant::now();
            let outputs = server.evaluate_message(&batch).map_err(|e| match e {
                RuntimeError::Input(msg) => ApiError::bad_request(
                    msg,
                    "encrypt with the client key whose eval.key was registered under this key id",
                ),
                other => ApiError::internal(other.to_string()),
            })?;
            let bytes = outputs
                .to_bytes(&job.circuit)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok((bytes, start.elapsed().as_secs_f64()))
        })
        .await
        .map_err(job_error)??;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(ENVELOPE_MEDIA_TYPE),
        )],
        bytes,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{seconds:.6}")) {
        response.headers_mut().insert(EVAL_SECONDS_HEADER, v);
    }
    Ok(response)
}

async fn unregister(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = id_from_path(&id)?;
    let token = bearer(&headers)?;
    app.authorize(&id, &token)?;
    app.cache.remove(&id);
    match app.store.remove(&id) {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(unknown_key(&id)),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route",
        "the API has GET /v1/health, GET /v1/circuit, POST /v1/keys, POST /v1/infer, DELETE /v1/keys/{id}",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method",
        "the API has GET /v1/health, GET /v1/circuit, POST /v1/keys, POST /v1/infer, DELETE /v1/keys/{id}",
    )
}
