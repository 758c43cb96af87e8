//! Replay: sending what the journal says peers are owed, then settling the
//! journal with the outcomes. One replay at a time across processes (a
//! second caller gets a `busy` report instead of a second replay), never
//! holding the journal lock while sending, so uploads keep appending.
//!
//! A replay is how a failing peer is probed: it sends even while the peer's
//! breaker is open, but once the peer fails again during the round, the
//! round's other copies for it are not sent (they count as failed again).
//! Entries a peer refused for good are marked `needs_operator` and never
//! resent; they stay in the journal for an operator. A copy of a name the
//! peer deleted (410) is dropped: a deleted name is never restored. A
//! delete or restore entry needs no local file; it is sent only while it
//! still says what this server knows (a delete of a name restored here
//! since, or a restore of a name deleted here again, is dropped: entries
//! are replayed in no particular order, and the newer entry tells the
//! peer). A delete of a name this server never held is sent whether or
//! not this server's tombstone is written yet.
//!
//! Also the background loop that replays on its own, to each peer whose
//! breaker lets it (closed, or its backoff passed), so that Task Scheduler's
//! `uploaderrors` call is a safety net.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

use super::{Journal, JournalEntry, Operation, Settlement};
use crate::progress::Tally;
use crate::replication::{Lane, Notice, ReplicationError, Replicator, Source};
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
    /// Removed because the local file is gone, or the peer deleted the name.
    pub dropped: usize,
    /// Refused for good by the peer in this replay; kept for an operator.
    pub refused: usize,
    /// Entries in the journal after this replay.
    pub remaining: usize,
    /// Of those, entries a peer refused for good: never resent, left to an
    /// operator.
    pub needs_operator: usize,
    /// Another replay was running; this call did nothing. Written `1`/`0`
    /// like every other flag of an answer (`success`, `ok`, `journaled`).
    #[serde(serialize_with = "as_flag")]
    pub busy: bool,
}

fn as_flag<S: serde::Serializer>(flag: &bool, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u8(u8::from(*flag))
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
        self.replay_counted(only, &Tally::default()).await
    }

    /// [`Replayer::replay`], counting the entries to send and those settled
    /// into `tally` (for the `replay` command's progress).
    pub async fn replay_counted(
        &self,
        only: Option<&HashSet<String>>,
        tally: &Tally,
    ) -> io::Result<ReplayReport> {
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
        let marks: HashMap<&str, u64> = self
            .replicator
            .peers()
            .iter()
            .map(|p| (p.name.as_str(), self.replicator.mark(&p.name)))
            .collect();
        let marks = &marks;
        tally.set_total(mine.len() as u64, mine.iter().map(|e| e.size).sum::<u64>());
        let settled: Vec<(JournalEntry, Settlement)> = futures_util::stream::iter(mine)
            .map(|entry| async move {
                let since = marks.get(entry.peer.as_str()).copied().unwrap_or(0);
                let settlement = self.settle_one(&entry, since).await;
                tally.add(1, entry.size);
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
                Settlement::DeletedThere => {
                    report.dropped += 1;
                    tracing::warn!(peer = %entry.peer, path = %entry.path, "journal entry dropped: the peer deleted this name");
                }
                Settlement::Failed(error) => {
                    report.failed += 1;
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

    async fn settle_one(&self, entry: &JournalEntry, since: u64) -> Settlement {
        let Some(path) = StoredPath::parse(&entry.path) else {
            return Settlement::SourceGone;
        };
        let Some(peer) = self.replicator.peer(&entry.peer) else {
            return Settlement::Failed(format!(
                "peer `{}` is not in servers.xml.config any more",
                entry.peer
            ));
        };
        let lane = Lane::Replay { since };
        let result = match entry.op {
            Operation::Delete | Operation::Restore => {
                let notice = match entry.op {
                    Operation::Restore => Notice::Restore,
                    _ => Notice::Delete,
                };
                if let Some(index) = self.storage.index() {
                    let (index, name) = (index.clone(), path.clone());
                    let stale = tokio::task::spawn_blocking(move || {
                        Ok::<_, crate::index::IndexError>(match notice {
                            // Deleted here again since the restore.
                            Notice::Restore => index.is_deleted(&name)?,
                            // Restored here since the delete (its file is
                            // back, or its mark says so).
                            Notice::Delete => {
                                index.is_restored(&name)? || index.get(&name)?.is_some()
                            }
                        })
                    })
                    .await;
                    match stale {
                        Ok(Ok(true)) => return Settlement::SourceGone,
                        Ok(Ok(false)) => {}
                        Ok(Err(e)) => return Settlement::Failed(e.to_string()),
                        Err(e) => return Settlement::Failed(e.to_string()),
                    }
                }
                self.replicator
                    .send_notice(lane, peer, notice, &path, &self.server_name)
                    .await
                    .map(|_| ())
            }
            Operation::Copy => {
                let Some(source) = self.storage.find_file(&path).await else {
                    return Settlement::SourceGone;
                };
                let file = StoredFile {
                    path,
                    size: entry.size,
                    sha256: entry.sha256.clone(),
                };
                self.replicator
                    .send(lane, peer, Source::Disk(&source), &file)
                    .await
            }
        };
        match result {
            Ok(()) => Settlement::Delivered,
            Err(ReplicationError::DeletedThere) => Settlement::DeletedThere,
            Err(e) if e.is_permanent() => Settlement::Refused(e.to_string()),
            Err(e) => Settlement::Failed(e.to_string()),
        }
    }

    /// Replays on its own forever: every `every`, to the peers whose
    /// breaker lets it. A peer that keeps failing is tried less and less
    /// often: its breaker's backoff doubles per failure.
    pub async fn run_background(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let due: HashSet<String> = self
                .replicator
                .peers()
                .iter()
                .filter(|p| self.replicator.is_due(&p.name))
                .map(|p| p.name.clone())
                .collect();
            if due.is_empty() {
                continue;
            }
            if let Err(e) = self.replay(Some(&due)).await {
                tracing::error!(error = %e, "background replay could not use the journal");
            }
        }
    }
}
