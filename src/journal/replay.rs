//! Replay: sending what the journal says peers are owed, then settling the
//! journal with the outcomes. One replay at a time across processes (a
//! second caller gets a `busy` report instead of a second replay), never
//! holding the journal lock while sending, so uploads keep appending.
//!
//! Entries a peer refused for good are marked `needs_operator` and never
//! resent; they stay in the journal for an operator.
//!
//! Also the background loop that replays on its own with exponential backoff
//! per peer, so that Task Scheduler's `uploaderrors` call is a safety net.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use super::{Journal, JournalEntry, Settlement};
use crate::replication::Replicator;
use crate::storage::{Storage, StoredFile, StoredPath};

/// Entries sent at once during a replay (the replicator bounds transfers too).
const REPLAY_PARALLELISM: usize = 16;

/// What one replay did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReplayReport {
    /// Delivered now and removed from the journal.
    pub replayed: usize,
    /// Failed again; kept with the attempt counted.
    pub failed: usize,
    /// Removed because the local file is gone.
    pub dropped: usize,
    /// Refused for good by the peer in this replay; kept for an operator.
    pub refused: usize,
    /// Entries in the journal after this replay.
    pub remaining: usize,
    /// Of those, entries a peer refused for good: never resent, left to an
    /// operator.
    pub needs_operator: usize,
    /// Another replay was running; this call did nothing.
    pub busy: bool,
    #[serde(skip)]
    failed_peers: HashSet<String>,
}

pub struct Replayer {
    journal: Journal,
    storage: Storage,
    replicator: Replicator,
    server_name: String,
}

impl Replayer {
    pub fn new(
        journal: Journal,
        storage: Storage,
        replicator: Replicator,
        server_name: String,
    ) -> Self {
        Self {
            journal,
            storage,
            replicator,
            server_name,
        }
    }

    /// Replays this server's entries (for the peers in `only`, or all),
    /// except those left to an operator.
    pub async fn replay(&self, only: Option<&HashSet<String>>) -> io::Result<ReplayReport> {
        let journal = self.journal.clone();
        let Some(_running) = tokio::task::spawn_blocking(move || journal.try_replay_lock())
            .await
            .map_err(io::Error::other)??
        else {
            return Ok(ReplayReport {
                busy: true,
                ..ReplayReport::default()
            });
        };
        let (entries, _) = self.journal.read().await?;
        let mine: Vec<JournalEntry> = entries
            .into_iter()
            .filter(|e| e.from == self.server_name && !e.needs_operator)
            .filter(|e| only.is_none_or(|peers| peers.contains(&e.peer)))
            .collect();
        let settled: Vec<(JournalEntry, Settlement)> = futures_util::stream::iter(mine)
            .map(|entry| async move {
                let settlement = self.settle_one(&entry).await;
                (entry, settlement)
            })
            .buffer_unordered(REPLAY_PARALLELISM)
            .collect()
            .await;
        let mut report = ReplayReport::default();
        let mut outcomes = HashMap::with_capacity(settled.len());
        for (entry, settlement) in settled {
            match &settlement {
                Settlement::Delivered => {
                    report.replayed += 1;
                    tracing::info!(peer = %entry.peer, path = %entry.path, "replayed");
                }
                Settlement::SourceGone => {
                    report.dropped += 1;
                    tracing::warn!(peer = %entry.peer, path = %entry.path, "journal entry dropped: the local file is gone");
                }
                Settlement::Failed(error) => {
                    report.failed += 1;
                    report.failed_peers.insert(entry.peer.clone());
                    tracing::warn!(peer = %entry.peer, path = %entry.path, %error, "replay failed again");
                }
                Settlement::Refused(error) => {
                    report.refused += 1;
                    tracing::warn!(peer = %entry.peer, path = %entry.path, %error, "replica refused, left to an operator");
                }
            }
            outcomes.insert(entry.id, settlement);
        }
        let counts = self.journal.settle(outcomes).await?;
        report.remaining = counts.entries;
        report.needs_operator = counts.needs_operator;
        Ok(report)
    }

    async fn settle_one(&self, entry: &JournalEntry) -> Settlement {
        let Some(path) = StoredPath::parse(&entry.path) else {
            return Settlement::SourceGone;
        };
        let source = self.storage.file_path(&path);
        match tokio::fs::try_exists(&source).await {
            Ok(false) => return Settlement::SourceGone,
            Ok(true) => {}
            Err(e) => return Settlement::Failed(format!("cannot check the local file: {e}")),
        }
        let Some(peer) = self.replicator.peer(&entry.peer) else {
            return Settlement::Failed(format!(
                "peer `{}` is not in servers.xml.config any more",
                entry.peer
            ));
        };
        let file = StoredFile {
            path,
            size: entry.size,
            sha256: entry.sha256.clone(),
        };
        match self.replicator.send(peer, &source, &file).await {
            Ok(()) => Settlement::Delivered,
            Err(e) => Settlement::Failed(e.to_string()),
        }
    }

    /// Replays on its own forever: every `base` for peers that are due; a
    /// peer that fails waits twice as long each round, up to `max`.
    pub async fn run_background(self: Arc<Self>, base: Duration, max: Duration) {
        let mut backoff: HashMap<String, (Instant, Duration)> = HashMap::new();
        loop {
            tokio::time::sleep(base).await;
            let now = Instant::now();
            let due: HashSet<String> = self
                .replicator
                .peers()
                .iter()
                .filter(|p| backoff.get(&p.name).is_none_or(|(next, _)| *next <= now))
                .map(|p| p.name.clone())
                .collect();
            if due.is_empty() {
                continue;
            }
            let report = match self.replay(Some(&due)).await {
                Ok(report) if report.busy => continue,
                Ok(report) => report,
                Err(e) => {
                    tracing::error!(error = %e, "background replay could not use the journal");
                    continue;
                }
            };
            for peer in due {
                if report.failed_peers.contains(&peer) {
                    let wait = backoff.get(&peer).map_or(base, |(_, w)| (*w * 2).min(max));
                    backoff.insert(peer, (Instant::now() + wait, wait));
                } else {
                    backoff.remove(&peer);
                }
            }
        }
    }
}
