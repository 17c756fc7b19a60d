//! The server's command-line options and entry point, shared by `qfhe serve` and the
//! standalone `qfhe-server` binary (which carries no trainer).

use crate::{App, ServeConfig, ServerError};
use clap::builder::TypedValueParser;
use clap::Args;
use qfhe_circuit::Circuit;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The options of `qfhe serve` and `qfhe-server`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Circuit file to serve.
    #[arg(long, default_value = "qfhe-out/circuit.json")]
    pub circuit: PathBuf,
    /// Folder where registered evaluation keys are kept (created if missing); replicas behind a
    /// load balancer share one.
    #[arg(long, default_value = "qfhe-server-keys")]
    pub keys_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Evaluation threads (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096).map(|v| v as usize))]
    pub threads: Option<usize>,
    /// Most jobs (evaluations, key loads) admitted at once, running or waiting; further requests
    /// get 503 with Retry-After.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000).map(|v| v as usize))]
    pub max_queue: usize,
    /// Most samples per inference request.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_batch: u32,
    /// Memory for decompressed evaluation keys, MiB (about 115 MiB per key at N = 2048);
    /// least recently used keys are evicted and reloaded from the keys folder on demand.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=(1 << 24)))]
    pub key_cache_mb: u64,
    /// Longest a request may take, upload and evaluation included, seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub request_timeout_s: u64,
    /// Most registered keys kept in the keys folder.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000_000).map(|v| v as usize))]
    pub max_keys: usize,
    /// PBS backend: cpu (tfhe-rs on the CPU), or gpu (tfhe-rs's CUDA backend, in builds that
    /// include it).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "gpu"])]
    pub backend: String,
    /// PBS per pass over the evaluation keys on the cpu backend (default 32; 1 runs one PBS at a
    /// time).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256).map(|v| v as usize))]
    pub pbs_batch: Option<usize>,
}

impl ServeArgs {
    /// The configuration these options describe.
    ///
    /// # Errors
    /// [`ServerError::Config`] for a backend this build cannot run.
    pub fn config(&self) -> Result<ServeConfig, ServerError> {
        let mut config = ServeConfig::new(self.keys_dir.clone());
        config.threads = self.threads;
        config.max_queue = self.max_queue;
        config.max_batch = self.max_batch;
        config.key_cache_bytes = self.key_cache_mb << 20;
        config.request_timeout = Duration::from_secs(self.request_timeout_s);
        config.max_keys = self.max_keys;
        config.backend = qfhe_fhe_runtime::Backend::from_name(&self.backend, self.pbs_batch)
            .map_err(|e| ServerError::Config(e.to_string()))?;
        Ok(config)
    }
}

/// Load the circuit, start the server and serve until SIGINT or SIGTERM; `announce` receives
/// the line to show once it listens.
///
/// # Errors
/// The circuit cannot be loaded, the configuration does not fit it, or the address cannot be
/// bound.
pub fn run(args: &ServeArgs, announce: impl FnOnce(String)) -> Result<(), ServerError> {
    let circuit = Arc::new(
        Circuit::load(&args.circuit)
            .map_err(|e| ServerError::Config(format!("{}: {e}", args.circuit.display())))?,
    );
    let app = App::new(circuit, args.config()?)?;
    let info = app.info().clone();
    crate::run_until_signal(args.addr, app, |addr| {
        announce(format!(
            "serving circuit {} ({}, {} PBS per sample, {}) on http://{addr}\n  keys in {}; up to {} samples per request; Ctrl-C to stop",
            &info.circuit_sha256[..16],
            info.arch,
            info.pbs_per_sample,
            info.params,
            args.keys_dir.display(),
            info.max_batch
        ))
    })
}
