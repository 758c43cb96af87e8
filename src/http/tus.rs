//! tus 1.0.0 at `/files/` (SPEC §13): the protocol side of resumable
//! uploads. Core (`HEAD`, `PATCH`, `OPTIONS`) and the `creation`,
//! `creation-with-upload`, `creation-defer-length`, `termination`,
//! `checksum` (sha1, sha256) and `expiration` extensions.
//!
//! Every request but `OPTIONS` is authorized like an upload (a key or an
//! upload token), and an upload answers only the credential that created
//! it: another one learns nothing but 404. A token is checked in full
//! (expiry, spent files) when it creates an upload; afterwards presenting
//! the very same token is enough, so a long upload may finish after its
//! token expired.
//!
//! The staged bytes, offsets and expiry belong to `crate::resumable`; a
//! complete upload goes through the multipart upload's own steps
//! (`Storage::adopt` or `upload::receive`, then `upload::deliver`,
//! `upload::settle`), so checks, stripping, naming, the index and
//! replication cannot differ. Its bytes are written again only when
//! stripping changes them or staging is on another filesystem.
//!
//! Two PATCHes on one upload never interleave: a new one takes over from
//! one still running (which stops, keeping what it received) rather than
//! answering 423; 423 only if the older one does not stop in time (a
//! completion under way).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use sha2::Digest;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::AppState;
use super::auth::{self, Caller};
use super::body::paced;
use super::error::Error;
use super::origin::Origin;
use super::params::Params;
use super::upload::{self, Received};
use crate::auth::Action;
use crate::auth::token::Claims;
use crate::metrics::Via;
use crate::replication::Streams;
use crate::resumable::{Finished, Info, NewUpload, Patch, ResumableError, Upload};
use crate::storage::ImageType;

const TUS_VERSION: &str = "1.0.0";
const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration";
const CHECKSUMS: &str = "sha1,sha256";
const OFFSET_TYPE: &str = "application/offset+octet-stream";
/// Within one PATCH the bytes received are made durable once at least
/// this many have arrived and [`COMMIT_EVERY`] has passed since the last
/// commit, so a connection cut in the middle of a large chunk keeps most of
/// it. Each commit syncs the bytes and the record (three syncs, a few ms to
/// tens of ms each): by bytes alone a fast client would pay them every few
/// MiB, while by time a cut costs at most about a second of sending again.
const COMMIT_BYTES: u64 = 8 << 20;
/// The least time between two commits within a PATCH, and how long a body
/// may send nothing before what it sent is committed (a stalled client may
/// be gone for good; a killed server then keeps its bytes).
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// Longest `Upload-Metadata` kept.
const METADATA_LIMIT: usize = 4096;
/// Bytes read at once from a staged file at completion.
const READ_CHUNK: usize = 256 * 1024;

const RESUMABLE: &str = "tus-resumable";
const UPLOAD_OFFSET: &str = "upload-offset";
const UPLOAD_LENGTH: &str = "upload-length";
const UPLOAD_DEFER_LENGTH: &str = "upload-defer-length";
const UPLOAD_METADATA: &str = "upload-metadata";
const UPLOAD_EXPIRES: &str = "upload-expires";
const UPLOAD_CHECKSUM: &str = "upload-checksum";
const METHOD_OVERRIDE: &str = "x-http-method-override";
const UPLOAD_LINK: &str = "x-upload-link";
const UPLOAD_RESULT: &str = "x-upload-result";

/// `/files/`: discovery (`OPTIONS`) and creation (`POST`).
pub async fn collection(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let answer = match method(&request) {
        Method::OPTIONS => Ok(options(&state)),
        Method::POST => create(state, request).await,
        _ => Err(Error::MethodNotAllowed {
            action: "/files/",
            allowed: "OPTIONS or POST",
        }),
    };
    answer.unwrap_or_else(refusal)
}

/// `/files/{id}`: progress (`HEAD`), data (`PATCH`), termination
/// (`DELETE`).
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let answer = match method(&request) {
        Method::OPTIONS => Ok(options(&state)),
        Method::HEAD | Method::GET => head(&state, &id, &request),
        Method::PATCH => patch(state, &id, request).await,
        Method::DELETE => terminate(&state, &id, request).await,
        _ => Err(Error::MethodNotAllowed {
            action: "/files/{id}",
            allowed: "HEAD, PATCH, DELETE or OPTIONS",
        }),
    };
    answer.unwrap_or_else(refusal)
}

