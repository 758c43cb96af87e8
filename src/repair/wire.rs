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

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal<T: std::fmt::Debug>(read: Result<T, WireError>) -> String {
        read.expect_err("refused").to_string()
    }

    // ---- digest pages ----

    fn year() -> Prefix {
        Prefix::Year(2026)
    }

    /// A digest answer about 2026 with the node's digest `abab…`.
    fn digest_body(children: &str, next: &str) -> String {
        format!(
            r#"{{"resp":{{"success":1,"prefix":"2026","digest":"abababababababababababababababababababababababababababababababab","children":[{children}]{next}}}}}"#
        )
    }

    fn child(name: u32) -> String {
        format!(
            r#"{{"name":{name},"digest":"0303030303030303030303030303030303030303030303030303030303030303"}}"#
        )
    }

    fn children(names: &[u32]) -> String {
        names
            .iter()
            .map(|n| child(*n))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn a_digest_page_is_read_with_its_digests_and_next() {
        let body = br#"{"resp":{"success":1,"prefix":"2026","digest":"abababababababababababababababababababababababababababababababab","children":[{"name":3,"digest":"0303030303030303030303030303030303030303030303030303030303030303"},{"name":11,"digest":"1111111111111111111111111111111111111111111111111111111111111111"}],"next":11}}"#;
        let page = read_digest(body, year(), Some(2)).expect("taken");
        assert_eq!(page.digest, Digest([0xab; 32]));
        assert_eq!(
            page.children,
            vec![(3, Digest([0x03; 32])), (11, Digest([0x11; 32]))]
        );
        assert_eq!(page.next, Some(11));
    }

    #[test]
    fn an_unpaged_digest_answer_is_the_only_page() {
        let body = digest_body(&children(&[1, 12]), "");
        let page = read_digest(body.as_bytes(), year(), None).expect("taken");
        assert_eq!(
            page.children.iter().map(|c| c.0).collect::<Vec<_>>(),
            [1, 12]
        );
        assert_eq!(page.next, None);
    }

    #[test]
    fn a_digest_answer_about_another_node_is_refused() {
        let body = digest_body("", "").replace(r#""prefix":"2026""#, r#""prefix":"2025""#);
        let why = refusal(read_digest(body.as_bytes(), year(), None));
        assert!(why.contains("`2025`, not `2026`"), "{why}");
    }

    #[test]
    fn children_must_be_possible_ascending_and_after_the_cursor() {
        for (names, after) in [
            (&[13][..], None),
            (&[0], None),
            (&[3, 3], None),
            (&[11, 3], None),
            (&[3], Some(3)),
            (&[2], Some(3)),
        ] {
            let body = digest_body(&children(names), "");
            assert!(
                read_digest(body.as_bytes(), year(), after).is_err(),
                "{names:?} after {after:?}"
            );
        }
    }

    #[test]
    fn next_must_be_possible_past_the_cursor_and_not_behind_the_page() {
        for (names, after, next) in [
            (&[3, 11][..], None, 10),
            (&[], None, 13),
            (&[], Some(5), 5),
            (&[], Some(5), 4),
        ] {
            let body = digest_body(&children(names), &format!(r#","next":{next}"#));
            let why = refusal(read_digest(body.as_bytes(), year(), after));
            assert!(why.contains("`next`"), "{names:?} {after:?} {next}: {why}");
        }
        let past = digest_body(&children(&[3]), r#","next":7"#);
        assert_eq!(
            read_digest(past.as_bytes(), year(), Some(1)).map(|p| p.next),
            Ok(Some(7))
        );
    }

    #[test]
    fn digests_must_be_32_bytes_of_hex() {
        let short = digest_body("", "").replace("abab", "ab");
        assert!(refusal(read_digest(short.as_bytes(), year(), None)).contains("not a digest"));
        let not_hex = digest_body(&children(&[3]).replace("0303", "zz03"), "");
        let why = refusal(read_digest(not_hex.as_bytes(), year(), None));
        assert!(why.contains("`zz03"), "{why}");
    }

    #[test]
    fn names_below_each_level_are_years_months_or_days() {
        for (prefix, low, high) in [
            (Prefix::Root, 1, 9999),
            (year(), 1, 12),
            (Prefix::Month(2026, 2), 1, 31),
        ] {
            assert!(!plausible(prefix, low - 1), "{prefix:?}");
            assert!(plausible(prefix, low), "{prefix:?}");
            assert!(plausible(prefix, high), "{prefix:?}");
            assert!(!plausible(prefix, high + 1), "{prefix:?}");
        }
    }

    // ---- list pages ----

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 4).expect("date")
    }

    const N0: &str = "00000000-0000-4000-8000-000000000000.jpg";
    const N1: &str = "10000000-0000-4000-8000-000000000000.jpg";
    const N2: &str = "20000000-0000-4000-8000-000000000000.png";
    const N3: &str = "30000000-0000-4000-8000-000000000000.webp";

    /// A list answer of 2026/3/4 with these fields after `day`.
    fn list_body(fields: &str) -> String {
        format!(r#"{{"resp":{{"success":1,"day":"2026/3/4",{fields}}}}}"#)
    }

    fn file(name: &str) -> String {
        format!(
            r#"{{"path":"2026/3/4/{name}","size":1,"sha256":"abababababababababababababababababababababababababababababababab","added":0}}"#
        )
    }

    /// `files` and `tombstones` by name, and `next` when given.
    fn page(files: &[&str], tombstones: &[&str], next: Option<&str>) -> String {
        let files: Vec<String> = files.iter().map(|n| file(n)).collect();
        let tombstones: Vec<String> = tombstones
            .iter()
            .map(|n| format!(r#""2026/3/4/{n}""#))
            .collect();
        let next = next.map_or_else(String::new, |n| format!(r#","next":"{n}""#));
        list_body(&format!(
            r#""files":[{}],"tombstones":[{}]{next}"#,
            files.join(","),
            tombstones.join(",")
        ))
    }

    #[test]
    fn a_list_page_is_read_with_its_files_tombstones_and_next() {
        let body = br#"{"resp":{"success":1,"day":"2026/3/4","files":[{"path":"2026/3/4/10000000-0000-4000-8000-000000000000.jpg","size":12345,"sha256":"ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789","added":1772582400},{"path":"2026/3/4/30000000-0000-4000-8000-000000000000.webp","size":7,"sha256":"0000000000000000000000000000000000000000000000000000000000000000","added":-1}],"tombstones":["2026/3/4/20000000-0000-4000-8000-000000000000.png"],"next":"30000000-0000-4000-8000-000000000000.webp"}}"#;
        let page = read_list(body, day(), Some(N0)).expect("taken");
        let files: Vec<(String, u64, &str, i64)> = page
            .files
            .iter()
            .map(|f| (f.path.to_string(), f.size, f.sha256.as_str(), f.added))
            .collect();
        assert_eq!(
            files,
            [
                (
                    format!("2026/3/4/{N1}"),
                    12345,
                    "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
                    1_772_582_400
                ),
                (format!("2026/3/4/{N3}"), 7, &"0".repeat(64), -1),
            ]
        );
        let tombstones: Vec<String> = page.tombstones.iter().map(|t| t.to_string()).collect();
        assert_eq!(tombstones, [format!("2026/3/4/{N2}")]);
        assert_eq!(page.next.as_deref(), Some(N3));
    }

    #[test]
    fn an_unpaged_list_answer_is_the_only_page() {
        let page = read_list(page(&[N1, N2], &[N0], None).as_bytes(), day(), None).expect("taken");
        assert_eq!((page.files.len(), page.tombstones.len()), (2, 1));
        assert_eq!(page.next, None);
    }

    #[test]
    fn the_day_is_written_without_zero_padding() {
        assert_eq!(day_text(day()), "2026/3/4");
        let last = NaiveDate::from_ymd_opt(2026, 12, 31).expect("date");
        assert_eq!(day_text(last), "2026/12/31");
    }

    #[test]
    fn a_list_of_another_day_is_refused() {
        let body = page(&[], &[], None).replace(r#""day":"2026/3/4""#, r#""day":"2026/3/5""#);
        let why = refusal(read_list(body.as_bytes(), day(), None));
        assert!(why.contains("`2026/3/5`, not `2026/3/4`"), "{why}");
    }

    #[test]
    fn files_and_tombstones_must_be_stored_paths_of_the_day() {
        let other_file = page(&[N1], &[], None).replace("2026/3/4/", "2026/3/5/");
        let why = refusal(read_list(other_file.as_bytes(), day(), None));
        assert!(
            why.contains(&format!("`2026/3/5/{N1}` is not a file of 2026/3/4")),
            "{why}"
        );
        let other_tombstone = list_body(&format!(r#""files":[],"tombstones":["2026/4/4/{N1}"]"#));
        assert!(read_list(other_tombstone.as_bytes(), day(), None).is_err());
        let not_stored = page(&["x.jpg"], &[], None);
        assert!(read_list(not_stored.as_bytes(), day(), None).is_err());
    }

    #[test]
    fn names_must_ascend_after_the_cursor_files_and_tombstones_each() {
        for (files, tombstones, after) in [
            (&[N1, N1][..], &[][..], None),
            (&[N2, N1], &[], None),
            (&[N1], &[], Some(N1)),
            (&[], &[N2, N2], None),
            (&[], &[N2, N1], None),
            (&[], &[N1], Some(N2)),
        ] {
            let why = refusal(read_list(
                page(files, tombstones, None).as_bytes(),
                day(),
                after,
            ));
            assert!(
                why.contains("ascending"),
                "{files:?} {tombstones:?} {after:?}: {why}"
            );
        }
        // The two lists are merged by the asker: a tombstone may sort before a file.
        assert!(read_list(page(&[N2], &[N1], None).as_bytes(), day(), None).is_ok());
    }

    #[test]
    fn a_sha256_is_64_hex_digits() {
        for sha in ["ab".repeat(31) + "a", "ab".repeat(32) + "a", "g".repeat(64)] {
            let body = page(&[N1], &[], None).replace(&"ab".repeat(32), &sha);
            let why = refusal(read_list(body.as_bytes(), day(), None));
            assert!(why.contains(&format!("`{sha}` is not a SHA-256")), "{why}");
        }
    }

    #[test]
    fn next_must_be_past_the_cursor_and_behind_no_name_of_the_page() {
        for (files, tombstones, after, next) in [
            (&[N3][..], &[N1][..], None, N2),
            (&[N1], &[N3], None, N2),
            (&[], &[N3], None, N2),
            (&[], &[], Some(N2), N2),
            (&[], &[], Some(N2), N1),
        ] {
            let body = page(files, tombstones, Some(next));
            let why = refusal(read_list(body.as_bytes(), day(), after));
            assert!(
                why.contains("does not move past"),
                "{files:?} {tombstones:?} {after:?}: {why}"
            );
        }
        let past = read_list(page(&[N1], &[], Some(N2)).as_bytes(), day(), Some(N0));
        assert_eq!(past.map(|p| p.next), Ok(Some(N2.to_owned())));
    }

    #[test]
    fn next_is_at_most_64_bytes() {
        let longest = "f".repeat(64);
        let body = page(&[N1], &[], Some(&longest));
        assert_eq!(
            read_list(body.as_bytes(), day(), Some(N0)).map(|p| p.next),
            Ok(Some(longest))
        );
        let body = page(&[N1], &[], Some(&"f".repeat(65)));
        let why = refusal(read_list(body.as_bytes(), day(), Some(N0)));
        assert!(why.contains("not a file name"), "{why}");
    }

    // ---- the envelope ----

    #[test]
    fn an_answer_without_success_1_is_refused() {
        for success in ["0", "2"] {
            let flag = format!(r#""success":{success}"#);
            let list = page(&[N1], &[], None).replace(r#""success":1"#, &flag);
            let why = refusal(read_list(list.as_bytes(), day(), None));
            assert!(why.contains("does not say `success`: 1"), "{why}");
            let digest = digest_body("", "").replace(r#""success":1"#, &flag);
            let why = refusal(read_digest(digest.as_bytes(), year(), None));
            assert!(why.contains("does not say `success`: 1"), "{why}");
        }
    }

    #[test]
    fn a_cut_answer_is_told_from_one_not_understood() {
        let cut = br#"{"resp":{"success":1,"day":"2026/3/4","fi"#;
        let why = refusal(read_list(cut, day(), None));
        assert!(why.contains("ends early (41 bytes read"), "{why}");
        let xml = b"<resp><success>1</success></resp>";
        let why = refusal(read_list(xml, day(), None));
        assert!(why.starts_with("the answer is not understood"), "{why}");
    }

    #[test]
    fn a_peer_text_in_an_error_is_escaped_and_cut_at_80_characters() {
        let control = digest_body("", "").replace(r#""prefix":"2026""#, r#""prefix":"20\n26""#);
        let why = refusal(read_digest(control.as_bytes(), year(), None));
        assert!(why.contains(r"about `20\n26`"), "{why}");
        let long = page(&[], &[], None).replace("2026/3/4", &"9".repeat(100));
        let why = refusal(read_list(long.as_bytes(), day(), None));
        assert!(
            why.contains(&format!("about `{}`", "9".repeat(80))),
            "{why}"
        );
        assert!(!why.contains(&"9".repeat(81)), "{why}");
    }

    // ---- the read limits ----

    #[test]
    fn a_full_page_of_the_longest_entries_fits_well_within_its_read_limit() {
        let digest = DigestAnswer {
            success: 1,
            prefix: String::new(),
            digest: "f".repeat(64),
            children: (9999 - DIGEST_PAGE as u32 + 1..=9999)
                .map(|name| Child {
                    name,
                    digest: "f".repeat(64),
                })
                .collect(),
            next: Some(9999),
        };
        let digest = serde_json::to_vec(&digest).expect("json").len();
        assert!(digest * 2 < DIGEST_LIMIT, "{digest}");
        let file = ListedFile {
            path: format!("2026/12/31/{N3}"),
            size: u64::MAX,
            sha256: "f".repeat(64),
            added: i64::MIN,
        };
        let list = ListAnswer {
            success: 1,
            day: "2026/12/31".into(),
            files: vec![file; LIST_PAGE],
            tombstones: Vec::new(),
            next: Some(N3.into()),
        };
        let list = serde_json::to_vec(&list).expect("json").len();
        // An older peer's whole day of twenty pages still fits.
        assert!(list * 20 < LIST_LIMIT, "{list}");
    }
}
