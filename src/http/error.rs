//! The one error type of the HTTP edge (SPEC §8). Each variant names the
//! status it answers with; the message goes to the client in the answer
//! envelope. Internal causes are logged here and never sent: they can carry
//! paths of this machine.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value};

use super::body::BodyError;
use super::respond::{Format, answer};
use crate::auth::TokenError;
use crate::storage::StorageError;

/// What a busy server asks a client to wait before it tries again.
const RETRY_AFTER_SECS: &str = "5";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 403: missing or wrong key.
    #[error("missing or wrong security key")]
    Forbidden,
    /// 403: a valid credential that may not do this; the message says
    /// which one would.
    #[error(transparent)]
    Refused(#[from] crate::auth::Refusal),
    /// 403: an upload token that is not valid here, or has no file left;
    /// the message names the reason.
    #[error(transparent)]
    Token(crate::auth::token::Refusal),
    /// 400: malformed request, missing file, bad path or hash.
    #[error("{0}")]
    BadRequest(String),
    /// 400: unknown or missing `action`.
    #[error(
        "unknown or missing action; valid actions: upload, uploaderrors, token, stats, sync, delete, restore, forget, digest, list"
    )]
    UnknownAction,
    /// 405: the action exists but not with this method.
    #[error("action `{action}` takes {allowed}")]
    MethodNotAllowed {
        action: &'static str,
        allowed: &'static str,
    },
    /// 408: the client stopped sending, or dripped, in the middle of the body.
    #[error("{0}; the request was dropped")]
    ClientTooSlow(String),
    /// 404: nothing of that name to act on (a restore of a name not in
    /// the trash).
    #[error("{0}")]
    NotFound(String),
    /// 409: a different replica already has this name.
    #[error("{0}")]
    Conflict(String),
    /// 410: the name was deleted; it is never stored again.
    #[error("{0}")]
    Gone(String),
    /// 413: the request, a file or the number of files is over a limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: the content is not an allowed image type.
    #[error("{0}")]
    UnsupportedType(String),
    /// 412: a tus request of another protocol version than 1.0.0.
    #[error("this server speaks tus 1.0.0 (Tus-Resumable: 1.0.0)")]
    TusVersion,
    /// 423: another request is writing this resumable upload and did not
    /// give it up.
    #[error("{0}")]
    Locked(String),
    /// 460: a tus chunk whose checksum does not match; it was discarded.
    #[error("the chunk does not match its Upload-Checksum; it was discarded")]
    ChecksumMismatch,
    /// 507: staging for resumable uploads is full (in total or for this
    /// client).
    #[error("{0}")]
    StagingFull(String),
    /// 503 with `Retry-After`: more uploads in flight than the configured
    /// maximum; nothing of this request was read.
    #[error("the server is busy with other uploads; try again in a few seconds")]
    Busy,
    /// 503 with `Retry-After`: every variant worker is busy and the queue
    /// of variants waiting for one is full.
    #[error("the server is busy making other images; try again in a few seconds")]
    VariantsBusy,
    /// 503: the S3 store did not take or give the file; nothing was kept.
    #[error("the image store is not available; nothing was stored; try again later")]
    StoreUnavailable(String),
    /// 507: the disk is full.
    #[error("the server's disk is full; nothing was stored")]
    DiskFull,
    /// 500: anything else; the cause is logged, not sent.
    #[error("internal error; see the server log")]
    Internal(String),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Forbidden | Self::Refused(_) | Self::Token(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) | Self::UnknownAction => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::ClientTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Busy | Self::VariantsBusy | Self::StoreUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::DiskFull | Self::StagingFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::TusVersion => StatusCode::PRECONDITION_FAILED,
            Self::Locked(_) => StatusCode::LOCKED,
            Self::ChecksumMismatch => StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// Logs what the client is not told (an internal cause, a full disk or
    /// store).
    pub fn log(&self) {
        match self {
            Self::Internal(cause) => tracing::error!(%cause, "internal error"),
            Self::DiskFull => tracing::error!("disk full while storing"),
            Self::StoreUnavailable(cause) => tracing::error!(%cause, "the object store failed"),
            _ => {}
        }
    }

    /// The failure envelope; `extra` (e.g. files stored before the failing
    /// part) follows `success` and `error`.
    pub fn answer(self, format: Format, extra: Map<String, Value>) -> Response {
        self.log();
        let mut resp = Map::new();
        resp.insert("success".into(), 0.into());
        resp.insert("error".into(), self.to_string().into());
        resp.extend(extra);
        let mut response = answer(format, self.status(), resp);
        // A refused request's body may be unread (refused on its headers, or
        // part way); hyper then closes the connection after the answer. Saying
        // so keeps a pooling client (our own replicator among them) from
        // sending its next request on a connection about to close.
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if matches!(
            self,
            Self::Busy | Self::VariantsBusy | Self::StoreUnavailable(_)
        ) {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

impl From<BodyError> for Error {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::Stalled(_) | BodyError::TooSlow(_) => Self::ClientTooSlow(e.to_string()),
            BodyError::Read(read) => {
                Self::BadRequest(format!("the body could not be read: {read}"))
            }
            BodyError::HeadersTooLong(_) => Self::BadRequest(e.to_string()),
        }
    }
}

impl From<TokenError> for Error {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Refused(refusal) => Self::Token(refusal),
            TokenError::Counts(counts) => Self::internal(counts),
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::TooLarge { .. } | StorageError::OverLimit(_) => {
                Self::TooLarge(e.to_string())
            }
            StorageError::Empty | StorageError::HashMismatch => Self::BadRequest(e.to_string()),
            StorageError::UnsupportedType { .. } | StorageError::Malformed { .. } => {
                Self::UnsupportedType(e.to_string())
            }
            StorageError::Conflict => Self::Conflict(e.to_string()),
            StorageError::Deleted => Self::Gone(e.to_string()),
            StorageError::Index(index) => Self::internal(index),
            StorageError::DiskFull(_) => Self::DiskFull,
            StorageError::Io(io) => Self::internal(io),
            StorageError::Store(store) => Self::StoreUnavailable(store.to_string()),
        }
    }
}