/// The method meant: clients behind proxies that allow only GET and POST
/// send the others as a POST with `X-HTTP-Method-Override`.
fn method(request: &Request) -> Method {
    let asked = request
        .headers()
        .get(METHOD_OVERRIDE)
        .and_then(|v| Method::from_bytes(v.as_bytes()).ok());
    match asked {
        Some(asked) if request.method() == Method::POST => asked,
        _ => request.method().clone(),
    }
}

fn options(state: &AppState) -> Response {
    let mut response = answer(StatusCode::NO_CONTENT);
    let headers = response.headers_mut();
    put(headers, "tus-version", TUS_VERSION.into());
    put(headers, "tus-extension", EXTENSIONS.into());
    put(
        headers,
        "tus-max-size",
        state.config.max_file_bytes.to_string(),
    );
    put(headers, "tus-checksum-algorithm", CHECKSUMS.into());
    response
}

async fn create(state: Arc<AppState>, request: Request) -> Result<Response, Error> {
    let headers = request.headers();
    version(headers)?;
    let params = Params::parse(request.uri().query());
    let (owner, claims) = creator(&state, &params, headers)?;
    if let Some(claims) = &claims {
        state.tokens.ensure_unspent(claims).await?;
    }
    let length = match (
        number(headers, UPLOAD_LENGTH)?,
        text(headers, UPLOAD_DEFER_LENGTH),
    ) {
        (Some(length), _) => Some(length),
        (None, Some("1")) => None,
        _ => {
            return Err(Error::BadRequest(
                "Upload-Length (or Upload-Defer-Length: 1) is required".into(),
            ));
        }
    };
    let (limit, allowed) = upload::file_limits(&state.config, claims.as_ref());
    match length {
        Some(0) => return Err(Error::BadRequest("an empty file (Upload-Length: 0)".into())),
        Some(length) if length > limit => {
            return Err(Error::TooLarge(format!(
                "Upload-Length {length} is over the limit of {limit} bytes"
            )));
        }
        _ => {}
    }
    let metadata = text(headers, UPLOAD_METADATA).map(str::to_owned);
    if metadata.as_ref().is_some_and(|m| m.len() > METADATA_LIMIT) {
        return Err(Error::BadRequest(format!(
            "Upload-Metadata is longer than {METADATA_LIMIT} bytes"
        )));
    }
    let with_data = is_offset_stream(headers);
    let _permit = if with_data {
        Some(state.receive_permit()?)
    } else {
        None
    };
    let origin = Origin::of(&request, &state.config.trusted_proxies);
    let base = base(&state, &origin);
    // One upload is one file, counted against a token as a plain upload's
    // file is; given back if the upload ends without one.
    let counted = match &claims {
        Some(claims) => {
            state.tokens.take_file(claims).await?;
            claims.max_files.and(claims.jti.clone())
        }
        None => None,
    };
    let new = NewUpload {
        length,
        owner,
        client: origin.client.map(|c| c.to_string()),
        metadata,
        limit,
        types: allowed.iter().map(|t| t.extension().to_owned()).collect(),
        counted: counted.clone(),
    };
    let upload = match state.resumable.create(new).await {
        Ok(upload) => upload,
        Err(e) => {
            if let Some(jti) = &counted {
                state.tokens.give_back_jti(jti).await;
            }
            return Err(resumable_error(e));
        }
    };
    tracing::info!(id = %upload.id, length = ?length, "resumable upload created");
    let location = format!("{base}/files/{}", upload.id);
    let mut response = answer(StatusCode::CREATED);
    put(response.headers_mut(), "location", location);
    if with_data {
        let (parts, body) = request.into_parts();
        let mut written = write(&state, &upload, &parts.headers, body, &base).await;
        // Bytes that arrived before the body failed are kept: the client
        // learns the upload's address and resumes from the offset.
        if let Err(e) = &written
            && !matches!(e, Error::UnsupportedType(_) | Error::TooLarge(_))
        {
            tracing::info!(id = %upload.id, error = %e, "the data sent with a creation stopped early");
            written = Ok(());
        }
        written?;
        progress(response.headers_mut(), &upload.info());
    } else {
        expires(response.headers_mut(), &upload.info());
    }
    Ok(response)
}

