//! `GET /do.ashx?action=stats`: download counts (`crate::downloads`).
//!
//! `path={stored path}` answers `downloads`, the served GETs of that file
//! counted here (a variant's name answers for its original); with
//! `cluster=1` each server's count too (`servers`, this one first) and
//! their sum (`total`). Peers are asked with their peer credential and
//! without `cluster`, so a question never travels further; a peer that does
//! not answer is listed with `error` = `unreachable` and left out of the
//! sum, never turned into a failure of the whole answer.
//!
//! `day={yyyy/M/d}&top={N}` answers the N (default 10, at most 1000) most
//! read files of that day folder here, most read first (`files`).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::Error;
use super::params::Params;
use super::respond::{Format, answer};
use crate::config::Peer;
use crate::downloads::CountsError;
use crate::index::day_number;
use crate::replication::{SERVER_HEADER, envelope, is_success, read_limited};
use crate::storage::{StoredPath, VariantPath};

const DEFAULT_TOP: usize = 10;
const MAX_TOP: usize = 1000;
/// A peer's stats answer is a few fields.
const PEER_ANSWER_LIMIT: usize = 4 * 1024;

pub async fn handle(state: Arc<AppState>, format: Format, params: &Params) -> Response {
    let result = match (params.path.as_deref(), params.day.as_deref()) {
        (Some(path), _) => {
            let cluster = params.cluster.as_deref() == Some("1");
            of_path(&state, path, cluster).await
        }
        (None, Some(day)) => top_of_day(&state, day, params.top.as_deref()).await,
        (None, None) => Err(Error::BadRequest(
            "stats takes `path` (a stored file) or `day` (a day folder like 2026/12/1)".into(),
        )),
    };
    match result {
        Ok(resp) => answer(format, StatusCode::OK, resp),
        Err(e) => e.answer(format, Map::new()),
    }
}

async fn of_path(state: &AppState, path: &str, cluster: bool) -> Result<Map<String, Value>, Error> {
    let path = StoredPath::parse(path)
        .or_else(|| VariantPath::parse(path).map(|v| v.original().clone()))
        .ok_or_else(|| Error::BadRequest("`path` is a stored file like 2026/12/1/….jpg".into()))?;
    let here = state.downloads.of(&path).await.map_err(counts_error)?;
    let mut resp = Map::new();
    resp.insert("success".into(), 1.into());
    resp.insert("path".into(), path.to_string().into());
    resp.insert("downloads".into(), here.into());
    if cluster {
        let asked = state
            .config
            .peers
            .iter()
            .map(|peer| ask(state, peer, &path));
        let answers = futures_util::future::join_all(asked).await;
        let mut total = here;
        let mut servers = vec![json!({"name": state.config.server_name, "downloads": here})];
        for (peer, answer) in state.config.peers.iter().zip(answers) {
            servers.push(match answer {
                Ok(n) => {
                    total = total.saturating_add(n);
                    json!({"name": peer.name, "downloads": n})
                }
                Err(why) => json!({"name": peer.name, "error": why}),
            });
        }
        resp.insert("servers".into(), servers.into());
        resp.insert("total".into(), total.into());
    }
    Ok(resp)
}

/// The count of `path` at `peer`, or why there is none.
async fn ask(state: &AppState, peer: &Peer, path: &StoredPath) -> Result<u64, String> {
    let mut url = peer.uri.clone();
    url.query_pairs_mut()
        .append_pair("action", "stats")
        .append_pair("path", &path.to_string())
        .append_pair("format", "json");
    let exchange = async {
        let response = state
            .fetcher
            .client()
            .get(url)
            .header("X-Security-Key", &peer.key)
            .send()
            .await
            .map_err(|_| "unreachable".to_owned())?;
        let status = response.status();
        let from_peer = response
            .headers()
            .get(SERVER_HEADER)
            .is_some_and(|v| v.as_bytes() == peer.name.as_bytes());
        let body = read_limited(response, PEER_ANSWER_LIMIT, || ())
            .await
            .map_err(|_| "unreachable".to_owned())?;
        if !status.is_success() {
            return Err(format!("answered {}", status.as_u16()));
        }
        if !from_peer {
            return Err("another server answered".to_owned());
        }
        envelope(&body)
            .filter(is_success)
            .and_then(|resp| resp.get("downloads").and_then(Value::as_u64))
            .ok_or_else(|| "not a stats answer".to_owned())
    };
    tokio::time::timeout(state.config.replication.idle_timeout, exchange)
        .await
        .unwrap_or_else(|_| Err("unreachable".to_owned()))
}

async fn top_of_day(
    state: &AppState,
    day: &str,
    top: Option<&str>,
) -> Result<Map<String, Value>, Error> {
    let date = NaiveDate::parse_from_str(day, "%Y/%m/%d")
        .map_err(|_| Error::BadRequest("`day` is a day folder like 2026/12/1".into()))?;
    let top = match top {
        None => DEFAULT_TOP,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_TOP).contains(n))
            .ok_or_else(|| Error::BadRequest(format!("`top` is a number from 1 to {MAX_TOP}")))?,
    };
    let files: Vec<Value> = state
        .downloads
        .top(day_number(date), top)
        .await
        .map_err(counts_error)?
        .into_iter()
        .map(|(path, n)| json!({"path": path.to_string(), "downloads": n}))
        .collect();
    let mut resp = Map::new();
    resp.insert("success".into(), 1.into());
    resp.insert("day".into(), crate::repair::wire::day_text(date).into());
    resp.insert("files".into(), files.into());
    Ok(resp)
}

fn counts_error(e: CountsError) -> Error {
    match e {
        CountsError::NoIndex => Error::BadRequest(e.to_string()),
        CountsError::Index(e) => Error::internal(format!("download counts: {e}")),
    }
}
