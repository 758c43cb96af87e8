//! The journal reader and `settle`: fuzzed bytes are written as
//! upload-errors.jsonl (lines that are entries, entries with bytes changed,
//! raw bytes, blank lines; LF or CRLF; with or without a last newline), read,
//! then settled with random outcomes, with an append in between as a
//! concurrent upload would do.
//!
//! Invariants: every non-blank line is either an entry or counted as
//! unreadable; settling keeps every unreadable line verbatim and in order,
//! removes exactly the delivered and source-gone entries, counts an attempt
//! on the failed ones, leaves the others equal to what was read, and keeps
//! the entry appended meanwhile.

#![no_main]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use chrono::{DateTime, FixedOffset, Local, SecondsFormat};
use libfuzzer_sys::fuzz_target;
use multiserver_upload::journal::{Journal, JournalEntry, Settlement};
use uuid::Uuid;

#[derive(Debug, Arbitrary)]
struct Input {
    lines: Vec<(LineSpec, bool)>,
    final_newline: bool,
    outcomes: Vec<u8>,
    append_meanwhile: Option<EntrySpec>,
}

#[derive(Debug, Arbitrary)]
enum LineSpec {
    Entry(EntrySpec),
    /// An entry whose bytes are then changed: truncated, or one byte replaced.
    Edited(EntrySpec, u16, Option<u8>),
    Raw(Vec<u8>),
    Blank(u8),
}

#[derive(Debug, Arbitrary)]
struct EntrySpec {
    id: [u8; 16],
    time: (i64, u32, i16),
    from: String,
    peer: String,
    path: String,
    size: u64,
    sha256: String,
    attempts: u32,
    last_error: String,
    last_attempt: Option<(i64, u32, i16)>,
}