fn head(state: &AppState, id: &str, request: &Request) -> Result<Response, Error> {
    version(request.headers())?;
    let upload = owned(state, id, request)?;
    let info = upload.info();
    let mut response = answer(StatusCode::OK);
    let headers = response.headers_mut();
    put(headers, header::CACHE_CONTROL.as_str(), "no-store".into());
    match info.length {
        Some(length) => put(headers, UPLOAD_LENGTH, length.to_string()),
        None => put(headers, UPLOAD_DEFER_LENGTH, "1".into()),
    }
    if let Some(metadata) = &info.metadata {
        put(headers, UPLOAD_METADATA, metadata.clone());
    }
    progress(headers, &info);
    Ok(response)
}

async fn patch(state: Arc<AppState>, id: &str, request: Request) -> Result<Response, Error> {
    let headers = request.headers();
    version(headers)?;
    let upload = owned(&state, id, &request)?;
    if !is_offset_stream(headers) {
        return Err(Error::UnsupportedType(format!(
            "a PATCH must have Content-Type: {OFFSET_TYPE}"
        )));
    }
    let _permit = state.receive_permit()?;
    let origin = Origin::of(&request, &state.config.trusted_proxies);
    let base = base(&state, &origin);
    let (parts, body) = request.into_parts();
    write(&state, &upload, &parts.headers, body, &base).await?;
    let mut response = answer(StatusCode::NO_CONTENT);
    progress(response.headers_mut(), &upload.info());
    Ok(response)
}

async fn terminate(state: &AppState, id: &str, request: Request) -> Result<Response, Error> {
    version(request.headers())?;
    let upload = owned(state, id, &request)?;
    drop(request);
    state
        .resumable
        .terminate(&upload)
        .await
        .map_err(resumable_error)?;
    tracing::info!(id = %upload.id, "resumable upload terminated");
    Ok(answer(StatusCode::NO_CONTENT))
}

/// Writes a request's body to `upload` at the offset it names, and stores
/// the file once it is complete.
async fn write(
    state: &Arc<AppState>,
    upload: &Arc<Upload>,
    headers: &HeaderMap,
    body: Body,
    base: &str,
) -> Result<(), Error> {
    let offset = number(headers, UPLOAD_OFFSET)?.unwrap_or(0);
    let checksum = Checksum::of(headers)?;
    let declared = number(headers, UPLOAD_LENGTH)?;
    let sent = number(headers, header::CONTENT_LENGTH.as_str())?;
    let mut patch = state
        .resumable
        .patch(upload)
        .await
        .map_err(resumable_error)?;
    let info = upload.info();
    if info.finished.is_some() {
        // The answer to a last PATCH can be lost; its repetition learns
        // the same result.
        return if Some(offset) == info.length && sent.unwrap_or(0) == 0 {
            Ok(())
        } else {
            Err(Error::Conflict("the upload is already complete".into()))
        };
    }
    if offset != patch.committed() {
        return Err(Error::Conflict(format!(
            "Upload-Offset {offset} is not the upload's offset {}",
            patch.committed()
        )));
    }
    if let Some(length) = declared {
        if length > info.limit {
            return Err(Error::TooLarge(format!(
                "Upload-Length {length} is over the limit of {} bytes",
                info.limit
            )));
        }
        if length < offset {
            return Err(Error::BadRequest(
                "Upload-Length is less than the bytes already received".into(),
            ));
        }
        state
            .resumable
            .declare_length(&patch, length)
            .await
            .map_err(resumable_error)?;
    }
    let length = upload.info().length;
    let limit = length.unwrap_or(info.limit);
    if let Some(sent) = sent {
        if offset.saturating_add(sent) > limit {
            return Err(Error::TooLarge(format!(
                "the chunk ends past {limit} bytes, the upload's {}",
                if length.is_some() { "length" } else { "limit" }
            )));
        }
        state
            .resumable
            .may_grow(upload, sent)
            .map_err(resumable_error)?;
    }
    receive(state, &mut patch, body, checksum, limit).await?;
    if Some(patch.committed()) == length {
        complete(state, &patch, base).await?;
    }
    Ok(())
}

