//! The index in redb: the tables, the one writer thread that commits in
//! batches, the reads, and the rebuild from the files at open.
//!
//! Tables: `files` (key `{day}/{name}` → size, SHA-256, arrival time),
//! `tombstones` (key → deletion time), `restored` (key → when a deleted
//! name was restored: a peer's stale tombstone of it is not applied),
//! `days` (day → digest, files, tombstones), `downloads` (key → served
//! GETs counted here, added to in batches by `crate::downloads`) and
//! `meta` (`committed_at`: when the last batch was committed). The key
//! starts with the day number, so a day is one range.
//!
//! Every commit is durable (redb's `Immediate`; its multi-process mode, in
//! which two processes of the service share the file during an IIS
//! recycle, allows no other). Recording a stored file does not wait for the
//! commit: a writer thread takes everything queued and commits it as one
//! transaction, so one fsync serves many uploads; records nobody waits for
//! are gathered for a few milliseconds first, so that a steady stream of
//! uploads costs tens of commits a second, not one per handful of uploads
//! (each commit flushes to the disk). A file whose record was
//! still queued when the process died is found again at the next open,
//! which indexes the files of every day folder changed since the last
//! commit. Tombstones are waited for: a delete is answered only once it
//! will survive a crash.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use redb::{
    ConcurrencyMode, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use tokio::sync::oneshot;

use super::{DayList, Digest, FileEntry, day_date, day_number, key};
use crate::progress::Every;
use crate::storage::{StoredPath, hash_file};

const FILES: TableDefinition<&str, (u64, [u8; 32], i64)> = TableDefinition::new("files");
const TOMBSTONES: TableDefinition<&str, i64> = TableDefinition::new("tombstones");
const DAYS: TableDefinition<u32, ([u8; 32], u64, u64)> = TableDefinition::new("days");
const RESTORED: TableDefinition<&str, i64> = TableDefinition::new("restored");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const DOWNLOADS: TableDefinition<&str, u64> = TableDefinition::new("downloads");
const COMMITTED_AT: &str = "committed_at";

/// Operations committed together at most.
const BATCH: usize = 1024;
/// How long the writer gathers records before it commits them, unless the
/// first is an operation somebody waits for (a tombstone, a flush).
const GATHER: Duration = Duration::from_millis(20);
/// Day folders changed this long before the last commit are checked too at
/// open (clocks of folders and of this process may disagree a little).
const RECONCILE_SLACK_SECS: i64 = 300;

/// The index build logs how far it is once it has taken this long...
const RECONCILE_QUIET: Duration = Duration::from_secs(1);
/// ...and again at this interval.
const RECONCILE_LOG_EVERY: Duration = Duration::from_secs(5);
/// How long a start waits for another program to let go of the index: less
/// than the 20 s IIS gives a start (web.config's `startupTimeLimit`), so the
/// refusal is logged before IIS gives up and starts the service again.
const HELD_WAIT: Duration = Duration::from_secs(15);
const HELD_RETRY: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database: {0}")]
    Db(String),
    #[error("index: {0}")]
    Io(#[from] std::io::Error),
    #[error("the index writer has stopped")]
    WriterGone,
    #[error(
        "the index {} cannot be opened ({why}) and was not freed within {waited} s; \
         if another program holds it, stop that program and start again", file.display()
    )]
    Held {
        file: PathBuf,
        why: String,
        waited: u64,
    },
}

fn db_error(e: impl Into<redb::Error>) -> IndexError {
    IndexError::Db(e.into().to_string())
}

/// What the writer thread is asked to do.
enum Op {
    Record(FileEntry),
    Tombstone {
        path: StoredPath,
        when: i64,
        done: oneshot::Sender<Result<(), IndexError>>,
    },
    /// A restored name: its tombstone goes, a `restored` mark comes.
    Untombstone {
        path: StoredPath,
        when: i64,
        done: oneshot::Sender<Result<(), IndexError>>,
    },
    /// Tombstones and restored marks no server needs any more.
    Forget {
        tombstones: Vec<StoredPath>,
        restored: Vec<StoredPath>,
        done: oneshot::Sender<Result<(), IndexError>>,
    },
    Flush(oneshot::Sender<Result<(), IndexError>>),
    /// Served GETs to add to the counts of these names.
    Downloads {
        counts: Vec<(StoredPath, u64)>,
        done: oneshot::Sender<Result<(), IndexError>>,
    },
}

impl Op {
    /// Is somebody waiting for this operation's commit?
    fn is_waited(&self) -> bool {
        !matches!(self, Self::Record(_))
    }
}

