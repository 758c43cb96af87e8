//! What repair did, per peer, kept in memory for `/healthz` and `/metrics`:
//! the last pass's report and totals since start. A short lock, taken once
//! per pass to write and once per scrape to copy; nothing here is durable
//! (a restart starts the figures from zero, as Prometheus counters expect).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// One pass against one peer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    /// When it started, RFC 3339, local time.
    pub started: String,
    pub duration_ms: u64,
    /// The root digests agreed: nothing else was asked.
    pub roots_agreed: bool,
    /// `action=digest` requests sent to the peer.
    pub digest_requests: u64,
    /// Days whose file lists were compared (their digests differed).
    pub days_compared: u64,
    pub files_fetched: u64,
    pub bytes_fetched: u64,
    /// The peer's deletes applied here.
    pub tombstones_applied: u64,
    /// Names held on both sides with different content (kept as they are).
    pub conflicts: u64,
    /// Files left for a later pass: younger than `settle_secs`.
    pub files_settling: u64,
    pub errors: u64,
    /// Whether the pass went through (else it stopped at `last_error`).
    pub complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Figures since the process started.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub passes: u64,
    pub files_fetched: u64,
    pub bytes_fetched: u64,
    pub tombstones_applied: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerStatus {
    pub last_pass: Option<PassReport>,
    pub totals: Totals,
}

#[derive(Debug, Default)]
pub struct RepairStatus {
    peers: Mutex<BTreeMap<String, PeerStatus>>,
}

impl RepairStatus {
    pub(super) fn record(&self, peer: &str, report: PassReport) {
        let Ok(mut peers) = self.peers.lock() else {
            return;
        };
        let status = peers.entry(peer.to_owned()).or_default();
        let t = &mut status.totals;
        t.passes += 1;
        t.files_fetched += report.files_fetched;
        t.bytes_fetched += report.bytes_fetched;
        t.tombstones_applied += report.tombstones_applied;
        t.errors += report.errors;
        status.last_pass = Some(report);
    }

    /// A copy of every peer's status, by peer name.
    pub fn snapshot(&self) -> BTreeMap<String, PeerStatus> {
        self.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }
}