/// Appends the body to `patch`, committing as it goes (unless the whole
/// body must match a checksum first); stops when another request takes
/// the upload over.
async fn receive(
    state: &AppState,
    patch: &mut Patch,
    body: Body,
    mut checksum: Option<Checksum>,
    limit: u64,
) -> Result<(), Error> {
    let mut body = std::pin::pin!(paced(body, state.pace()));
    let mut committed_at = Instant::now();
    loop {
        let commits = checksum.is_none() && patch.pending() > 0;
        let next = tokio::select! {
            chunk = body.next() => Some(chunk),
            () = patch.taken_over() => None,
            () = tokio::time::sleep(COMMIT_EVERY), if commits => {
                commit(state, patch).await?;
                committed_at = Instant::now();
                continue;
            }
        };
        let stop = match next {
            Some(None) => break,
            Some(Some(Ok(chunk))) => {
                if patch.offset().saturating_add(chunk.len() as u64) > limit {
                    Error::TooLarge(format!("the upload is longer than {limit} bytes"))
                } else {
                    if let Some(checksum) = &mut checksum {
                        checksum.update(&chunk);
                    }
                    patch.append(chunk).await.map_err(io_error)?;
                    if checksum.is_none()
                        && patch.pending() >= COMMIT_BYTES
                        && committed_at.elapsed() >= COMMIT_EVERY
                    {
                        commit(state, patch).await?;
                        committed_at = Instant::now();
                    }
                    continue;
                }
            }
            Some(Some(Err(e))) => e.into(),
            None => Error::Conflict("a newer request took this upload over".into()),
        };
        // What arrived whole is kept, unless a checksum must vouch for it.
        if checksum.is_some() {
            patch.discard().await.map_err(io_error)?;
        } else {
            patch.commit().await.map_err(io_error)?;
        }
        return Err(stop);
    }
    if let Some(checksum) = checksum
        && !checksum.matches()
    {
        patch.discard().await.map_err(io_error)?;
        return Err(Error::ChecksumMismatch);
    }
    patch.commit().await.map_err(io_error)?;
    Ok(())
}

/// Commits within a PATCH; an upload of deferred length that outgrew its
/// share of staging stops there.
async fn commit(state: &AppState, patch: &mut Patch) -> Result<(), Error> {
    patch.commit().await.map_err(io_error)?;
    state
        .resumable
        .may_grow(patch.upload(), 0)
        .map_err(resumable_error)
}

/// Stores a complete upload through the upload pipeline and records its
/// answer; a file refused (type, size, pixels) is removed with its upload.
async fn complete(state: &Arc<AppState>, patch: &Patch, base: &str) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let upload = patch.upload();
    let info = upload.info();
    let allowed: Vec<ImageType> = info
        .types
        .iter()
        .filter_map(|t| ImageType::from_name(t))
        .collect();
    let stored = match take(state, patch, &info, &allowed).await {
        Ok((received, streams)) => {
            upload::deliver(state, received, streams, Via::Resumable, started).await
        }
        Err(e) => Err(e),
    };
    let delivery = match stored {
        Ok(delivery) => delivery,
        Err(e) => {
            if matches!(
                e,
                Error::UnsupportedType(_) | Error::TooLarge(_) | Error::BadRequest(_)
            ) {
                tracing::info!(id = %upload.id, error = %e, "a complete resumable upload was refused");
                state.resumable.remove(upload).await.map_err(io_error)?;
            }
            return Err(e);
        }
    };
    let name = file_name(info.metadata.as_deref());
    let entry = upload::settle(state, base, &name, delivery).await?;
    let finished = Finished {
        link: entry["link"].as_str().unwrap_or_default().to_owned(),
        result: ascii_json(&entry.to_string()),
    };
    state
        .resumable
        .finish(upload, finished)
        .await
        .map_err(io_error)?;
    Ok(())
}

/// A complete upload as a received file. Taken as it is when nothing is
/// to be stripped: its bytes are durable in staging already, so they are
/// not written again (nor read, but for the checks, when they were hashed
/// as they arrived), and its copies go to the peers from the stored file. Otherwise read back through the upload
/// pipeline, which writes the stripped file.
async fn take(
    state: &AppState,
    patch: &Patch,
    info: &Info,
    allowed: &[ImageType],
) -> Result<(Received, Streams), Error> {
    let rules = upload::image_rules(&state.config);
    let source = patch.part_path();
    if let Some(written) = state
        .storage
        .adopt(source.clone(), info.limit, allowed, rules, patch.sha256())
        .await?
    {
        return Ok((
            Received::Written(written),
            Streams::new(&state.replicator, None),
        ));
    }
    let file = tokio::fs::File::open(source)
        .await
        .map_err(Error::internal)?;
    let chunks = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK)
        .map(|chunk| chunk.map_err(Error::internal));
    let (incoming, streams) =
        upload::receive(state, chunks, info.limit, allowed, info.length).await?;
    Ok((Received::Incoming(Box::new(incoming)), streams))
}

