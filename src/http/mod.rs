//! The HTTP interface (SPEC §2): the router, its shared state and the
//! dispatch of `do.ashx` actions. Handlers are thin: the dispatch asks the
//! request's credential whether it may do the action (`crate::auth`), then a
//! handler picks the answer format, calls the domain step and answers.

mod auth;
mod body;
mod cors;
mod delete;
mod error;
mod files;
mod health;
mod log;
mod metrics;
mod objects;
mod origin;
mod page;
mod params;
mod repair;
mod replay;
mod respond;
mod stats;
mod sync;
mod token;
mod tus;
mod upload;
mod variants;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::Response;
use axum::routing::{any, get};
use serde_json::Map;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::{Action, Credential, Keys, Tokens};
use crate::config::Config;
use crate::downloads::Downloads;
use crate::images::cache::{CacheSettings, VariantCache};
use crate::images::variant::DecodeLimits;
use crate::journal::{Journal, Replayer};
use crate::repair::{Fetcher, ReadThrough, RepairStatus, Scrubber};
use crate::replication::{FROM_HEADER, Replicator, SERVER_HEADER};
use crate::resumable::Resumable;
use crate::storage::{BackendSettings, Storage};
use auth::Caller;
use error::Error;
use origin::Origin;
use params::Params;
use respond::Format;
use upload::Grant;

pub use params::redact;

/// Everything a request may need, built once in `serve`.
pub struct AppState {
    pub config: Arc<Config>,
    /// The keys this server accepts, by role.
    keys: Keys,
    /// Upload tokens: their secrets and the files each has stored here.
    tokens: Tokens,
    /// Uploads and replicas being received; `max_uploads_in_flight` permits.
    receiving: Arc<Semaphore>,
    pub storage: Storage,
    pub replicator: Replicator,
    pub journal: Journal,
    pub replayer: Arc<Replayer>,
    /// Brings stored files from peers (repair, read-through).
    pub fetcher: Fetcher,
    /// Fetches a missing stored file while its client waits.
    read_through: ReadThrough,
    /// Rehashes stored files in the background (started by `serve`).
    pub scrubber: Scrubber,
    /// What the repair worker did, per peer.
    pub repair: Arc<RepairStatus>,
    /// The last writability probes, shared by `/healthz` callers.
    health: health::Probes,
    /// Request and byte counters for `/metrics`.
    metrics: metrics::Metrics,
    /// Thumbnails and widths made here.
    variants: VariantCache,
    /// Partial uploads (tus).
    pub resumable: Resumable,
    /// Served GETs of stored files, per name.
    pub downloads: Downloads,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        tokens: Tokens,
        storage: Storage,
        replicator: Replicator,
        journal: Journal,
        replayer: Arc<Replayer>,
        fetcher: Fetcher,
    ) -> std::io::Result<Self> {
        // Partial uploads are staged on the data disks (each volume its own
        // staging folder); with a bucket, where uploads are received.
        let staging_dirs = match &config.storage {
            BackendSettings::Disk { data_dirs, .. } => data_dirs.clone(),
            BackendSettings::S3(_) => vec![config.data_dir.clone()],
        };
        let resumable = Resumable::open(
            &staging_dirs,
            config.resumable.clone(),
            config.fsync,
            tokens.clone(),
            storage.disk_tasks(),
        )?;
        let variants = VariantCache::new(
            storage.variants_dir(),
            CacheSettings {
                workers: config.images.workers,
                queue: config.images.queue,
                max_bytes: config.images.variants_max_bytes,
                limits: DecodeLimits {
                    max_pixels: config.images.max_pixels,
                    max_side: config.images.max_side,
                },
            },
            replicator.latency().clone(),
        );
        let metrics = metrics::Metrics::new(replicator.latency());
        let downloads = Downloads::new(storage.index().cloned(), &config.downloads);
        Ok(Self {
            downloads,
            read_through: ReadThrough::new(fetcher.clone(), config.peers.clone(), storage.clone()),
            scrubber: Scrubber::new(storage.clone(), fetcher.clone(), config.peers.clone()),
            fetcher,
            repair: Arc::new(RepairStatus::default()),
            receiving: Arc::new(Semaphore::new(config.max_uploads_in_flight)),
            keys: Keys::new(&config.security_key, &config.auth),
            config,
            tokens,
            storage,
            replicator,
            journal,
            replayer,
            health: health::Probes::default(),
            metrics,
            variants,
            resumable,
        })
    }

    /// Uploads and replicas being received now, and the most allowed at
    /// once (`max_uploads_in_flight`).
    pub fn uploads_in_flight(&self) -> (usize, usize) {
        let max = self.config.max_uploads_in_flight;
        (max.saturating_sub(self.receiving.available_permits()), max)
    }

    /// A place among the uploads in flight, or `Busy`.
    fn receive_permit(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.receiving
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Busy)
    }

    /// Every key this server knows, for logs to leave out.
    fn secrets(&self) -> Vec<&str> {
        self.config.secrets()
    }

    /// How slow an uploading client may be.
    fn pace(&self) -> body::Pace {
        body::Pace {
            idle: self.config.client_idle_timeout,
            min_rate: self.config.client_min_bytes_per_sec,
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/do.ashx", any(do_ashx))
        .route("/.m/upload", get(page::handle))
        .route("/.m/upload.aspx", get(page::handle))
        .route("/.m/{asset}", get(page::asset))
        .route("/healthz", get(health::handle))
        .route("/metrics", get(metrics::handle))
        .route("/files", any(tus::collection))
        .route("/files/", any(tus::collection))
        .route("/files/{id}", any(tus::upload))
        .route("/{year}/{month}/{day}/{name}", get(files::handle))
        // Limits are enforced per file and per request while streaming.
        .layer(DefaultBodyLimit::disable());
    // Without listed origins the CORS layer is left out, not bypassed: the
    // answers are exactly those of a service without CORS, at no cost.
    let routes = if state.config.cors.allowed_origins.is_empty() {
        routes
    } else {
        routes.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cors::layer,
        ))
    };
    routes
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            log::request_line,
        ))
        .with_state(state)
}

