//! Fetching one stored file from a peer: `GET {peer}/{yyyy}/{M}/{d}/{name}`
//! with [`REPAIR_HEADER`], so the peer answers from its own disk only (never
//! by asking further peers: no loops), and with the peer's key. The body is
//! streamed into storage like a replica: the same type, header and size
//! checks, and it must hash to what the peer's index says (the
//! `X-Content-SHA256` of its answer, or the hash the caller already knows);
//! nothing from a peer is trusted unchecked. Redirects are not followed.
//!
//! The body is held to the size declared for it: the size an index gave
//! (the peer's list, or ours) and the answer's `Content-Length` must agree,
//! an answer without either is refused before a byte is written, and
//! reading stops at the first byte past it. A declared size over
//! `max_file_bytes` is refused at once. For a client waiting on the other
//! end ([`Fetcher::for_clients`]) the whole fetch has a deadline that grows
//! with the declared size, so a peer that trickles cannot hold the client.

use std::time::Duration;

use futures_util::StreamExt;

use crate::config::{Config, Peer};
use crate::metrics::Latency;
use crate::storage::{Arrival, ImageRules, Storage, StorageError, StoredPath};

/// Marks a request made on another server's behalf: answer from your own
/// disk only.
pub const REPAIR_HEADER: &str = "x-multiserver-repair";
/// The SHA-256 a peer's index holds for the file it sends.
pub const HASH_HEADER: &str = "x-content-sha256";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The peer does not have it (404) or deleted it (410).
    #[error("the peer does not have it ({0})")]
    NotThere(u16),
    #[error("the peer answered {0}")]
    Refused(u16),
    #[error("the peer gave no usable X-Content-SHA256")]
    NoHash,
    #[error("{0}")]
    Unreachable(String),
    #[error("the peer stopped sending for {0} s")]
    Stalled(u64),
    #[error("the peer declared no size for the file")]
    NoSize,
    #[error("the peer's answer is {announced} bytes long, its index says {declared}")]
    SizeDisagrees { declared: u64, announced: u64 },
    #[error("the peer declared {0} bytes, over max_file_bytes")]
    TooLarge(u64),
    #[error("the peer sent more than the {0} bytes it declared; nothing kept")]
    LongerThanDeclared(u64),
    #[error("the peer took longer than {0} s to send the file")]
    TooSlow(u64),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    storage: Storage,
    max_file_bytes: u64,
    allowed: Vec<crate::storage::ImageType>,
    /// Limits checked, metadata left as the peer stored it.
    rules: ImageRules,
    idle_timeout: Duration,
    /// How long the peer may take to answer (connecting included).
    answer_timeout: Duration,
    /// The slowest a peer may send a whole file, if bounded: the fetch's
    /// deadline is `answer_timeout` plus the declared size at this rate.
    min_bytes_per_sec: Option<u64>,
    latency: Latency,
}

impl Fetcher {
    pub fn new(
        config: &Config,
        storage: Storage,
        latency: Latency,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.replication.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .user_agent(concat!("multiserver-upload/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            storage,
            max_file_bytes: config.max_file_bytes,
            allowed: config.allowed_types.clone(),
            rules: ImageRules {
                limits: config.images.limits(),
                strip_metadata: false,
            },
            idle_timeout: config.replication.idle_timeout,
            answer_timeout: config.replication.idle_timeout,
            min_bytes_per_sec: None,
            latency,
        })
    }

    /// The process's histograms, which fetches are timed into.
    pub(crate) fn latency(&self) -> &Latency {
        &self.latency
    }

    /// The same fetcher for a client waiting on the other end: it gives up
    /// on a peer that has not answered within `answer`, and on one whose
    /// whole file has not arrived by `answer` plus its declared size at
    /// `min_bytes_per_sec`.
    pub fn for_clients(mut self, answer: Duration, min_bytes_per_sec: u64) -> Self {
        self.answer_timeout = answer;
        self.min_bytes_per_sec = Some(min_bytes_per_sec.max(1));
        self
    }

    /// The HTTP client, for other requests to peers on repair's behalf.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Brings `path` from `peer` and stores it under the same name. With
    /// `known` (SHA-256 and size from an index), the content must be that
    /// whatever the peer's answer says.
    pub async fn fetch(
        &self,
        peer: &Peer,
        path: &StoredPath,
        known: Option<(&str, u64)>,
    ) -> Result<Arrival, FetchError> {
        let started = tokio::time::Instant::now();
        let result = self.bring(peer, path, known, started).await;
        self.latency.fetch(&peer.name, started.elapsed());
        result
    }

    async fn bring(
        &self,
        peer: &Peer,
        path: &StoredPath,
        known: Option<(&str, u64)>,
        started: tokio::time::Instant,
    ) -> Result<Arrival, FetchError> {
        let url = peer
            .uri
            .join(&path.to_string())
            .map_err(|e| FetchError::Unreachable(e.to_string()))?;
        let request = self
            .client
            .get(url)
            .header(REPAIR_HEADER, "1")
            .header("X-Security-Key", &peer.key)
            .send();
        let response = tokio::time::timeout(self.answer_timeout, request)
            .await
            .map_err(|_| FetchError::Stalled(self.answer_timeout.as_secs()))?
            .map_err(|e| FetchError::Unreachable(crate::replication::transport_cause(&e)))?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            404 | 410 => return Err(FetchError::NotThere(status)),
            _ => return Err(FetchError::Refused(status)),
        }
        let announced = response
            .headers()
            .get(HASH_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase);
        let length = response.content_length();
        let declared = match (known.map(|k| k.1), length) {
            (Some(declared), Some(announced)) if declared != announced => {
                return Err(FetchError::SizeDisagrees {
                    declared,
                    announced,
                });
            }
            (Some(size), _) | (None, Some(size)) => size,
            (None, None) => return Err(FetchError::NoSize),
        };
        if declared > self.max_file_bytes {
            return Err(FetchError::TooLarge(declared));
        }
        let expected = match (known, announced) {
            (Some((known, _)), _) => known.to_ascii_lowercase(),
            (None, Some(announced)) => announced,
            (None, None) => return Err(FetchError::NoHash),
        };
        let deadline = self.min_bytes_per_sec.map(|rate| {
            let allowed = self.answer_timeout + Duration::from_secs(declared / rate);
            (started + allowed, allowed.as_secs())
        });
        let mut incoming = self.storage.begin(declared, &self.allowed, self.rules)?;
        let mut body = response.bytes_stream();
        let mut received = 0u64;
        loop {
            let idle = tokio::time::Instant::now() + self.idle_timeout;
            let until = deadline.map_or(idle, |(at, _)| at.min(idle));
            let Ok(next) = tokio::time::timeout_at(until, body.next()).await else {
                return Err(match deadline {
                    Some((at, secs)) if at <= idle => FetchError::TooSlow(secs),
                    _ => FetchError::Stalled(self.idle_timeout.as_secs()),
                });
            };
            match next {
                Some(Ok(chunk)) => {
                    // Nothing past the declared size is written: the
                    // temporary file goes with `incoming`.
                    received += chunk.len() as u64;
                    if received > declared {
                        return Err(FetchError::LongerThanDeclared(declared));
                    }
                    incoming.write(chunk).await?;
                }
                Some(Err(e)) => {
                    return Err(FetchError::Unreachable(
                        crate::replication::transport_cause(&e),
                    ));
                }
                None => break,
            }
        }
        let written = incoming.finish().await?;
        Ok(self
            .storage
            .commit_replica(written, path, &expected)
            .await?)
    }
}
