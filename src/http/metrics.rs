//! `GET /metrics` (no key, like `/healthz`): Prometheus text (OpenMetrics)
//! through `prometheus-client`. Request and byte counters live here and are
//! counted by the request-log middleware; the latency histograms are
//! `crate::metrics`', registered here once; everything else (journal,
//! index, repair, stored files) is read when scraped from figures the other
//! rooms already keep, with no read of the journal and no lock held longer
//! than a copy. docs/operations.md lists every family (a test checks it).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::AppState;
use crate::metrics::Latency;

const PREFIX: &str = "multiserver_upload";
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusClass {
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

/// The counters of requests, kept for the process's life.
#[derive(Debug)]
pub(super) struct Metrics {
    registry: Registry,
    requests: Family<StatusClass, Counter>,
    bytes_in: Counter,
    bytes_out: Counter,
}

impl Metrics {
    /// The request counters, and `latency`'s histograms.
    pub(super) fn new(latency: &Latency) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        latency.register(&mut registry);
        let requests = Family::<StatusClass, Counter>::default();
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by status class",
            requests.clone(),
        );
        registry.register(
            "http_received_bytes",
            "Request body bytes announced by clients (Content-Length)",
            bytes_in.clone(),
        );
        registry.register(
            "http_sent_bytes",
            "Response body bytes sent (when known in advance)",
            bytes_out.clone(),
        );
        Self {
            registry,
            requests,
            bytes_in,
            bytes_out,
        }
    }

    pub(super) fn record(&self, status: u16, bytes_in: u64, bytes_out: u64) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.get_or_create(&StatusClass { class }).inc();
        self.bytes_in.inc_by(bytes_in);
        self.bytes_out.inc_by(bytes_out);
    }
}

