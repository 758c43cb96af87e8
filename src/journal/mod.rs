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
//! kept as they are and reported, never silently dropped.
//!
//! The journal knows nothing of HTTP or of how replicas are sent.

mod replay;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Local};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use replay::{ReplayReport, Replayer};

const JOURNAL: &str = "upload-errors.jsonl";
const LOCK: &str = "upload-errors.lock";
const REPLAY_LOCK: &str = "upload-errors.replay.lock";

/// One replica that failed and is still owed to `peer`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalEntry {
    pub id: Uuid,
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
}

/// What became of an entry in a replay.
#[derive(Debug, Clone)]
pub enum Settlement {
    /// The peer has it now: remove the entry.
    Delivered,
    /// The local file is gone: nothing left to send; remove the entry.
    SourceGone,
    /// Failed again: keep it, count the attempt.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    fsync: bool,
}

/// A line of the journal file: an entry, or text kept verbatim.
enum Line {
    Entry(JournalEntry),
    /// The line's bytes without its `\n`, whatever they are (a write torn
    /// inside a character is not UTF-8).
    Unreadable(Vec<u8>),
}

impl Journal {
    pub fn open(log_dir: &Path, fsync: bool) -> io::Result<Self> {
        std::fs::create_dir_all(log_dir)?;
        let journal = Self {
            dir: log_dir.to_path_buf(),
            fsync,
        };
        journal.remove_abandoned_replacements()?;
        Ok(journal)
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
            file.write_all(text.as_bytes())?;
            if this.fsync {
                file.sync_all()?;
            }
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
            let unreadable = lines
                .iter()
                .filter(|l| matches!(l, Line::Unreadable(_)))
                .count();
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

    /// Applies a replay's outcomes to the journal as it is now.
    pub async fn settle(&self, outcomes: HashMap<Uuid, Settlement>) -> io::Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let this = self.clone();
        blocking(move || {
            let _lock = this.lock()?;
            let now = Local::now();
            let mut text = Vec::new();
            for line in this.read_lines()? {
                match line {
                    Line::Unreadable(raw) => {
                        text.extend_from_slice(&raw);
                        text.push(b'\n');
                    }
                    Line::Entry(mut e) => {
                        match outcomes.get(&e.id) {
                            Some(Settlement::Delivered | Settlement::SourceGone) => continue,
                            Some(Settlement::Failed(error)) => {
                                e.attempts = e.attempts.saturating_add(1);
                                e.last_error.clone_from(error);
                                e.last_attempt = Some(now);
                            }
                            None => {}
                        }
                        serde_json::to_writer(&mut text, &e).map_err(io::Error::other)?;
                        text.push(b'\n');
                    }
                }
            }
            this.replace(&text)
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

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// NTFS journals directory entries itself.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
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
            time: Local::now(),
            from: "s1".into(),
            peer: peer.into(),
            path: "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg".into(),
            size: 3,
            sha256: "00".repeat(32),
            attempts: 1,
            last_error: "connection refused".into(),
            last_attempt: None,
        }
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
