//! Read-through (SPEC §4a): a stored-file name asked for here but missing
//! (a replaced disk, a file not replicated yet) is fetched from a peer that
//! has it, kept after its hash checks, and then served as if it had always
//! been here.
//!
//! Peers are asked one after another, each with a short answer timeout,
//! and the first that has the name wins. Concurrent requests for one name
//! share one fetch: the fetch runs as a task of its own (a client that goes
//! away does not cancel it for the others) and leaves the map of fetches in
//! flight when it ends. A name deleted here is never fetched, and the
//! number of names fetched at once is bounded, since anyone may ask for any
//! name.
//!
//! What a peer answers on another server's behalf (from its own disk only)
//! is the serving side's business, in `http/files.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::Semaphore;

use super::{FetchError, Fetcher};
use crate::config::Peer;
use crate::storage::{Storage, StoredPath};

/// How long a peer may take to start answering while a client waits.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// Different names fetched at once; a request beyond that is answered 503.
const MAX_FETCHES: usize = 64;

/// What became of a missing name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// It is here now: serve it.
    Here,
    /// Every peer was asked and none has it.
    Nowhere,
    /// It was deleted here: nobody is asked.
    Deleted,
    /// A peer could not be asked (down, too slow, a bad answer) and no peer
    /// had it: perhaps later.
    Unavailable,
}

type Pending = Shared<BoxFuture<'static, Lookup>>;

#[derive(Debug, Clone)]
pub struct ReadThrough {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    fetcher: Fetcher,
    peers: Vec<Peer>,
    storage: Storage,
    in_flight: Mutex<HashMap<StoredPath, Pending>>,
    fetches: Semaphore,
}

impl ReadThrough {
    pub fn new(fetcher: Fetcher, peers: Vec<Peer>, storage: Storage) -> Self {
        Self {
            inner: Arc::new(Inner {
                fetcher: fetcher.answering_within(ANSWER_TIMEOUT),
                peers,
                storage,
                in_flight: Mutex::default(),
                fetches: Semaphore::new(MAX_FETCHES),
            }),
        }
    }

    /// Brings `path` here from a peer, or says why not; joins the fetch of
    /// the same name already in flight, if there is one.
    pub async fn fetch(&self, path: &StoredPath) -> Lookup {
        let pending = {
            let mut in_flight = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            in_flight
                .entry(path.clone())
                .or_insert_with(|| self.start(path.clone()))
                .clone()
        };
        pending.await
    }

    /// Starts the fetch of `path` as a task; it removes itself from the map
    /// when done (it cannot before it is in it: the map is locked now).
    fn start(&self, path: StoredPath) -> Pending {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let lookup = this.ask_peers(&path).await;
            this.inner
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&path);
            lookup
        });
        async move {
            task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "read-through task failed");
                Lookup::Unavailable
            })
        }
        .boxed()
        .shared()
    }

    async fn ask_peers(&self, path: &StoredPath) -> Lookup {
        let storage = &self.inner.storage;
        // A fetch that ended just before this one began may have brought it.
        if storage.find_file(path).await.is_some() {
            return Lookup::Here;
        }
        let Some(index) = storage.index() else {
            return Lookup::Nowhere;
        };
        match index.is_deleted(path) {
            Ok(true) => return Lookup::Deleted,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, %path, "index read failed; not fetched");
                return Lookup::Unavailable;
            }
        }
        let Ok(_permit) = self.inner.fetches.try_acquire() else {
            tracing::warn!(%path, "too many read-through fetches at once; not fetched");
            return Lookup::Unavailable;
        };
        let mut unavailable = false;
        for peer in &self.inner.peers {
            match self.inner.fetcher.fetch(peer, path, None).await {
                Ok(arrival) => {
                    tracing::info!(%path, peer = %peer.name, ?arrival, "read-through: fetched from a peer");
                    return Lookup::Here;
                }
                Err(FetchError::NotThere(_)) => {}
                Err(FetchError::Storage(crate::storage::StorageError::Deleted)) => {
                    return Lookup::Deleted;
                }
                Err(e) => {
                    tracing::warn!(%path, peer = %peer.name, error = %e, "read-through: the peer could not be asked");
                    unavailable = true;
                }
            }
        }
        if unavailable {
            Lookup::Unavailable
        } else {
            Lookup::Nowhere
        }
    }
}
