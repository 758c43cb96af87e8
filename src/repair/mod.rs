//! Repair (SPEC §4a): how this server comes to hold what its peers hold
//! without the journal: a new or emptied disk, a lost journal, a server
//! newly listed in servers.xml.config, files restored onto one server.
//!
//! `fetch` brings one stored file from a peer, hash-checked; the passes
//! that decide what to fetch are built on it, and so are `readthrough`,
//! which fetches a missing name while a client waits for it, and `scrub`,
//! which rehashes what is stored and fetches again what changed.

mod fetch;
mod readthrough;
mod scrub;

pub use fetch::{FetchError, Fetcher, HASH_HEADER, REPAIR_HEADER};
pub use readthrough::{Lookup, ReadThrough};
pub use scrub::{ScrubStatus, Scrubber};