/// Every `do.ashx` answer names this server (see [`SERVER_HEADER`]): a
/// sender counts a copy only when the answer comes from the peer it meant.
async fn do_ashx(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let name = HeaderValue::from_bytes(state.config.server_name.as_bytes()).ok();
    let mut response = action(state, request).await;
    if let Some(name) = name {
        response
            .headers_mut()
            .insert(HeaderName::from_static(SERVER_HEADER), name);
    }
    response
}

async fn action(state: Arc<AppState>, request: Request) -> Response {
    let params = Params::parse(request.uri().query());
    let format = Format::from_param(params.format.as_deref());
    let action = params.action.as_deref().unwrap_or("").to_ascii_lowercase();
    // The credential is checked before anything else, and before any body
    // byte is read: a client without one learns nothing and sends nothing.
    let method = request.method().clone();
    let grant = match allowed(&state, &params, request.headers(), &action, &method) {
        Ok(grant) => grant,
        Err(e) => return e.answer(format, Map::new()),
    };
    match action.as_str() {
        "upload" if method == Method::POST => {
            let _permit = match state.receive_permit() {
                Ok(permit) => permit,
                Err(e) => return e.answer(format, Map::new()),
            };
            let origin = Origin::of(&request, &state.config.trusted_proxies);
            let (parts, body) = request.into_parts();
            upload::handle(state, format, origin, &parts.headers, body, grant).await
        }
        "upload" => not_allowed(format, "upload", "POST"),
        "uploaderrors" if method == Method::GET || method == Method::POST => {
            replay::handle(state, format).await
        }
        "uploaderrors" => not_allowed(format, "uploaderrors", "GET or POST"),
        "sync" if method == Method::PUT || method == Method::POST => {
            let _permit = match state.receive_permit() {
                Ok(permit) => permit,
                Err(e) => return e.answer(format, Map::new()),
            };
            let (parts, body) = request.into_parts();
            sync::handle(state, format, params.path.as_deref(), &parts.headers, body).await
        }
        "sync" => not_allowed(format, "sync", "PUT or POST"),
        "delete" if method == Method::POST => {
            delete::handle(state, format, params.path.as_deref(), request.headers()).await
        }
        "delete" => not_allowed(format, "delete", "POST"),
        "restore" if method == Method::POST => {
            delete::restore(state, format, params.path.as_deref(), request.headers()).await
        }
        "restore" => not_allowed(format, "restore", "POST"),
        "forget" if method == Method::POST => {
            delete::forget(state, params.path.as_deref(), request.headers()).await
        }
        "forget" => not_allowed(Format::Json, "forget", "POST"),
        "digest" if method == Method::GET => {
            repair::digest(state, params.prefix.as_deref(), params.after.as_deref()).await
        }
        "digest" => not_allowed(Format::Json, "digest", "GET"),
        "list" if method == Method::GET => {
            repair::list(state, params.day.as_deref(), params.after.as_deref()).await
        }
        "list" => not_allowed(Format::Json, "list", "GET"),
        "token" if method == Method::POST => {
            let query = request.uri().query().map(str::to_owned);
            let (parts, body) = request.into_parts();
            token::handle(state, format, query.as_deref(), &parts.headers, body).await
        }
        "token" => not_allowed(format, "token", "POST"),
        "stats" if method == Method::GET => stats::handle(state, format, &params).await,
        "stats" => not_allowed(format, "stats", "GET"),
        _ => Error::UnknownAction.answer(format, Map::new()),
    }
}

