//! One log line per request (SPEC §6): method, target with the key
//! redacted, status, bytes in and out, duration, client address; the same
//! status and bytes are counted for `/metrics`.

use std::sync::Arc;

use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;

use super::AppState;
use super::origin::Origin;
use super::params::redact;

pub async fn request_line(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let target = request
        .uri()
        .path_and_query()
        .map(|pq| redact(pq.as_str(), &state.secrets()).into_owned())
        .unwrap_or_default();
    let client = Origin::of(&request, &state.config.trusted_proxies).client;
    let bytes_in = content_length(request.headers());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let bytes_out = HttpBody::size_hint(response.body())
        .exact()
        .unwrap_or_else(|| content_length(response.headers()));
    state.metrics.record(status, bytes_in, bytes_out);
    tracing::info!(
        target: "request",
        %method,
        %target,
        status,
        bytes_in,
        bytes_out,
        ms = start.elapsed().as_millis() as u64,
        client = %client.map(|c| c.to_string()).unwrap_or_default(),
    );
    response
}

fn content_length(headers: &axum::http::HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
