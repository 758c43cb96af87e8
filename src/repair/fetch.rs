//! Fetching one stored file from a peer: `GET {peer}/{yyyy}/{M}/{d}/{name}`
//! with [`REPAIR_HEADER`], so the peer answers from its own disk only (never
//! by asking further peers: no loops), and with the peer's key. The body is
//! streamed into storage like a replica: the same type, header and size
//! checks, and it must hash to what the peer's index says (the
//! `X-Content-SHA256` of its answer, or the hash the caller already knows);
//! nothing from a peer is trusted unchecked. Redirects are not followed.

use std::time::Duration;

use futures_util::StreamExt;

use crate::config::{Config, Peer};
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
}

impl Fetcher {
    pub fn new(config: &Config, storage: Storage) -> Result<Self, reqwest::Error> {
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
        })
    }

    /// The same fetcher, giving up on a peer that has not answered within
    /// `limit` (the body still only has to keep moving): for a client
    /// waiting on the other end.
    pub fn answering_within(mut self, limit: Duration) -> Self {
        self.answer_timeout = limit;
        self
    }

    /// The HTTP client, for other requests to peers on repair's behalf.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Brings `path` from `peer` and stores it under the same name. With
    /// `expected`, the content must hash to it whatever the peer says.
    pub async fn fetch(
        &self,
        peer: &Peer,
        path: &StoredPath,
        expected: Option<&str>,
    ) -> Result<Arrival, FetchError> {
        let url = peer
            .uri
            .join(&path.to_string())
            .map_err(|e| FetchError::Unreachable(e.to_string()))?;
        let request = self
            .client
            .get(url)
            .header(REPAIR_HEADER, "1")
            .header("X-Security-Key", &peer.security_key)
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
        let expected = match (expected, announced) {
            (Some(known), _) => known.to_ascii_lowercase(),
            (None, Some(announced)) => announced,
            (None, None) => return Err(FetchError::NoHash),
        };
        let mut incoming = self
            .storage
            .begin(self.max_file_bytes, &self.allowed, self.rules)?;
        let mut body = response.bytes_stream();
        loop {
            let next = tokio::time::timeout(self.idle_timeout, body.next())
                .await
                .map_err(|_| FetchError::Stalled(self.idle_timeout.as_secs()))?;
            match next {
                Some(Ok(chunk)) => incoming.write(chunk).await?,
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