/// Counts for health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexCounts {
    pub files: u64,
    pub tombstones: u64,
    pub days: u64,
}

#[derive(Clone)]
pub struct Index {
    db: Arc<Database>,
    writer: mpsc::Sender<Op>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Index")
    }
}

impl Index {
    /// Opens (or creates) the index kept in `home` and brings it up to date
    /// with the files of every data folder in `roots`: all of them if the
    /// index is new or was unreadable, else those of day folders changed
    /// since its last commit.
    ///
    /// An index that fails redb's integrity check, a full read of its
    /// tables, or makes redb panic is set aside (`.index.redb.damaged-…`,
    /// kept for an operator) and rebuilt from the files. One held by another
    /// program is not damaged: the start waits for it (bounded) and then
    /// refuses, naming the file, rather than throwing its tombstones away.
    pub fn open(home: &Path, roots: &[PathBuf]) -> Result<Self, IndexError> {
        let file = super::index_file(home);
        let fresh = !file.exists();
        let db = match open_checked(&file)? {
            Ok(db) => db,
            Err(damage) if !fresh => {
                let aside = set_aside(&file)?;
                tracing::error!(error = %damage, aside = %aside.display(), "the index is damaged; set aside and rebuilt from the files");
                open_checked(&file)?.map_err(IndexError::Db)?
            }
            Err(damage) => return Err(IndexError::Db(damage)),
        };
        let since = if fresh {
            None
        } else {
            committed_at(&db)?.map(|t| t - RECONCILE_SLACK_SECS)
        };
        for root in roots {
            reconcile(&db, root, since)?;
        }
        let db = Arc::new(db);
        let (writer, queue) = mpsc::channel();
        {
            let db = db.clone();
            std::thread::Builder::new()
                .name("index-writer".into())
                .spawn(move || write_loop(&db, &queue))?;
        }
        Ok(Self { db, writer })
    }

    /// Records a committed file. Returns at once; the record is durable
    /// with the writer's next batch.
    pub fn record(&self, entry: FileEntry) {
        if self.writer.send(Op::Record(entry)).is_err() {
            tracing::error!("the index writer has stopped; a stored file was not indexed");
        }
    }

