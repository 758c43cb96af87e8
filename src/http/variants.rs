//! `GET|HEAD /{yyyy}/{M}/{d}/{uuid}.{ext}-t.jpg`, `…-w{N}.jpg` and
//! `…-w{N}.png`: variants of stored files (SPEC §2.7).
//!
//! A width the configuration does not offer is 404 before anything else.
//! The original must be here or fetched by read-through, like any stored
//! file; a deleted one answers 410. A variant already made is served as
//! an original is (ETag, Range, immutable caching, `nosniff`); a missing
//! one is made by the [`VariantCache`](crate::images::cache::VariantCache)
//! on GET. HEAD never makes one: it answers 404 until a GET has, so that
//! probing costs no decoding. A variant that cannot be made is answered
//! with the original, `X-Thumbnail: fallback` and `Cache-Control:
//! no-cache`; a full generation queue with 503 and `Retry-After`.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Map;

use super::AppState;
use super::error::Error;
use super::files::{self, Caching, Found};
use super::objects;
use super::respond::Format;
use crate::config::ImageSettings;
use crate::images::cache::Outcome;
use crate::images::variant::{Encoding, Request as Make, Target};
use crate::repair::REPAIR_HEADER;
use crate::storage::{StoredPath, VariantKind, VariantPath};

/// Says that the original was served in place of a variant.
const FALLBACK_HEADER: &str = "x-thumbnail";

pub async fn handle(state: &AppState, variant: &VariantPath, request: Request) -> Response {
    let Some(make) = to_make(&state.config.images, variant.kind()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let original = variant.original();
    let for_peer = request.headers().contains_key(REPAIR_HEADER);
    let found = match files::locate(state, original, for_peer).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let file = state.storage.variant_path(variant);
    let mime = variant.kind().mime();
    // A variant this server made: a link or FIFO under its name is not one.
    if let Ok(meta) = tokio::fs::symlink_metadata(&file).await
        && meta.is_file()
    {
        return files::serve(&file, &meta, request, mime, Caching::Immutable).await;
    }
    if request.method() == Method::HEAD {
        return (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-store")]).into_response();
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
    let outcome = state
        .variants
        .make(variant.to_string(), copy.to_path_buf(), file.clone(), make)
        .await;
    match outcome {
        Ok(Outcome::Made) => {
            if let Ok(meta) = tokio::fs::symlink_metadata(&file).await
                && meta.is_file()
            {
                return files::serve(&file, &meta, request, mime, Caching::Immutable).await;
            }
        }
        Ok(Outcome::Fallback) => {}
        Err(busy) => {
            tracing::debug!(variant = %variant, "{busy}");
            return Error::VariantsBusy.answer(Format::Xml, Map::new());
        }
    }
    let original_mime = original.image_type().mime();
    let mut response = match found {
        Found::File { file, meta } => {
            files::serve(&file, &meta, request, original_mime, Caching::Revalidate).await
        }
        Found::Object(store) => {
            let mut response = objects::serve(&store, original, request, original_mime).await;
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
    };
    response
        .headers_mut()
        .insert(FALLBACK_HEADER, HeaderValue::from_static("fallback"));
    response
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
    tokio::spawn(async move {
        let copy = match storage.local_copy(&original).await {
            Ok(Some(copy)) => copy,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(variant = %variant, error = %e, "no eager thumbnail");
                return;
            }
        };
        if let Err(busy) = variants
            .make(variant.to_string(), copy.to_path_buf(), target, make)
            .await
        {
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
