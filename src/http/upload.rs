//! `POST /do.ashx?action=upload`: every multipart part with a filename is
//! streamed to storage, committed under a dated name, then delivered to the
//! peers (replication journals what fails) before the answer names its link.
//!
//! Files stored before a failing part stay stored and are listed in the
//! failure answer with their links, as SPEC §8 asks.
//!
//! An upload token limits the upload further: each file's size and type
//! while it streams, and the files it may store here, counted before each
//! file is read and given back if the file is refused or cannot be stored
//! (its flush or rename failed). Only a folder flush that fails after the
//! rename errs the other way: that file is under its name, unannounced,
//! and its place was given back.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::AppState;
use super::auth;
use super::body::{BodyError, HEADER_BYTES, HeaderBudget, paced};
use super::error::Error;
use super::origin::Origin;
use super::respond::{Format, answer};
use crate::auth::token::{Claims, MAX_TOKEN_LEN, Refusal};
use crate::config::Config;
use crate::images::Dimensions;
use crate::metrics::Via;
use crate::replication::{self, ReplicaOutcome, Streams};
use crate::storage::{Committed, ImageRules, ImageType, Incoming, StoredFile, Written};

/// Longest client filename echoed back in an answer.
const NAME_LIMIT: usize = 255;
/// Bytes of form fields read before a `token` field, from a request that
/// carries no credential in its headers.
const BEFORE_TOKEN_BYTES: usize = 64 * 1024;

/// What this upload may store beyond the server's own limits.
pub enum Grant {
    /// A key: the server's limits only.
    Key,
    /// A token's claims.
    Token(Claims),
    /// Nothing in the headers: a `token` form field must come before the
    /// first file.
    TokenInForm,
}

/// A stored file on its way to the peers.
struct Pending {
    name: String,
    delivery: Delivery,
}

/// A stored file and what became of its copies; `Err` if a failed copy could
/// not be journaled.
pub(super) type Delivered = (StoredFile, std::io::Result<Vec<ReplicaOutcome>>);

/// A file all of whose bytes have arrived.
pub(super) enum Received {
    /// Still to be finished (checked, stripped, flushed).
    Incoming(Box<Incoming>),
    /// Finished already (a resumable upload taken as it is).
    Written(Written),
}

/// A file stored here whose copies are on their way to the peers.
pub(super) struct Delivery {
    pub dimensions: Dimensions,
    /// What became of its copies: `None` if the file was never stored (its
    /// error was the answer of [`deliver`]).
    task: JoinHandle<Option<Delivered>>,
}

