//! `GET /healthz` (no key): 200 while `data_dir` and `log_dir` both take
//! writes, 503 otherwise, for load balancers and monitoring; with the journal
//! backlog, each peer's breaker, each peer's last repair pass and the last
//! scrub pass.
//!
//! Anyone may ask, so it shows states, counts and this server's own words
//! for a failed pass, never what a peer answered (a body may carry links to
//! stored files, a peer's URL its credentials): repair logs a peer's
//! answer where it arrives and keeps only its status.
//!
//! It costs O(1) whatever the backlog: the journal's counts are counters (no
//! lock, no read of the journal; see the journal module for whose view they
//! are), and the two folders are probed at most once a second, one probe
//! shared by every caller that arrives meanwhile, so a flood of health checks
//! cannot slow the uploads down.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::AppState;

/// How long a probe's result is reused.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A folder whose probe takes longer (a hung network share) is failing.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The last probe of both folders.
#[derive(Debug, Default)]
pub(super) struct Probes {
    last: Mutex<Option<(Instant, Writable)>>,
}

#[derive(Debug, Clone, Copy)]
struct Writable {
    data_dir: bool,
    log_dir: bool,
}

impl Probes {
    /// The last result if it is recent, else a new probe; callers arriving
    /// during a probe wait for it and share its result.
    async fn writable(&self, state: &AppState) -> Writable {
        let mut last = self.last.lock().await;
        if let Some((at, writable)) = *last
            && at.elapsed() < PROBE_EVERY
        {
            return writable;
        }
        let (data, log) = tokio::join!(
            bounded(state.storage.probe()),
            bounded(state.journal.probe())
        );
        if let Err(e) = &data {
            tracing::error!(error = %e, "data_dir is not writable");
        }
        if let Err(e) = &log {
            tracing::error!(error = %e, "log_dir is not writable");
        }
        let writable = Writable {
            data_dir: data.is_ok(),
            log_dir: log.is_ok(),
        };
        *last = Some((Instant::now(), writable));
        writable
    }
}

/// A probe's result, or `TimedOut` after [`PROBE_TIMEOUT`].
async fn bounded(probe: impl Future<Output = std::io::Result<()>>) -> std::io::Result<()> {
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

pub async fn handle(State(state): State<Arc<AppState>>) -> Response {
    let writable = state.health.writable(&state).await;
    let journal = state.journal.counts();
    let healthy = writable.data_dir && writable.log_dir;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let breakers: Map<String, Value> = state
        .replicator
        .breakers()
        .map(|(peer, b)| {
            let state = json!({
                "open": b.open,
                "consecutive_failures": b.consecutive_failures,
                "retry_in_secs": b.retry_in_secs,
            });
            (peer.to_owned(), state)
        })
        .collect();
    let body = json!({
        "status": if healthy { "ok" } else { "failing" },
        "server": state.config.server_name,
        "data_dir_writable": writable.data_dir,
        "log_dir_writable": writable.log_dir,
        "journal_backlog": journal.entries,
        "journal_needs_operator": journal.needs_operator,
        "journal_unreadable_lines": journal.unreadable,
        "peers": state.replicator.peers().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        "breakers": breakers,
        "scrub": state.scrubber.status(),
        "repair": {
            "interval_secs": state.config.repair.interval.as_secs(),
            "peers": state.repair.snapshot(),
        },
    });
    (status, Json(body)).into_response()
}
