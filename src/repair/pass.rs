//! One anti-entropy pass against one peer (SPEC §4a), pull only: this
//! server fetches what it lacks; the peer, in its own pass, fetches what
//! it lacks from here.
//!
//! The root digests first: when they agree, that one small request is the
//! whole pass. Else down the tree, newest first, only where the digests
//! differ: years, months, days; for a differing day the peer's list, a
//! page at a time. For each page the peer's tombstones are applied before
//! anything is fetched, so a name deleted there is never fetched here; then
//! every file the peer has, this server lacks and has not deleted, and that
//! is older than `settle_secs`, is fetched and hash-checked against the
//! peer's index and held to the size it lists ([`Fetcher`]).
//! A name held on both sides with different content is kept as it is and
//! reported (scrub decides which copy is damaged, not this pass).
//!
//! The peer is not trusted: its answers are read up to a bound and checked
//! (`wire.rs`: in order, no repeats, each page past the last), and a pass
//! asks at most [`MAX_REQUESTS`] pages, so a peer that lies about its tree
//! ends its own pass with an error instead of holding repair with every
//! other peer. An answer that cannot be read fails the pass with an error
//! saying why, in the pass report and the log.
//!
//! Nothing is remembered between passes: each one derives from the two
//! indexes what is missing, so a pass stopped at any instant (a kill, a
//! peer that went away) is simply finished by the next one. Fetches go to a
//! temporary file and are published whole, like replicas.
//!
//! Repair yields: fetches wait while more than half of the upload places
//! are taken, stay under `max_bytes_per_sec`, and stop while the data
//! folder is nearly full.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::NaiveDate;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::fetch::FetchError;
use super::status::PassReport;
use super::wire::{
    DIGEST_LIMIT, DigestPage, LIST_LIMIT, ListPage, ListedEntry, WireError, day_text, read_digest,
    read_list,
};
use super::worker::Repairer;
use crate::config::Peer;
use crate::index::{DayList, Digest, Index, IndexError, Prefix, day_date, level};
use crate::replication::{SERVER_HEADER, error_text, read_limited};
use crate::storage::{Arrival, StorageError, StoredPath};

/// Digest and list pages one pass asks at most: far beyond a real tree
/// (a new server of a cluster ten years old with a thousand files a day
/// asks about 4,000), and a bigger backlog is simply taken up by the next
/// pass, which finds the days already repaired in agreement.
const MAX_REQUESTS: u64 = 100_000;
/// Free space a fetch must leave in the data folder.
const FREE_SPACE_RESERVE: u64 = 64 * 1024 * 1024;
/// How often a fetch waiting for uploads to calm down looks again.
const YIELD_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("{0}")]
    Unreachable(String),
    #[error("no answer within {0} s")]
    Stalled(u64),
    /// The peer's own words are logged where they arrive, never kept here:
    /// this text is shown by `/healthz`, which needs no key.
    #[error("the peer answered {0}")]
    Answered(u16),
    #[error("the answer did not come from this peer; check its Uri in servers.xml.config")]
    NotThePeer,
    #[error("the peer's answer is not understood: {0}")]
    BadAnswer(String),
    #[error(
        "the peer's answer is longer than {0} bytes (a peer of an older version that does not page?); not read"
    )]
    TooLong(usize),
    #[error("the pass asked {0} pages and stopped; the next pass goes on")]
    TooManyRequests(u64),
    #[error("the peer stopped sending a file: {0}")]
    Fetch(String),
    #[error("the data folder has {0} bytes free; fetching stopped until the next pass")]
    DiskNearlyFull(u64),
    #[error("the data folder is full; fetching stopped until the next pass")]
    DiskFull,
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// A node of the tree still to look at.
enum Node {
    Ask(Prefix),
    Day(u32),
}

impl From<WireError> for RepairError {
    fn from(e: WireError) -> Self {
        Self::BadAnswer(e.to_string())
    }
}

/// A file to fetch.
struct Wanted {
    path: StoredPath,
    sha256: String,
    size: u64,
}

/// Keeps repair's average rate under `max_bytes_per_sec`: each fetch
/// starts no earlier than the bytes before it allow.
struct Pace {
    start: Instant,
    rate: u64,
    reserved: AtomicU64,
}

impl Pace {
    async fn admit(&self, size: u64) {
        if self.rate == 0 {
            return;
        }
        let before = self.reserved.fetch_add(size, Ordering::Relaxed);
        let due = self.start + Duration::from_secs_f64(before as f64 / self.rate as f64);
        tokio::time::sleep_until(due).await;
    }
}

