//! The repair worker: a background task named `repair` that runs a pass
//! against every peer shortly after start and then every `[repair]
//! interval_secs`, one pass at a time, and keeps each pass's report in a
//! [`RepairStatus`]. It stops when the server stops (its task is aborted:
//! a fetch in flight leaves only a temporary file, which is removed).
//! What one pass does is `pass.rs`.

use std::sync::Arc;
use std::time::Duration;

use super::Fetcher;
use super::status::RepairStatus;
use crate::config::Config;
use crate::storage::Storage;

/// How long after start the first pass begins (at most; sooner with a
/// shorter interval): time for the listener and the peers to come up.
const FIRST_PASS_AFTER: Duration = Duration::from_secs(3);

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

    /// The worker's loop; runs until its task is aborted.
    pub async fn run_background(self: Arc<Self>) {
        let interval = self.config.repair.interval;
        tokio::time::sleep(FIRST_PASS_AFTER.min(interval)).await;
        loop {
            self.pass_all().await;
            tokio::time::sleep(interval).await;
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
        true
    }
}