    /// Records that `path` was deleted; returns once that is durable.
    pub async fn tombstone(&self, path: StoredPath, when: i64) -> Result<(), IndexError> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(Op::Tombstone { path, when, done })
            .map_err(|_| IndexError::WriterGone)?;
        wait.await.map_err(|_| IndexError::WriterGone)?
    }

    /// Records that the deleted `path` was restored; returns once that is
    /// durable.
    pub async fn untombstone(&self, path: StoredPath, when: i64) -> Result<(), IndexError> {
        self.waited(|done| Op::Untombstone { path, when, done })
            .await
    }

    /// Drops the tombstones and restored marks of these names; returns
    /// once that is durable.
    pub async fn forget(
        &self,
        tombstones: Vec<StoredPath>,
        restored: Vec<StoredPath>,
    ) -> Result<(), IndexError> {
        self.waited(|done| Op::Forget {
            tombstones,
            restored,
            done,
        })
        .await
    }

    async fn waited(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<(), IndexError>>) -> Op,
    ) -> Result<(), IndexError> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(op(done))
            .map_err(|_| IndexError::WriterGone)?;
        wait.await.map_err(|_| IndexError::WriterGone)?
    }

    /// Adds served GETs to the counts of these names; returns once that
    /// is durable.
    pub async fn add_downloads(&self, counts: Vec<(StoredPath, u64)>) -> Result<(), IndexError> {
        self.waited(|done| Op::Downloads { counts, done }).await
    }

    /// The served GETs of `path` counted here (0: none).
    pub fn downloads(&self, path: &StoredPath) -> Result<u64, IndexError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let downloads = read.open_table(DOWNLOADS).map_err(db_error)?;
        Ok(downloads
            .get(key(path).as_str())
            .map_err(db_error)?
            .map_or(0, |v| v.value()))
    }

    /// The `top` most read names of `day`, most read first (ties by name).
    /// A day is read whole: only the names read at least once are in it.
    pub fn top_downloads(
        &self,
        day: u32,
        top: usize,
    ) -> Result<Vec<(StoredPath, u64)>, IndexError> {
        let (from, to) = (format!("{day}/"), format!("{day}:"));
        let read = self.db.begin_read().map_err(db_error)?;
        let downloads = read.open_table(DOWNLOADS).map_err(db_error)?;
        let mut out = Vec::new();
        for row in downloads
            .range(from.as_str()..to.as_str())
            .map_err(db_error)?
        {
            let (k, count) = row.map_err(db_error)?;
            if let Some(path) = path_of(k.value()) {
                out.push((path, count.value()));
            }
        }
        out.sort_by_cached_key(|(path, count)| (std::cmp::Reverse(*count), path.file_name()));
        out.truncate(top);
        Ok(out)
    }

    /// Waits until everything recorded so far is durable.
    pub async fn flush(&self) -> Result<(), IndexError> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(Op::Flush(done))
            .map_err(|_| IndexError::WriterGone)?;
        wait.await.map_err(|_| IndexError::WriterGone)?
    }

    /// The entry of a stored file.
    pub fn get(&self, path: &StoredPath) -> Result<Option<FileEntry>, IndexError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let files = read.open_table(FILES).map_err(db_error)?;
        let found = files.get(key(path).as_str()).map_err(db_error)?;
        Ok(found.map(|v| {
            let (size, sha, added) = v.value();
            FileEntry {
                path: path.clone(),
                size,
                sha256: hex::encode(sha),
                added,
            }
        }))
    }

    /// Whether `path` was deleted here.
    pub fn is_deleted(&self, path: &StoredPath) -> Result<bool, IndexError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let tombstones = read.open_table(TOMBSTONES).map_err(db_error)?;
        Ok(tombstones
            .get(key(path).as_str())
            .map_err(db_error)?
            .is_some())
    }

    /// Whether `path` was restored after a delete (and the mark is kept).
    pub fn is_restored(&self, path: &StoredPath) -> Result<bool, IndexError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let restored = read.open_table(RESTORED).map_err(db_error)?;
        Ok(restored
            .get(key(path).as_str())
            .map_err(db_error)?
            .is_some())
    }

    /// Names whose tombstone (`tombstones`) or restored mark (else) was
    /// written before `before` (seconds since the epoch), at most `limit`.
    pub fn marks_before(
        &self,
        tombstones: bool,
        before: i64,
        limit: usize,
    ) -> Result<Vec<StoredPath>, IndexError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let table = read
            .open_table(if tombstones { TOMBSTONES } else { RESTORED })
            .map_err(db_error)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_error)? {
            let (k, when) = row.map_err(db_error)?;
            if when.value() < before {
                out.extend(path_of(k.value()));
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every day that has entries, oldest first, with its digest.
    pub fn days(&self) -> Result<Vec<(u32, Digest)>, IndexError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let days = read.open_table(DAYS).map_err(db_error)?;
        let mut out = Vec::new();
        for row in days.iter().map_err(db_error)? {
            let (day, value) = row.map_err(db_error)?;
            out.push((day.value(), Digest(value.value().0)));
        }
        Ok(out)
    }

    /// Every entry of one day.
    pub fn list_day(&self, day: u32) -> Result<DayList, IndexError> {
        let (from, to) = (format!("{day}/"), format!("{day}:"));
        let read = self.db.begin_read().map_err(db_error)?;
        let mut list = DayList::default();
        let files = read.open_table(FILES).map_err(db_error)?;
        for row in files.range(from.as_str()..to.as_str()).map_err(db_error)? {
            let (k, v) = row.map_err(db_error)?;
            let Some(path) = path_of(k.value()) else {
                continue;
            };
            let (size, sha, added) = v.value();
            list.files.push(FileEntry {
                path,
                size,
                sha256: hex::encode(sha),
                added,
            });
        }
        let tombstones = read.open_table(TOMBSTONES).map_err(db_error)?;
        for row in tombstones
            .range(from.as_str()..to.as_str())
            .map_err(db_error)?
        {
            let (k, _) = row.map_err(db_error)?;
            if let Some(path) = path_of(k.value()) {
                list.tombstones.push(path);
            }
        }
        Ok(list)
    }

    /// One page of a day for a peer's `action=list`: at most `limit`
    /// entries (files and tombstones together) whose names come after
    /// `after`, in name order, and the name to go on after when more
    /// follow.
    pub fn list_day_page(
        &self,
        day: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(DayList, Option<String>), IndexError> {
        use std::ops::Bound;
        let from = after.map_or_else(
            || Bound::Included(format!("{day}/")),
            |name| Bound::Excluded(format!("{day}/{name}")),
        );
        let to = format!("{day}:");
        let range = || {
            (
                from.as_ref().map(String::as_str),
                Bound::Excluded(to.as_str()),
            )
        };
        let read = self.db.begin_read().map_err(db_error)?;
        let files = read.open_table(FILES).map_err(db_error)?;
        let mut found = Vec::new();
        for row in files
            .range::<&str>(range())
            .map_err(db_error)?
            .take(limit.saturating_add(1))
        {
            let (k, v) = row.map_err(db_error)?;
            let (size, sha, added) = v.value();
            found.push((k.value().to_owned(), Some((size, hex::encode(sha), added))));
        }
        let tombstones = read.open_table(TOMBSTONES).map_err(db_error)?;
        for row in tombstones
            .range::<&str>(range())
            .map_err(db_error)?
            .take(limit.saturating_add(1))
        {
            found.push((row.map_err(db_error)?.0.value().to_owned(), None));
        }
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let more = found.len() > limit;
        found.truncate(limit);
        let next = found
            .last()
            .filter(|_| more)
            .and_then(|(key, _)| Some(key.split_once('/')?.1.to_owned()));
        let mut list = DayList::default();
        for (key, file) in found {
            let Some(path) = path_of(&key) else {
                continue;
            };
            match file {
                Some((size, sha256, added)) => list.files.push(FileEntry {
                    path,
                    size,
                    sha256,
                    added,
                }),
                None => list.tombstones.push(path),
            }
        }
        Ok((list, next))
    }

    /// Every deleted name.
    pub fn tombstones(&self) -> Result<Vec<StoredPath>, IndexError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let tombstones = read.open_table(TOMBSTONES).map_err(db_error)?;
        let mut out = Vec::new();
        for row in tombstones.iter().map_err(db_error)? {
            let (k, _) = row.map_err(db_error)?;
            out.extend(path_of(k.value()));
        }
        Ok(out)
    }

    pub fn counts(&self) -> Result<IndexCounts, IndexError> {
        let read = self.db.begin_read().map_err(db_error)?;
        let files = read.open_table(FILES).map_err(db_error)?;
        let tombstones = read.open_table(TOMBSTONES).map_err(db_error)?;
        let days = read.open_table(DAYS).map_err(db_error)?;
        Ok(IndexCounts {
            files: files.len().map_err(db_error)?,
            tombstones: tombstones.len().map_err(db_error)?,
            days: days.len().map_err(db_error)?,
        })
    }
}

