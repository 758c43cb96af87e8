//! Replication: copying a durable stored file to every peer (SPEC §4).
//!
//! Each copy is a `PUT {peer.Uri}?action=sync&path=…&format=json` streamed
//! from disk over one process-wide pooled keep-alive client, with the peer's
//! key in `X-Security-Key` and the content's SHA-256 in `X-Content-SHA256`.
//! All peers are sent to at once. A peer that makes no progress (no body
//! bytes taken, no answer) for the idle timeout has failed: progress, not
//! total time, is what is bounded, so a large file on a slow link still gets
//! through.
//!
//! A copy counts only when the peer itself confirmed it: a 2xx answer, not a
//! redirect (none is followed: the peer's key would go wherever it points),
//! naming the peer in [`SERVER_HEADER`], with the service's success envelope
//! for that path. At most a few KiB of any answer is read.
//!
//! Each peer has its own transfer permits for uploads and as many again for
//! replays, so a hung peer holds up neither the other peers nor the replays,
//! and its own [`breaker`]: once it failed in a way that costs time, its
//! upload copies are journaled at once until its backoff passes. A per-file
//! refusal (400, 409, 413, 415 from the peer itself) says nothing about the
//! peer's health: such a copy is journaled for an operator and the breaker
//! is left alone.
//!
//! A large upload's copies may also be streamed to the peers while it
//! arrives (`stream.rs`); that only saves time. [`deliver`] is the step the
//! upload path calls: copy to every peer that did not confirm a streamed
//! copy, then journal every failed copy before returning, so §4's invariant
//! holds whenever a link is handed out.

mod answer;
mod breaker;
mod stream;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::io::ReaderStream;

use crate::config::{Config, Peer};
use crate::journal::{Journal, JournalEntry, Operation};
use crate::metrics::Latency;
use crate::storage::{Storage, StoredFile, StoredPath, open_regular};

pub(crate) use answer::{
    SERVER_HEADER, envelope, error_text, escape_controls, is_success, read_limited,
};
pub use breaker::BreakerStatus;
use breaker::{Breaker, Open};
pub use stream::{FILE_FIELD, HASH_FIELD, Streamed, Streams};

/// The request header with which a server passes a delete on to its
/// peers, naming itself: the receiving peer deletes the name locally and
/// tells nobody else (no loops).
pub const FROM_HEADER: &str = "x-multiserver-from";

/// Size of the reads that feed a replica's request body.
const READ_CHUNK: usize = 256 * 1024;
/// At most this much of a peer's answer is read; a `sync` answer is a
/// hundred bytes or so.
const ANSWER_LIMIT: usize = 4 * 1024;
/// At most this many characters of a peer's error are kept.
const ERROR_TEXT_LIMIT: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("cannot read the local file: {0}")]
    Source(#[source] std::io::Error),
    #[error("no progress for {0} s")]
    Stalled(u64),
    /// The peer refused this file for good; resending cannot help.
    #[error("peer refused the file ({status}): {message}")]
    Refused { status: u16, message: String },
    /// The peer deleted this name (410): it never takes it again, so the
    /// copy is dropped, not kept.
    #[error("the peer deleted this name; the copy is dropped")]
    DeletedThere,
    /// Nothing listens at the peer's address (its host said so at once).
    #[error("{0}")]
    ConnectionRefused(String),
    #[error("peer answered {status}: {message}")]
    Answered { status: u16, message: String },
    /// The answer did not come from the peer (its Uri leads elsewhere).
    #[error("the answer did not come from this peer: {0}; check its Uri in servers.xml.config")]
    NotThePeer(String),
    /// A 2xx answer that is not the service's success envelope.
    #[error("peer answered {status} without confirming the copy: {message}")]
    NotConfirmed { status: u16, message: String },
    #[error("not sent: the peer failed just before ({cause}); next try in {retry_in_secs} s")]
    BreakerOpen { cause: String, retry_in_secs: u64 },
    #[error("{0}")]
    Transport(String),
}

impl ReplicationError {
    /// The copy will never succeed as it is: keep it for an operator.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }

    /// How the failure bears on the peer's breaker: `None` if it says
    /// nothing about the peer (this file, this server, not tried), else
    /// whether it cost time.
    fn peer_failure(&self) -> Option<bool> {
        match self {
            Self::Source(_)
            | Self::Refused { .. }
            | Self::DeletedThere
            | Self::BreakerOpen { .. } => None,
            Self::ConnectionRefused(_) => Some(false),
            Self::Stalled(_)
            | Self::Answered { .. }
            | Self::NotThePeer(_)
            | Self::NotConfirmed { .. }
            | Self::Transport(_) => Some(true),
        }
    }
}

impl From<Open> for ReplicationError {
    fn from(open: Open) -> Self {
        Self::BreakerOpen {
            cause: open.cause,
            retry_in_secs: open.retry_in.as_secs().max(1),
        }
    }
}

/// Which share of a peer's permits a copy takes.
#[derive(Debug, Clone, Copy)]
pub enum Lane {
    /// A copy of a new upload.
    Upload,
    /// A replay round, begun when the peer's breaker had recorded `since`
    /// failures ([`Replicator::mark`]).
    Replay { since: u64 },
}

/// Where a copy's bytes come from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The stored file.
    Disk(&'a Path),
    /// The stored bytes, still in memory (a small upload): no file is
    /// opened or read to send them.
    Memory(&'a Bytes),
}

/// One peer's outcome for one file, as reported to the uploader.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaOutcome {
    pub peer: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failed copy is in the journal and will be retried.
    pub journaled: bool,
}

/// A peer with its transfer permits and its breaker.
#[derive(Debug)]
struct Link {
    peer: Peer,
    /// Shared with the streamed copies, which hold theirs in a task.
    uploads: Arc<Semaphore>,
    replays: Semaphore,
    breaker: Breaker,
}

#[derive(Debug, Clone)]
pub struct Replicator {
    client: reqwest::Client,
    peers: Arc<[Peer]>,
    links: Arc<[Link]>,
    idle_timeout: Duration,
    /// Upload permits per peer.
    concurrency: usize,
    latency: Latency,
}

