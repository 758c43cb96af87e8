//! Replication: copying a durable stored file to every peer (SPEC §4).
//!
//! Each copy is a `PUT {peer.Uri}?action=sync&path=…` streamed from disk over
//! one process-wide pooled keep-alive client, with the peer's key in
//! `X-Security-Key` and the content's SHA-256 in `X-Content-SHA256`. All peers
//! are sent to at once; a semaphore bounds the transfers in flight over the
//! whole process. A peer that makes no progress (no body bytes taken, no
//! answer) for the idle timeout has failed: progress, not total time, is what
//! is bounded, so a large file on a slow link still gets through.
//!
//! [`deliver`] is the step the upload path calls: copy to all peers, then
//! journal every failed copy before returning, so §4's invariant holds
//! whenever a link is handed out.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::io::ReaderStream;

use crate::config::{Config, Peer};
use crate::journal::{Journal, JournalEntry};
use crate::storage::{Storage, StoredFile};

/// Size of the reads that feed a replica's request body.
const READ_CHUNK: usize = 256 * 1024;
/// At most this much of a peer's error answer is kept for the journal.
const ERROR_BODY_LIMIT: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("cannot read the local file: {0}")]
    Source(#[source] std::io::Error),
    #[error("no progress for {0} s")]
    Stalled(u64),
    #[error("peer answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("{0}")]
    Transport(String),
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

#[derive(Debug, Clone)]
pub struct Replicator {
    client: reqwest::Client,
    peers: Arc<[Peer]>,
    idle_timeout: Duration,
    in_flight: Arc<Semaphore>,
}

impl Replicator {
    pub fn new(config: &Config) -> Result<Self, reqwest::Error> {
        let r = &config.replication;
        let client = reqwest::Client::builder()
            .connect_timeout(r.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("multiserver-upload/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            peers: config.peers.clone().into(),
            idle_timeout: r.idle_timeout,
            in_flight: Arc::new(Semaphore::new(r.concurrency)),
        })
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    pub fn peer(&self, name: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// Sends one stored file to one peer; `Ok` once the peer confirmed it.
    pub async fn send(
        &self,
        peer: &Peer,
        source: &Path,
        file: &StoredFile,
    ) -> Result<(), ReplicationError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|e| ReplicationError::Transport(e.to_string()))?;
        let body = tokio::fs::File::open(source)
            .await
            .map_err(ReplicationError::Source)?;
        let progress = Progress::new();
        let stream = {
            let progress = progress.clone();
            ReaderStream::with_capacity(body, READ_CHUNK).inspect(move |_| progress.touch())
        };
        let mut url = peer.uri.clone();
        url.query_pairs_mut()
            .append_pair("action", "sync")
            .append_pair("path", &file.path.to_string());
        let request = self
            .client
            .put(url)
            .header("X-Security-Key", &peer.security_key)
            .header("X-Content-SHA256", &file.sha256)
            .header(reqwest::header::CONTENT_LENGTH, file.size)
            .body(reqwest::Body::wrap_stream(stream));
        let exchange = async {
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            progress.touch();
            if status.is_success() {
                return Ok(());
            }
            let text = response.text().await.unwrap_or_default();
            Err(ReplicationError::Refused {
                status: status.as_u16(),
                message: error_message(&text),
            })
        };
        tokio::select! {
            result = exchange => result,
            () = progress.stalled(self.idle_timeout) => {
                Err(ReplicationError::Stalled(self.idle_timeout.as_secs()))
            }
        }
    }
}

/// Copies `file` to every peer at once and journals each failed copy.
/// Returns `Err` only if a failure could not be journaled: then no link may
/// be handed out for the file.
pub async fn deliver(
    replicator: &Replicator,
    storage: &Storage,
    journal: &Journal,
    from: &str,
    file: &StoredFile,
) -> std::io::Result<Vec<ReplicaOutcome>> {
    let source = &storage.file_path(&file.path);
    let results = futures_util::future::join_all(
        replicator
            .peers()
            .iter()
            .map(|peer| async move { (peer, replicator.send(peer, source, file).await) }),
    )
    .await;
    let mut outcomes = Vec::with_capacity(results.len());
    let mut failed = Vec::new();
    for (peer, result) in results {
        match result {
            Ok(()) => {
                tracing::info!(peer = %peer.name, path = %file.path, "replicated");
                outcomes.push(ReplicaOutcome {
                    peer: peer.name.clone(),
                    ok: true,
                    error: None,
                    journaled: false,
                });
            }
            Err(e) => {
                tracing::warn!(peer = %peer.name, path = %file.path, error = %e, "replication failed, journaled");
                failed.push(JournalEntry {
                    id: uuid::Uuid::new_v4(),
                    time: chrono::Local::now(),
                    from: from.to_owned(),
                    peer: peer.name.clone(),
                    path: file.path.to_string(),
                    size: file.size,
                    sha256: file.sha256.clone(),
                    attempts: 1,
                    last_error: e.to_string(),
                    last_attempt: None,
                    needs_operator: false,
                });
                outcomes.push(ReplicaOutcome {
                    peer: peer.name.clone(),
                    ok: false,
                    error: Some(e.to_string()),
                    journaled: true,
                });
            }
        }
    }
    journal.append(failed).await?;
    Ok(outcomes)
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
    let mut innermost = None;
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    ReplicationError::Transport(innermost.unwrap_or_else(|| e.to_string()))
}

/// The `<error>` of a peer's answer if there is one, else its first bytes.
fn error_message(body: &str) -> String {
    let inner = body
        .split_once("<error>")
        .and_then(|(_, rest)| rest.split_once("</error>"))
        .map(|(e, _)| e);
    let text = inner.unwrap_or(body).trim();
    text.chars().take(ERROR_BODY_LIMIT).collect()
}
