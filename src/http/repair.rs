//! The repair actions a peer asks this server (SPEC §4a), with this
//! server's key like `sync`, always answered in JSON:
//! `GET action=digest[&prefix=2026|2026/12]`: a node of the digest tree and
//! its children; `GET action=list&day=2026/12/1`: that day's files and
//! tombstones. Both read the index only, never the files. Deciding what to
//! fetch is the asking server's pass (`repair::pass`), not this file's.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{Map, Value};

use super::AppState;
use super::error::Error;
use super::respond::{Format, answer};
use crate::index::{Index, Prefix, day_number, level};
use crate::repair::wire::{Child, DigestAnswer, ListAnswer, ListedFile};

pub async fn digest(state: Arc<AppState>, prefix: Option<&str>) -> Response {
    let Some(prefix) = Prefix::parse(prefix.unwrap_or("")) else {
        return Error::BadRequest("`prefix` is a year (2026) or a year and month (2026/12)".into())
            .answer(Format::Json, Map::new());
    };
    let days = match blocking(state.storage.index(), Index::days).await {
        Ok(days) => days,
        Err(e) => return e.answer(Format::Json, Map::new()),
    };
    let node = level(&days, prefix);
    ok(&DigestAnswer {
        prefix: prefix.to_string(),
        digest: node.digest.to_string(),
        children: node
            .children
            .into_iter()
            .map(|(name, digest)| Child {
                name,
                digest: digest.to_string(),
            })
            .collect(),
    })
}

pub async fn list(state: Arc<AppState>, day: Option<&str>) -> Response {
    let Some(date) = day.and_then(|d| NaiveDate::parse_from_str(d, "%Y/%m/%d").ok()) else {
        return Error::BadRequest("`day` is a day folder like 2026/12/1".into())
            .answer(Format::Json, Map::new());
    };
    let number = day_number(date);
    let list = match blocking(state.storage.index(), move |i| i.list_day(number)).await {
        Ok(list) => list,
        Err(e) => return e.answer(Format::Json, Map::new()),
    };
    ok(&ListAnswer {
        day: date.format("%Y/%-m/%-d").to_string(),
        files: list
            .files
            .into_iter()
            .map(|f| ListedFile {
                path: f.path.to_string(),
                size: f.size,
                sha256: f.sha256,
                added: f.added,
            })
            .collect(),
        tombstones: list.tombstones.iter().map(ToString::to_string).collect(),
    })
}

/// Runs an index read on a blocking thread.
async fn blocking<T: Send + 'static>(
    index: Option<&Index>,
    read: impl FnOnce(&Index) -> Result<T, crate::index::IndexError> + Send + 'static,
) -> Result<T, Error> {
    let index = index
        .ok_or_else(|| {
            Error::BadRequest("this server stores into a bucket and keeps no index".into())
        })?
        .clone();
    tokio::task::spawn_blocking(move || read(&index))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
}

fn ok(body: &impl Serialize) -> Response {
    let mut resp = Map::new();
    resp.insert("success".into(), 1.into());
    match serde_json::to_value(body) {
        Ok(Value::Object(fields)) => resp.extend(fields),
        Ok(_) => {}
        Err(e) => return Error::internal(e).answer(Format::Json, Map::new()),
    }
    answer(Format::Json, StatusCode::OK, resp)
}
