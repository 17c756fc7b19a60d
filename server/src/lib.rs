//! qfhe's HTTP inference server and its client.
//!
//! The server holds a circuit and no secret: clients register their evaluation key once
//! (`POST /v1/keys`, answered with a random key id and bearer token), then send batches of
//! encrypted inputs (`POST /v1/infer`) and get encrypted outputs back, which only they can
//! decrypt. Everything travels in the envelopes of [`qfhe_fhe_runtime::wire`].
//!
//! * [`app`]: the axum routes, body limits derived from the circuit, the request timeout,
//!   authorization, and `{error, hint}` answers for every failure;
//! * [`queue`]: FHE work on a rayon pool behind a bounded queue (503 with `Retry-After` when
//!   full), never on the async workers;
//! * [`cache`]: decompressed keys in memory, least recently used evicted, within a byte budget;
//! * [`store`]: registrations persisted in the keys directory with atomic writes, so restarts
//!   and replicas sharing the directory serve every registered key;
//! * [`remote`]: the blocking client (`ureq`) that `qfhe predict` uses;
//! * [`cli`]: the options of `qfhe serve` and of the standalone `qfhe-server` binary;
//! * [`api`]: the JSON bodies and headers both sides share (documented in `docs/API.md`).
//!
//! This crate depends on neither Burn nor the datasets crate.

pub mod api;
pub mod app;
pub mod cache;
pub mod cli;
pub mod error;
pub mod queue;
pub mod remote;
pub mod store;

pub use app::{App, ServeConfig};
pub use error::{ApiError, ServerError};
pub use remote::{Registrations, Remote, RemoteAnswer, RemoteModel};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// Serve `app` on `listener` until `shutdown` completes (in-flight requests finish first).
///
/// # Errors
/// The listener's I/O errors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serve `app` on `addr` until SIGINT or SIGTERM, then let in-flight requests finish: what
/// `qfhe serve` runs. `ready` is called with the bound address once the server listens.
///
/// # Errors
/// [`ServerError::Io`] if the runtime cannot start or the address cannot be bound.
pub fn run_until_signal(
    addr: SocketAddr,
    app: Arc<App>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    let io = io_at(addr);
    http_runtime(addr)?.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(io)?;
        ready(listener.local_addr().map_err(io)?);
        serve(listener, app, shutdown_signal()).await.map_err(io)
    })
}

/// An I/O error at the listening address.
fn io_at(addr: SocketAddr) -> impl Fn(std::io::Error) -> ServerError + Copy {
    move |source| ServerError::Io {
        path: addr.to_string().into(),
        source,
    }
}

/// The async runtime that serves HTTP. It needs few threads: the FHE work runs on the queue's
/// pool.
fn http_runtime(addr: SocketAddr) -> Result<tokio::runtime::Runtime, ServerError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io_at(addr))
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// A server running on its own threads (an async runtime of two workers), stopped when
/// dropped: for tests, benchmarks and embedding in a program that is not async.
pub struct Background {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Bind `addr` (port 0: any free port) and serve `app` there.
    ///
    /// # Errors
    /// [`ServerError::Io`] if the runtime cannot start or the address cannot be bound.
    pub fn start(addr: SocketAddr, app: Arc<App>) -> Result<Self, ServerError> {
        let io = io_at(addr);
        let runtime = http_runtime(addr)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(io)?;
        let addr = listener.local_addr().map_err(io)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("qfhe-http-{}", addr.port()))
            .spawn(move || {
                let shutdown = async move {
                    let _ = stopped.await;
                };
                let _ = runtime.block_on(serve(listener, app, shutdown));
            })
            .map_err(io)?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
