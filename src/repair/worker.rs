//! The repair worker: a background task named `repair` that runs a pass
//! against every peer shortly after start, then every `[repair]
//! interval_secs`, and at once when a peer that was failing takes a copy
//! again (its breaker closed: it may hold what was uploaded there while it
//! was cut off), one pass at a time, and keeps each pass's report in a
//! [`RepairStatus`]. It stops when the server stops (its task is aborted:
//! a fetch in flight leaves only a temporary file, which is removed).
//! What one pass does is `pass.rs`; after each round, `tombstones.rs`
//! purges the trash and drops what no server needs any more.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Fetcher;
use super::status::RepairStatus;
use crate::config::Config;
use crate::replication::Replicator;
use crate::storage::Storage;

/// How long after start the first pass begins (at most; sooner with a
/// shorter interval): time for the listener and the peers to come up.
const FIRST_PASS_AFTER: Duration = Duration::from_secs(3);
/// How often the peers' breakers are looked at between passes.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Whether uploads are busy enough for repair to wait.
pub type Busy = Box<dyn Fn() -> bool + Send + Sync>;

pub struct Repairer {
    pub(super) config: Arc<Config>,
    pub(super) storage: Storage,
    pub(super) fetcher: Fetcher,
    pub(super) busy: Busy,
    status: Arc<RepairStatus>,
    /// Held for the length of a pass over every peer.
    running: tokio::sync::Mutex<()>,
}

impl Repairer {
    pub fn new(
        config: Arc<Config>,
        storage: Storage,
        fetcher: Fetcher,
        status: Arc<RepairStatus>,
        busy: Busy,
    ) -> Self {
        Self {
            config,
            storage,
            fetcher,
            busy,
            status,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The worker's loop; runs until its task is aborted. `replicator`'s
    /// breakers tell when a failing peer is back.
    pub async fn run_background(self: Arc<Self>, replicator: Replicator) {
        let interval = self.config.repair.interval;
        tokio::time::sleep(FIRST_PASS_AFTER.min(interval)).await;
        loop {
            self.pass_all().await;
            wait_for_next(&replicator, interval).await;
        }
    }

    /// A pass against every peer in turn; `false` if a pass was already
    /// running (nothing done). A peer that fails is left until next time.
    pub async fn pass_all(&self) -> bool {
        let Ok(_running) = self.running.try_lock() else {
            return false;
        };
        for peer in &self.config.peers {
            let report = self.pass(peer).await;
            if report.complete {
                tracing::info!(
                    target: "repair",
                    peer = %peer.name,
                    roots_agreed = report.roots_agreed,
                    days_compared = report.days_compared,
                    files_fetched = report.files_fetched,
                    bytes_fetched = report.bytes_fetched,
                    tombstones_applied = report.tombstones_applied,
                    errors = report.errors,
                    ms = report.duration_ms,
                    "repair pass done"
                );
            } else {
                tracing::warn!(
                    target: "repair",
                    peer = %peer.name,
                    error = report.last_error.as_deref().unwrap_or(""),
                    files_fetched = report.files_fetched,
                    "repair pass stopped; the next one goes on"
                );
            }
            self.status.record(&peer.name, report);
        }
        self.tidy().await;
        true
    }
}

/// Waits until `interval` has passed, or until a peer whose copies were
/// failing has taken one again.
async fn wait_for_next(replicator: &Replicator, interval: Duration) {
    let deadline = Instant::now() + interval;
    let mut failing = failing_peers(replicator);
    while Instant::now() < deadline {
        tokio::time::sleep(WATCH_EVERY.min(deadline - Instant::now())).await;
        let now_failing = failing_peers(replicator);
        if let Some(back) = failing.iter().find(|p| !now_failing.contains(*p)) {
            tracing::info!(target: "repair", peer = %back, "the peer takes copies again; repair pass now");
            return;
        }
        failing = now_failing;
    }
}

fn failing_peers(replicator: &Replicator) -> HashSet<String> {
    replicator
        .breakers()
        .filter(|(_, b)| b.consecutive_failures > 0)
        .map(|(peer, _)| peer.to_owned())
        .collect()
}
