//! Latency histograms: how long uploads, replicas, fetches from peers,
//! read-throughs and variant generations take, observed by the rooms that
//! do the work and encoded by `http::metrics` for `GET /metrics`.
//!
//! One `Latency` is made per process and handed to the replicator and the
//! fetcher, which pass it on; every handle shares the same histograms.
//! This module owns the names, labels and buckets, not the encoding, and
//! not the counters read at scrape time (those stay with their rooms).
//!
//! An observation costs a short lock per histogram (and a label lookup for
//! the per-peer ones): a multipart upload of one file makes two, plus one
//! per peer copy, so the small-file rate does not feel it.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the buckets, in seconds, shared by every histogram so
/// that one dashboard panel reads them all alike. A 140 KB upload ends in a
/// few milliseconds on a quiet LAN, a thumbnail in tens of milliseconds, a
/// 1 GiB upload or replica in seconds to minutes: the bounds go from 5 ms
/// to 5 min in steps of about 2.5×, so a p99 between 50 ms and 5 s (where
/// an alert would be set) falls between two near bounds.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViaLabel {
    via: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// How a file entered this server through an upload.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    /// A part of a multipart `action=upload` request.
    Multipart,
    /// A finished resumable (tus) upload.
    Resumable,
}

/// How a read-through ended.
#[derive(Debug, Clone, Copy)]
pub enum ReadThroughEnd {
    /// A peer had it; it is stored here now.
    Fetched,
    /// No peer had it.
    Nowhere,
    /// A peer said it was deleted there.
    Deleted,
    /// It could not be asked for or fetched now.
    Unavailable,
}

/// The histograms of one process; clones share them.
#[derive(Debug, Clone)]
pub struct Latency {
    upload_requests: Histogram,
    upload_files: Family<ViaLabel, Histogram>,
    replicas: Family<PeerLabel, Histogram>,
    fetches: Family<PeerLabel, Histogram>,
    read_throughs: Family<OutcomeLabel, Histogram>,
    variants: Histogram,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            upload_requests: histogram(),
            upload_files: Family::new_with_constructor(histogram),
            replicas: Family::new_with_constructor(histogram),
            fetches: Family::new_with_constructor(histogram),
            read_throughs: Family::new_with_constructor(histogram),
            variants: histogram(),
        }
    }
}

impl Latency {
    /// A whole `action=upload` request, from its head to its answer.
    pub fn upload_request(&self, took: Duration) {
        self.upload_requests.observe(took.as_secs_f64());
    }

    /// One uploaded file, from its first byte here (for a resumable upload:
    /// from its last) until it is stored and every peer has it or owes it
    /// in the journal.
    pub fn upload_file(&self, via: Via, took: Duration) {
        let via = match via {
            Via::Multipart => "multipart",
            Via::Resumable => "tus",
        };
        self.upload_files
            .get_or_create(&ViaLabel { via })
            .observe(took.as_secs_f64());
    }

    /// One copy of a stored file sent to `peer` (upload or replay), from
    /// its first byte until the peer confirmed or failed it.
    pub fn replica(&self, peer: &str, took: Duration) {
        self.replicas
            .get_or_create(&PeerLabel {
                peer: peer.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// One file fetched from `peer` (repair, scrub, read-through).
    pub fn fetch(&self, peer: &str, took: Duration) {
        self.fetches
            .get_or_create(&PeerLabel {
                peer: peer.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// One read-through, while its client waited.
    pub fn read_through(&self, end: ReadThroughEnd, took: Duration) {
        let outcome = match end {
            ReadThroughEnd::Fetched => "fetched",
            ReadThroughEnd::Nowhere => "nowhere",
            ReadThroughEnd::Deleted => "deleted",
            ReadThroughEnd::Unavailable => "unavailable",
        };
        self.read_throughs
            .get_or_create(&OutcomeLabel { outcome })
            .observe(took.as_secs_f64());
    }

    /// One variant decoded, resized, encoded and written.
    pub fn variant(&self, took: Duration) {
        self.variants.observe(took.as_secs_f64());
    }

    /// Adds every histogram to `registry` (names get `_seconds` from the
    /// unit, as Prometheus' conventions ask).
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "upload_request_duration",
            "Multipart upload requests, from the request head to the answer",
            Unit::Seconds,
            self.upload_requests.clone(),
        );
        registry.register_with_unit(
            "upload_file_duration",
            "Uploaded files, from the first byte to stored and delivered to (or journaled for) every peer, by way in",
            Unit::Seconds,
            self.upload_files.clone(),
        );
        registry.register_with_unit(
            "replica_duration",
            "Copies sent to a peer (uploads and replays), by peer",
            Unit::Seconds,
            self.replicas.clone(),
        );
        registry.register_with_unit(
            "repair_fetch_duration",
            "Files fetched from a peer (repair, scrub, read-through), by peer",
            Unit::Seconds,
            self.fetches.clone(),
        );
        registry.register_with_unit(
            "read_through_duration",
            "Read-throughs of a file missing here, by outcome",
            Unit::Seconds,
            self.read_throughs.clone(),
        );
        registry.register_with_unit(
            "variant_generation_duration",
            "Variants (thumbnails, widths) generated",
            Unit::Seconds,
            self.variants.clone(),
        );
    }
}