fn committed_at(db: &Database) -> Result<Option<i64>, IndexError> {
    let read = db.begin_read().map_err(db_error)?;
    let meta = read.open_table(META).map_err(db_error)?;
    Ok(meta.get(COMMITTED_AT).map_err(db_error)?.map(|v| v.value()))
}

/// Indexes the files of day folders changed since `since` (all when
/// `None`) that the index does not know, hashing only those; commits in
/// batches, before the writer thread starts.
fn reconcile(db: &Database, data_dir: &Path, since: Option<i64>) -> Result<(), IndexError> {
    let mut added = 0usize;
    let mut batch = Vec::new();
    let days = day_folders(data_dir)?;
    let total = days.len();
    // A build of many files takes minutes; say how far it is, but not for
    // the usual start that takes less than a second.
    let mut every = Every::new(RECONCILE_QUIET, RECONCILE_LOG_EVERY);
    let report = |done: usize, added: usize| {
        tracing::info!(
            data_dir = %data_dir.display(),
            "index build: {done} of {total} day folders, {added} files added so far"
        );
    };
    for (done, (date, folder)) in days.into_iter().enumerate() {
        if every.due() {
            report(done, added);
        }
        if let Some(since) = since {
            let changed = std::fs::metadata(&folder)
                .and_then(|m| m.modified())
                .map(|t| chrono::DateTime::<chrono::Utc>::from(t).timestamp())
                .unwrap_or(i64::MAX);
            if changed < since {
                continue;
            }
        }
        let known = {
            let read = db.begin_read().map_err(db_error)?;
            let files = read.open_table(FILES).map_err(db_error)?;
            let tombstones = read.open_table(TOMBSTONES).map_err(db_error)?;
            move |k: &str| -> Result<bool, IndexError> {
                Ok(files.get(k).map_err(db_error)?.is_some()
                    || tombstones.get(k).map_err(db_error)?.is_some())
            }
        };
        for entry in std::fs::read_dir(&folder)?.flatten() {
            // A day of a million files is worth its own lines.
            if every.due() {
                report(done, added);
            }
            let name = entry.file_name();
            let Some(path) = name.to_str().and_then(|n| stored_path(date, n)) else {
                continue;
            };
            if known(&key(&path))? {
                continue;
            }
            // Not followed, not opened: a FIFO would block the start.
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                tracing::warn!(file = %entry.path().display(), "not a regular file: not indexed");
                continue;
            }
            let meta = entry.metadata()?;
            let added_at = meta
                .modified()
                .map(|t| chrono::DateTime::<chrono::Utc>::from(t).timestamp())
                .unwrap_or(0);
            batch.push(Op::Record(FileEntry {
                sha256: hash_file(&entry.path())?,
                size: meta.len(),
                added: added_at,
                path,
            }));
            added += 1;
            if batch.len() == BATCH {
                apply(db, &batch)?;
                batch.clear();
            }
        }
    }
    // Committed even when empty: `committed_at` moves on.
    apply(db, &batch)?;
    if added > 0 {
        tracing::info!(files = added, "indexed files the index did not know");
    }
    Ok(())
}

