//! Cross-origin requests (SPEC §12): pages of the sites listed in `[cors]
//! allowed_origins` may call this service from a browser.
//!
//! One layer around the whole router. A preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) from a listed origin is answered here,
//! before any route or key check: a preflight never carries a credential.
//! Every other answer to a listed origin names that origin (never `*`, and
//! never `Access-Control-Allow-Credentials`: no cookie is ever read here, a
//! page sends a key or a token in a header it sets itself) and exposes the
//! headers a page reads. An origin not listed gets no CORS header, so the
//! browser keeps its answer from the page.
//!
//! Stored files are the exception, and not this layer's: they are public
//! and carry `Access-Control-Allow-Origin: *` whatever the list
//! (`files.rs`), so that canvas editors on any site can read their pixels.
//! This layer leaves an answer that already has that header alone.
//!
//! With an empty list the layer is not installed at all (`router`): the
//! service answers exactly as before CORS existed and pays nothing.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

const METHODS: HeaderValue =
    HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
/// The key and token headers, the form's type, and what resumable uploads
/// (tus) send.
const REQUEST_HEADERS: HeaderValue = HeaderValue::from_static(
    "X-Security-Key, X-Upload-Token, Authorization, Content-Type, \
     Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, Upload-Checksum, \
     Upload-Defer-Length, Upload-Concat, X-HTTP-Method-Override, X-Requested-With",
);
/// What a page reads from an answer beyond the CORS-safelisted headers.
const EXPOSED: HeaderValue = HeaderValue::from_static(
    "Location, Upload-Offset, Upload-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, \
     Tus-Extension, Upload-Expires, ETag, X-Upload-Link, X-Upload-Result",
);
/// Two hours: Chromium's own cap; a browser asks again after it.
const MAX_AGE: HeaderValue = HeaderValue::from_static("7200");
const ORIGIN: HeaderValue = HeaderValue::from_static("Origin");

pub async fn layer(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .filter(|origin| state.config.cors.allows(origin.as_bytes()))
        .cloned();
    let Some(origin) = origin else {
        let mut response = next.run(request).await;
        vary_on_origin(response.headers_mut());
        return response;
    };
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight(origin);
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
        headers.append(header::VARY, ORIGIN);
    }
    response
}

fn preflight(origin: HeaderValue) -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
            (header::ACCESS_CONTROL_ALLOW_METHODS, METHODS),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, REQUEST_HEADERS),
            (header::ACCESS_CONTROL_MAX_AGE, MAX_AGE),
            (header::VARY, ORIGIN),
        ],
    )
        .into_response()
}

/// An answer that depends on `Origin` says so, even to a request without
/// one, so that no cache hands a page another origin's answer (or one
/// without the header it needs). Stored files do not depend on it.
fn vary_on_origin(headers: &mut HeaderMap) {
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.append(header::VARY, ORIGIN);
    }
}