/// The upload of `id` if the request's credential created it: 403 without
/// a valid credential, 404 for one that did not (or no such upload).
fn owned(state: &AppState, id: &str, request: &Request) -> Result<Arc<Upload>, Error> {
    let params = Params::parse(request.uri().query());
    let headers = request.headers();
    let upload = state.resumable.get(id);
    let owner = upload.as_ref().map(|u| u.info().owner);
    let is_owner = |presented: &[u8]| {
        owner
            .as_deref()
            .is_some_and(|o| bool::from(o.as_bytes().ct_eq(digest(presented).as_bytes())))
    };
    let not_found = || Error::NotFound("no such upload".into());
    if let Some(key) = auth::presented_key(&params, headers) {
        let credential = state.keys.credential(key).ok_or(Error::Forbidden)?;
        credential.may(Action::Upload, state.keys.admin_configured())?;
        return match upload {
            Some(upload) if is_owner(key) => Ok(upload),
            _ => Err(not_found()),
        };
    }
    let Some(token) = auth::presented_token(headers) else {
        return Err(Error::Forbidden);
    };
    match upload {
        // Checked in full when it created the upload.
        Some(upload) if is_owner(token.as_bytes()) => Ok(upload),
        _ => {
            state
                .tokens
                .verify(token, auth::origin(headers))
                .map_err(Error::Token)?;
            Err(not_found())
        }
    }
}

/// Who creates an upload: the digest of its key or token (the owner), and
/// a token's claims.
fn creator(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
) -> Result<(String, Option<Claims>), Error> {
    match auth::caller(state, params, headers)? {
        Caller::Key(credential) => {
            credential.may(Action::Upload, state.keys.admin_configured())?;
            let key = auth::presented_key(params, headers).ok_or(Error::Forbidden)?;
            Ok((digest(key), None))
        }
        Caller::Token(claims) => {
            let token = auth::presented_token(headers).ok_or(Error::Forbidden)?;
            Ok((digest(token.as_bytes()), Some(claims)))
        }
        Caller::Anonymous => Err(Error::Forbidden),
    }
}

/// What an upload keeps of its creator's credential: never the secret.
fn digest(secret: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(secret))
}

/// A PATCH's `Upload-Checksum`, hashed as the body arrives.
enum Checksum {
    Sha1(sha1::Sha1, Vec<u8>),
    Sha256(sha2::Sha256, Vec<u8>),
}

impl Checksum {
    fn of(headers: &HeaderMap) -> Result<Option<Self>, Error> {
        let Some(value) = text(headers, UPLOAD_CHECKSUM) else {
            return Ok(None);
        };
        let (algorithm, encoded) = value.trim().split_once(' ').ok_or_else(|| {
            Error::BadRequest("Upload-Checksum must be `algorithm base64-digest`".into())
        })?;
        let expected = STANDARD
            .decode(encoded.trim())
            .map_err(|_| Error::BadRequest("the Upload-Checksum digest is not base64".into()))?;
        match algorithm {
            "sha1" => Ok(Some(Self::Sha1(sha1::Sha1::new(), expected))),
            "sha256" => Ok(Some(Self::Sha256(sha2::Sha256::new(), expected))),
            other => Err(Error::BadRequest(format!(
                "checksum algorithm `{other}` is not supported (sha1, sha256)"
            ))),
        }
    }

    fn update(&mut self, chunk: &[u8]) {
        match self {
            Self::Sha1(hasher, _) => hasher.update(chunk),
            Self::Sha256(hasher, _) => hasher.update(chunk),
        }
    }

    fn matches(self) -> bool {
        match self {
            Self::Sha1(hasher, expected) => hasher.finalize().as_slice() == expected,
            Self::Sha256(hasher, expected) => hasher.finalize().as_slice() == expected,
        }
    }
}