pub async fn handle(
    state: Arc<AppState>,
    format: Format,
    origin: Origin,
    headers: &HeaderMap,
    body: Body,
    grant: Grant,
) -> Response {
    let started = Instant::now();
    let mut pending = Vec::new();
    let result = match &grant {
        // A spent token is refused before any body byte is read.
        Grant::Token(claims) => state
            .tokens
            .ensure_unspent(claims)
            .await
            .map_err(Error::from),
        Grant::Key | Grant::TokenInForm => Ok(()),
    };
    let result = match result {
        Ok(()) => receive_parts(&state, headers, body, grant, &mut pending).await,
        Err(e) => Err(e),
    };
    let base = state
        .config
        .domain
        .clone()
        .unwrap_or_else(|| origin.base_url());
    // Whatever happened to later parts, files already stored are delivered
    // (or journaled) before any link of theirs is handed out.
    let mut files = Vec::with_capacity(pending.len());
    let mut failure = result.err();
    for p in pending {
        match settle(&state, &base, &p.name, p.delivery).await {
            Ok(entry) => files.push(entry),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    // Only requests that stored a file: a refusal answered at once would
    // pull the quantiles of real uploads down.
    if !files.is_empty() {
        state.replicator.latency().upload_request(started.elapsed());
    }
    let mut resp = Map::new();
    if let Some(first) = files.first() {
        resp.insert("link".into(), first["link"].clone());
    }
    if !files.is_empty() {
        resp.insert("files".into(), Value::Array(files));
    }
    match failure {
        Some(error) => error.answer(format, resp),
        None => {
            let mut ok = Map::new();
            ok.insert("success".into(), 1.into());
            ok.extend(resp);
            answer(format, StatusCode::OK, ok)
        }
    }
}

/// Waits for a file's delivery: its per-file answer entry once it is
/// stored here and every peer has it or owes it in the journal; the error
/// to answer otherwise (a file whose failed copy could not be journaled is
/// removed: its link is never handed out).
pub(super) async fn settle(
    state: &AppState,
    base: &str,
    name: &str,
    delivery: Delivery,
) -> Result<Value, Error> {
    let dimensions = delivery.dimensions;
    match delivery.task.await {
        Ok(Some((file, Ok(replicas)))) => Ok(file_entry(base, name, dimensions, &file, &replicas)),
        Ok(Some((file, Err(e)))) => {
            discard(state, &file).await;
            Err(match e.kind() {
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                    tracing::error!(error = %e, "journal append failed: log_dir is full");
                    Error::DiskFull
                }
                _ => Error::internal(format!("journal append failed: {e}")),
            })
        }
        Ok(None) => Err(Error::internal("the file was not stored")),
        Err(e) => Err(Error::internal(format!("delivery task failed: {e}"))),
    }
}

/// Reads the multipart body, storing each file and starting its delivery.
async fn receive_parts(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    mut grant: Grant,
    pending: &mut Vec<Pending>,
) -> Result<(), Error> {
    let config = &state.config;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.max_request_bytes) {
        return Err(Error::TooLarge(format!(
            "the request is larger than the limit of {} bytes",
            config.max_request_bytes
        )));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|_| match grant {
        // Without a credential there is nothing to say about the body.
        Grant::TokenInForm => Error::Forbidden,
        Grant::Key | Grant::Token(_) => {
            Error::BadRequest("the body must be multipart/form-data with a boundary".into())
        }
    })?;
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(config.max_request_bytes));
    let budget = HeaderBudget::new(HEADER_BYTES);
    let stream = budget.guard(paced(body, state.pace()));
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut count = 0usize;
    let mut before_token = 0usize;
    loop {
        budget.open();
        let next = multipart.next_field().await.map_err(multipart_error)?;
        budget.close();
        let Some(mut field) = next else {
            break;
        };
        let Some(name) = file_part_name(&field) else {
            let waiting = matches!(grant, Grant::TokenInForm);
            if waiting && field.name() == Some("token") {
                let token = token_field(&mut field).await?;
                let claims = state
                    .tokens
                    .verify(&token, auth::origin(headers))
                    .map_err(Error::Token)?;
                state.tokens.ensure_unspent(&claims).await?;
                grant = Grant::Token(claims);
                continue;
            }
            // An ordinary form field: read past it here, so its data is not
            // counted as header bytes by the search for the next part.
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(multipart_error)?;
                if waiting {
                    before_token += chunk.len();
                    if before_token > BEFORE_TOKEN_BYTES {
                        return Err(Error::Forbidden);
                    }
                }
            }
            continue;
        };
        count += 1;
        if count > config.max_files_per_request {
            return Err(Error::TooLarge(format!(
                "more than {} files in one request",
                config.max_files_per_request
            )));
        }
        let delivery = match &grant {
            Grant::Key => store_file(state, &mut field, None, declared).await?,
            Grant::Token(claims) => {
                state.tokens.take_file(claims).await?;
                let stored = store_file(state, &mut field, Some(claims), declared).await;
                if stored.is_err() {
                    state.tokens.give_back(claims).await;
                }
                stored?
            }
            Grant::TokenInForm => return Err(Error::Forbidden),
        };
        pending.push(Pending { name, delivery });
    }
    if matches!(grant, Grant::TokenInForm) {
        return Err(Error::Forbidden);
    }
    if count == 0 {
        return Err(Error::BadRequest(
            "no file in the request (a part with a filename)".into(),
        ));
    }
    Ok(())
}

/// Receives one file part within the server's limits and those of a
/// token's `claims`, and stores it.
async fn store_file(
    state: &Arc<AppState>,
    field: &mut multer::Field<'_>,
    claims: Option<&Claims>,
    declared: Option<u64>,
) -> Result<Delivery, Error> {
    let started = Instant::now();
    let (limit, allowed) = file_limits(&state.config, claims);
    let chunks = field.map(|chunk| chunk.map_err(multipart_error));
    let (incoming, streams) = receive(state, chunks, limit, &allowed, declared).await?;
    deliver(
        state,
        Received::Incoming(Box::new(incoming)),
        streams,
        Via::Multipart,
        started,
    )
    .await
}

/// The largest file and the types a request may store: the server's, or
/// narrower by a token's `claims`.
pub(super) fn file_limits(config: &Config, claims: Option<&Claims>) -> (u64, Vec<ImageType>) {
    let limit = claims
        .and_then(|c| c.max_bytes)
        .map_or(config.max_file_bytes, |max| max.min(config.max_file_bytes));
    let allowed: Vec<ImageType> = match claims.and_then(|c| c.types.as_ref()) {
        Some(types) => config
            .allowed_types
            .iter()
            .copied()
            .filter(|t| types.contains(t))
            .collect(),
        None => config.allowed_types.clone(),
    };
    (limit, allowed)
}

