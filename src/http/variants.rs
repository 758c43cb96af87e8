//! `GET|HEAD /{yyyy}/{M}/{d}/{uuid}.{ext}-t.jpg`, `…-w{N}.jpg` and
//! `…-w{N}.png`: variants of stored files (SPEC §2.7).
//!
//! A width the configuration does not offer is 404 before anything else.
//! On GET, the original must be here or fetched by read-through, like any
//! stored file; a deleted one answers 410. A variant already made is served
//! as an original is (ETag, Range, immutable caching, `nosniff`); a missing
//! one is made by the [`VariantCache`](crate::images::cache::VariantCache).
//! HEAD makes nothing and fetches nothing: it answers from what is on this
//! disk (the variant, or the original's failure record), else 404, so that
//! probing costs neither decoding nor a read-through.
//!
//! A variant that cannot be made is answered with a redirect to the
//! original (`302`, `X-Thumbnail: fallback`, `Cache-Control: no-cache`)
//! rather than with the original's bytes: the client then fetches the
//! original under its own name, which caches keep for good, so asking for
//! the variant again costs a few hundred bytes, not the whole original.
//! Whether it can be made is remembered in the original's failure record,
//! beside the variants; a full generation queue answers 503 with
//! `Retry-After`.

use std::path::PathBuf;

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Map;

use super::AppState;
use super::error::Error;
use super::files::{self, Asker, Caching};
use super::respond::Format;
use crate::config::ImageSettings;
use crate::images::cache::{Job, Outcome};
use crate::images::variant::{Encoding, Request as Make, Target};
use crate::storage::{StoredPath, VariantKind, VariantPath};

/// Says that the client was sent to the original in place of a variant.
const FALLBACK_HEADER: &str = "x-thumbnail";

/// The end of a failure record's name: `{original's name}-failed`, beside
/// its variants (so that deleting the original sweeps it with them).
const FAILURE_SUFFIX: &str = "-failed";

pub async fn handle(state: &AppState, variant: &VariantPath, request: Request) -> Response {
    let Some(make) = to_make(&state.config.images, variant.kind()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let original = variant.original();
    let file = state.storage.variant_path(variant);
    let record = failure_record(state, original);
    let mime = variant.kind().mime();
    if request.method() == Method::HEAD {
        return head(state, original, &file, &record, request, mime).await;
    }
    let for_peer = match files::asker(state, &request) {
        Asker::Client => false,
        Asker::Peer => true,
        Asker::Refused => {
            return (StatusCode::FORBIDDEN, [(header::CACHE_CONTROL, "no-store")]).into_response();
        }
    };
    if let Err(refusal) = files::locate(state, original, for_peer).await {
        return refusal;
    }
    // A variant this server made: a link or FIFO under its name is not one.
    if let Ok(meta) = tokio::fs::symlink_metadata(&file).await
        && meta.is_file()
    {
        return files::serve(&file, &meta, request, mime, Caching::Immutable).await;
    }
    if tokio::fs::try_exists(&record).await.unwrap_or(false) {
        return to_original(original);
    }
    // For a bucket, a copy of the original made for this request.
    let copy = match state.storage.local_copy(original).await {
        Ok(Some(copy)) => copy,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::error!(path = %original, error = %e, "cannot read the original of a variant");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CACHE_CONTROL, "no-store")],
            )
                .into_response();
        }
    };
    let job = Job {
        label: variant.to_string(),
        original: copy.to_path_buf(),
        target: file.clone(),
        record,
        request: make,
    };
    match state.variants.make(job).await {
        Ok(Outcome::Made) => {
            if let Ok(meta) = tokio::fs::symlink_metadata(&file).await
                && meta.is_file()
            {
                return files::serve(&file, &meta, request, mime, Caching::Immutable).await;
            }
            to_original(original)
        }
        Ok(Outcome::Fallback) => to_original(original),
        Err(busy) => {
            tracing::debug!(variant = %variant, "{busy}");
            Error::VariantsBusy.answer(Format::Xml, Map::new())
        }
    }
}

/// HEAD from this disk alone: 410 for a deleted original (the index says
/// so), the variant if it is made, the redirect if it cannot be, else 404.
async fn head(
    state: &AppState,
    original: &StoredPath,
    file: &std::path::Path,
    record: &std::path::Path,
    request: Request,
    mime: &'static str,
) -> Response {
    let deleted = state
        .storage
        .index()
        .map(|index| index.is_deleted(original));
    if let Some(Ok(true)) = deleted {
        return StatusCode::GONE.into_response();
    }
    if let Ok(meta) = tokio::fs::symlink_metadata(file).await
        && meta.is_file()
    {
        return files::serve(file, &meta, request, mime, Caching::Immutable).await;
    }
    if tokio::fs::try_exists(record).await.unwrap_or(false) {
        return to_original(original);
    }
    (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-store")]).into_response()
}

/// Sends the client to the original: its bare name, relative to the
/// variant's folder, so that it holds behind any path prefix a proxy adds.
fn to_original(original: &StoredPath) -> Response {
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, original.file_name()),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
            (
                header::HeaderName::from_static(FALLBACK_HEADER),
                "fallback".to_owned(),
            ),
        ],
    )
        .into_response()
}

/// Where the failure record of `original` is (or would be).
fn failure_record(state: &AppState, original: &StoredPath) -> PathBuf {
    let thumbnail = VariantPath::new(original.clone(), VariantKind::Thumbnail);
    state
        .storage
        .variant_path(&thumbnail)
        .with_file_name(format!("{}{FAILURE_SUFFIX}", original.file_name()))
}

/// With `[images] eager_thumbnail`, starts making the thumbnail of a file
/// just stored, so the first page view finds it. It shares the generators'
/// queue: when that is full, nothing is made now (the first request will).
pub fn make_thumbnail_soon(state: &AppState, path: &StoredPath) {
    if !state.config.images.eager_thumbnail {
        return;
    }
    let variant = VariantPath::new(path.clone(), VariantKind::Thumbnail);
    let Some(make) = to_make(&state.config.images, VariantKind::Thumbnail) else {
        return;
    };
    let variants = state.variants.clone();
    let storage = state.storage.clone();
    let original = path.clone();
    let target = state.storage.variant_path(&variant);
    let record = failure_record(state, path);
    tokio::spawn(async move {
        let copy = match storage.local_copy(&original).await {
            Ok(Some(copy)) => copy,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(variant = %variant, error = %e, "no eager thumbnail");
                return;
            }
        };
        let job = Job {
            label: variant.to_string(),
            original: copy.to_path_buf(),
            target,
            record,
            request: make,
        };
        if let Err(busy) = variants.make(job).await {
            tracing::debug!(variant = %variant, "no eager thumbnail: {busy}");
        }
    });
}

/// What to make for `kind`, or `None` for a width not offered.
fn to_make(settings: &ImageSettings, kind: VariantKind) -> Option<Make> {
    let offered = |width: u32| settings.widths.contains(&width);
    Some(match kind {
        VariantKind::Thumbnail => Make {
            target: Target::Fit(settings.thumbnail_size),
            encoding: Encoding::Jpeg,
        },
        VariantKind::WidthJpeg(width) if offered(width) => Make {
            target: Target::Width(width),
            encoding: Encoding::Jpeg,
        },
        VariantKind::WidthPng(width) if offered(width) => Make {
            target: Target::Width(width),
            encoding: Encoding::Png,
        },
        VariantKind::WidthJpeg(_) | VariantKind::WidthPng(_) => return None,
    })
}
