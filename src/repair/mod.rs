//! Repair (SPEC §4a): how this server comes to hold what its peers hold
//! without the journal: a new or emptied disk, a lost journal, a server
//! newly listed in servers.xml.config, files restored onto one server.
//!
//! `fetch` brings one stored file from a peer, hash-checked; everything
//! else is built on it: `pass` compares this server's index with a peer's
//! and fetches what is missing, `worker` runs passes in the background and
//! `status` keeps their reports, `tombstones` keeps deletes bounded (the
//! trash's purge, tombstones no server needs), `wire` is what peers answer
//! each other;
//! `readthrough` fetches a missing name while a client waits for it, and
//! `scrub` rehashes what is stored and fetches again what changed. Serving
//! the peers' questions is the HTTP side's (`http/repair.rs`).

mod fetch;
mod pass;
mod readthrough;
mod scrub;
mod status;
mod tombstones;
pub mod wire;
mod worker;

pub use fetch::{FetchError, Fetcher, HASH_HEADER, REPAIR_HEADER};
pub use pass::RepairError;
pub use readthrough::{Lookup, ReadThrough};
pub use scrub::{ScrubStatus, Scrubber};
pub use status::{PassReport, PeerStatus, RepairStatus, Totals};
pub use worker::{Busy, Repairer};
