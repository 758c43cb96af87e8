//! `PUT|POST /do.ashx?action=sync&path=…`: a replica from a peer (SPEC §2.3,
//! §4). The path must be of the stored-file pattern, the body must hash to
//! `X-Content-SHA256`; it is written like an upload (temporary file, fsync,
//! rename) under the sender's name. Receiving a file already present is a
//! success. A replica is never forwarded: that is what prevents loops.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::Map;

use super::AppState;
use super::body::paced;
use super::error::Error;
use super::respond::{Format, answer};
use crate::storage::{Arrival, ImageRules, StoredPath};

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
    let expected = headers
        .get(HASH_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
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
    // The same checks as an upload: a peer with a stricter `allowed_types`
    // refuses what it would refuse from a client (the sender then keeps the
    // copy in its journal for an operator), and a sender is not trusted to
    // have checked the content. Its metadata is not stripped: the sender
    // stored it as it comes, and the hash must match what it stored.
    let rules = ImageRules {
        limits: state.config.images.limits(),
        strip_metadata: false,
    };
    let mut incoming = state
        .storage
        .begin(limit, &state.config.allowed_types, rules)?;
    let mut stream = std::pin::pin!(paced(body, state.pace()));
    while let Some(chunk) = stream.next().await {
        incoming.write(chunk?).await?;
    }
    let written = incoming.finish().await?;
    let arrival = state
        .storage
        .commit_replica(written, &path, &expected)
        .await?;
    tracing::info!(%path, ?arrival, "replica received");
    Ok((path, arrival))
}
