//! The failure journal `{log_dir}/upload-errors.jsonl`: one JSON line per
//! replica a peer still owes us, readable by an operator (SPEC §5).
//!
//! Every change happens under an OS file lock on `upload-errors.lock`, so two
//! service processes (an IIS app-pool recycle) and a `replay` command can share
//! the journal. Appends are written and flushed before the caller goes on.
//! Settling a replay re-reads the file under the lock, so lines appended while
//! the replay ran are kept, and replaces it through a temporary file and an
//! atomic rename, so a kill at any instant leaves either the old or the new
//! journal whole. Lines that cannot be parsed (a torn write by a crash) are
//! kept as they are and reported, never silently dropped. An append that
//! fails part way (a full disk) is cut back to where it began, so it leaves
//! no torn line either.
//!
//! The journal also keeps counters of its lines (owed copies, copies waiting
//! for an operator, unreadable lines) so that health checks cost O(1): they
//! are counted once at open, moved on every append, and recounted whenever
//! this process reads or settles the whole file under the lock. They are this
//! process's view: what another process (a second app pool, the `replay`
//! command) appends or settles shows here at our next read or settle.
//!
//! The journal knows nothing of HTTP or of how replicas are sent.

mod replay;

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Local};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::storage::sync_dir;

pub use replay::{ReplayReport, Replayer};

const JOURNAL: &str = "upload-errors.jsonl";
const LOCK: &str = "upload-errors.lock";
const REPLAY_LOCK: &str = "upload-errors.replay.lock";

/// What a peer is owed: a copy of a stored file, or the news that a name
/// was deleted.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Send the file (`sync`). Entries of older versions are all copies.
    #[default]
    Copy,
    /// Tell the peer to delete the name (`delete`); no file is needed.
    Delete,
    /// Tell the peer that a deleted name was restored (`restore`).
    Restore,
}

/// One replica, or one delete, that failed and is still owed to `peer`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalEntry {
    pub id: Uuid,
    #[serde(default)]
    pub op: Operation,
    /// When the copy first failed.
    pub time: DateTime<Local>,
    /// The server that holds the file and owes the copy.
    pub from: String,
    pub peer: String,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub attempts: u32,
    pub last_error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<DateTime<Local>>,
    /// The peer refused this file for good (a bad path, another file under
    /// its name, too large, a type it does not take): it is kept for an
    /// operator and never resent. Absent in entries of older versions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_operator: bool,
}

impl JournalEntry {
    fn attempted(&mut self, error: &str, at: DateTime<Local>) {
        self.attempts = self.attempts.saturating_add(1);
        error.clone_into(&mut self.last_error);
        self.last_attempt = Some(at);
    }
}

/// What became of an entry in a replay.
#[derive(Debug, Clone)]
pub enum Settlement {
    /// The peer has it now: remove the entry.
    Delivered,
    /// The local file is gone: nothing left to send; remove the entry.
    SourceGone,
    /// The peer deleted the name (410): it never takes it again; remove
    /// the entry.
    DeletedThere,
    /// Failed again: keep it, count the attempt.
    Failed(String),
    /// The peer refused it for good: keep it for an operator, stop resending.
    Refused(String),
}

/// What the journal holds, as this process last saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Readable entries: copies still owed to a peer.
    pub entries: usize,
    /// Of those, entries a peer refused for good, left to an operator.
    pub needs_operator: usize,
    /// Lines that could not be read, kept as they are.
    pub unreadable: usize,
}

#[derive(Debug, Default)]
struct Counters {
    entries: AtomicUsize,
    needs_operator: AtomicUsize,
    unreadable: AtomicUsize,
    /// Entries per peer they are owed to; set with the counts above.
    per_peer: Mutex<BTreeMap<String, usize>>,
}

impl Counters {
    fn get(&self) -> Counts {
        Counts {
            entries: self.entries.load(Ordering::Relaxed),
            needs_operator: self.needs_operator.load(Ordering::Relaxed),
            unreadable: self.unreadable.load(Ordering::Relaxed),
        }
    }