pub async fn handle(State(state): State<Arc<AppState>>) -> Response {
    let mut now = Registry::with_prefix(PREFIX);
    let journal = state.journal.counts();
    gauge(
        &mut now,
        "journal_backlog",
        "Failed copies in the journal, owed to peers",
        journal.entries,
    );
    gauge(
        &mut now,
        "journal_needs_operator",
        "Journal entries a peer refused for good",
        journal.needs_operator,
    );
    owed_figures(&mut now, &state);
    stored_figures(&mut now, &state);
    if let Some(index) = state.storage.index().cloned() {
        match tokio::task::spawn_blocking(move || index.counts()).await {
            Ok(Ok(counts)) => {
                gauge(&mut now, "index_files", "Stored files", counts.files);
                gauge(
                    &mut now,
                    "index_tombstones",
                    "Deleted names",
                    counts.tombstones,
                );
                gauge(&mut now, "index_days", "Day folders", counts.days);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "index counts for metrics"),
            Err(e) => tracing::error!(error = %e, "index counts for metrics"),
        }
    }
    repair_figures(&mut now, &state);
    resumable_figures(&mut now, &state);
    let mut text = String::new();
    let encoded = encode_registry(&mut text, &state.metrics.registry)
        .and_then(|()| encode_registry(&mut text, &now))
        .and_then(|()| encode_eof(&mut text));
    if let Err(e) = encoded {
        tracing::error!(error = %e, "metrics could not be encoded");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

/// Copies owed per peer: every peer of servers.xml.config (0 when owed
/// nothing, so a dashboard shows it), and any other the journal names.
fn owed_figures(registry: &mut Registry, state: &AppState) {
    let owed = Family::<PeerLabel, Gauge>::default();
    for peer in state.replicator.peers() {
        owed.get_or_create(&PeerLabel {
            peer: peer.name.clone(),
        })
        .set(0);
    }
    for (peer, entries) in state.journal.owed_by_peer() {
        owed.get_or_create(&PeerLabel { peer })
            .set(clamp(entries as u64));
    }
    registry.register(
        "journal_owed_copies",
        "Journal entries (copies, deletes, restores) owed to the peer",
        owed,
    );
}

/// Files and bytes this process committed (uploads, replicas, fetches).
fn stored_figures(registry: &mut Registry, state: &AppState) {
    let stored = state.storage.stored();
    for (name, help, value) in [
        (
            "stored_files",
            "Files stored since the start (uploads, replicas, repair and read-through fetches)",
            &stored.files,
        ),
        (
            "stored_bytes",
            "Bytes of the files stored since the start",
            &stored.bytes,
        ),
    ] {
        let counter = Counter::<u64>::default();
        counter.inc_by(value.load(std::sync::atomic::Ordering::Relaxed));
        registry.register(name, help, counter);
    }
}

/// Per peer: totals since start as counters, the last pass as gauges.
fn repair_figures(registry: &mut Registry, state: &AppState) {
    type Counters = Family<PeerLabel, Counter>;
    type Gauges = Family<PeerLabel, Gauge>;
    let (passes, files, bytes, tombstones, errors) = (
        Counters::default(),
        Counters::default(),
        Counters::default(),
        Counters::default(),
        Counters::default(),
    );
    let (agreed, digests, days, last_files, complete) = (
        Gauges::default(),
        Gauges::default(),
        Gauges::default(),
        Gauges::default(),
        Gauges::default(),
    );
    for (peer, status) in state.repair.snapshot() {
        let label = PeerLabel { peer };
        let t = status.totals;
        passes.get_or_create(&label).inc_by(t.passes);
        files.get_or_create(&label).inc_by(t.files_fetched);
        bytes.get_or_create(&label).inc_by(t.bytes_fetched);
        tombstones
            .get_or_create(&label)
            .inc_by(t.tombstones_applied);
        errors.get_or_create(&label).inc_by(t.errors);
        if let Some(last) = status.last_pass {
            agreed
                .get_or_create(&label)
                .set(i64::from(last.roots_agreed));
            digests
                .get_or_create(&label)
                .set(clamp(last.digest_requests));
            days.get_or_create(&label).set(clamp(last.days_compared));
            last_files
                .get_or_create(&label)
                .set(clamp(last.files_fetched));
            complete.get_or_create(&label).set(i64::from(last.complete));
        }
    }
    let r = registry;
    r.register("repair_passes", "Repair passes against the peer", passes);
    r.register("repair_fetched_files", "Files fetched by repair", files);
    r.register("repair_fetched_bytes", "Bytes fetched by repair", bytes);
    r.register(
        "repair_applied_tombstones",
        "Deletes of the peer applied by repair",
        tombstones,
    );
    r.register("repair_errors", "Repair errors", errors);
    r.register(
        "repair_last_roots_agreed",
        "1 if the last pass found the root digests equal",
        agreed,
    );
    r.register(
        "repair_last_digest_requests",
        "Digest requests of the last pass",
        digests,
    );
    r.register(
        "repair_last_days_compared",
        "Days listed by the last pass",
        days,
    );
    r.register(
        "repair_last_fetched_files",
        "Files fetched by the last pass",
        last_files,
    );
    r.register(
        "repair_last_complete",
        "1 if the last pass went through",
        complete,
    );
}

/// Resumable uploads: totals since start, and the bytes staged now.
fn resumable_figures(registry: &mut Registry, state: &AppState) {
    let counts = state.resumable.counts();
    for (name, help, value) in [
        (
            "resumable_started",
            "Resumable uploads created",
            &counts.started,
        ),
        (
            "resumable_completed",
            "Resumable uploads stored as files",
            &counts.completed,
        ),
        (
            "resumable_expired",
            "Partial resumable uploads removed by expiry",
            &counts.expired,
        ),
    ] {
        let counter = Counter::<u64>::default();
        counter.inc_by(value.load(std::sync::atomic::Ordering::Relaxed));
        registry.register(name, help, counter);
    }
    gauge(
        registry,
        "resumable_staged_bytes",
        "Bytes of partial resumable uploads in staging",
        state.resumable.staged_bytes(),
    );
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: impl TryInto<i64>) {
    let g = Gauge::<i64>::default();
    g.set(value.try_into().unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