/// Why an index file could not be opened.
enum Refusal {
    /// Another program has it open in a way that excludes this process.
    Held(String),
    /// Its content is not a sound index.
    Damaged(String),
}

/// Opens the index, waiting up to [`HELD_WAIT`] for another program to let
/// go of it. `Ok(Err(why))`: the file is damaged; `Err`: it cannot be used
/// (held, or not readable at all), which the caller must not mistake for
/// damage.
fn open_checked(file: &Path) -> Result<Result<Database, String>, IndexError> {
    let started = Instant::now();
    let mut told = false;
    loop {
        match open_sound(file) {
            Ok(db) => return Ok(Ok(db)),
            Err(Refusal::Damaged(why)) => return Ok(Err(why)),
            Err(Refusal::Held(why)) if started.elapsed() < HELD_WAIT => {
                if !told {
                    tracing::warn!(file = %file.display(), reason = %why, "the index is held by another program; waiting for it");
                    told = true;
                }
                std::thread::sleep(HELD_RETRY);
            }
            Err(Refusal::Held(why)) => {
                return Err(IndexError::Held {
                    file: file.to_path_buf(),
                    why,
                    waited: HELD_WAIT.as_secs(),
                });
            }
        }
    }
}

/// One attempt: open with redb's integrity check, then read every table
/// through. redb panics on some damage a plain open or read meets (and its
/// debug builds on more), so a panic here is damage too, not a crash at
/// every start.
fn open_sound(file: &Path) -> Result<Database, Refusal> {
    match std::panic::catch_unwind(|| open_db(file).and_then(|db| read_through(&db).map(|()| db))) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(classify(e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Refusal::Damaged(format!(
                "the index engine failed reading it: {what}"
            )))
        }
    }
}

/// Held by another program, or damaged. An I/O error that says nothing
/// about the content (a lock, no permission, a full or read-only disk) is
/// not damage either: renaming the file would not help, so it is waited for
/// like a lock and then named in the refusal. Anything else, a read error
/// of the disk included, makes the file unreadable: damaged.
fn classify(e: redb::Error) -> Refusal {
    match e {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            Refusal::Held(e.to_string())
        }
        redb::Error::Io(io) if not_about_content(&io) => Refusal::Held(io.to_string()),
        other => Refusal::Damaged(other.to_string()),
    }
}

fn not_about_content(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{
        NotFound, PermissionDenied, QuotaExceeded, ReadOnlyFilesystem, ResourceBusy, StorageFull,
        WouldBlock,
    };
    // Windows' sharing and lock violations (another program opened the
    // file without sharing it) have no kind of their own.
    const SHARING_VIOLATION: i32 = 32;
    const LOCK_VIOLATION: i32 = 33;
    matches!(
        e.kind(),
        WouldBlock
            | ResourceBusy
            | PermissionDenied
            | NotFound
            | StorageFull
            | QuotaExceeded
            | ReadOnlyFilesystem
    ) || (cfg!(windows) && matches!(e.raw_os_error(), Some(SHARING_VIOLATION | LOCK_VIOLATION)))
}

fn open_db(file: &Path) -> Result<Database, redb::Error> {
    let db = Database::builder()
        .set_concurrency_mode(ConcurrencyMode::MultiWriter)
        // Verifies every page's checksum: a file altered outside redb is
        // refused here instead of making a later read panic.
        .set_check_integrity_on_open(true)
        .create(file)?;
    // Create the tables, so that reads never meet a missing one.
    let write = db.begin_write()?;
    write.open_table(FILES)?;
    write.open_table(TOMBSTONES)?;
    write.open_table(DAYS)?;
    write.open_table(RESTORED)?;
    write.open_table(META)?;
    write.open_table(DOWNLOADS)?;
    write.commit()?;
    Ok(db)
}

