//! The upload page `/.m/upload` (and the original's `/.m/upload.aspx`), key
//! in the URL (SPEC §2.4). The page and its assets are compiled into the
//! binary from `static/`, so a deployment is one executable.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth;
use super::params::Params;

const PAGE: &str = include_str!("../../static/upload.html");
const FORBIDDEN: &str = include_str!("../../static/forbidden.html");
const SCRIPT: &str = include_str!("../../static/upload.js");
const STYLE: &str = include_str!("../../static/upload.css");

const HTML: &str = "text/html; charset=utf-8";

pub async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let params = Params::parse(request.uri().query());
    let (status, body) = match auth::check(&state.config.security_key, &params, request.headers()) {
        Ok(()) => (StatusCode::OK, PAGE),
        Err(_) => (StatusCode::FORBIDDEN, FORBIDDEN),
    };
    (
        status,
        [
            (header::CONTENT_TYPE, HTML),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `/.m/upload.js` and `/.m/upload.css`; no key needed, nothing secret.
pub async fn asset(Path(name): Path<String>) -> Response {
    let (content_type, body) = match name.as_str() {
        "upload.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "upload.css" => ("text/css; charset=utf-8", STYLE),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