/// The filename in `Upload-Metadata` (`filename` or `name`, base64), as a
/// label for the answer only.
fn file_name(metadata: Option<&str>) -> String {
    metadata
        .into_iter()
        .flat_map(|m| m.split(','))
        .filter_map(|pair| {
            let (key, value) = pair.trim().split_once(' ')?;
            (key == "filename" || key == "name").then(|| STANDARD.decode(value.trim()).ok())?
        })
        .map(|raw| upload::client_name(&String::from_utf8_lossy(&raw)))
        .next()
        .unwrap_or_else(|| "upload".to_owned())
}

/// JSON with every non-ASCII character escaped, so it fits in a header.
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// `Upload-Offset`, `Upload-Expires` and, once finished, the link and the
/// file's answer entry.
fn progress(headers: &mut HeaderMap, info: &Info) {
    put(headers, UPLOAD_OFFSET, info.offset.to_string());
    expires(headers, info);
    if let Some(finished) = &info.finished {
        put(headers, UPLOAD_LINK, finished.link.clone());
        put(headers, UPLOAD_RESULT, finished.result.clone());
    }
}

fn expires(headers: &mut HeaderMap, info: &Info) {
    if let Some(at) = chrono::DateTime::from_timestamp(info.expires, 0) {
        put(
            headers,
            UPLOAD_EXPIRES,
            at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        );
    }
}

/// 412 for a request of another tus version (or none).
fn version(headers: &HeaderMap) -> Result<(), Error> {
    match text(headers, RESUMABLE) {
        Some(TUS_VERSION) => Ok(()),
        _ => Err(Error::TusVersion),
    }
}

fn is_offset_stream(headers: &HeaderMap) -> bool {
    text(headers, header::CONTENT_TYPE.as_str())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(OFFSET_TYPE))
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header holding a non-negative integer; 400 if it holds anything else.
fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, Error> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| Error::BadRequest(format!("{name} must be a non-negative integer"))),
    }
}

/// Where links point: the configured `domain`, else what the client
/// reached (through trusted proxies), as for an upload's link.
fn base(state: &AppState, origin: &Origin) -> String {
    state
        .config
        .domain
        .clone()
        .unwrap_or_else(|| origin.base_url())
}

fn resumable_error(e: ResumableError) -> Error {
    match e {
        ResumableError::Full(why) => Error::StagingFull(why),
        ResumableError::Locked => Error::Locked(e.to_string()),
        ResumableError::LengthChanged => Error::BadRequest(e.to_string()),
        ResumableError::Gone => Error::NotFound(e.to_string()),
        ResumableError::Io(io) => io_error(io),
    }
}

fn io_error(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Error::DiskFull,
        _ => Error::internal(e),
    }
}

/// An empty answer carrying `Tus-Resumable`.
fn answer(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    put(response.headers_mut(), RESUMABLE, TUS_VERSION.into());
    response
}

/// A refused request: the reason as text.
fn refusal(e: Error) -> Response {
    e.log();
    let status = e.status();
    let mut response = Response::new(Body::from(format!("{e}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    put(headers, RESUMABLE, TUS_VERSION.into());
    put(headers, "content-type", "text/plain; charset=utf-8".into());
    // A refused request's body may be unread; hyper then closes the
    // connection, and saying so keeps a pooling client off it.
    put(headers, "connection", "close".into());
    match e {
        Error::TusVersion => put(headers, "tus-version", TUS_VERSION.into()),
        Error::Busy => put(headers, header::RETRY_AFTER.as_str(), "5".into()),
        _ => {}
    }
    response
}

fn put(headers: &mut HeaderMap, name: &str, value: String) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(&value),
    ) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_name_comes_from_the_metadata() {
        assert_eq!(file_name(None), "upload");
        assert_eq!(
            file_name(Some("filetype aW1hZ2UvanBlZw==,filename Li4vYS5qcGc=")),
            "a.jpg"
        );
        assert_eq!(file_name(Some("is_confidential")), "upload");
    }

    #[test]
    fn answers_fit_in_a_header() {
        assert_eq!(
            ascii_json(r#"{"name":"中.jpg"}"#),
            r#"{"name":"\u4e2d.jpg"}"#
        );
        assert_eq!(ascii_json("😀"), "\\ud83d\\ude00");
    }
}