/// How every upload's pictures are checked and stripped.
pub(super) fn image_rules(config: &Config) -> ImageRules {
    ImageRules {
        limits: config.images.limits(),
        strip_metadata: config.images.strip_metadata,
    }
}

/// Receives one file from `chunks` (a multipart part, or a finished
/// resumable upload read back): at most `limit` bytes of one of `allowed`,
/// sending a large one to the peers as it arrives. [`deliver`] finishes it
/// (checked and stripped as every upload is). `declared`: the size the
/// request announced, which decides that streaming.
pub(super) async fn receive(
    state: &AppState,
    mut chunks: impl futures_util::Stream<Item = Result<bytes::Bytes, Error>> + Unpin,
    limit: u64,
    allowed: &[ImageType],
    declared: Option<u64>,
) -> Result<(Incoming, Streams), Error> {
    let mut incoming = state
        .storage
        .begin(limit, allowed, image_rules(&state.config))?;
    // A large file also goes to the peers as it arrives; if this file
    // fails, dropping `streams` leaves nothing on any peer.
    let mut streams = Streams::new(&state.replicator, declared);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        incoming.write(chunk.clone()).await?;
        streams.feed(&chunk, || incoming.sniffed()).await;
    }
    Ok((incoming, streams))
}

/// Finishes a received file, gives it its public name and delivers it to
/// the peers, in a task of its own: once it takes its public name, its
/// record, its delivery and its journal entries happen even if the client
/// goes away, so no file stays on this server alone unrecorded. Returns
/// once the file is stored here (or refused: the error), with the
/// delivery still under way. The file's time since `started` is observed
/// once it is delivered.
pub(super) async fn deliver(
    state: &Arc<AppState>,
    received: Received,
    streams: Streams,
    via: Via,
    started: Instant,
) -> Result<Delivery, Error> {
    let state = state.clone();
    let (stored_tx, stored) = oneshot::channel();
    let task = tokio::spawn(async move {
        let path = streams.path().cloned();
        let committed = match received {
            Received::Incoming(incoming) => state.storage.commit_incoming(*incoming, path).await,
            Received::Written(written) => state.storage.commit_written(written, path).await,
        };
        let Committed {
            file,
            rewritten,
            content,
            ..
        } = match committed {
            Ok(committed) => {
                let _ = stored_tx.send(Ok(committed.dimensions));
                committed
            }
            Err(e) => {
                let _ = stored_tx.send(Err(e));
                return None;
            }
        };
        super::variants::make_thumbnail_soon(&state, &file.path);
        tracing::info!(path = %file.path, size = file.size, sha256 = %file.sha256, "stored");
        let streamed = streams.finish(&file, rewritten).await;
        let replicas = replication::deliver(
            &state.replicator,
            &state.storage,
            &state.journal,
            &state.config.server_name,
            &file,
            content.as_ref(),
            &streamed,
        )
        .await;
        state
            .replicator
            .latency()
            .upload_file(via, started.elapsed());
        Some((file, replicas))
    });
    let dimensions = stored
        .await
        .map_err(|_| Error::internal("the file's task ended before it was stored"))?
        .map_err(Error::from)?;
    Ok(Delivery { dimensions, task })
}

/// The value of a `token` form field, bounded.
async fn token_field(field: &mut multer::Field<'_>) -> Result<String, Error> {
    let mut value = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(multipart_error)?;
        if value.len() + chunk.len() > MAX_TOKEN_LEN {
            return Err(Error::Token(Refusal::Malformed("longer than 4096 bytes")));
        }
        value.extend_from_slice(&chunk);
    }
    String::from_utf8(value)
        .map(|v| v.trim().to_owned())
        .map_err(|_| Error::Token(Refusal::Malformed("not text")))
}

/// Removes a stored file whose link will not be handed out.
async fn discard(state: &AppState, file: &StoredFile) {
    if let Err(e) = state.storage.discard(&file.path).await {
        tracing::error!(path = %file.path, error = %e, "could not remove an unannounced file");
    }
}

fn file_entry(
    base: &str,
    name: &str,
    dimensions: Dimensions,
    file: &StoredFile,
    replicas: &[ReplicaOutcome],
) -> Value {
    let replicas = replicas_answer(replicas);
    json!({
        "name": name,
        "link": format!("{base}/{}", file.path),
        "path": file.path.to_string(),
        "size": file.size,
        "sha256": file.sha256,
        "type": file.path.image_type().mime(),
        "width": dimensions.width,
        "height": dimensions.height,
        "replicas": replicas,
    })
}