impl Replicator {
    pub fn new(config: &Config, latency: Latency) -> Result<Self, reqwest::Error> {
        let r = &config.replication;
        let client = reqwest::Client::builder()
            .connect_timeout(r.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("multiserver-upload/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let links = config
            .peers
            .iter()
            .map(|peer| Link {
                peer: peer.clone(),
                uploads: Arc::new(Semaphore::new(r.concurrency)),
                replays: Semaphore::new(r.concurrency),
                breaker: Breaker::new(r.retry_interval, r.max_retry_interval),
            })
            .collect();
        Ok(Self {
            client,
            peers: config.peers.clone().into(),
            links,
            idle_timeout: r.idle_timeout,
            concurrency: r.concurrency,
            latency,
        })
    }

    /// The process's histograms, which copies are timed into.
    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    pub fn peer(&self, name: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// Whether `name` (as raw header bytes) is one of the peers.
    pub fn peer_named(&self, name: &[u8]) -> bool {
        self.peers.iter().any(|p| p.name.as_bytes() == name)
    }

    fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.peer.name == name)
    }

    /// The failure count a replay round of `peer` starts from (see [`Lane`]).
    pub fn mark(&self, peer: &str) -> u64 {
        self.link(peer).map_or(0, |l| l.breaker.mark())
    }

    /// The peer's breaker is closed, or its backoff has passed: time to
    /// replay to it.
    pub fn is_due(&self, peer: &str) -> bool {
        self.link(peer)
            .is_some_and(|l| l.breaker.is_due(Instant::now()))
    }

    /// Each peer's breaker, in servers.xml.config order.
    pub fn breakers(&self) -> impl Iterator<Item = (&str, BreakerStatus)> {
        self.links
            .iter()
            .map(|l| (l.peer.name.as_str(), l.breaker.status(Instant::now())))
    }

    /// Sends one stored file to one peer; `Ok` once the peer confirmed it.
    /// A copy whose peer's breaker is open is not tried.
    pub async fn send(
        &self,
        lane: Lane,
        peer: &Peer,
        source: Source<'_>,
        file: &StoredFile,
    ) -> Result<(), ReplicationError> {
        self.guarded(lane, peer, |peer| async move {
            let started = Instant::now();
            let result = self.transfer(peer, source, file).await;
            self.latency.replica(&peer.name, started.elapsed());
            result
        })
        .await
    }

    /// Tells one peer that `path` was deleted or restored here (`from`
    /// names this server, so the peer applies it locally and tells nobody
    /// else); once the peer confirmed it, whether the peer held the name
    /// (a delete) or had it in its trash (a restore). A peer that does not
    /// say is taken to have held it. Permits and breaker as for a copy.
    pub async fn send_notice(
        &self,
        lane: Lane,
        peer: &Peer,
        notice: Notice,
        path: &StoredPath,
        from: &str,
    ) -> Result<bool, ReplicationError> {
        let had = std::sync::atomic::AtomicBool::new(true);
        self.guarded(lane, peer, |peer| self.tell(peer, notice, path, from, &had))
            .await?;
        Ok(had.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Runs `exchange` with one of `peer`'s permits of `lane`, unless its
    /// breaker is open, and tells the breaker how it went.
    async fn guarded<'a, F>(
        &'a self,
        lane: Lane,
        peer: &Peer,
        exchange: impl FnOnce(&'a Peer) -> F,
    ) -> Result<(), ReplicationError>
    where
        F: Future<Output = Result<(), ReplicationError>>,
    {
        let link = self
            .link(&peer.name)
            .ok_or_else(|| ReplicationError::Transport(format!("`{}` is not a peer", peer.name)))?;
        let breaker = &link.breaker;
        // Checked before waiting for a permit (no wait at all while the peer
        // is known to fail), and again after: copies that waited while the
        // peer failed must not each wait for it again.
        let permits = match lane {
            Lane::Upload => {
                breaker.check(Instant::now())?;
                &link.uploads
            }
            Lane::Replay { since } => {
                breaker.check_replay(since, Instant::now())?;
                &link.replays
            }
        };
        let _permit = permits
            .acquire()
            .await
            .map_err(|e| ReplicationError::Transport(e.to_string()))?;
        let started = breaker.mark();
        match lane {
            Lane::Upload => breaker.admit(Instant::now())?,
            Lane::Replay { since } => breaker.admit_replay(since, Instant::now())?,
        }
        let result = exchange(&link.peer).await;
        link.record(started, &result);
        result
    }

    async fn transfer(
        &self,
        peer: &Peer,
        source: Source<'_>,
        file: &StoredFile,
    ) -> Result<(), ReplicationError> {
        let progress = Progress::new();
        let body = match source {
            Source::Memory(content) => reqwest::Body::from(content.clone()),
            Source::Disk(path) => {
                let opened = path.to_path_buf();
                let body = tokio::task::spawn_blocking(move || open_regular(&opened))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|opened| opened)
                    .map(|(file, _)| tokio::fs::File::from_std(file))
                    .map_err(ReplicationError::Source)?;
                // A file that is not the size recorded is this server's
                // problem (scrub's to find), not the peer's: it must not
                // count against the peer's breaker as a broken transfer.
                let len = body
                    .metadata()
                    .await
                    .map_err(ReplicationError::Source)?
                    .len();
                if len != file.size {
                    return Err(ReplicationError::Source(std::io::Error::other(format!(
                        "the stored file has {len} bytes, not the {} recorded",
                        file.size
                    ))));
                }
                let progress = progress.clone();
                reqwest::Body::wrap_stream(
                    ReaderStream::with_capacity(body, READ_CHUNK)
                        .inspect(move |_| progress.touch()),
                )
            }
        };
        let request = self
            .client
            .put(sync_url(peer, &file.path))
            .header("X-Security-Key", &peer.key)
            .header("X-Content-SHA256", &file.sha256)
            .header(reqwest::header::CONTENT_LENGTH, file.size)
            .body(body);
        let exchange = async {
            let response = request.send().await.map_err(transport)?;
            progress.touch();
            judge(peer, &file.path, response, &progress).await
        };
        tokio::select! {
            result = exchange => result,
            () = progress.stalled(self.idle_timeout) => {
                Err(ReplicationError::Stalled(self.idle_timeout.as_secs()))
            }
        }
    }
}

impl Replicator {
    async fn tell(
        &self,
        peer: &Peer,
        notice: Notice,
        path: &StoredPath,
        from: &str,
        had: &std::sync::atomic::AtomicBool,
    ) -> Result<(), ReplicationError> {
        let mut url = peer.uri.clone();
        url.query_pairs_mut()
            .append_pair("action", notice.action())
            .append_pair("path", &path.to_string())
            .append_pair("format", "json");
        let request = self
            .client
            .post(url)
            .header("X-Security-Key", &peer.notice_key)
            .header(FROM_HEADER, from);
        let progress = Progress::new();
        let exchange = async {
            let response = request.send().await.map_err(transport)?;
            progress.touch();
            let resp = confirm(peer, path, response, &progress).await?;
            if let Some(said) = resp
                .get(notice.had_field())
                .and_then(serde_json::Value::as_u64)
            {
                had.store(said != 0, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        };
        tokio::select! {
            result = exchange => result,
            () = progress.stalled(self.idle_timeout) => {
                Err(ReplicationError::Stalled(self.idle_timeout.as_secs()))
            }
        }
    }
}

/// `{peer.Uri}?action=sync&path=…&format=json`: where a copy of `path` goes.
fn sync_url(peer: &Peer, path: &StoredPath) -> reqwest::Url {
    let mut url = peer.uri.clone();
    url.query_pairs_mut()
        .append_pair("action", "sync")
        .append_pair("path", &path.to_string())
        .append_pair("format", "json");
    url
}

/// Whether `response` confirms that `peer` did what it was asked for
/// `path`.
async fn judge(
    peer: &Peer,
    path: &StoredPath,
    response: reqwest::Response,
    progress: &Progress,
) -> Result<(), ReplicationError> {
    confirm(peer, path, response, progress).await.map(|_| ())
}

/// [`judge`], with the confirming answer's envelope.
async fn confirm(
    peer: &Peer,
    path: &StoredPath,
    response: reqwest::Response,
    progress: &Progress,
) -> Result<serde_json::Map<String, serde_json::Value>, ReplicationError> {
    let status = response.status();
    let named = response
        .headers()
        .get(SERVER_HEADER)
        .map(|v| v.as_bytes().to_vec());
    if status.is_redirection() {
        let to = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| {
                let text: String = String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(200)
                    .collect();
                escape_controls(&text)
            })
            .unwrap_or_default();
        return Err(ReplicationError::Answered {
            status: status.as_u16(),
            message: format!("a redirect to `{to}`, not followed"),
        });
    }
    let body = match read_limited(response, ANSWER_LIMIT, || progress.touch()).await {
        Ok(body) => body,
        Err(e) if status.is_success() => return Err(transport(e)),
        // What a failing peer said is only for the message.
        Err(_) => Vec::new(),
    };
    let from_peer = named.as_deref() == Some(peer.name.as_bytes());
    if from_peer && status == StatusCode::GONE {
        return Err(ReplicationError::DeletedThere);
    }
    if !status.is_success() {
        let status_code = status.as_u16();
        let message = error_text(&body, ERROR_TEXT_LIMIT);
        return Err(if from_peer && refuses_for_good(status) {
            ReplicationError::Refused {
                status: status_code,
                message,
            }
        } else {
            ReplicationError::Answered {
                status: status_code,
                message,
            }
        });
    }
    if !from_peer {
        return Err(ReplicationError::NotThePeer(match named {
            Some(name) => format!(
                "it names `{}`",
                escape_controls(
                    &String::from_utf8_lossy(&name)
                        .chars()
                        .take(64)
                        .collect::<String>()
                )
            ),
            None => format!("no {SERVER_HEADER} header"),
        }));
    }
    let confirmed = envelope(&body).filter(|resp| {
        is_success(resp)
            && resp.get("path").and_then(serde_json::Value::as_str) == Some(&path.to_string())
    });
    if let Some(resp) = confirmed {
        Ok(resp)
    } else {
        Err(ReplicationError::NotConfirmed {
            status: status.as_u16(),
            message: error_text(&body, ERROR_TEXT_LIMIT),
        })
    }
}

/// Statuses with which a peer refuses one file for a reason of the file's
/// own (SPEC §8): bad path or hash, another file under the name, too large,
/// a type it does not take.
fn refuses_for_good(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::CONFLICT
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
    )
}

/// Copies `file` to every peer at once, except those that confirmed a
/// streamed copy of it (`streamed`), and journals each failed copy.
/// Returns `Err` only if a failure could not be journaled: then no link may
/// be handed out for the file.
pub async fn deliver(
    replicator: &Replicator,
    storage: &Storage,
    journal: &Journal,
    from: &str,
    file: &StoredFile,
    content: Option<&Bytes>,
    streamed: &Streamed,
) -> std::io::Result<Vec<ReplicaOutcome>> {
    // `None` only when every peer has its streamed copy already, or the
    // bytes are still in memory.
    let on_disk = if content.is_some() || replicator.peers().iter().all(|p| streamed.has(p)) {
        None
    } else {
        Some(storage.find_file(&file.path).await.ok_or_else(|| {
            std::io::Error::other(format!("{} is not on this server's disks", file.path))
        })?)
    };
    let source = match (content, &on_disk) {
        (Some(content), _) => Some(Source::Memory(content)),
        (None, Some(path)) => Some(Source::Disk(path)),
        (None, None) => None,
    };
    let results =
        futures_util::future::join_all(replicator.peers().iter().map(|peer| async move {
            let owed = source.filter(|_| !streamed.has(peer));
            let result = match owed {
                Some(source) => replicator.send(Lane::Upload, peer, source, file).await,
                None => Ok(()),
            };
            (peer, result)
        }))
        .await;
    let mut outcomes = Vec::with_capacity(results.len());
    let mut failed = Vec::new();
    for (peer, result) in results {
        match result {
            Ok(()) => {
                let streamed = streamed.has(peer);
                tracing::info!(peer = %peer.name, path = %file.path, streamed, "replicated");
                outcomes.push(ReplicaOutcome::confirmed(peer));
            }
            Err(e @ ReplicationError::DeletedThere) => {
                tracing::warn!(peer = %peer.name, path = %file.path, "the peer deleted this name; copy dropped");
                outcomes.push(ReplicaOutcome {
                    peer: peer.name.clone(),
                    ok: false,
                    error: Some(e.to_string()),
                    journaled: false,
                });
            }
            Err(e) => {
                if e.is_permanent() {
                    tracing::warn!(peer = %peer.name, path = %file.path, error = %e, "replica refused, journaled for an operator");
                } else {
                    tracing::warn!(peer = %peer.name, path = %file.path, error = %e, "replication failed, journaled");
                }
                failed.push(owed(Operation::Copy, from, peer, file, &e));
                outcomes.push(ReplicaOutcome::journaled(peer, &e));
            }
        }
    }
    journal.append(failed).await?;
    Ok(outcomes)
}

/// What a server passes on to its peers about a name, besides copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The name was deleted (`action=delete`).
    Delete,
    /// The deleted name was restored from the trash (`action=restore`).
    Restore,
}

impl Notice {
    pub fn action(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Restore => "restore",
        }
    }

