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
//! Anyone may also ask for names that exist nowhere, each of which costs a
//! request to every peer. So a name that every peer answered for and none
//! has is remembered for [`MISS_TTL`] (asked again, it is 404 at once), and
//! misses are rationed: a bucket of [`MISS_BURST`] refilled at
//! [`MISSES_PER_SEC`]; a fetch takes a token before asking and gives it
//! back when the name was found, so only misses spend them. While the
//! bucket is empty a name not yet known is answered 503 (not cached)
//! without asking anyone: clients of real files then wait a moment, and a
//! flood of random names reaches the peers at that rate at most.
//!
//! A fetch for a waiting client is bounded as a whole, not only until the
//! peer answers: see [`Fetcher::for_clients`].
//!
//! What a peer answers on another server's behalf (from its own disk only)
//! is the serving side's business, in `http/files.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::Semaphore;

use super::{FetchError, Fetcher};
use crate::config::Peer;
use crate::metrics::ReadThroughEnd;
use crate::storage::{Storage, StoredPath};

/// How long a peer may take to start answering while a client waits.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// The slowest a peer may send a file while a client waits: 3 s plus the
/// file's size at this rate for the whole fetch.
const MIN_BYTES_PER_SEC: u64 = 256 * 1024;
/// Different names fetched at once; a request beyond that is answered 503.
const MAX_FETCHES: usize = 64;
/// How long "no peer has it" is remembered for a name.
pub const MISS_TTL: Duration = Duration::from_secs(10);
/// Names remembered at most; past that the expired ones go, and if none
/// has, all (the cache only saves peer requests, it promises nothing).
const MAX_REMEMBERED: usize = 100_000;
/// Misses that may be asked of the peers at once after a quiet while.
pub const MISS_BURST: f64 = 50.0;
/// Misses asked of the peers per second, in the long run.
pub const MISSES_PER_SEC: f64 = 10.0;

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
    misses: Mutex<Misses>,
}

/// Names no peer had a moment ago, and the tokens left for asking about
/// new names.
#[derive(Debug)]
struct Misses {
    /// Name → when it may be asked again.
    known: HashMap<StoredPath, Instant>,
    tokens: f64,
    refilled: Instant,
}

impl Misses {
    fn new() -> Self {
        Self {
            known: HashMap::new(),
            tokens: MISS_BURST,
            refilled: Instant::now(),
        }
    }

    fn is_known(&mut self, path: &StoredPath, now: Instant) -> bool {
        match self.known.get(path) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.known.remove(path);
                false
            }
            None => false,
        }
    }

    /// Takes a token, if one is left.
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * MISSES_PER_SEC).min(MISS_BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(MISS_BURST);
    }

    fn remember(&mut self, path: StoredPath, now: Instant) {
        if self.known.len() >= MAX_REMEMBERED {
            self.known.retain(|_, until| *until > now);
            if self.known.len() >= MAX_REMEMBERED {
                self.known.clear();
            }
        }
        self.known.insert(path, now + MISS_TTL);
    }
}

impl ReadThrough {
    pub fn new(fetcher: Fetcher, peers: Vec<Peer>, storage: Storage) -> Self {
        Self {
            inner: Arc::new(Inner {
                fetcher: fetcher.for_clients(ANSWER_TIMEOUT, MIN_BYTES_PER_SEC),
                peers,
                storage,
                in_flight: Mutex::default(),
                fetches: Semaphore::new(MAX_FETCHES),
                misses: Mutex::new(Misses::new()),
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
        {
            let mut misses = self.misses();
            let now = Instant::now();
            if misses.is_known(path, now) {
                return Lookup::Nowhere;
            }
            if !misses.take(now) {
                tracing::debug!(%path, "read-through: too many names no peer had; not asked");
                return Lookup::Unavailable;
            }
        }
        let started = Instant::now();
        let lookup = self.ask_each_peer(path).await;
        let end = match lookup {
            Lookup::Here => ReadThroughEnd::Fetched,
            Lookup::Deleted => ReadThroughEnd::Deleted,
            Lookup::Nowhere => ReadThroughEnd::Nowhere,
            Lookup::Unavailable => ReadThroughEnd::Unavailable,
        };
        self.inner
            .fetcher
            .latency()
            .read_through(end, started.elapsed());
        let mut misses = self.misses();
        match lookup {
            Lookup::Nowhere => misses.remember(path.clone(), Instant::now()),
            Lookup::Here | Lookup::Deleted => misses.give_back(),
            Lookup::Unavailable => {}
        }
        lookup
    }

    fn misses(&self) -> std::sync::MutexGuard<'_, Misses> {
        self.inner
            .misses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the peers one after another until one has `path`.
    async fn ask_each_peer(&self, path: &StoredPath) -> Lookup {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn path(n: u8) -> StoredPath {
        StoredPath::parse(&format!("2026/3/4/{n:08x}-0000-4000-8000-000000000000.jpg"))
            .expect("path")
    }

    #[test]
    fn a_miss_is_known_for_its_time_only() {
        let mut misses = Misses::new();
        let now = Instant::now();
        misses.remember(path(1), now);
        assert!(misses.is_known(&path(1), now + MISS_TTL / 2));
        assert!(!misses.is_known(&path(2), now));
        assert!(!misses.is_known(&path(1), now + MISS_TTL));
        assert!(misses.known.is_empty());
    }

    #[test]
    fn only_misses_spend_the_bucket_and_it_refills_at_its_rate() {
        let mut misses = Misses::new();
        let now = misses.refilled;
        for _ in 0..MISS_BURST as usize {
            assert!(misses.take(now));
        }
        assert!(!misses.take(now));
        // A found name gives its token back.
        misses.give_back();
        assert!(misses.take(now));
        assert!(!misses.take(now));
        // One token every 1 / MISSES_PER_SEC seconds.
        let later = now + Duration::from_secs_f64(1.5 / MISSES_PER_SEC);
        assert!(misses.take(later));
        assert!(!misses.take(later));
    }
}
