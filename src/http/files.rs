//! `GET|HEAD /{yyyy}/{M}/{d}/{name}`: stored files (SPEC §2.5, §4a).
//!
//! Only paths of the stored-file pattern are looked up, so nothing else in
//! `data_dir` (temporary files) or beside it (journal, logs, config) can be
//! reached. `tower-http`'s `ServeFile` does the byte work (Range,
//! Last-Modified, HEAD); this adds the ETag with `If-None-Match`, the image
//! type, long immutable caching (names are never reused) and `nosniff`, so
//! no browser ever runs a stored file as anything but an image.
//!
//! A name missing here is fetched from a peer first (read-through) and then
//! served like any local file; a name deleted here answers 410 without
//! asking anyone. A request carrying [`REPAIR_HEADER`] comes from a peer
//! fetching on its own behalf: it is answered from this disk only, never by
//! asking further (no loops), and always with its hash (the index's). It must carry this
//! server's key like the other peer actions; with the header and without
//! the key the answer is 403 (not an ordinary answer: a peer whose key is
//! wrong must learn it, and must not set off a read-through here that
//! would ask it back).
//!
//! With an S3 backend the object is proxied from the store (`objects.rs`)
//! with the same headers.
//!
//! Names of variants (`…-t.jpg`, `…-w{N}.jpg|png`) go to `variants.rs`,
//! which serves what it makes with [`serve`] too. Every answer here carries
//! `Access-Control-Allow-Origin: *` (SPEC §12).
//!
//! A GET answered with the file's bytes (200, or 206 for a range) is counted
//! as a download of the original (`crate::downloads`), a variant's for its
//! original: a HEAD or a 304 sends no content, a redirect sends the client
//! elsewhere (and a variant's fallback to the original counts there), and a
//! peer's fetch for repair is no reader.

use std::fs::Metadata;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::params::Params;
use super::{AppState, auth, objects, variants};
use crate::auth::Action;
use crate::repair::{HASH_HEADER, Lookup, REPAIR_HEADER};
use crate::storage::s3::S3Store;
use crate::storage::{Located, StoredPath, VariantPath, hash_file};

/// Bytes read from a stored file at a time. Each read is a hand-off to a
/// blocking thread; tower-http's default of 64 KiB made those hand-offs most
/// of a sending server's CPU when a peer refills from it (BENCHMARKS.md,
/// "Repair"), so a file goes in fewer, larger reads.
const READ_CHUNK: usize = 256 * 1024;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub async fn handle(
    State(state): State<Arc<AppState>>,
    Path((year, month, day, name)): Path<(String, String, String, String)>,
    request: Request,
) -> Response {
    let name = format!("{year}/{month}/{day}/{name}");
    let counted = request.method() == Method::GET && !request.headers().contains_key(REPAIR_HEADER);
    let (mut response, read) = if let Some(path) = StoredPath::parse(&name) {
        (original(&state, &path, request).await, Some(path))
    } else if let Some(variant) = VariantPath::parse(&name) {
        let response = variants::handle(&state, &variant, request).await;
        (response, Some(variant.original().clone()))
    } else {
        (StatusCode::NOT_FOUND.into_response(), None)
    };
    if let Some(path) = read.filter(|_| counted && response_is_content(response.status())) {
        state.downloads.count(&path);
    }
    // Stored files are public: a page of any site may read their pixels (a
    // canvas editor) or learn that one is gone; no credential is involved.
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

async fn original(state: &AppState, path: &StoredPath, request: Request) -> Response {
    let for_peer = match asker(state, &request) {
        Asker::Client => false,
        Asker::Peer => true,
        Asker::Refused => {
            return (StatusCode::FORBIDDEN, [(header::CACHE_CONTROL, "no-store")]).into_response();
        }
    };
    let (file, meta) = match locate(state, path, for_peer).await {
        Ok(Found::File { file, meta }) => (file, meta),
        Ok(Found::Object(store)) => {
            return objects::serve(&store, path, request, path.image_type().mime()).await;
        }
        Err(refusal) => return refusal,
    };
    let peer_hash = if for_peer {
        hash_for_peer(state, path, &file).await
    } else {
        None
    };
    let mut response = serve(
        &file,
        &meta,
        request,
        path.image_type().mime(),
        Caching::Immutable,
    )
    .await;
    if let Some(hash) = peer_hash.and_then(|h| HeaderValue::from_str(&h).ok()) {
        response.headers_mut().insert(HASH_HEADER, hash);
    }
    response
}

/// The hash a peer fetching for repair checks what it gets against: the
/// index's. A file placed a moment ago may still wait in the index's batch
/// (records are committed together every few milliseconds), so a miss
/// waits for that batch; a file the index does not list even then (put in
/// the folder by hand since the start) is hashed here. A peer is never
/// served a file without its hash: it would refuse it.
async fn hash_for_peer(
    state: &AppState,
    path: &StoredPath,
    file: &std::path::Path,
) -> Option<String> {
    let index = state.storage.index()?;
    let indexed = || match index.get(path) {
        Ok(entry) => entry.map(|e| e.sha256),
        Err(e) => {
            tracing::error!(error = %e, "index read failed");
            None
        }
    };
    if let Some(hash) = indexed() {
        return Some(hash);
    }
    if let Err(e) = index.flush().await {
        tracing::error!(error = %e, "index flush failed");
    }
    if let Some(hash) = indexed() {
        return Some(hash);
    }
    let file = file.to_path_buf();
    match tokio::task::spawn_blocking(move || hash_file(&file)).await {
        Ok(Ok(hash)) => Some(hash),
        Ok(Err(e)) => {
            tracing::warn!(%path, error = %e, "cannot hash a file a peer asks for");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "hashing a file for a peer failed");
            None
        }
    }
}

