//! `GET|HEAD` of a stored file held in an S3 bucket (SPEC §11): the object
//! proxied with the same answers a file on disk gets from `files.rs`.
//!
//! The store does the byte work; this turns the client's `Range` and
//! `If-None-Match` into what to ask the store, and the store's answer into
//! ours: its ETag, the image type, long immutable caching, `nosniff`. The
//! body streams through chunk by chunk, never whole in memory. A plain GET
//! costs one request to the store; a HEAD, a range or a conditional GET asks
//! for the object's size and ETag first, so that 304 and 416 are decided here
//! and a range is asked for only when it can be served.
//!
//! With `public_base_url` set, a GET is redirected there instead (a CDN, or
//! the store's website endpoint), and the bytes do not pass through here.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::files::etag_matches;
use crate::storage::StoredPath;
use crate::storage::s3::{ObjectInfo, S3Error, S3Store};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Answers a GET or HEAD of `path` from `store`, as `mime`.
pub async fn serve(
    store: &S3Store,
    path: &StoredPath,
    request: Request,
    mime: &'static str,
) -> Response {
    if let Some(url) = store.public_url(path) {
        return redirect(&url);
    }
    let headers = request.headers();
    let is_head = request.method() == Method::HEAD;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !is_head && range.is_none() && !headers.contains_key(header::IF_NONE_MATCH) {
        return match store.get(path, None).await {
            Ok(Some(object)) => {
                let info = object.info;
                content(&info, mime, None, Body::from_stream(object.body))
            }
            Ok(None) => not_found(),
            Err(e) => failed(&e),
        };
    }
    let info = match store.head(path).await {
        Ok(Some(info)) => info,
        Ok(None) => return not_found(),
        Err(e) => return failed(&e),
    };
    if etag_matches(headers, &etag(&info)) {
        return not_modified(&info);
    }
    let part = match range.as_deref().map(|r| byte_range(r, info.size)) {
        None | Some(ByteRange::Whole) => None,
        Some(ByteRange::Part(part)) => Some(part),
        Some(ByteRange::Unsatisfiable) => return unsatisfiable(info.size),
    };
    if is_head {
        return content(&info, mime, part, Body::empty());
    }
    match store.get(path, part.clone()).await {
        Ok(Some(object)) => content(&info, mime, part, Body::from_stream(object.body)),
        Ok(None) => not_found(),
        Err(e) => failed(&e),
    }
}

/// The object's ETag as a quoted entity tag (stores send one; this copes
/// with those that leave the quotes off).
fn etag(info: &ObjectInfo) -> String {
    match info.e_tag.as_deref() {
        Some(tag) if tag.starts_with('"') || tag.starts_with("W/") => tag.to_owned(),
        Some(tag) => format!("\"{tag}\""),
        // Without one, a tag from what is known: a name holds one content.
        None => format!(
            "\"{:x}-{:x}\"",
            info.size,
            info.last_modified.timestamp_millis()
        ),
    }
}

