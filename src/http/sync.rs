//! `PUT|POST /do.ashx?action=sync&path=…`: a replica from a peer (SPEC §2.3,
//! §4). The path must be of the stored-file pattern, the body must hash to
//! `X-Content-SHA256`; it is written like an upload (temporary file, fsync,
//! rename) under the sender's name. Receiving a file already present is a
//! success. A replica is never forwarded: that is what prevents loops.
//!
//! A replica streamed while its upload still arrives comes as
//! `multipart/form-data` instead: a part `file` with the bytes, then a field
//! `sha256`, sent once the sender has stored the file. Only then is the
//! replica published; a body that ends before it leaves nothing here.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::Map;

use super::AppState;
use super::body::{HEADER_BYTES, HeaderBudget, paced};
use super::error::Error;
use super::respond::{Format, answer};
use super::upload::multipart_error;
use crate::replication::{FILE_FIELD, HASH_FIELD};
use crate::storage::{Arrival, ImageRules, Incoming, StoredPath, Written};

pub const HASH_HEADER: &str = "x-content-sha256";

pub async fn handle(
    state: Arc<AppState>,
    format: Format,
    path: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    match receive(&state, path, headers, body).await {
        Ok((path, arrival)) => {
            let mut resp = Map::new();
            resp.insert("success".into(), 1.into());
            resp.insert("path".into(), path.to_string().into());
            resp.insert(
                "duplicate".into(),
                u8::from(arrival == Arrival::AlreadyPresent).into(),
            );
            answer(format, StatusCode::OK, resp)
        }
        Err(e) => e.answer(format, Map::new()),
    }
}

async fn receive(
    state: &AppState,
    path: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StoredPath, Arrival), Error> {
    let path = path.and_then(StoredPath::parse).ok_or_else(|| {
        Error::BadRequest("`path` is not a stored-file path like 2014/4/15/{uuid}.jpg".into())
    })?;
    let limit = state.config.max_file_bytes;
    // The same checks as an upload: a peer with a stricter `allowed_types`
    // refuses what it would refuse from a client (the sender then keeps the
    // copy in its journal for an operator), and a sender is not trusted to
    // have checked the content. Its metadata is not stripped: the sender
    // stored it as it comes, and the hash must match what it stored.
    let rules = ImageRules {
        limits: state.config.images.limits(),
        strip_metadata: false,
    };
    let begin = || {
        state
            .storage
            .begin(limit, &state.config.allowed_types, rules)
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).ok();
    let streamed = boundary.is_some();
    let arrival = match boundary {
        Some(boundary) => {
            let (written, expected) = form(state, begin()?, boundary, body).await?;
            state
                .storage
                .commit_replica(written, &path, &expected)
                .await?
        }
        None => {
            let (incoming, expected) = raw(state, begin, headers, body).await?;
            state
                .storage
                .commit_replica_incoming(incoming, &path, &expected)
                .await?
        }
    };
    tracing::info!(%path, ?arrival, streamed, "replica received");
    Ok((path, arrival))
}

/// The body is the file; its hash came first, in `X-Content-SHA256`.
/// Returns the file received, not yet finished.
async fn raw(
    state: &AppState,
    begin: impl FnOnce() -> Result<Incoming, crate::storage::StorageError>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Incoming, String), Error> {
    let expected = headers
        .get(HASH_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sha256(v))
        .ok_or_else(|| Error::BadRequest("X-Content-SHA256 must be 64 hex digits".into()))?
        .to_ascii_lowercase();
    let limit = state.config.max_file_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::TooLarge(format!(
            "the replica is larger than the limit of {limit} bytes"
        )));
    }
    let mut incoming = begin()?;
    let mut stream = std::pin::pin!(paced(body, state.pace()));
    while let Some(chunk) = stream.next().await {
        incoming.write(chunk?).await?;
    }
    Ok((incoming, expected))
}

/// The body is a form: the part `file`, then the field `sha256`, then its
/// end. The file is flushed while the sender finishes its own; the hash
/// comes after that.
async fn form(
    state: &AppState,
    mut incoming: Incoming,
    boundary: String,
    body: Body,
) -> Result<(Written, String), Error> {
    let limit = state.config.max_file_bytes;
    let constraints = multer::Constraints::new()
        .allowed_fields(vec![FILE_FIELD, HASH_FIELD])
        .size_limit(
            multer::SizeLimit::new()
                .whole_stream(limit.saturating_add(HEADER_BYTES))
                .for_field(HASH_FIELD, 64),
        );
    let budget = HeaderBudget::new(HEADER_BYTES);
    let stream = budget.guard(paced(body, state.pace()));
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    let next_field = async |form: &mut multer::Multipart<'static>| {
        budget.open();
        let next = form.next_field().await.map_err(multipart_error);
        budget.close();
        next
    };
    let mut file = next_field(&mut form)
        .await?
        .filter(|f| f.name() == Some(FILE_FIELD))
        .ok_or_else(|| {
            Error::BadRequest("a streamed replica starts with its `file` part".into())
        })?;
    while let Some(chunk) = file.next().await {
        incoming.write(chunk.map_err(multipart_error)?).await?;
    }
    // multer reads the next field only once this one is gone.
    drop(file);
    let written = incoming.finish().await?;
    let hash = next_field(&mut form)
        .await?
        .filter(|f| f.name() == Some(HASH_FIELD))
        .ok_or_else(|| Error::BadRequest("the replica ended without its `sha256` field".into()))?
        .text()
        .await
        .map_err(multipart_error)?;
    if !is_sha256(&hash) {
        return Err(Error::BadRequest("`sha256` must be 64 hex digits".into()));
    }
    if next_field(&mut form).await?.is_some() {
        return Err(Error::BadRequest("nothing may follow `sha256`".into()));
    }
    Ok((written, hash.to_ascii_lowercase()))
}

fn is_sha256(v: &str) -> bool {
    v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())
}