fn time((secs, nanos, offset): (i64, u32, i16)) -> String {
    // Between the years 1900 and 2300, any offset within a day.
    let secs = -2_208_988_800 + secs.rem_euclid(12_622_780_800);
    let offset = FixedOffset::east_opt(i32::from(offset) * 60 % 86_400)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"));
    DateTime::from_timestamp(secs, nanos % 1_000_000_000)
        .unwrap_or_default()
        .with_timezone(&offset)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

impl EntrySpec {
    fn json(&self) -> Vec<u8> {
        let mut v = serde_json::json!({
            "id": Uuid::from_bytes(self.id),
            "time": time(self.time),
            "from": self.from,
            "peer": self.peer,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "attempts": self.attempts,
            "last_error": self.last_error,
        });
        if let Some(t) = self.last_attempt {
            v["last_attempt"] = time(t).into();
        }
        serde_json::to_vec(&v).expect("json")
    }
}

impl LineSpec {
    fn bytes(&self) -> Vec<u8> {
        match self {
            LineSpec::Entry(e) => e.json(),
            LineSpec::Edited(e, at, byte) => {
                let mut b = e.json();
                let at = usize::from(*at) % b.len();
                match byte {
                    Some(x) => b[at] = *x,
                    None => b.truncate(at),
                }
                b
            }
            LineSpec::Raw(b) => b.clone(),
            LineSpec::Blank(n) => vec![b' '; usize::from(*n % 4)],
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fn log_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir").keep())
}

/// How the journal decides whether a line is an entry.
fn entry_of(line: &[u8]) -> Option<JournalEntry> {
    serde_json::from_str(&String::from_utf8_lossy(line)).ok()
}

/// A line as the journal sees it: without its LF, and without the CR of a CRLF.
fn lines(content: &[u8]) -> Vec<&[u8]> {
    let content = content.strip_suffix(b"\n").unwrap_or(content);
    if content.is_empty() {
        return Vec::new();
    }
    content
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}

fn blank(line: &[u8]) -> bool {
    String::from_utf8_lossy(line).trim().is_empty()
}

/// A line of the journal expected after settling.
#[derive(Debug)]
enum Expected<'a> {
    Verbatim(&'a [u8]),
    Entry(JournalEntry),
    /// Attempted again; the flag: refused for good in this settle.
    Attempted(JournalEntry, String, bool),
}

fuzz_target!(|input: Input| {
    let mut content = Vec::new();
    for (i, (line, crlf)) in input.lines.iter().enumerate() {
        if i > 0 {
            content.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
        }
        content.extend_from_slice(&line.bytes());
    }
    if input.final_newline && !input.lines.is_empty() {
        content.push(b'\n');
    }
    let journal = Journal::open(log_dir(), false).expect("open");
    std::fs::write(journal.path(), &content).expect("write journal");

    let present: Vec<&[u8]> = lines(&content).into_iter().filter(|l| !blank(l)).collect();
    let (entries, unreadable) = runtime().block_on(journal.read()).expect("read");
    let readable: Vec<JournalEntry> = present.iter().filter_map(|l| entry_of(l)).collect();
    assert_eq!(entries, readable);
    assert_eq!(entries.len() + unreadable, present.len());

    // An upload appends while the replay runs.
    let appended = input.append_meanwhile.as_ref().and_then(|spec| {
        let entry: JournalEntry = serde_json::from_slice(&spec.json()).ok()?;
        runtime()
            .block_on(journal.append(vec![entry.clone()]))
            .expect("append");
        Some(entry)
    });

    let mut outcomes = HashMap::new();
    for (e, code) in entries.iter().zip(&input.outcomes) {
        let settlement = match code % 5 {
            0 => continue,
            1 => Settlement::Delivered,
            2 => Settlement::SourceGone,
            3 => Settlement::Failed(format!("failed again {code}")),
            _ => Settlement::Refused(format!("refused {code}")),
        };
        outcomes.insert(e.id, settlement);
    }
    let before = std::fs::read(journal.path()).expect("read journal");
    runtime()
        .block_on(journal.settle(outcomes.clone()))
        .expect("settle");
    let after = std::fs::read(journal.path()).expect("read journal");
    if outcomes.is_empty() {
        assert_eq!(after, before, "nothing to settle, yet the journal changed");
        return;
    }

    let mut expected = Vec::new();
    let sources = present
        .iter()
        .map(|l| (*l, entry_of(l)))
        .chain(appended.map(|e| (&b""[..], Some(e))));
    for (raw, entry) in sources {
        match entry {
            None => expected.push(Expected::Verbatim(raw)),
            Some(e) => match outcomes.get(&e.id) {
                Some(
                    Settlement::Delivered | Settlement::SourceGone | Settlement::DeletedThere,
                ) => {}
                Some(Settlement::Failed(error)) => {
                    expected.push(Expected::Attempted(e, error.clone(), false));
                }
                Some(Settlement::Refused(error)) => {
                    expected.push(Expected::Attempted(e, error.clone(), true));
                }
                None => expected.push(Expected::Entry(e)),
            },
        }
    }
    assert!(after.is_empty() || after.ends_with(b"\n"));
    let got = lines(&after);
    assert_eq!(got.len(), expected.len(), "{expected:?}\n{got:?}");
    for (line, want) in got.iter().zip(&expected) {
        match want {
            // Compared as text: the journal reads its file as lossy UTF-8, so
            // bytes that are not UTF-8 come back as U+FFFD (found by this
            // target, see README.md; `tests/fuzz_regressions.rs` holds it).
            // Carriage returns at the end of a line count as its line end:
            // `x\r` is written back as `x\r\n`, which reads as `x`.
            Expected::Verbatim(raw) => assert_eq!(
                String::from_utf8_lossy(line).trim_end_matches('\r'),
                String::from_utf8_lossy(raw).trim_end_matches('\r'),
                "an unreadable line changed"
            ),
            Expected::Entry(e) => assert_eq!(entry_of(line).as_ref(), Some(e)),
            Expected::Attempted(e, error, refused) => {
                let got = entry_of(line).expect("a settled entry reads back");
                assert_eq!(got.attempts, e.attempts.saturating_add(1));
                assert_eq!(&got.last_error, error);
                assert!(got.last_attempt.is_some_and(|t| t <= Local::now()));
                assert_eq!(got.needs_operator, e.needs_operator || *refused);
                let same = JournalEntry {
                    attempts: e.attempts,
                    last_error: e.last_error.clone(),
                    last_attempt: e.last_attempt,
                    needs_operator: e.needs_operator,
                    ..got
                };
                assert_eq!(&same, e);
            }
        }
    }
    let (left, unreadable_after) = runtime().block_on(journal.read()).expect("read");
    assert_eq!(
        unreadable_after,
        expected
            .iter()
            .filter(|e| matches!(e, Expected::Verbatim(_)))
            .count()
    );
    assert_eq!(left.len() + unreadable_after, expected.len());
});
