//! The upload page `/.m/upload` (and the original's `/.m/upload.aspx`)
//! (SPEC §2.4). The page and its assets are compiled into the binary from
//! `static/`, so a deployment is one executable.
//!
//! The page itself holds no secret: it is served to anyone, and asks for a
//! key or an upload token when the address brings none (an upload token
//! travels in the fragment, `#token=…`, which no browser sends to a
//! server). Only a key that is offered and wrong gets the 403 page, as in
//! the original.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth;
use super::params::Params;
use crate::auth::Action;

const PAGE: &str = include_str!("../../static/upload.html");
const FORBIDDEN: &str = include_str!("../../static/forbidden.html");
const SCRIPT: &str = include_str!("../../static/upload.js");
const STYLE: &str = include_str!("../../static/upload.css");
/// tus-js-client's browser bundle, vendored unchanged (SPEC §13: the page
/// sends large files through tus), and the licences it must travel with.
const TUS_CLIENT: &str = include_str!("../../static/vendor/tus.min.js");
const TUS_CLIENT_LICENSE: &str = include_str!("../../static/vendor/tus.min.js.LICENSE.txt");

const HTML: &str = "text/html; charset=utf-8";
/// The page as shipped says the default threshold; the served one says the
/// configured `[resumable] page_threshold_bytes`.
const THRESHOLD_ATTRIBUTE: &str = "data-tus-threshold=\"8388608\"";
/// The 403 page has its style inline and nothing else.
const FORBIDDEN_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The page runs only its own script and style, talks only to this server,
/// shows previews from `blob:` URLs and thumbnails from where its links
/// point (the configured `domain`, often a CDN), and is never framed
/// (clickjacking a page that holds a key).
fn page_policy(domain: Option<&str>) -> String {
    // Only the origin: a `domain` with a path would otherwise bring its
    // characters into the header, and CSP paths stop matching after a
    // redirect anyway.
    let links = domain
        .and_then(|d| reqwest::Url::parse(d).ok())
        .map(|url| url.origin())
        .filter(|origin| origin.is_tuple())
        .map(|origin| format!(" {}", origin.ascii_serialization()))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; \
         img-src 'self' blob: data:{links}; connect-src 'self'; frame-ancestors 'none'; \
         base-uri 'none'; form-action 'none'"
    )
}

pub async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let params = Params::parse(request.uri().query());
    // An empty key is none: the page asks for one.
    let offered = auth::presented_key(&params, request.headers()).is_some_and(|k| !k.is_empty());
    let refused =
        offered && auth::permit(&state, &params, request.headers(), Action::Page).is_err();
    let (status, body, policy) = if refused {
        (
            StatusCode::FORBIDDEN,
            Cow::Borrowed(FORBIDDEN),
            FORBIDDEN_POLICY.to_owned(),
        )
    } else {
        (
            StatusCode::OK,
            Cow::Owned(page(state.config.resumable.page_threshold_bytes)),
            page_policy(state.config.domain.as_deref()),
        )
    };
    (
        status,
        [
            (header::CONTENT_TYPE, HTML),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, policy.as_str()),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// The upload page, telling its script above which size a file goes
/// through tus.
fn page(threshold: u64) -> String {
    PAGE.replacen(
        THRESHOLD_ATTRIBUTE,
        &format!("data-tus-threshold=\"{threshold}\""),
        1,
    )
}

/// `/.m/upload.js`, `/.m/upload.css`, `/.m/tus.min.js` and its licence
/// text; no key needed, nothing secret.
pub async fn asset(Path(name): Path<String>) -> Response {
    let (content_type, body) = match name.as_str() {
        "upload.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "upload.css" => ("text/css; charset=utf-8", STYLE),
        "tus.min.js" => ("text/javascript; charset=utf-8", TUS_CLIENT),
        "tus.min.js.LICENSE.txt" => ("text/plain; charset=utf-8", TUS_CLIENT_LICENSE),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_may_show_images_from_the_links_origin_only() {
        let without = page_policy(None);
        assert!(without.contains("img-src 'self' blob: data:;"), "{without}");
        let cdn = page_policy(Some("https://CDN.example.com:443/img;x"));
        assert!(
            cdn.contains("img-src 'self' blob: data: https://cdn.example.com;"),
            "{cdn}"
        );
        assert!(!cdn.contains(";x"), "{cdn}");
        let port = page_policy(Some("http://localhost:8081"));
        assert!(
            port.contains("img-src 'self' blob: data: http://localhost:8081;"),
            "{port}"
        );
        assert!(port.contains("connect-src 'self';"), "{port}");
    }

    #[test]
    fn the_page_carries_the_configured_threshold() {
        assert!(PAGE.contains(THRESHOLD_ATTRIBUTE));
        let served = page(3_000_000);
        assert!(served.contains("<html lang=\"en\" data-tus-threshold=\"3000000\">"));
        assert!(!served.contains(THRESHOLD_ATTRIBUTE));
    }
}
