//! `GET /healthz` (no key): 200 while `data_dir` takes writes, with the
//! journal backlog; 503 otherwise, for load balancers and monitoring.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

pub async fn handle(State(state): State<Arc<AppState>>) -> Response {
    let writable = state.storage.probe().await;
    let journal = state.journal.read().await;
    let backlog = journal.as_ref().map(|(entries, _)| entries.len()).ok();
    let unreadable = journal.as_ref().map(|(_, n)| *n).ok();
    let healthy = writable.is_ok() && journal.is_ok();
    if let Err(e) = &writable {
        tracing::error!(error = %e, "data_dir is not writable");
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if healthy { "ok" } else { "failing" },
        "server": state.config.server_name,
        "data_dir_writable": writable.is_ok(),
        "journal_backlog": backlog,
        "journal_unreadable_lines": unreadable,
        "peers": state.replicator.peers().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
    });
    (status, Json(body)).into_response()
}
