//! What the peer-to-peer repair actions answer, inside the usual
//! `{"resp":{…}}` envelope: `action=digest` a node of the digest tree with
//! one page of its children, `action=list` one page of a day's files and
//! tombstones. Both sides use these types, so the server and the pass cannot
//! disagree on a field, and this file is where an answer from a peer is
//! read: straight into these types from a body read up to a bound, then
//! checked, so that whatever a pass acts on is well formed, in order and
//! free of repeats, whatever the peer sent.
//!
//! Paging: an asker that pages sends `after` (empty for the first page);
//! the answer holds at most [`DIGEST_PAGE`] children or [`LIST_PAGE`]
//! entries after that cursor, and `next` when more follow. A request
//! without `after` (a server of the previous version) gets the whole node
//! or day in one answer, as before; and an answer without `next` (from
//! such a server) is read as the only page, up to the read limits below.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::index::{Digest, Prefix};
use crate::storage::StoredPath;

/// Children of a digest node in one answer: about 90 bytes each, so a
/// page stays far below [`DIGEST_LIMIT`].
pub const DIGEST_PAGE: usize = 256;
/// Entries of a day in one answer: about 200 bytes a file.
pub const LIST_PAGE: usize = 1000;
/// The most of a digest answer read. A page takes a third of it; an older
/// peer's unpaged answer beyond it fails the pass with a clear error.
pub const DIGEST_LIMIT: usize = 64 * 1024;
/// The most of a list answer read: a page takes a twentieth of it, the
/// rest is for older peers' unpaged days (about 20,000 entries).
pub const LIST_LIMIT: usize = 4 * 1024 * 1024;

/// `{"resp":{…}}`.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    resp: T,
}

/// `action=digest[&prefix=…][&after=…]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestAnswer {
    /// 1: the envelope's success flag.
    pub success: u8,
    /// `""`, `"2026"` or `"2026/12"`.
    pub prefix: String,
    /// The whole node's digest, hex (on every page).
    pub digest: String,
    /// In ascending order of name.
    pub children: Vec<Child>,
    /// The `after` of the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u32>,
}

/// A year, month or day below a node, with its digest (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    pub name: u32,
    pub digest: String,
}

/// `action=list&day=2026/12/1[&after=…]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListAnswer {
    /// 1: the envelope's success flag.
    pub success: u8,
    pub day: String,
    /// In ascending order of file name.
    pub files: Vec<ListedFile>,
    /// Deleted paths of that day, in ascending order of file name.
    pub tombstones: Vec<String>,
    /// The `after` of the next page (a file name), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
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

/// Why a peer's answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(String);

fn bad<T>(why: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(why.into()))
}

/// One page of a digest node, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestPage {
    pub digest: Digest,
    /// Names strictly ascending, each after the cursor and a possible
    /// year, month or day of the node.
    pub children: Vec<(u32, Digest)>,
    /// Beyond every child of this page and the cursor.
    pub next: Option<u32>,
}

/// One page of a day, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Of that day, file names strictly ascending and after the cursor.
    pub files: Vec<ListedEntry>,
    /// Likewise.
    pub tombstones: Vec<StoredPath>,
    /// Not before any name of this page, and after the cursor.
    pub next: Option<String>,
}

/// A file of a peer's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedEntry {
    pub path: StoredPath,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub added: i64,
}

/// Reads the answer to `action=digest&prefix={prefix}&after={after}` (at
/// most [`DIGEST_LIMIT`] bytes, as the asker read them).
pub fn read_digest(
    body: &[u8],
    prefix: Prefix,
    after: Option<u32>,
) -> Result<DigestPage, WireError> {
    let answer: DigestAnswer = parse(body)?;
    if answer.prefix != prefix.to_string() {
        return bad(format!(
            "the answer is about `{}`, not `{prefix}`",
            escape(&answer.prefix)
        ));
    }
    let digest = digest(&answer.digest)?;
    let mut children = Vec::with_capacity(answer.children.len());
    let mut last = after;
    for child in &answer.children {
        if !plausible(prefix, child.name) {
            return bad(format!("{} cannot be a child of `{prefix}`", child.name));
        }
        if last.is_some_and(|l| child.name <= l) {
            return bad(format!(
                "the children are not in ascending order after the cursor (repeated or out of order: {})",
                child.name
            ));
        }
        last = Some(child.name);
        children.push((child.name, self::digest(&child.digest)?));
    }
    if let Some(next) = answer.next
        && (!plausible(prefix, next)
            || after.is_some_and(|a| next <= a)
            || last.is_some_and(|l| next < l))
    {
        return bad("`next` does not move past the page");
    }
    Ok(DigestPage {
        digest,
        children,
        next: answer.next,
    })
}

