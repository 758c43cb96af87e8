//! `POST /do.ashx?action=delete&path=…`: deletes a stored file here and on
//! every peer (SPEC §4a). The name is tombstoned durably before its file is
//! removed, so nothing (a late replica, repair, read-through) brings it back;
//! deleting a name that is not here succeeds and leaves the tombstone too.
//!
//! A request that names its sender in [`FROM_HEADER`] comes from a peer
//! passing its own delete on: it is applied here only, never passed further
//! (no loops). Any other is passed on to every peer; a peer that cannot be
//! told now is journaled and learns it at a replay. The answer lists each
//! peer's outcome, as an upload's does.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

use super::AppState;
use super::error::Error;
use super::respond::{Format, answer};
use super::upload::replicas_answer;
use crate::replication::{self, FROM_HEADER};
use crate::storage::StoredPath;

pub async fn handle(
    state: Arc<AppState>,
    format: Format,
    path: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    match delete(&state, path, headers).await {
        Ok((path, replicas)) => {
            let mut resp = Map::new();
            resp.insert("success".into(), 1.into());
            resp.insert("path".into(), path.to_string().into());
            if let Some(replicas) = replicas {
                resp.insert("replicas".into(), Value::Array(replicas));
            }
            answer(format, StatusCode::OK, resp)
        }
        Err(e) => e.answer(format, Map::new()),
    }
}

/// Deletes here, then passes the delete on unless a peer sent it; the
/// peers' outcomes, or `None` for a peer's delete.
async fn delete(
    state: &AppState,
    path: Option<&str>,
    headers: &HeaderMap,
) -> Result<(StoredPath, Option<Vec<Value>>), Error> {
    let path = path.and_then(StoredPath::parse).ok_or_else(|| {
        Error::BadRequest("`path` is not a stored-file path like 2014/4/15/{uuid}.jpg".into())
    })?;
    let from_peer = match headers.get(FROM_HEADER) {
        None => false,
        Some(name) if state.replicator.peer_named(name.as_bytes()) => true,
        Some(_) => {
            return Err(Error::BadRequest(format!(
                "{FROM_HEADER} names no peer of servers.xml.config"
            )));
        }
    };
    state.storage.delete(&path).await?;
    tracing::info!(%path, from_peer, "deleted");
    if from_peer {
        return Ok((path, None));
    }
    let outcomes = replication::announce_delete(
        &state.replicator,
        &state.journal,
        &state.config.server_name,
        &path,
    )
    .await
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Error::DiskFull,
        _ => Error::internal(format!("journal append failed: {e}")),
    })?;
    Ok((path, Some(replicas_answer(&outcomes))))
}
