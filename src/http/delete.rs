//! `POST /do.ashx?action=delete&path=…` and `action=restore&path=…` (SPEC
//! §4a), and `action=forget`, with which a peer drops a tombstone that no
//! server needs any more.
//!
//! Delete: a name this server holds (or held: a tombstone, the trash) is
//! tombstoned durably before its file goes to the trash, so nothing (a
//! late replica, repair, read-through) brings it back. A name never seen
//! here leaves no state here; the delete is passed on to every peer, and
//! the tombstone is kept here after all when a peer held the name or could
//! not be asked (it may hold it). A name no server of the cluster held
//! therefore leaves nothing anywhere (a provisional tombstone would: a
//! peer's repair pass could copy it meanwhile). A date that cannot hold a file (in
//! the future, or before this service could have stored one) is refused.
//!
//! Restore: the newest file of the name in this server's trash comes back,
//! its tombstone goes, and the restore is passed on to every peer, which
//! restores its own copy from its trash; a peer that is down learns it
//! from the journal. A name that is not in this server's trash is 404.
//!
//! A request that names its sender in [`FROM_HEADER`] comes from a peer
//! passing its own delete or restore on: it is applied here only, never
//! passed further (no loops), and its answer says whether this server had
//! the name. Any other is passed on to every peer; a peer that cannot be
//! told now is journaled. The answer lists each peer's outcome, as an
//! upload's does.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{Datelike, NaiveDate};
use serde_json::{Map, Value};

use super::AppState;
use super::error::Error;
use super::respond::{Format, answer};
use super::upload::replicas_answer;
use crate::replication::{self, FROM_HEADER, Notice};
use crate::storage::StoredPath;

/// No stored file is older than this year: the service did not exist.
const OLDEST_YEAR: i32 = 2000;

pub async fn handle(
    state: Arc<AppState>,
    format: Format,
    path: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    respond(format, delete(&state, path, headers).await)
}

pub async fn restore(
    state: Arc<AppState>,
    format: Format,
    path: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    respond(format, restore_name(&state, path, headers).await)
}

/// A peer's word that every server has the tombstone of `path` and none
/// needs it any more: it is dropped here.
pub async fn forget(state: Arc<AppState>, path: Option<&str>, headers: &HeaderMap) -> Response {
    let forgotten = async {
        let path = parse(path)?;
        if !from_peer(&state, headers)? {
            return Err(Error::BadRequest(format!(
                "forget is sent by a peer, naming itself in {FROM_HEADER}"
            )));
        }
        state.storage.forget(vec![path.clone()]).await?;
        tracing::info!(%path, "tombstone dropped: every server has it");
        Ok(Done {
            path,
            replicas: None,
            had: None,
        })
    };
    respond(Format::Json, forgotten.await)
}

/// What a delete or restore did.
struct Done {
    path: StoredPath,
    /// The peers' outcomes; `None` for a peer's request.
    replicas: Option<Vec<Value>>,
    /// For a peer's request: whether this server had the name.
    had: Option<(&'static str, bool)>,
}

fn respond(format: Format, done: Result<Done, Error>) -> Response {
    match done {
        Ok(done) => {
            let mut resp = Map::new();
            resp.insert("success".into(), 1.into());
            resp.insert("path".into(), done.path.to_string().into());
            if let Some((field, had)) = done.had {
                resp.insert(field.into(), u8::from(had).into());
            }
            if let Some(replicas) = done.replicas {
                resp.insert("replicas".into(), Value::Array(replicas));
            }
            answer(format, StatusCode::OK, resp)
        }
        Err(e) => e.answer(format, Map::new()),
    }
}

fn parse(path: Option<&str>) -> Result<StoredPath, Error> {
    path.and_then(StoredPath::parse).ok_or_else(|| {
        Error::BadRequest("`path` is not a stored-file path like 2014/4/15/{uuid}.jpg".into())
    })
}

/// Whether the request comes from a peer passing its own request on.
fn from_peer(state: &AppState, headers: &HeaderMap) -> Result<bool, Error> {
    match headers.get(FROM_HEADER) {
        None => Ok(false),
        Some(name) if state.replicator.peer_named(name.as_bytes()) => Ok(true),
        Some(_) => Err(Error::BadRequest(format!(
            "{FROM_HEADER} names no peer of servers.xml.config"
        ))),
    }
}

/// Refuses a date no stored file can have: later than tomorrow (a peer's
/// clock or time zone may be a day ahead), or before the service existed.
fn check_date(date: NaiveDate) -> Result<(), Error> {
    let tomorrow = chrono::Local::now().date_naive() + chrono::Days::new(1);
    if date > tomorrow || date.year() < OLDEST_YEAR {
        return Err(Error::BadRequest(format!(
            "no file can be stored under {}: the date is in the future or before {OLDEST_YEAR}",
            date.format("%Y/%-m/%-d")
        )));
    }
    Ok(())
}

fn journal_error(e: &std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Error::DiskFull,
        _ => Error::internal(format!("journal append failed: {e}")),
    }
}

/// Deletes here, then passes the delete on unless a peer sent it.
async fn delete(state: &AppState, path: Option<&str>, headers: &HeaderMap) -> Result<Done, Error> {
    let path = parse(path)?;
    let from_peer = from_peer(state, headers)?;
    check_date(path.date())?;
    if from_peer {
        let held = state.storage.delete_if_held(&path).await?;
        tracing::info!(%path, from_peer, held, "deleted");
        return Ok(Done {
            path,
            replicas: None,
            had: Some((Notice::Delete.had_field(), held)),
        });
    }
    // A name held here is tombstoned before the peers are told: nothing
    // may bring it back meanwhile. One never seen here is tombstoned only
    // if a peer held it or could not be asked.
    let held = state.storage.delete_if_held(&path).await?;
    tracing::info!(%path, from_peer, held, "deleted");
    let announced = replication::announce(
        &state.replicator,
        &state.journal,
        Notice::Delete,
        &state.config.server_name,
        &path,
    )
    .await
    .map_err(|e| journal_error(&e))?;
    if !held {
        if announced.maybe_had {
            state.storage.delete(&path).await?;
        } else {
            tracing::info!(%path, "no server held this name; nothing is kept");
        }
    }
    Ok(Done {
        path,
        replicas: Some(replicas_answer(&announced.outcomes)),
        had: None,
    })
}

/// Restores here, then passes the restore on unless a peer sent it.
async fn restore_name(
    state: &AppState,
    path: Option<&str>,
    headers: &HeaderMap,
) -> Result<Done, Error> {
    let path = parse(path)?;
    let from_peer = from_peer(state, headers)?;
    if !from_peer && !state.storage.in_trash(&path).await? {
        return Err(Error::NotFound(format!(
            "{path} is not in this server's trash"
        )));
    }
    let restored = state.storage.restore(&path).await?;
    tracing::info!(%path, from_peer, restored, "restored");
    if from_peer {
        return Ok(Done {
            path,
            replicas: None,
            had: Some((Notice::Restore.had_field(), restored)),
        });
    }
    let announced = replication::announce(
        &state.replicator,
        &state.journal,
        Notice::Restore,
        &state.config.server_name,
        &path,
    )
    .await
    .map_err(|e| journal_error(&e))?;
    Ok(Done {
        path,
        replicas: Some(replicas_answer(&announced.outcomes)),
        had: None,
    })
}
