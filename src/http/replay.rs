//! `GET|POST /do.ashx?action=uploaderrors`: replay the failure journal now
//! and answer with what happened (SPEC §2.2). A call while a replay runs
//! answers `busy` and starts nothing.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};

use super::AppState;
use super::error::Error;
use super::respond::{Format, answer};

pub async fn handle(state: Arc<AppState>, format: Format) -> Response {
    match state.replayer.replay(None).await {
        Ok(report) => {
            let mut resp = Map::new();
            resp.insert("success".into(), 1.into());
            if let Ok(Value::Object(fields)) = serde_json::to_value(&report) {
                resp.extend(fields);
            }
            answer(format, StatusCode::OK, resp)
        }
        Err(e) => Error::internal(format!("replay failed: {e}")).answer(format, Map::new()),
    }
}
