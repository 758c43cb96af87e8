//! The repair actions a peer asks this server (SPEC §4a), with this
//! server's key like `sync`, always answered in JSON:
//! `GET action=digest[&prefix=2026|2026/12][&after=N]`: a node of the
//! digest tree and a page of its children; `GET
//! action=list&day=2026/12/1[&after=NAME]`: a page of that day's files and
//! tombstones. Both read the index only, never the files. A request with
//! `after` (empty for the first page) is answered one bounded page at a
//! time with `next` when more follow; one without it, from a peer of the
//! previous version, gets the whole node or day as before (see
//! `repair::wire`). Deciding what to fetch is the asking server's pass
//! (`repair::pass`), not this file's.

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
use crate::repair::wire::{
    Child, DIGEST_PAGE, DigestAnswer, LIST_PAGE, ListAnswer, ListedFile, day_text,
};

pub async fn digest(state: Arc<AppState>, prefix: Option<&str>, after: Option<&str>) -> Response {
    let Some(prefix) = Prefix::parse(prefix.unwrap_or("")) else {
        return Error::BadRequest("`prefix` is a year (2026) or a year and month (2026/12)".into())
            .answer(Format::Json, Map::new());
    };
    // None: the whole node (an older peer); Some(None): the first page.
    let page = match after {
        None => None,
        Some("") => Some(None),
        Some(text) => match text.parse::<u32>() {
            Ok(name) => Some(Some(name)),
            Err(_) => {
                return Error::BadRequest("`after` is the number of a year, month or day".into())
                    .answer(Format::Json, Map::new());
            }
        },
    };
    let days = match blocking(state.storage.index(), Index::days).await {
        Ok(days) => days,
        Err(e) => return e.answer(Format::Json, Map::new()),
    };
    let node = level(&days, prefix);
    let mut children: Vec<Child> = node
        .children
        .into_iter()
        .filter(|(name, _)| page.flatten().is_none_or(|after| *name > after))
        .map(|(name, digest)| Child {
            name,
            digest: digest.to_string(),
        })
        .collect();
    let mut next = None;
    if page.is_some() && children.len() > DIGEST_PAGE {
        children.truncate(DIGEST_PAGE);
        next = children.last().map(|c| c.name);
    }
    ok(&DigestAnswer {
        success: 1,
        prefix: prefix.to_string(),
        digest: node.digest.to_string(),
        children,
        next,
    })
}

pub async fn list(state: Arc<AppState>, day: Option<&str>, after: Option<&str>) -> Response {
    let Some(date) = day.and_then(|d| NaiveDate::parse_from_str(d, "%Y/%m/%d").ok()) else {
        return Error::BadRequest("`day` is a day folder like 2026/12/1".into())
            .answer(Format::Json, Map::new());
    };
    if after.is_some_and(|a| a.len() > 64) {
        return Error::BadRequest("`after` is a file name".into()).answer(Format::Json, Map::new());
    }
    let number = day_number(date);
    let (after, limit) = match after {
        None => (None, usize::MAX),
        Some(after) => ((!after.is_empty()).then(|| after.to_owned()), LIST_PAGE),
    };
    let read = move |i: &Index| i.list_day_page(number, after.as_deref(), limit);
    let (list, next) = match blocking(state.storage.index(), read).await {
        Ok(page) => page,
        Err(e) => return e.answer(Format::Json, Map::new()),
    };
    ok(&ListAnswer {
        success: 1,
        day: day_text(date),
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
        next,
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
    match serde_json::to_value(body) {
        Ok(Value::Object(resp)) => answer(Format::Json, StatusCode::OK, resp),
        Ok(_) => {
            Error::internal("a repair answer is not an object").answer(Format::Json, Map::new())
        }
        Err(e) => Error::internal(e).answer(Format::Json, Map::new()),
    }
}