/// The headers every answer about the object carries.
fn describe(headers: &mut HeaderMap, info: &ObjectInfo) {
    if let Ok(tag) = HeaderValue::from_str(&etag(info)) {
        headers.insert(header::ETAG, tag);
    }
    let modified = info
        .last_modified
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Ok(modified) = HeaderValue::from_str(&modified) {
        headers.insert(header::LAST_MODIFIED, modified);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// 200 with the whole object, or 206 with `part` of it.
fn content(
    info: &ObjectInfo,
    mime: &'static str,
    part: Option<std::ops::Range<u64>>,
    body: Body,
) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    describe(headers, info);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let length = match &part {
        None => info.size,
        Some(part) => {
            let range = format!("bytes {}-{}/{}", part.start, part.end - 1, info.size);
            if let Ok(range) = HeaderValue::from_str(&range) {
                headers.insert(header::CONTENT_RANGE, range);
            }
            part.end - part.start
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if part.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    response
}

/// 304 repeats what the 200 would say about caching (RFC 9110 §15.4.5).
fn not_modified(info: &ObjectInfo) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    describe(response.headers_mut(), info);
    response
}

fn unsatisfiable(size: u64) -> Response {
    (
        StatusCode::RANGE_NOT_SATISFIABLE,
        [
            (header::CONTENT_RANGE, format!("bytes */{size}")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

/// Not cached: it may be uploaded (or replicated) here later.
fn not_found() -> Response {
    (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-store")]).into_response()
}

/// 503 while the store cannot be reached, so that clients and proxies try
/// again; any other failure of the store is ours to look into (502), and
/// its cause goes to the log, not to the client.
fn failed(e: &S3Error) -> Response {
    let status = if e.is_unavailable() {
        tracing::warn!(error = %e, "object store unavailable");
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        tracing::error!(error = %e, "object store failed");
        StatusCode::BAD_GATEWAY
    };
    (status, [(header::CACHE_CONTROL, "no-store")]).into_response()
}

fn redirect(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    /// Not a single byte range this serves (absent, malformed, another
    /// unit, several ranges): the whole object, as RFC 9110 §14.2 allows.
    Whole,
    Part(std::ops::Range<u64>),
    /// A valid range that lies outside the object: 416.
    Unsatisfiable,
}

/// `bytes=a-b`, `bytes=a-` and `bytes=-n`.
fn byte_range(header: &str, size: u64) -> ByteRange {
    let Some((unit, spec)) = header.split_once('=') else {
        return ByteRange::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.is_empty(), number(first), number(last)) {
        // The last `n` bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part(size.saturating_sub(n)..size)
            }
        }
        (false, Some(a), None) if last.is_empty() => {
            if a < size {
                ByteRange::Part(a..size)
            } else {
                ByteRange::Unsatisfiable
            }
        }
        (false, Some(a), Some(b)) if a <= b => {
            if a < size {
                ByteRange::Part(a..b.saturating_add(1).min(size))
            } else {
                ByteRange::Unsatisfiable
            }
        }
        _ => ByteRange::Whole,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn single_ranges_are_served() {
        assert_eq!(byte_range("bytes=0-9", 100), ByteRange::Part(0..10));
        assert_eq!(byte_range("bytes=90-", 100), ByteRange::Part(90..100));
        assert_eq!(byte_range("bytes=-10", 100), ByteRange::Part(90..100));
        assert_eq!(byte_range("bytes=-1000", 100), ByteRange::Part(0..100));
        assert_eq!(byte_range("bytes=50-1000", 100), ByteRange::Part(50..100));
        assert_eq!(byte_range("Bytes = 99-99", 100), ByteRange::Part(99..100));
    }

    #[test]
    fn ranges_outside_the_object_are_unsatisfiable() {
        assert_eq!(byte_range("bytes=100-", 100), ByteRange::Unsatisfiable);
        assert_eq!(byte_range("bytes=100-200", 100), ByteRange::Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 100), ByteRange::Unsatisfiable);
    }

    #[test]
    fn anything_else_gets_the_whole_object() {
        for header in [
            "bytes=0-1,5-6",
            "bytes=9-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "items=0-1",
            "bytes 0-1",
            "bytes=--1",
        ] {
            assert_eq!(byte_range(header, 100), ByteRange::Whole, "{header}");
        }
    }

    #[test]
    fn etags_match_strong_weak_and_any() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(etag_matches(&headers, "\"abc\""));
        assert!(!etag_matches(&headers, "\"abcd\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(etag_matches(&headers, "\"anything\""));
    }

    #[test]
    fn the_stores_etag_is_quoted_once() {
        let mut info = ObjectInfo {
            size: 10,
            e_tag: Some("\"d41d8\"".into()),
            sha256: None,
            last_modified: Utc
                .with_ymd_and_hms(2024, 1, 2, 3, 4, 5)
                .single()
                .expect("date"),
        };
        assert_eq!(etag(&info), "\"d41d8\"");
        info.e_tag = Some("d41d8".into());
        assert_eq!(etag(&info), "\"d41d8\"");
        let response = not_modified(&info);
        assert_eq!(
            response.headers()[header::LAST_MODIFIED],
            "Tue, 02 Jan 2024 03:04:05 GMT"
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], IMMUTABLE);
    }
}