    /// The field of the answer that says whether the peer had the name:
    /// `held` (held or had held it) for a delete, `restored` (from its
    /// trash) for a restore.
    pub fn had_field(self) -> &'static str {
        match self {
            Self::Delete => "held",
            Self::Restore => "restored",
        }
    }

    fn operation(self) -> Operation {
        match self {
            Self::Delete => Operation::Delete,
            Self::Restore => Operation::Restore,
        }
    }
}

/// What the peers answered to a [`Notice`].
#[derive(Debug)]
pub struct Announced {
    pub outcomes: Vec<ReplicaOutcome>,
    /// A peer had the name, or could not be asked (it may have it).
    pub maybe_had: bool,
}

/// Tells every peer at once that `path` was deleted or restored here and
/// journals each peer that could not be told, so that it learns it later.
/// Returns `Err` only if that could not be journaled.
pub async fn announce(
    replicator: &Replicator,
    journal: &Journal,
    notice: Notice,
    from: &str,
    path: &StoredPath,
) -> std::io::Result<Announced> {
    let results =
        futures_util::future::join_all(replicator.peers().iter().map(|peer| async move {
            (
                peer,
                replicator
                    .send_notice(Lane::Upload, peer, notice, path, from)
                    .await,
            )
        }))
        .await;
    let mut outcomes = Vec::with_capacity(results.len());
    let mut failed = Vec::new();
    let mut maybe_had = false;
    let noticed = StoredFile {
        path: path.clone(),
        size: 0,
        sha256: String::new(),
    };
    for (peer, result) in results {
        match result {
            Ok(had) => {
                tracing::info!(peer = %peer.name, %path, action = notice.action(), had, "passed on");
                maybe_had |= had;
                outcomes.push(ReplicaOutcome::confirmed(peer));
            }
            Err(e) => {
                tracing::warn!(peer = %peer.name, %path, action = notice.action(), error = %e, "not passed on, journaled");
                maybe_had = true;
                failed.push(owed(notice.operation(), from, peer, &noticed, &e));
                outcomes.push(ReplicaOutcome::journaled(peer, &e));
            }
        }
    }
    journal.append(failed).await?;
    Ok(Announced {
        outcomes,
        maybe_had,
    })
}