impl Repairer {
    /// Compares with `peer` and fetches what this server lacks.
    pub(super) async fn pass(&self, peer: &Peer) -> PassReport {
        let started = Instant::now();
        let mut report = PassReport {
            started: chrono::Local::now().to_rfc3339(),
            ..PassReport::default()
        };
        let result = self.walk(peer, &mut report).await;
        // What was fetched is in the index before the next peer's pass
        // compares, so nothing is fetched twice.
        let flushed = match self.storage.index() {
            Some(index) => index.flush().await,
            None => Ok(()),
        };
        match result.and(flushed.map_err(RepairError::from)) {
            Ok(()) => report.complete = true,
            Err(e) => {
                report.errors += 1;
                report.last_error = Some(e.to_string());
            }
        }
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        report
    }

    async fn walk(&self, peer: &Peer, report: &mut PassReport) -> Result<(), RepairError> {
        let ours = blocking(self.storage.index(), Index::days).await?;
        let pace = Pace {
            start: Instant::now(),
            rate: self.config.repair.max_bytes_per_sec,
            reserved: AtomicU64::new(0),
        };
        let mut asked = 0;
        let mut stack = vec![Node::Ask(Prefix::Root)];
        while let Some(node) = stack.pop() {
            match node {
                Node::Ask(prefix) => {
                    let mut differing = self
                        .differing(peer, prefix, &ours, &mut asked, report)
                        .await?;
                    // Pushed oldest first, so the newest is looked at first.
                    differing.sort_unstable();
                    for name in differing {
                        stack.push(match (prefix.child(name), prefix) {
                            (Some(child), _) => Node::Ask(child),
                            (None, Prefix::Month(year, month)) => {
                                Node::Day(year * 10_000 + month * 100 + name)
                            }
                            (None, _) => continue,
                        });
                    }
                }
                Node::Day(day) => {
                    self.repair_day(peer, day, &pace, &mut asked, report)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The children of `prefix` whose digests differ from ours, the
    /// peer's node read a page at a time; none when the nodes agree.
    async fn differing(
        &self,
        peer: &Peer,
        prefix: Prefix,
        ours: &[(u32, Digest)],
        asked: &mut u64,
        report: &mut PassReport,
    ) -> Result<Vec<u32>, RepairError> {
        let mine = level(ours, prefix);
        let node = mine.digest;
        let mine: HashMap<u32, Digest> = mine.children.into_iter().collect();
        let mut differing = Vec::new();
        let mut after = None;
        loop {
            let page = self.digest_page(peer, prefix, after, asked).await?;
            report.digest_requests += 1;
            if after.is_none() {
                let same = page.digest == node;
                if prefix == Prefix::Root {
                    report.roots_agreed = same;
                }
                if same {
                    return Ok(Vec::new());
                }
            }
            differing.extend(
                page.children
                    .into_iter()
                    .filter(|(name, digest)| mine.get(name) != Some(digest))
                    .map(|(name, _)| name),
            );
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(differing),
            }
        }
    }

    /// Page by page of the peer's list of `day`: applies its tombstones,
    /// then fetches what is missing.
    async fn repair_day(
        &self,
        peer: &Peer,
        day: u32,
        pace: &Pace,
        asked: &mut u64,
        report: &mut PassReport,
    ) -> Result<(), RepairError> {
        let Some(date) = day_date(day) else {
            return Ok(());
        };
        report.days_compared += 1;
        let ours: DayList = blocking(self.storage.index(), move |i| i.list_day(day)).await?;
        let mut deleted: HashSet<StoredPath> = ours.tombstones.into_iter().collect();
        let held: HashMap<StoredPath, String> =
            ours.files.into_iter().map(|f| (f.path, f.sha256)).collect();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_page(peer, date, after.as_deref(), asked).await?;
            self.apply_tombstones(peer, page.tombstones, &mut deleted, report)
                .await?;
            let wanted = self.wanted(peer, page.files, &deleted, &held, report);
            self.fetch_all(peer, wanted, pace, report).await?;
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Deletes here what the peer deleted.
    async fn apply_tombstones(
        &self,
        peer: &Peer,
        tombstones: Vec<StoredPath>,
        deleted: &mut HashSet<StoredPath>,
        report: &mut PassReport,
    ) -> Result<(), RepairError> {
        for path in tombstones {
            if deleted.contains(&path) {
                continue;
            }
            // Restored here after that delete: the peer's tombstone is
            // stale, and the restore reaches it from the journal.
            let name = path.clone();
            if blocking(self.storage.index(), move |i| i.is_restored(&name)).await? {
                continue;
            }
            match self.storage.delete(&path).await {
                Ok(()) => {
                    tracing::info!(peer = %peer.name, %path, "repair: deleted here as on the peer");
                    report.tombstones_applied += 1;
                    deleted.insert(path);
                }
                Err(e) => {
                    tracing::warn!(peer = %peer.name, %path, error = %e, "repair: a delete could not be applied");
                    report.errors += 1;
                    report.last_error = Some(e.to_string());
                }
            }
        }
        Ok(())
    }

    /// The files of a page of the peer's list to fetch.
    fn wanted(
        &self,
        peer: &Peer,
        files: Vec<ListedEntry>,
        deleted: &HashSet<StoredPath>,
        held: &HashMap<StoredPath, String>,
        report: &mut PassReport,
    ) -> Vec<Wanted> {
        let settled_before = chrono::Utc::now().timestamp()
            - i64::try_from(self.config.repair.settle.as_secs()).unwrap_or(i64::MAX);
        let mut wanted = Vec::new();
        for file in files {
            let path = file.path;
            if deleted.contains(&path) {
                continue;
            }
            if let Some(ours) = held.get(&path) {
                if !ours.eq_ignore_ascii_case(&file.sha256) {
                    tracing::warn!(peer = %peer.name, %path, ours = %ours, theirs = %file.sha256, "repair: the same name holds different content here and on the peer; ours is kept");
                    report.conflicts += 1;
                }
                continue;
            }
            if file.added > settled_before {
                report.files_settling += 1;
                continue;
            }
            wanted.push(Wanted {
                path,
                sha256: file.sha256,
                size: file.size,
            });
        }
        wanted
    }

    /// Fetches `wanted`, `concurrency` at a time. A fetch that fails for
    /// the file's own sake is counted and the others go on; a peer that
    /// stopped answering, or a data folder nearly full, ends the pass.
    async fn fetch_all(
        &self,
        peer: &Peer,
        wanted: Vec<Wanted>,
        pace: &Pace,
        report: &mut PassReport,
    ) -> Result<(), RepairError> {
        let mut fetches = futures_util::stream::iter(wanted)
            .map(|w| async move {
                let result = self.fetch_one(peer, &w, pace).await;
                (w, result)
            })
            .buffer_unordered(self.config.repair.concurrency);
        let mut fatal = None;
        while let Some((wanted, result)) = fetches.next().await {
            match result {
                Ok(Arrival::New) => {
                    report.files_fetched += 1;
                    report.bytes_fetched += wanted.size;
                    tracing::info!(peer = %peer.name, path = %wanted.path, "repair: fetched");
                }
                Ok(Arrival::AlreadyPresent) | Err(FetchOutcome::Deleted) => {}
                Err(FetchOutcome::Failed(e)) => {
                    tracing::warn!(peer = %peer.name, path = %wanted.path, error = %e, "repair: fetch failed");
                    report.errors += 1;
                    report.last_error = Some(e.to_string());
                }
                Err(FetchOutcome::Fatal(e)) => {
                    // The fetches already running finish; no new one starts.
                    fatal.get_or_insert(e);
                    break;
                }
            }
        }
        fatal.map_or(Ok(()), Err)
    }

    async fn fetch_one(
        &self,
        peer: &Peer,
        wanted: &Wanted,
        pace: &Pace,
    ) -> Result<Arrival, FetchOutcome> {
        while (self.busy)() {
            tokio::time::sleep(YIELD_POLL).await;
        }
        let free = self
            .storage
            .free_space()
            .await
            .map_err(|e| FetchOutcome::Failed(format!("free space unknown: {e}")))?;
        if free < wanted.size.saturating_add(FREE_SPACE_RESERVE) {
            return Err(FetchOutcome::Fatal(RepairError::DiskNearlyFull(free)));
        }
        pace.admit(wanted.size).await;
        match self
            .fetcher
            .fetch(peer, &wanted.path, Some((&wanted.sha256, wanted.size)))
            .await
        {
            Ok(arrival) => Ok(arrival),
            Err(FetchError::Storage(StorageError::Deleted)) => Err(FetchOutcome::Deleted),
            Err(FetchError::Storage(StorageError::DiskFull(_))) => {
                Err(FetchOutcome::Fatal(RepairError::DiskFull))
            }
            Err(e @ (FetchError::Unreachable(_) | FetchError::Stalled(_))) => {
                Err(FetchOutcome::Fatal(RepairError::Fetch(e.to_string())))
            }
            Err(e) => Err(FetchOutcome::Failed(e.to_string())),
        }
    }

    /// One page of the peer's digest node `prefix`, after the child `after`.
    pub(super) async fn digest_page(
        &self,
        peer: &Peer,
        prefix: Prefix,
        after: Option<u32>,
        asked: &mut u64,
    ) -> Result<DigestPage, RepairError> {
        let cursor = after.map_or_else(String::new, |a| a.to_string());
        let query = [
            ("action", "digest"),
            ("prefix", &prefix.to_string()),
            ("after", &cursor),
        ];
        let body = self.ask(peer, &query, DIGEST_LIMIT, asked).await?;
        Ok(read_digest(&body, prefix, after)?)
    }

    /// One page of the peer's list of `date`, after the name `after`.
    pub(super) async fn list_page(
        &self,
        peer: &Peer,
        date: NaiveDate,
        after: Option<&str>,
        asked: &mut u64,
    ) -> Result<ListPage, RepairError> {
        let query = [
            ("action", "list"),
            ("day", &day_text(date)),
            ("after", after.unwrap_or("")),
        ];
        let body = self.ask(peer, &query, LIST_LIMIT, asked).await?;
        Ok(read_list(&body, date, after)?)
    }

    /// `GET {peer.Uri}?{query}&format=json` with the peer's key; the body
    /// of its success answer, at most `limit` bytes (one more and the pass
    /// stops: an answer is never read cut short).
    pub(super) async fn ask(
        &self,
        peer: &Peer,
        query: &[(&str, &str)],
        limit: usize,
        asked: &mut u64,
    ) -> Result<Vec<u8>, RepairError> {
        *asked += 1;
        if *asked > MAX_REQUESTS {
            return Err(RepairError::TooManyRequests(MAX_REQUESTS));
        }
        let mut url = peer.uri.clone();
        url.query_pairs_mut()
            .extend_pairs(query)
            .append_pair("format", "json");
        // A list of a large day takes a while to send; the peer reads it
        // from its index, not from the files.
        let within = self.config.replication.idle_timeout * 4;
        self.exchange(peer, self.fetcher.client().get(url), limit, within)
            .await
    }

    /// Sends `request` to `peer` with its key and reads the body of its
    /// success answer, at most `limit` bytes (one more is an error: an
    /// answer is never read cut short), all within `within`. The answer
    /// must come from that peer.
    pub(super) async fn exchange(
        &self,
        peer: &Peer,
        request: reqwest::RequestBuilder,
        limit: usize,
        within: Duration,
    ) -> Result<Vec<u8>, RepairError> {
        let exchange = async {
            let response = request
                .header("X-Security-Key", &peer.key)
                .send()
                .await
                .map_err(|e| RepairError::Unreachable(crate::replication::transport_cause(&e)))?;
            let status = response.status();
            let from_peer = response
                .headers()
                .get(SERVER_HEADER)
                .is_some_and(|v| v.as_bytes() == peer.name.as_bytes());
            let body = read_limited(response, limit + 1, || ())
                .await
                .map_err(|e| RepairError::Unreachable(crate::replication::transport_cause(&e)))?;
            if !status.is_success() {
                return Err(answered(peer, status.as_u16(), &body));
            }
            if !from_peer {
                return Err(RepairError::NotThePeer);
            }
            if body.len() > limit {
                return Err(RepairError::TooLong(limit));
            }
            Ok(body)
        };
        tokio::time::timeout(within, exchange)
            .await
            .map_err(|_| RepairError::Stalled(within.as_secs()))?
    }
}

/// How one fetch ended, for [`Repairer::fetch_all`].
enum FetchOutcome {
    /// Deleted here meanwhile: nothing to do.
    Deleted,
    /// This file failed; the others go on.
    Failed(String),
    /// The pass stops.
    Fatal(RepairError),
}

/// A peer's refusal: its answer's text goes to the log (it may quote links
/// or credentials), the error says only the status.
fn answered(peer: &Peer, status: u16, body: &[u8]) -> RepairError {
    tracing::warn!(target: "repair", peer = %peer.name, status, answer = %error_text(body, 512), "the peer refused a repair request");
    RepairError::Answered(status)
}

/// Runs an index read on a blocking thread.
pub(super) async fn blocking<T: Send + 'static>(
    index: Option<&Index>,
    read: impl FnOnce(&Index) -> Result<T, IndexError> + Send + 'static,
) -> Result<T, RepairError> {
    let index = index
        .ok_or_else(|| IndexError::Io(std::io::Error::other("a bucket has no index to repair")))?
        .clone();
    tokio::task::spawn_blocking(move || read(&index))
        .await
        .map_err(|e| RepairError::Index(IndexError::Io(std::io::Error::other(e))))?
        .map_err(RepairError::from)
}
