//! What the peer-to-peer repair actions answer, inside the usual
//! `{"resp":{…}}` envelope: `action=digest` a node of the digest tree with
//! its children, `action=list` one day's files and tombstones. Both sides
//! use these types, so the server and the pass cannot disagree on a field.

use serde::{Deserialize, Serialize};

/// `action=digest[&prefix=…]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestAnswer {
    /// `""`, `"2026"` or `"2026/12"`.
    pub prefix: String,
    /// The node's digest, hex.
    pub digest: String,
    pub children: Vec<Child>,
}

/// A year, month or day below a node, with its digest (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    pub name: u32,
    pub digest: String,
}

/// `action=list&day=2026/12/1`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListAnswer {
    pub day: String,
    pub files: Vec<ListedFile>,
    /// Deleted paths of that day.
    pub tombstones: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedFile {
    pub path: String,
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// When it arrived on the answering server, seconds since the epoch.
    pub added: i64,
}
