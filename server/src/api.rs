//! What the HTTP API's JSON bodies and headers look like, shared by the server ([`crate::app`])
//! and the client ([`crate::remote`]). `docs/API.md` describes the same in prose.

use serde::{Deserialize, Serialize};

/// Header that names the registered key a request uses (32 lower-case hex digits).
pub const KEY_ID_HEADER: &str = "x-qfhe-key-id";
/// Response header of `/v1/infer`: seconds the server spent evaluating (queue wait excluded).
pub const EVAL_SECONDS_HEADER: &str = "x-qfhe-eval-seconds";
/// Media type of envelopes (keys and ciphertext batches).
pub const ENVELOPE_MEDIA_TYPE: &str = "application/octet-stream";

/// Every error the server answers: what is wrong, and what to change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// What the client should do about it.
    pub hint: String,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// Always `"ok"` when the server answers.
    pub status: String,
    /// The server's qfhe version.
    pub version: String,
    /// Jobs (key loads and evaluations) admitted and not finished, running or waiting.
    pub jobs_admitted: usize,
    /// Most jobs admitted at once (`--max-queue`); beyond it requests get 503.
    pub queue_capacity: usize,
    /// Threads evaluating (the rayon pool).
    pub threads: usize,
    /// Evaluation keys held decompressed in memory.
    pub keys_cached: usize,
    /// Bytes those keys take (Fourier BSK + KSK).
    pub key_cache_bytes: u64,
    /// The cache's budget, bytes (`--key-cache-mb`).
    pub key_cache_budget_bytes: u64,
    /// The process's peak resident set size, bytes (Linux `VmHWM`; absent elsewhere).
    pub peak_rss_bytes: Option<u64>,
}

/// `GET /v1/circuit`: what a client needs to check that it holds the same circuit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CircuitInfo {
    /// SHA-256 of the circuit's canonical JSON, hex: the value in every envelope's header.
    pub circuit_sha256: String,
    /// The tfhe-rs parameter set.
    pub params: String,
    /// Input features per sample (ciphertexts per sample).
    pub input_features: usize,
    /// Bit width of each input code.
    pub input_bits: u32,
    /// Output ciphertexts per sample (logits).
    pub outputs: usize,
    /// PBS per sample.
    pub pbs_per_sample: usize,
    /// Dataset and architecture the circuit was exported from.
    pub dataset: String,
    /// Architecture, e.g. `784-128-10`.
    pub arch: String,
    /// Most samples per `/v1/infer` request.
    pub max_batch: u32,
    /// Largest `/v1/keys` body, bytes (one evaluation-key envelope).
    pub max_key_bytes: u64,
    /// Largest `/v1/infer` body, bytes (`max_batch` samples).
    pub max_infer_bytes: u64,
}

/// `POST /v1/keys` → 201.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyRegistered {
    /// The registration's id, 32 hex digits (128 random bits): send it in [`KEY_ID_HEADER`].
    pub key_id: String,
    /// Bearer token, 64 hex digits (256 random bits): send it as `Authorization: Bearer …`.
    /// The server keeps only its SHA-256.
    pub token: String,
    /// The key pair's own id from the envelope (what input batches carry).
    pub client_key_id: String,
}