/// The journal entry of what `peer` could not be given.
fn owed(
    op: Operation,
    from: &str,
    peer: &Peer,
    file: &StoredFile,
    e: &ReplicationError,
) -> JournalEntry {
    JournalEntry {
        id: uuid::Uuid::new_v4(),
        op,
        time: chrono::Local::now(),
        from: from.to_owned(),
        peer: peer.name.clone(),
        path: file.path.to_string(),
        size: file.size,
        sha256: file.sha256.clone(),
        attempts: 1,
        last_error: e.to_string(),
        last_attempt: None,
        needs_operator: e.is_permanent(),
    }
}

impl ReplicaOutcome {
    fn confirmed(peer: &Peer) -> Self {
        Self {
            peer: peer.name.clone(),
            ok: true,
            error: None,
            journaled: false,
        }
    }

    fn journaled(peer: &Peer, e: &ReplicationError) -> Self {
        Self {
            peer: peer.name.clone(),
            ok: false,
            error: Some(e.to_string()),
            journaled: true,
        }
    }
}

impl Link {
    /// Tells the breaker how a copy that began when it had counted
    /// `started` failures went.
    fn record(&self, started: u64, result: &Result<(), ReplicationError>) {
        match result {
            Ok(()) => self.breaker.succeeded(),
            Err(e) => {
                if let Some(costly) = e.peer_failure() {
                    self.breaker
                        .failed(&e.to_string(), costly, started, Instant::now());
                }
            }
        }
    }
}

/// The last moment a transfer moved, for the idle timeout.
#[derive(Clone)]
struct Progress {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `idle`.
    async fn stalled(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A transport error as its innermost cause ("Connection refused (os error
/// 111)"): the outer layers only repeat the URL and the client's layers, and
/// the text is shown to people on the upload page and in the journal.
fn transport(e: reqwest::Error) -> ReplicationError {
    let refused = causes(&e).any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    let text = transport_cause(&e);
    if refused {
        ReplicationError::ConnectionRefused(text)
    } else {
        ReplicationError::Transport(text)
    }
}

/// The innermost cause of a transport error, control characters escaped.
pub(crate) fn transport_cause(e: &reqwest::Error) -> String {
    escape_controls(
        &causes(e)
            .last()
            .map_or_else(|| e.to_string(), |c| c.to_string()),
    )
}

fn causes<'a>(
    e: &'a reqwest::Error,
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> + 'a {
    std::iter::successors(std::error::Error::source(e), |cause| cause.source())
}