/// Reads every entry of every table once, so that damage the page checks
/// cannot see (a value that does not decode) shows at start, not in a
/// request.
fn read_through(db: &Database) -> Result<(), redb::Error> {
    let read = db.begin_read()?;
    for row in read.open_table(FILES)?.iter()? {
        let (k, v) = row?;
        let _ = (k.value(), v.value());
    }
    for row in read.open_table(TOMBSTONES)?.iter()? {
        let (k, v) = row?;
        let _ = (k.value(), v.value());
    }
    for row in read.open_table(DAYS)?.iter()? {
        let (k, v) = row?;
        let _ = (k.value(), v.value());
    }
    for row in read.open_table(META)?.iter()? {
        let (k, v) = row?;
        let _ = (k.value(), v.value());
    }
    for row in read.open_table(DOWNLOADS)?.iter()? {
        let (k, v) = row?;
        let _ = (k.value(), v.value());
    }
    Ok(())
}

/// Renames a damaged index out of the way, never over an earlier one.
fn set_aside(file: &Path) -> Result<PathBuf, IndexError> {
    let stamp = chrono::Local::now().format("%Y%m%d%H%M%S");
    let mut aside = file.with_extension(format!("redb.damaged-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        aside = file.with_extension(format!("redb.damaged-{stamp}-{n}"));
        n += 1;
    }
    std::fs::rename(file, &aside)?;
    Ok(aside)
}

fn write_loop(db: &Database, queue: &mpsc::Receiver<Op>) {
    while let Ok(first) = queue.recv() {
        if !first.is_waited() {
            // Sleeping, not waiting on the queue: a record sent meanwhile
            // wakes nobody, so an upload costs no switch to this thread.
            std::thread::sleep(GATHER);
        }
        let mut ops = vec![first];
        while ops.len() < BATCH {
            match queue.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let result = apply(db, &ops);
        if let Err(e) = &result {
            tracing::error!(error = %e, operations = ops.len(), "an index batch could not be committed");
        }
        for op in ops {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(IndexError::Db(e.to_string())),
            };
            match op {
                Op::Record(_) => {}
                Op::Tombstone { done, .. }
                | Op::Untombstone { done, .. }
                | Op::Forget { done, .. }
                | Op::Downloads { done, .. }
                | Op::Flush(done) => {
                    let _ = done.send(answer);
                }
            }
        }
    }
}

/// Commits a batch as one transaction.
fn apply(db: &Database, ops: &[Op]) -> Result<(), IndexError> {
    let write = db.begin_write().map_err(db_error)?;
    {
        let mut files = write.open_table(FILES).map_err(db_error)?;
        let mut tombstones = write.open_table(TOMBSTONES).map_err(db_error)?;
        let mut days = write.open_table(DAYS).map_err(db_error)?;
        let mut restored = write.open_table(RESTORED).map_err(db_error)?;
        let mut downloads = write.open_table(DOWNLOADS).map_err(db_error)?;
        for op in ops {
            match op {
                Op::Record(entry) => {
                    let k = key(&entry.path);
                    if tombstones.get(k.as_str()).map_err(db_error)?.is_some()
                        || files.get(k.as_str()).map_err(db_error)?.is_some()
                    {
                        continue;
                    }
                    let mut sha = [0u8; 32];
                    if hex::decode_to_slice(&entry.sha256, &mut sha).is_err() {
                        continue;
                    }
                    files
                        .insert(k.as_str(), (entry.size, sha, entry.added))
                        .map_err(db_error)?;
                    let digest = Digest::of_file(&entry.path.file_name(), &entry.sha256);
                    change_day(&mut days, &entry.path, digest, (1, 0))?;
                }
                Op::Tombstone { path, when, .. } => {
                    let k = key(path);
                    // A new delete of a restored name: the delete wins.
                    restored.remove(k.as_str()).map_err(db_error)?;
                    if tombstones.get(k.as_str()).map_err(db_error)?.is_some() {
                        continue;
                    }
                    let removed = files
                        .remove(k.as_str())
                        .map_err(db_error)?
                        .map(|v| v.value().1);
                    if let Some(sha) = removed {
                        let digest = Digest::of_file(&path.file_name(), &hex::encode(sha));
                        change_day(&mut days, path, digest, (-1, 0))?;
                    }
                    tombstones.insert(k.as_str(), when).map_err(db_error)?;
                    change_day(
                        &mut days,
                        path,
                        Digest::of_tombstone(&path.file_name()),
                        (0, 1),
                    )?;
                }
                Op::Untombstone { path, when, .. } => {
                    untombstone(&mut tombstones, &mut days, path)?;
                    restored
                        .insert(key(path).as_str(), when)
                        .map_err(db_error)?;
                }
                Op::Forget {
                    tombstones: dropped,
                    restored: unmarked,
                    ..
                } => {
                    for path in dropped {
                        untombstone(&mut tombstones, &mut days, path)?;
                    }
                    for path in unmarked {
                        restored.remove(key(path).as_str()).map_err(db_error)?;
                    }
                }
                Op::Downloads { counts, .. } => {
                    for (path, n) in counts {
                        let k = key(path);
                        let before = downloads
                            .get(k.as_str())
                            .map_err(db_error)?
                            .map_or(0, |v| v.value());
                        downloads
                            .insert(k.as_str(), before.saturating_add(*n))
                            .map_err(db_error)?;
                    }
                }
                Op::Flush(_) => {}
            }
        }
        let mut meta = write.open_table(META).map_err(db_error)?;
        meta.insert(COMMITTED_AT, chrono::Utc::now().timestamp())
            .map_err(db_error)?;
    }
    write.commit().map_err(db_error)
}

/// Removes the tombstone of `path`, if there is one, from its table and
/// its day.
fn untombstone(
    tombstones: &mut redb::Table<'_, &str, i64>,
    days: &mut redb::Table<'_, u32, ([u8; 32], u64, u64)>,
    path: &StoredPath,
) -> Result<(), IndexError> {
    if tombstones
        .remove(key(path).as_str())
        .map_err(db_error)?
        .is_some()
    {
        change_day(days, path, Digest::of_tombstone(&path.file_name()), (0, -1))?;
    }
    Ok(())
}

/// Toggles `digest` in its day and moves the day's counts by `delta`
/// (files, tombstones); a day left with nothing is removed.
fn change_day(
    days: &mut redb::Table<'_, u32, ([u8; 32], u64, u64)>,
    path: &StoredPath,
    digest: Digest,
    delta: (i64, i64),
) -> Result<(), IndexError> {
    let day = day_number(path.date());
    let (mut sum, files, tombstones) = days
        .get(day)
        .map_err(db_error)?
        .map(|v| {
            let (d, f, t) = v.value();
            (Digest(d), f, t)
        })
        .unwrap_or_default();
    sum.toggle(digest);
    let files = files.saturating_add_signed(delta.0);
    let tombstones = tombstones.saturating_add_signed(delta.1);
    if files == 0 && tombstones == 0 {
        days.remove(day).map_err(db_error)?;
    } else {
        days.insert(day, (sum.0, files, tombstones))
            .map_err(db_error)?;
    }
    Ok(())
}

/// The stored path of an index key.
fn path_of(key: &str) -> Option<StoredPath> {
    let (day, name) = key.split_once('/')?;
    stored_path(day_date(day.parse().ok()?)?, name)
}

fn stored_path(date: NaiveDate, name: &str) -> Option<StoredPath> {
    use chrono::Datelike;
    StoredPath::parse(&format!(
        "{}/{}/{}/{name}",
        date.year(),
        date.month(),
        date.day()
    ))
}

/// The day folders of `data_dir` (`{yyyy}/{M}/{d}`), with their dates.
fn day_folders(data_dir: &Path) -> std::io::Result<Vec<(NaiveDate, PathBuf)>> {
    let mut out = Vec::new();
    for year in subfolders(data_dir)? {
        for month in subfolders(&year.1)? {
            for day in subfolders(&month.1)? {
                let date = format!("{}/{}/{}", year.0, month.0, day.0);
                if let Ok(date) = NaiveDate::parse_from_str(&date, "%Y/%m/%d") {
                    out.push((date, day.1));
                }
            }
        }
    }
    Ok(out)
}

/// Folders below `dir` whose names are all digits (no `.tmp`, no index).
fn subfolders(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_digit())
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            out.push((name, entry.path()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(day: u32, n: u128) -> StoredPath {
        let date = day_date(day).expect("date");
        StoredPath::new(
            date,
            uuid::Uuid::from_u128(n),
            crate::storage::ImageType::Jpg,
        )
    }

    fn entry(day: u32, n: u128) -> FileEntry {
        FileEntry {
            path: path(day, n),
            size: 3,
            sha256: format!("{n:064x}"),
            added: 1,
        }
    }

    #[tokio::test]
    async fn digests_agree_whatever_the_order_and_tombstones_win() {
        let (a, b) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let (x, y) = (
            Index::open(a.path(), &[a.path().to_path_buf()]).expect("open"),
            Index::open(b.path(), &[b.path().to_path_buf()]).expect("open"),
        );
        for n in 1..=3 {
            x.record(entry(20261201, n));
        }
        for n in (1..=3).rev() {
            y.record(entry(20261201, n));
        }
        x.flush().await.expect("flush");
        y.flush().await.expect("flush");
        assert_eq!(x.days().expect("days"), y.days().expect("days"));
        x.tombstone(path(20261201, 2), 5).await.expect("tombstone");
        assert_ne!(x.days().expect("days"), y.days().expect("days"));
        y.tombstone(path(20261201, 2), 9).await.expect("tombstone");
        // A record after the delete does not bring the file back.
        y.record(entry(20261201, 2));
        y.flush().await.expect("flush");
        assert_eq!(x.days().expect("days"), y.days().expect("days"));
        let list = x.list_day(20261201).expect("list");
        assert_eq!(list.files.len(), 2);
        assert_eq!(list.tombstones, vec![path(20261201, 2)]);
        assert!(x.is_deleted(&path(20261201, 2)).expect("deleted"));
        assert_eq!(
            x.counts().expect("counts"),
            IndexCounts {
                files: 2,
                tombstones: 1,
                days: 1
            }
        );
    }

    #[tokio::test]
    async fn a_restored_or_forgotten_tombstone_leaves_its_day_as_if_never_deleted() {
        let (a, b) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let (x, y) = (
            Index::open(a.path(), &[a.path().to_path_buf()]).expect("open"),
            Index::open(b.path(), &[b.path().to_path_buf()]).expect("open"),
        );
        x.record(entry(20261201, 1));
        y.record(entry(20261201, 1));
        x.flush().await.expect("flush");
        y.flush().await.expect("flush");
        x.tombstone(path(20261201, 1), 10).await.expect("tombstone");
        x.tombstone(path(20261202, 2), 20).await.expect("tombstone");
        assert_eq!(
            x.marks_before(true, 15, 10).expect("marks"),
            vec![path(20261201, 1)]
        );
        // Restored: no tombstone, a mark; the file is recorded again.
        x.untombstone(path(20261201, 1), 30).await.expect("restore");
        assert!(!x.is_deleted(&path(20261201, 1)).expect("deleted"));
        assert!(x.is_restored(&path(20261201, 1)).expect("restored"));
        x.record(entry(20261201, 1));
        // Forgotten: the other day's tombstone goes, and its day with it.
        x.forget(vec![path(20261202, 2)], Vec::new())
            .await
            .expect("forget");
        assert_eq!(x.days().expect("days"), y.days().expect("days"));
        assert_eq!(
            x.marks_before(false, 31, 10).expect("marks"),
            vec![path(20261201, 1)]
        );
        x.forget(Vec::new(), vec![path(20261201, 1)])
            .await
            .expect("forget");
        assert!(!x.is_restored(&path(20261201, 1)).expect("restored"));
        assert_eq!(x.counts().expect("counts").tombstones, 0);
        // A new delete of a restored name wins over its mark.
        x.untombstone(path(20261201, 1), 40).await.expect("restore");
        x.tombstone(path(20261201, 1), 50).await.expect("tombstone");
        assert!(x.is_deleted(&path(20261201, 1)).expect("deleted"));
        assert!(!x.is_restored(&path(20261201, 1)).expect("restored"));
    }

    #[test]
    fn only_errors_about_the_content_are_damage() {
        use std::io::{Error, ErrorKind};
        let held = |e| matches!(classify(e), Refusal::Held(_));
        assert!(held(redb::Error::DatabaseAlreadyOpen));
        assert!(held(redb::Error::Io(Error::from(
            ErrorKind::PermissionDenied
        ))));
        assert!(held(redb::Error::Io(Error::from(ErrorKind::StorageFull))));
        assert!(!held(redb::Error::Io(Error::from(ErrorKind::InvalidData))));
        assert!(!held(redb::Error::Corrupted("bad page".into())));
        #[cfg(unix)]
        assert!(!held(redb::Error::Io(Error::from_raw_os_error(5))), "EIO");
    }

    #[test]
    fn a_damaged_index_never_replaces_one_set_aside_before() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join(".index.redb");
        for n in 0..3u8 {
            std::fs::write(&file, [n]).expect("write");
            set_aside(&file).expect("aside");
        }
        let mut kept: Vec<Vec<u8>> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| std::fs::read(e.path()).expect("read"))
            .collect();
        kept.sort();
        assert_eq!(kept, vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn a_new_index_is_built_from_the_files() {
        let dir = tempfile::tempdir().expect("dir");
        let p = path(20261210, 7);
        let file = dir.path().join(p.to_relative_path());
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, b"abc").expect("write");
        std::fs::write(file.with_file_name("not-a-stored-file.txt"), b"x").expect("write");
        let index = Index::open(dir.path(), &[dir.path().to_path_buf()]).expect("open");
        let found = index.get(&p).expect("get").expect("indexed");
        assert_eq!(found.size, 3);
        assert_eq!(
            found.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(index.counts().expect("counts").files, 1);
    }
}