/// Whether the request's credential may do `action`: a 403 without a
/// known key, a 400 for an unknown action, a 403 naming the credential
/// needed for one it may not do.
///
/// An upload's credential may also be a token in its first form field,
/// when this server takes tokens: the body is then read up to that field,
/// and the upload refuses a file before it.
fn allowed(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
    action: &str,
    method: &Method,
) -> Result<Grant, Error> {
    let needed = needs(action, headers);
    let (credential, grant) = match auth::caller(state, params, headers)? {
        Caller::Key(credential) => (credential, Grant::Key),
        Caller::Token(claims) => (Credential::Token, Grant::Token(claims)),
        Caller::Anonymous
            if needed == Some(Action::Upload)
                && method == Method::POST
                && state.tokens.enabled() =>
        {
            (Credential::Token, Grant::TokenInForm)
        }
        Caller::Anonymous => return Err(Error::Forbidden),
    };
    let needed = needed.ok_or(Error::UnknownAction)?;
    credential.may(needed, state.keys.admin_configured())?;
    Ok(grant)
}

/// What each `do.ashx` action asks of the credential; `None`: no such
/// action. A delete or restore that names its sender in [`FROM_HEADER`] is
/// a peer passing its own on.
fn needs(action: &str, headers: &HeaderMap) -> Option<Action> {
    let passed_on = headers.contains_key(FROM_HEADER);
    Some(match action {
        "upload" => Action::Upload,
        "uploaderrors" => Action::Replay,
        "sync" => Action::Sync,
        "delete" | "restore" if passed_on => Action::PeerNotice,
        "delete" => Action::Delete,
        "restore" => Action::Restore,
        "forget" => Action::Forget,
        "digest" | "list" => Action::Compare,
        "token" => Action::MintToken,
        "stats" => Action::Stats,
        _ => return None,
    })
}

fn not_allowed(format: Format, action: &'static str, allowed: &'static str) -> Response {
    Error::MethodNotAllowed { action, allowed }.answer(format, Map::new())
}
