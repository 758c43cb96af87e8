//! Repair (SPEC §4a): how this server comes to hold what its peers hold
//! without the journal: a new or emptied disk, a lost journal, a server
//! newly listed in servers.xml.config, files restored onto one server.
//!
//! `fetch` brings one stored file from a peer, hash-checked; the passes
//! that decide what to fetch are built on it, and so is `readthrough`,
//! which fetches a missing name while a client waits for it.

mod fetch;
mod readthrough;

pub use fetch::{FetchError, Fetcher, HASH_HEADER, REPAIR_HEADER};
pub use readthrough::{Lookup, ReadThrough};
