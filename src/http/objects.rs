//! placeholder until the S3 room lands
use crate::storage::StoredPath;
use crate::storage::s3::S3Store;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
pub async fn serve(
    _store: &S3Store,
    _path: &StoredPath,
    _request: Request,
    _mime: &'static str,
) -> Response {
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}