    fn set(&self, counts: Counts, per_peer: BTreeMap<String, usize>) {
        self.entries.store(counts.entries, Ordering::Relaxed);
        self.needs_operator
            .store(counts.needs_operator, Ordering::Relaxed);
        self.unreadable.store(counts.unreadable, Ordering::Relaxed);
        *self.per_peer() = per_peer;
    }

    fn add(&self, entries: &[JournalEntry]) {
        let refused = entries.iter().filter(|e| e.needs_operator).count();
        self.entries.fetch_add(entries.len(), Ordering::Relaxed);
        self.needs_operator.fetch_add(refused, Ordering::Relaxed);
        let mut per_peer = self.per_peer();
        for e in entries {
            *per_peer.entry(e.peer.clone()).or_default() += 1;
        }
    }

    fn per_peer(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, usize>> {
        self.per_peer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    fsync: bool,
    counters: Arc<Counters>,
}

/// A line of the journal file: an entry, or text kept verbatim.
enum Line {
    Entry(JournalEntry),
    /// The line's bytes without its `\n`, whatever they are (a write torn
    /// inside a character is not UTF-8).
    Unreadable(Vec<u8>),
}

impl Line {
    /// The counts of `lines`, and their entries per peer.
    fn count(lines: &[Line]) -> (Counts, BTreeMap<String, usize>) {
        let mut counts = Counts::default();
        let mut per_peer = BTreeMap::new();
        for line in lines {
            match line {
                Line::Entry(e) => {
                    counts.entries += 1;
                    counts.needs_operator += usize::from(e.needs_operator);
                    *per_peer.entry(e.peer.clone()).or_default() += 1;
                }
                Line::Unreadable(_) => counts.unreadable += 1,
            }
        }
        (counts, per_peer)
    }
}

impl Journal {
    /// Opens the journal in `log_dir`, counting its lines once.
    pub fn open(log_dir: &Path, fsync: bool) -> io::Result<Self> {
        std::fs::create_dir_all(log_dir)?;
        let journal = Self {
            dir: log_dir.to_path_buf(),
            fsync,
            counters: Arc::default(),
        };
        journal.remove_abandoned_replacements()?;
        let _lock = journal.lock()?;
        let (counts, per_peer) = Line::count(&journal.read_lines()?);
        journal.counters.set(counts, per_peer);
        Ok(journal)
    }

    /// What the journal holds, as this process last saw it (see the module
    /// documentation): no lock, no read.
    pub fn counts(&self) -> Counts {
        self.counters.get()
    }

    /// Entries per peer they are owed to, as this process last saw them;
    /// peers owed nothing are absent.
    pub fn owed_by_peer(&self) -> BTreeMap<String, usize> {
        self.counters.per_peer().clone()
    }

    /// Whether a file can be written in `log_dir` now: creates, writes and
    /// removes a small file of its own.
    pub async fn probe(&self) -> io::Result<()> {
        let probe = self.dir.join(format!(".probe-{}", Uuid::new_v4()));
        let fsync = self.fsync;
        blocking(move || {
            let written = (|| {
                let mut file = File::create_new(&probe)?;
                file.write_all(&[b'.'; 512])?;
                if fsync {
                    file.sync_all()?;
                }
                Ok(())
            })();
            let removed = std::fs::remove_file(&probe);
            written.and(removed)
        })
        .await
    }

    /// Removes replacement files of a settle that was killed before its
    /// rename. They are written only under the journal lock, so while this
    /// holds it none of them is in use.
    fn remove_abandoned_replacements(&self) -> io::Result<()> {
        let _lock = self.lock()?;
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&format!("{JOURNAL}.")) && name.ends_with(".tmp") {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    /// Appends entries durably: when this returns `Ok`, they survive a crash.
    pub async fn append(&self, entries: Vec<JournalEntry>) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let this = self.clone();
        blocking(move || {
            let _lock = this.lock()?;
            let mut text = String::new();
            for e in &entries {
                text.push_str(&serde_json::to_string(e).map_err(io::Error::other)?);
                text.push('\n');
            }
            let mut file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(this.path())?;
            // A line torn by a crash must not swallow the next entry.
            if !ends_with_newline(&mut file)? {
                text.insert(0, '\n');
            }
            let before = file.metadata()?.len();
            let written = file.write_all(text.as_bytes()).and_then(|()| {
                if this.fsync {
                    file.sync_all()?;
                }
                Ok(())
            });
            if let Err(e) = written {
                // Part of the text may be in the file (the disk filled up
                // in the middle): cut it back so no torn line stays.
                if let Err(cut) = file.set_len(before) {
                    tracing::error!(error = %cut, "a failed journal append could not be cut back");
                }
                return Err(e);
            }
            this.counters.add(&entries);
            Ok(())
        })
        .await
    }

    /// All readable entries, and how many lines could not be read.
    pub async fn read(&self) -> io::Result<(Vec<JournalEntry>, usize)> {
        let this = self.clone();
        blocking(move || {
            let _lock = this.lock()?;
            let lines = this.read_lines()?;
            let (counts, per_peer) = Line::count(&lines);
            this.counters.set(counts, per_peer);
            let unreadable = counts.unreadable;
            let entries = lines
                .into_iter()
                .filter_map(|l| match l {
                    Line::Entry(e) => Some(e),
                    Line::Unreadable(_) => None,
                })
                .collect();
            Ok((entries, unreadable))
        })
        .await
    }

    /// Applies a replay's outcomes to the journal as it is now; returns
    /// what the journal holds afterwards.
    pub async fn settle(&self, outcomes: HashMap<Uuid, Settlement>) -> io::Result<Counts> {
        if outcomes.is_empty() {
            return Ok(self.counts());
        }
        let this = self.clone();
        blocking(move || {
            let _lock = this.lock()?;
            let now = Local::now();
            let mut text = Vec::new();
            let mut counts = Counts::default();
            let mut per_peer = BTreeMap::new();
            for line in this.read_lines()? {
                match line {
                    Line::Unreadable(raw) => {
                        counts.unreadable += 1;
                        text.extend_from_slice(&raw);
                        text.push(b'\n');
                    }
                    Line::Entry(mut e) => {
                        match outcomes.get(&e.id) {
                            Some(
                                Settlement::Delivered
                                | Settlement::SourceGone
                                | Settlement::DeletedThere,
                            ) => continue,
                            Some(Settlement::Failed(error)) => e.attempted(error, now),
                            Some(Settlement::Refused(error)) => {
                                e.attempted(error, now);
                                e.needs_operator = true;
                            }
                            None => {}
                        }
                        counts.entries += 1;
                        counts.needs_operator += usize::from(e.needs_operator);
                        *per_peer.entry(e.peer.clone()).or_default() += 1;
                        serde_json::to_writer(&mut text, &e).map_err(io::Error::other)?;
                        text.push(b'\n');
                    }
                }
            }
            this.replace(&text)?;
            this.counters.set(counts, per_peer);
            Ok(counts)
        })
        .await
    }

    /// Takes the single-replay lock without waiting; `None` if a replay runs
    /// already, in this process or another.
    pub(crate) fn try_replay_lock(&self) -> io::Result<Option<File>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(REPLAY_LOCK))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Blocks until this handle holds the journal lock; released on drop.
    fn lock(&self) -> io::Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(LOCK))?;
        file.lock()?;
        Ok(file)
    }

    fn read_lines(&self) -> io::Result<Vec<Line>> {
        let bytes = match std::fs::read(self.path()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty())
            .map(|l| match serde_json::from_slice(l) {
                Ok(e) => Line::Entry(e),
                Err(err) => {
                    tracing::warn!(error = %err, "unreadable line in the journal kept as is");
                    Line::Unreadable(l.to_vec())
                }
            })
            .collect())
    }

    /// Atomically replaces the journal's content.
    fn replace(&self, content: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{JOURNAL}.{}.tmp", Uuid::new_v4()));
        let result = (|| {
            let mut file = File::create_new(&tmp)?;
            file.write_all(content)?;
            if self.fsync {
                file.sync_all()?;
            }
            drop(file);
            std::fs::rename(&tmp, self.path())?;
            if self.fsync {
                sync_dir(&self.dir)?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

fn ends_with_newline(file: &mut File) -> io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(peer: &str) -> JournalEntry {
        JournalEntry {
            id: Uuid::new_v4(),
            op: Operation::Copy,
            time: Local::now(),
            from: "s1".into(),
            peer: peer.into(),
            path: "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg".into(),
            size: 3,
            sha256: "00".repeat(32),
            attempts: 1,
            last_error: "connection refused".into(),
            last_attempt: None,
            needs_operator: false,
        }
    }

    #[test]
    fn entries_of_older_versions_read_and_the_mark_is_written_only_when_set() {
        let old = r#"{"id":"5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1","time":"2014-04-15T10:00:00+08:00","from":"s1","peer":"s2","path":"2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg","size":3,"sha256":"00","attempts":2,"last_error":"refused"}"#;
        let e: JournalEntry = serde_json::from_str(old).expect("an older entry reads");
        assert!(!e.needs_operator);
        assert_eq!(e.op, Operation::Copy);
        assert!(
            !serde_json::to_string(&e)
                .expect("json")
                .contains("needs_operator")
        );
        let marked = JournalEntry {
            needs_operator: true,
            ..e
        };
        assert!(
            serde_json::to_string(&marked)
                .expect("json")
                .contains(r#""needs_operator":true"#)
        );
    }

    #[tokio::test]
    async fn counts_follow_appends_and_settles_without_reading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (entry("s2"), entry("s3"));
        let mut text = serde_json::to_string(&a).expect("json");
        text.push_str("\n{torn\n");
        std::fs::write(dir.path().join(JOURNAL), text).expect("write");
        let journal = Journal::open(dir.path(), false).expect("open");
        let counts = |entries, needs_operator, unreadable| Counts {
            entries,
            needs_operator,
            unreadable,
        };
        assert_eq!(journal.counts(), counts(1, 0, 1));
        let refused = JournalEntry {
            needs_operator: true,
            ..entry("s2")
        };
        journal
            .append(vec![b.clone(), refused])
            .await
            .expect("append");
        assert_eq!(journal.counts(), counts(3, 1, 1));
        let settled = journal
            .settle(HashMap::from([
                (a.id, Settlement::Delivered),
                (b.id, Settlement::Refused("409: taken".into())),
            ]))
            .await
            .expect("settle");
        assert_eq!(settled, counts(2, 2, 1));
        assert_eq!(journal.counts(), settled);
        let (left, _) = journal.read().await.expect("read");
        let b_now = left.iter().find(|e| e.id == b.id).expect("kept");
        assert!(b_now.needs_operator);
        assert_eq!(
            (b_now.attempts, b_now.last_error.as_str()),
            (2, "409: taken")
        );
    }

    #[tokio::test]
    async fn entries_owed_per_peer_follow_open_appends_and_settles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = entry("s2");
        let text = format!("{}\n", serde_json::to_string(&a).expect("json"));
        std::fs::write(dir.path().join(JOURNAL), text).expect("write");
        let journal = Journal::open(dir.path(), false).expect("open");
        let owed = |pairs: &[(&str, usize)]| -> BTreeMap<String, usize> {
            pairs.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect()
        };
        assert_eq!(journal.owed_by_peer(), owed(&[("s2", 1)]));
        let (b, c) = (entry("s3"), entry("s2"));
        journal
            .append(vec![b.clone(), c.clone()])
            .await
            .expect("append");
        assert_eq!(journal.owed_by_peer(), owed(&[("s2", 2), ("s3", 1)]));
        journal
            .settle(HashMap::from([
                (a.id, Settlement::Delivered),
                (b.id, Settlement::Delivered),
                (c.id, Settlement::Failed("refused".into())),
            ]))
            .await
            .expect("settle");
        assert_eq!(
            journal.owed_by_peer(),
            owed(&[("s2", 1)]),
            "s3 owed nothing"
        );
    }

    #[tokio::test]
    async fn the_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path(), true).expect("open");
        let before: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        journal.probe().await.expect("writable");
        let after: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(before, after);
    }

    #[tokio::test]
    async fn settle_keeps_what_was_appended_meanwhile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path(), true).expect("open");
        let (a, b, c) = (entry("s2"), entry("s3"), entry("s2"));
        journal
            .append(vec![a.clone(), b.clone()])
            .await
            .expect("append");
        let (seen, _) = journal.read().await.expect("read");
        assert_eq!(seen.len(), 2);
        // Appended after the replay read the journal, before it settled.
        journal.append(vec![c.clone()]).await.expect("append");
        let outcomes = HashMap::from([
            (a.id, Settlement::Delivered),
            (b.id, Settlement::Failed("timed out".into())),
        ]);
        journal.settle(outcomes).await.expect("settle");
        let (left, unreadable) = journal.read().await.expect("read");
        assert_eq!(unreadable, 0);
        assert_eq!(
            left.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![b.id, c.id]
        );
        assert_eq!(left[0].attempts, 2);
        assert_eq!(left[0].last_error, "timed out");
    }

    #[tokio::test]
    async fn a_torn_line_is_kept_and_does_not_swallow_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path(), false).expect("open");
        std::fs::write(journal.path(), b"{\"id\":\"torn").expect("write");
        let e = entry("s2");
        journal.append(vec![e.clone()]).await.expect("append");
        let (entries, unreadable) = journal.read().await.expect("read");
        assert_eq!(entries, vec![e.clone()]);
        assert_eq!(unreadable, 1);
        journal
            .settle(HashMap::from([(e.id, Settlement::Delivered)]))
            .await
            .expect("settle");
        let text = std::fs::read_to_string(journal.path()).expect("read");
        assert_eq!(text, "{\"id\":\"torn\n");
    }

    #[tokio::test]
    async fn appends_write_one_line_per_entry_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path(), false).expect("open");
        journal.append(vec![entry("s2")]).await.expect("append");
        journal.append(vec![entry("s3")]).await.expect("append");
        let text = std::fs::read_to_string(journal.path()).expect("read");
        let peers: Vec<_> = text
            .split_terminator('\n')
            .map(|line| {
                let e: JournalEntry = serde_json::from_str(line).expect("an entry per line");
                e.peer
            })
            .collect();
        assert_eq!(peers, ["s2", "s3"], "{text:?}");
    }

    #[test]
    fn counts_at_open_tell_refused_entries_and_unreadable_lines_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let refused = JournalEntry {
            needs_operator: true,
            ..entry("s2")
        };
        let text = [
            serde_json::to_string(&entry("s2")).expect("json"),
            serde_json::to_string(&refused).expect("json"),
            "{torn".to_owned(),
            serde_json::to_string(&refused).expect("json"),
        ]
        .join("\n");
        std::fs::write(dir.path().join(JOURNAL), text).expect("write");
        let journal = Journal::open(dir.path(), false).expect("open");
        assert_eq!(
            journal.counts(),
            Counts {
                entries: 3,
                needs_operator: 2,
                unreadable: 1,
            }
        );
    }

    #[test]
    fn a_journal_that_cannot_be_read_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join(JOURNAL)).expect("mkdir");
        assert!(Journal::open(dir.path(), false).is_err());
    }

    #[test]
    fn a_replacement_abandoned_by_a_kill_is_removed_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let abandoned = dir.path().join(format!("{JOURNAL}.{}.tmp", Uuid::new_v4()));
        std::fs::write(&abandoned, b"half").expect("write");
        std::fs::write(dir.path().join(JOURNAL), b"").expect("write");
        Journal::open(dir.path(), false).expect("open");
        assert!(!abandoned.exists());
        assert!(dir.path().join(JOURNAL).exists());
    }

    #[test]
    fn only_one_replay_lock_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path(), false).expect("open");
        let first = journal.try_replay_lock().expect("lock");
        assert!(first.is_some());
        assert!(journal.try_replay_lock().expect("lock").is_none());
        drop(first);
        assert!(journal.try_replay_lock().expect("lock").is_some());
    }
}