/// Each peer's outcome as an answer lists it (uploads and deletes).
pub(super) fn replicas_answer(replicas: &[ReplicaOutcome]) -> Vec<Value> {
    replicas
        .iter()
        .map(|r| {
            let mut v = json!({ "peer": r.peer, "ok": u8::from(r.ok) });
            if let Some(error) = &r.error {
                v["error"] = error.clone().into();
                v["journaled"] = u8::from(r.journaled).into();
            }
            v
        })
        .collect()
}

/// The filename of a file part, or `None` for an ordinary form field.
/// multer only reads UTF-8 names; a part whose `filename` is in another
/// encoding (GBK from a Chinese Windows client) is still a file.
fn file_part_name(field: &multer::Field<'_>) -> Option<String> {
    let raw = field.headers().get(header::CONTENT_DISPOSITION)?.as_bytes();
    // Decided here, not by multer, which also finds ` filename=` inside a
    // quoted field name.
    let value = filename_parameter(raw)?;
    if let Some(name) = field.file_name() {
        return Some(client_name(name));
    }
    let value = String::from_utf8_lossy(value);
    let value = value.trim_start_matches([' ', '\t', '"']);
    Some(client_name(value.split(['"', ';']).next().unwrap_or("")))
}

/// The raw value after `filename=` (or `filename*=`) in a Content-Disposition,
/// if it has that parameter. Only a parameter counts: `filename` inside a
/// quoted value or as part of another name (a text field called `filename`
/// or `original_filename`) does not make the part a file.
fn filename_parameter(raw: &[u8]) -> Option<&[u8]> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, &b) in raw.iter().enumerate() {
        if quoted {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            continue;
        }
        if b == b'"' {
            quoted = true;
            continue;
        }
        let starts = at == 0 || raw[at - 1] == b';' || raw[at - 1].is_ascii_whitespace();
        let Some(rest) = raw
            .get(at..at + 8)
            .filter(|name| starts && name.eq_ignore_ascii_case(b"filename"))
            .map(|_| &raw[at + 8..])
        else {
            continue;
        };
        let rest = rest.strip_prefix(b"*").unwrap_or(rest);
        if let Some(value) = rest.trim_ascii_start().strip_prefix(b"=") {
            return Some(value);
        }
    }
    None
}

/// The client's filename, for the answer only: never part of any path.
pub(super) fn client_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    last.chars()
        .filter(|c| !c.is_control())
        .take(NAME_LIMIT)
        .collect()
}

pub(super) fn multipart_error(e: multer::Error) -> Error {
    match e {
        multer::Error::StreamReadFailed(source) => match source.downcast::<BodyError>() {
            Ok(body) => Error::from(*body),
            Err(other) => Error::BadRequest(format!("the body could not be read: {other}")),
        },
        multer::Error::StreamSizeExceeded { limit } => Error::TooLarge(format!(
            "the request is larger than the limit of {limit} bytes"
        )),
        multer::Error::ReadHeaderFailed(_) => Error::BadRequest(
            "malformed multipart body: a part's headers are not valid \
             (raw control characters or bad syntax)"
                .into(),
        ),
        other => Error::BadRequest(format!("malformed multipart body: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_are_reduced_to_a_harmless_label() {
        assert_eq!(client_name("../../etc/passwd"), "passwd");
        assert_eq!(client_name("C:\\Users\\a\\photo.jpg"), "photo.jpg");
        assert_eq!(client_name("a\0b\r\n.jpg"), "ab.jpg");
        assert_eq!(client_name(&"x".repeat(1000)).len(), NAME_LIMIT);
    }

    #[test]
    fn only_a_filename_parameter_makes_a_file() {
        for (raw, value) in [
            (
                r#"form-data; name="file"; filename="a.jpg""#,
                Some(r#""a.jpg""#),
            ),
            ("form-data; name=file; FileName = a.jpg", Some(" a.jpg")),
            (
                "form-data; filename*=UTF-8''%E4%B8%AD.jpg",
                Some("UTF-8''%E4%B8%AD.jpg"),
            ),
            (r#"filename="a\"b.jpg""#, Some(r#""a\"b.jpg""#)),
            (r#"form-data; name="filename""#, None),
            (r#"form-data; name="original_filename""#, None),
            (r#"form-data; name="a; filename=b""#, None),
            (r#"form-data; name="a\" filename=b""#, None),
            (r#"form-data; name="gfilename*=U""#, None),
            (r#"form-data; name="file"; filenames="a.jpg""#, None),
        ] {
            let found = filename_parameter(raw.as_bytes()).map(String::from_utf8_lossy);
            assert_eq!(found.as_deref(), value, "{raw}");
        }
    }
}
