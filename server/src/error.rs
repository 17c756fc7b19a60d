//! The server crate's error type, and how API errors become HTTP answers.

use crate::api::ErrorBody;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Errors of the server and of its client.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting that cannot work (`qfhe serve` options).
    #[error("{0}")]
    Config(String),
    /// The keys directory or a file in it.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A key or ciphertext envelope, or the circuit's parameters.
    #[error(transparent)]
    Runtime(#[from] qfhe_fhe_runtime::RuntimeError),
    /// The server answered with an error.
    #[error("the server answered {status}: {error} ({hint})")]
    Remote {
        /// HTTP status.
        status: u16,
        /// The server's `error`.
        error: String,
        /// The server's `hint`.
        hint: String,
    },
    /// The server could not be reached, or answered something that is not this API.
    #[error("{0}")]
    Transport(String),
}

/// An error answer: a status and a JSON [`ErrorBody`].
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status (4xx: the client's mistake; 5xx: the server's state).
    pub status: StatusCode,
    /// The JSON body.
    pub body: ErrorBody,
    /// Seconds for `Retry-After` (503 only).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// An answer with `status`, `error` and `hint`.
    pub fn new(status: StatusCode, error: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                hint: hint.into(),
            },
            retry_after_s: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(error: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, hint)
    }

    /// 500, for failures of the server's own storage.
    pub fn internal(error: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            error,
            "the server could not complete the request; try again, and tell its operator if it persists",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
