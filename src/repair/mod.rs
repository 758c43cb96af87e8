//! Repair (SPEC §4a): how this server comes to hold what its peers hold
//! without the journal: a new or emptied disk, a lost journal, a server
//! newly listed in servers.xml.config, files restored onto one server.
//!
//! `fetch` brings one stored file from a peer, hash-checked; `pass`
//! compares this server's index with a peer's and fetches what is missing;
//! `worker` runs passes in the background; `status` keeps their reports;
//! `wire` is what peers answer each other. Serving the peers' questions is
//! the HTTP side's (`http/repair.rs`).

mod fetch;
mod pass;
mod status;
pub mod wire;
mod worker;

pub use fetch::{FetchError, Fetcher, HASH_HEADER, REPAIR_HEADER};
pub use pass::RepairError;
pub use status::{PassReport, PeerStatus, RepairStatus, Totals};
pub use worker::{Busy, Repairer};