/// Who asks for a stored file or a variant.
pub(super) enum Asker {
    Client,
    /// A peer fetching on its own behalf: [`REPAIR_HEADER`] and a peer
    /// credential.
    Peer,
    /// The header without a peer credential.
    Refused,
}

pub(super) fn asker(state: &AppState, request: &Request) -> Asker {
    if !request.headers().contains_key(REPAIR_HEADER) {
        return Asker::Client;
    }
    let params = Params::parse(request.uri().query());
    match auth::permit(state, &params, request.headers(), Action::RepairRead) {
        Ok(_) => Asker::Peer,
        Err(_) => Asker::Refused,
    }
}

/// Where a stored file is read from.
pub(super) enum Found {
    File {
        file: std::path::PathBuf,
        meta: Metadata,
    },
    /// In the bucket: the store answers whether it is there.
    Object(S3Store),
}

/// The stored file `path`, fetched from a peer first if it is missing
/// here (unless a peer asks); else the answer to give.
pub(super) async fn locate(
    state: &AppState,
    path: &StoredPath,
    for_peer: bool,
) -> Result<Found, Response> {
    match state.storage.locate(path).await {
        Located::File { file, meta } => return Ok(Found::File { file, meta }),
        Located::Object(store) => return Ok(Found::Object(store)),
        Located::Missing => {}
    }
    let lookup = if for_peer {
        deleted_here(state, path)
    } else {
        state.read_through.fetch(path).await
    };
    if let Some(refusal) = missing(lookup) {
        return Err(refusal);
    }
    match state.storage.locate(path).await {
        Located::File { file, meta } => Ok(Found::File { file, meta }),
        Located::Object(store) => Ok(Found::Object(store)),
        Located::Missing => Err(StatusCode::NOT_FOUND.into_response()),
    }
}

/// How long a served file may be kept by caches.
#[derive(Debug, Clone, Copy)]
pub(super) enum Caching {
    /// Its name is never reused: forever.
    Immutable,
}

/// Serves the file at `file` (with `meta`) as `mime`: ETag with
/// `If-None-Match`, Range, HEAD, caching and `nosniff`.
pub(super) async fn serve(
    file: &std::path::Path,
    meta: &Metadata,
    request: Request,
    mime: &'static str,
    caching: Caching,
) -> Response {
    if !meta.is_file() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = format!("\"{:x}-{:x}\"", meta.len(), modified);
    let mut response = if etag_matches(request.headers(), &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match ServeFile::new(file)
            .with_buf_chunk_size(READ_CHUNK)
            .oneshot(request)
            .await
        {
            Ok(r) => r.map(Body::new),
            Err(e) => match e {},
        }
    };
    let response_status = response.status();
    let is_content = response_is_content(response_status);
    let headers = response.headers_mut();
    if is_content {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    }
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    // 304 repeats what the 200 would say (RFC 9110 §15.4.5); any other
    // answer (416 for a range past the end) is about this request only.
    let cache = match caching {
        _ if !is_content && response_status != StatusCode::NOT_MODIFIED => "no-store",
        Caching::Immutable => IMMUTABLE,
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// For a peer's request of a name not on disk: nobody else is asked.
fn deleted_here(state: &AppState, path: &StoredPath) -> Lookup {
    let Some(index) = state.storage.index() else {
        return Lookup::Nowhere;
    };
    match index.is_deleted(path) {
        Ok(true) => Lookup::Deleted,
        Ok(false) => Lookup::Nowhere,
        Err(e) => {
            tracing::error!(error = %e, "index read failed");
            Lookup::Nowhere
        }
    }
}

/// The answer for a name that is not here, or `None` once it is.
fn missing(lookup: Lookup) -> Option<Response> {
    match lookup {
        Lookup::Here => None,
        Lookup::Nowhere => Some(StatusCode::NOT_FOUND.into_response()),
        Lookup::Deleted => Some(StatusCode::GONE.into_response()),
        // Not cached: the peer that could not be asked may have it later.
        Lookup::Unavailable => Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CACHE_CONTROL, "no-store")],
            )
                .into_response(),
        ),
    }
}

fn response_is_content(status: StatusCode) -> bool {
    status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT
}

/// Whether `If-None-Match` names `etag` (weak or strong) or is `*`.
pub(super) fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    let etag = etag.trim_start_matches("W/");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}