/// Reads the answer to `action=list&day={day}&after={after}` (at most
/// [`LIST_LIMIT`] bytes, as the asker read them).
pub fn read_list(body: &[u8], day: NaiveDate, after: Option<&str>) -> Result<ListPage, WireError> {
    let answer: ListAnswer = parse(body)?;
    if answer.day != day_text(day) {
        return bad(format!(
            "the answer is about `{}`, not `{}`",
            escape(&answer.day),
            day_text(day)
        ));
    }
    let of_day = |text: &str| -> Result<StoredPath, WireError> {
        match StoredPath::parse(text) {
            Some(path) if path.date() == day => Ok(path),
            _ => bad(format!(
                "`{}` is not a file of {}",
                escape(text),
                day_text(day)
            )),
        }
    };
    let mut last_name = None::<String>;
    let mut files = Vec::with_capacity(answer.files.len());
    for file in answer.files {
        let path = of_day(&file.path)?;
        in_order(&mut last_name, after, path.file_name())?;
        if !is_sha256(&file.sha256) {
            return bad(format!("`{}` is not a SHA-256", escape(&file.sha256)));
        }
        files.push(ListedEntry {
            path,
            size: file.size,
            sha256: file.sha256.to_ascii_lowercase(),
            added: file.added,
        });
    }
    let last_file = last_name.take();
    let mut tombstones = Vec::with_capacity(answer.tombstones.len());
    for text in &answer.tombstones {
        let path = of_day(text)?;
        in_order(&mut last_name, after, path.file_name())?;
        tombstones.push(path);
    }
    if let Some(next) = &answer.next {
        let behind = |name: &Option<String>| name.as_ref().is_some_and(|n| next < n);
        if behind(&last_file) || behind(&last_name) || after.is_some_and(|a| next.as_str() <= a) {
            return bad("`next` does not move past the page");
        }
        if next.len() > 64 {
            return bad("`next` is not a file name");
        }
    }
    Ok(ListPage {
        files,
        tombstones,
        next: answer.next,
    })
}

/// `2026/12/1`, as the folders and the list action's `day`.
pub fn day_text(day: NaiveDate) -> String {
    day.format("%Y/%-m/%-d").to_string()
}

/// Whether `name` can be a year, month or day below `prefix`.
pub fn plausible(prefix: Prefix, name: u32) -> bool {
    match prefix {
        Prefix::Root => (1..=9999).contains(&name),
        Prefix::Year(_) => (1..=12).contains(&name),
        Prefix::Month(..) => (1..=31).contains(&name),
    }
}

/// The envelope's content as `T`, straight from the bytes (no generic JSON
/// value in between: that took forty times the answer's size).
fn parse<'a, T: Deserialize<'a> + Successful>(body: &'a [u8]) -> Result<T, WireError> {
    match serde_json::from_slice::<Envelope<T>>(body) {
        Ok(envelope) if envelope.resp.success() => Ok(envelope.resp),
        Ok(_) => bad("the answer does not say `success`: 1"),
        Err(e) if e.is_eof() => bad(format!(
            "the answer ends early ({} bytes read; it may be longer than the read limit, as from a peer of an older version that does not page)",
            body.len()
        )),
        Err(e) => bad(format!("the answer is not understood: {e}")),
    }
}

/// An answer with the envelope's success flag.
trait Successful {
    fn success(&self) -> bool;
}

impl Successful for DigestAnswer {
    fn success(&self) -> bool {
        self.success == 1
    }
}

impl Successful for ListAnswer {
    fn success(&self) -> bool {
        self.success == 1
    }
}

/// The next name of a page, which must come after the previous one and the
/// cursor.
fn in_order(last: &mut Option<String>, after: Option<&str>, name: String) -> Result<(), WireError> {
    let floor = last.as_deref().or(after);
    if floor.is_some_and(|f| name.as_str() <= f) {
        return bad(format!(
            "the names are not in ascending order (repeated or out of order: {name})"
        ));
    }
    *last = Some(name);
    Ok(())
}

fn digest(hex: &str) -> Result<Digest, WireError> {
    Digest::parse(hex).map_or_else(|| bad(format!("`{}` is not a digest", escape(hex))), Ok)
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A peer's text in an error: at most 80 characters, no control characters.
fn escape(text: &str) -> String {
    text.chars()
        .take(80)
        .flat_map(char::escape_default)
        .collect()
}
