//! Storage: where an upload's bytes become a durable file.
//!
//! A file is streamed to a temporary file under `{data_dir}/.tmp` (same
//! filesystem as its final place), hashed with SHA-256 and measured on the
//! way, sniffed from its first bytes, flushed (`fsync` of file and directory
//! unless disabled) and only then renamed to its public name. A crash, a
//! dropped connection or a refused file therefore never leaves a partial file
//! under a public name: whatever is not committed is deleted when its
//! [`Incoming`] is dropped.
//!
//! Receiving a file is [`Incoming`]'s job (`incoming.rs`). All blocking
//! file work of uploads and replicas goes through [`DiskTasks`], a bounded
//! share of the blocking thread pool, so uploads can never take the threads
//! that serving stored files and health checks need.
//!
//! Whether the picture is acceptable (its header parses, it is not a
//! decompression bomb) and what leaves it (metadata) is decided by
//! `images`; [`ImageRules`] say which of those steps a file goes through.
//! This module knows nothing of HTTP.

mod incoming;
mod path;
pub mod s3;
mod sniff;
mod variant_path;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use uuid::Uuid;

use incoming::TempFile;
pub use incoming::{Incoming, Written};

use crate::images::{Limits, OverLimit};
use crate::index::{FileEntry, Index, IndexError};
pub use path::StoredPath;
pub use sniff::{ImageType, SNIFF_LEN};
pub use variant_path::{VARIANTS_DIR, VariantKind, VariantPath};

/// The file in `data_dir` that names the server the folder belongs to.
pub const MARKER: &str = ".multiserver-upload-server";
/// Name of the folder below `data_dir` that holds files still being written.
const TMP_DIR: &str = ".tmp";
/// Name of the folder below `data_dir` where stored files whose bytes no
/// longer match the index are set aside for an operator (never deleted).
pub const QUARANTINE_DIR: &str = ".quarantine";
/// Temporary files untouched for this long belong to a process that died.
const STALE_TMP: Duration = Duration::from_secs(3600);
/// Blocking file tasks of uploads and replicas at once. tokio's blocking
/// pool has 512 threads; the rest stay free for serving files, the journal
/// and health checks whatever the uploads do.
const DISK_TASKS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the file is empty")]
    Empty,
    #[error("the content is not an allowed image type ({allowed})")]
    UnsupportedType { allowed: String },
    #[error("the content starts like a {kind} but its header does not parse")]
    Malformed { kind: &'static str },
    #[error(transparent)]
    OverLimit(#[from] OverLimit),
    #[error("the content does not match its X-Content-SHA256")]
    HashMismatch,
    #[error("a different file is already stored under this name")]
    Conflict,
    #[error("this name was deleted; it is never stored again")]
    Deleted,
    #[error("the index failed: {0}")]
    Index(#[from] IndexError),
    #[error("the disk is full")]
    DiskFull(#[source] io::Error),
    #[error("storage I/O failed: {0}")]
    Io(#[source] io::Error),
}

impl From<io::Error> for StorageError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Self::DiskFull(e),
            _ => Self::Io(e),
        }
    }
}

/// What `images` does to a file as it is received.
#[derive(Debug, Clone, Copy)]
pub struct ImageRules {
    /// A picture over these is refused.
    pub limits: Limits,
    /// Remove location and personal metadata before hashing. Uploads only:
    /// a replica arrives as its sender stored it, and its hash must match.
    pub strip_metadata: bool,
}

/// A file under its public name.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub path: StoredPath,
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// How a replica arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    New,
    /// An identical file was already stored (a resend after a crash or replay).
    AlreadyPresent,
}

#[derive(Debug, Clone)]
pub struct Storage {
    data_dir: PathBuf,
    tmp_dir: PathBuf,
    fsync: bool,
    disk: DiskTasks,
    /// What is stored here; every commit is recorded in it.
    index: Index,
}

/// Why a data folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(
        "it belongs to server `{owner}` (its {MARKER} file says so), not to `{me}`; \
         point data_dir at this server's own folder"
    )]
    OtherServer { owner: String, me: String },
    #[error("{0}")]
    Index(#[from] IndexError),
}

/// The bounded share of blocking threads that storage work runs on.
#[derive(Debug, Clone)]
pub(crate) struct DiskTasks(Arc<Semaphore>);

impl DiskTasks {
    fn new(tasks: usize) -> Self {
        Self(Arc::new(Semaphore::new(tasks)))
    }

    /// Starts `work` on a blocking thread once a place is free.
    async fn spawn<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<JoinHandle<T>> {
        let permit = self
            .0
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        Ok(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        }))
    }

    /// Runs `work` on a blocking thread and waits for it.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        self.spawn(work).await?.await.map_err(io::Error::other)?
    }
}

impl Storage {
    /// Creates the folders, checks that the folder is this server's (a
    /// folder without a marker is a new or replaced disk, marked now and
    /// refilled by repair), opens the index (building it from the files if
    /// it is new) and removes temporary files left by a dead process.
    pub fn open(data_dir: &Path, fsync: bool, server_name: &str) -> Result<Self, OpenError> {
        let tmp_dir = data_dir.join(TMP_DIR);
        std::fs::create_dir_all(&tmp_dir)?;
        check_marker(data_dir, server_name)?;
        remove_stale(&tmp_dir);
        let index = Index::open(data_dir)?;
        // A process that died between a tombstone and the file's removal
        // left the file: finish the delete.
        for path in index.tombstones()? {
            let file = data_dir.join(path.to_relative_path());
            if file.exists() {
                tracing::warn!(%path, "removing a deleted file left by an interrupted delete");
                remove_file_patiently(&file)?;
                remove_variants(data_dir, &path)?;
            }
        }
        Ok(Self {
            index,
            data_dir: data_dir.to_path_buf(),
            tmp_dir,
            fsync,
            disk: DiskTasks::new(DISK_TASKS),
        })
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Where a stored file lives on disk.
    pub fn file_path(&self, path: &StoredPath) -> PathBuf {
        self.data_dir.join(path.to_relative_path())
    }

    /// Where a variant of a stored file lives (or would live) on disk.
    pub fn variant_path(&self, variant: &VariantPath) -> PathBuf {
        self.variants_dir().join(variant.to_relative_path())
    }

    /// The folder of this server's variants.
    pub fn variants_dir(&self) -> PathBuf {
        self.data_dir.join(VARIANTS_DIR)
    }

    /// Starts receiving a file of at most `limit` bytes of one of `allowed`,
    /// checked and stripped as `rules` say.
    pub fn begin(&self, limit: u64, allowed: &[ImageType], rules: ImageRules) -> Incoming {
        let tmp = TempFile(self.tmp_dir.join(format!("{}.part", Uuid::new_v4())));
        Incoming::new(tmp, self.disk.clone(), self.fsync, limit, allowed, rules)
    }

    /// Gives a complete upload its dated public name (today, local time).
    pub async fn commit_dated(&self, written: Written) -> Result<StoredFile, StorageError> {
        let date = chrono::Local::now().date_naive();
        let path = StoredPath::new(date, Uuid::new_v4(), written.image_type);
        let target = self.file_path(&path);
        let fsync = self.fsync;
        let data_dir = self.data_dir.clone();
        let Written {
            tmp, size, sha256, ..
        } = written;
        // A fresh uuid: nothing can be in the way, a rename is enough.
        self.disk
            .run(move || publish(tmp, &target, &data_dir, fsync, Place::Rename))
            .await?;
        let file = StoredFile { path, size, sha256 };
        self.record(&file);
        Ok(file)
    }

    /// Stores a replica under the name its sender chose, if its content hashes
    /// to `expected_sha256`. An identical file already there is a success.
    pub async fn commit_replica(
        &self,
        written: Written,
        path: &StoredPath,
        expected_sha256: &str,
    ) -> Result<Arrival, StorageError> {
        if !written.sha256.eq_ignore_ascii_case(expected_sha256) {
            return Err(StorageError::HashMismatch);
        }
        if written.image_type != path.image_type() {
            return Err(StorageError::UnsupportedType {
                allowed: path.image_type().extension().to_owned(),
            });
        }
        if self.index.is_deleted(path)? {
            return Err(StorageError::Deleted);
        }
        let target = self.file_path(path);
        let fsync = self.fsync;
        let data_dir = self.data_dir.clone();
        let file = StoredFile {
            path: path.clone(),
            size: written.size,
            sha256: written.sha256.clone(),
        };
        let arrival = self
            .disk
            .spawn(move || {
                // Two senders may deliver the same name at once (a replay
                // beside a late original): only one may create it, the other
                // compares.
                match publish(written.tmp, &target, &data_dir, fsync, Place::NoReplace) {
                    Ok(()) => Ok(Arrival::New),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        if hash_file(&target)? == written.sha256 {
                            Ok(Arrival::AlreadyPresent)
                        } else {
                            Err(StorageError::Conflict)
                        }
                    }
                    Err(e) => Err(e.into()),
                }
            })
            .await?
            .await
            .map_err(io::Error::other)??;
        // An identical file already there is recorded too: after a crash it
        // may be the index that missed it.
        self.record(&file);
        Ok(arrival)
    }

    /// Deletes a stored file here: first the tombstone, durably, so that
    /// nothing brings the name back, then the file and its variants.
    /// Deleting a name that is not here succeeds.
    pub async fn delete(&self, path: &StoredPath) -> Result<(), StorageError> {
        self.index
            .tombstone(path.clone(), chrono::Utc::now().timestamp())
            .await?;
        let file = self.file_path(path);
        let data_dir = self.data_dir.clone();
        let path = path.clone();
        self.disk
            .run(move || {
                remove_file_patiently(&file)?;
                remove_variants(&data_dir, &path)
            })
            .await?;
        Ok(())
    }

    /// Moves the file of `path` aside to `{data_dir}/.quarantine/`, under
    /// its date, name and the time now, so that its name is free for a good
    /// copy; returns where it went.
    pub async fn quarantine(&self, path: &StoredPath) -> io::Result<PathBuf> {
        let from = self.file_path(path);
        let folder = self.data_dir.join(QUARANTINE_DIR);
        let date = path.date();
        let to = folder.join(format!(
            "{}-{}-{}-{}.{}",
            date.format("%Y"),
            date.format("%-m"),
            date.format("%-d"),
            path.file_name(),
            chrono::Local::now().format("%Y%m%d%H%M%S")
        ));
        let moved = to.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&folder)?;
            std::fs::rename(&from, &moved)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(to)
    }

    fn record(&self, file: &StoredFile) {
        self.index.record(FileEntry {
            path: file.path.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
            added: chrono::Utc::now().timestamp(),
        });
    }

    /// Writes and removes a probe file: can this server still store uploads?
    pub async fn probe(&self) -> io::Result<()> {
        let probe = self.tmp_dir.join(format!("{}.probe", Uuid::new_v4()));
        tokio::task::spawn_blocking(move || {
            std::fs::write(&probe, b"ok")?;
            std::fs::remove_file(&probe)
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// How a complete temporary file takes its public name.
enum Place {
    Rename,
    /// Fail with `AlreadyExists` if the name is taken: a hard link is an
    /// atomic create-if-absent; the temporary name is removed afterwards.
    NoReplace,
}

/// Gives a complete temporary file the name `target`, creating (and
/// syncing) the dated folders on the way.
fn publish(
    mut tmp: TempFile,
    target: &Path,
    data_dir: &Path,
    fsync: bool,
    place: Place,
) -> io::Result<()> {
    let parent = target
        .parent()
        .ok_or_else(|| io::Error::other("stored path has no folder"))?;
    let created = !parent.exists();
    std::fs::create_dir_all(parent)?;
    match place {
        Place::Rename => {
            std::fs::rename(&tmp.0, target)?;
            tmp.0 = PathBuf::new();
        }
        Place::NoReplace => std::fs::hard_link(&tmp.0, target)?,
    }
    if fsync {
        sync_dir(parent)?;
        if created {
            // New day (or month, or year) folders: their entries must reach
            // the disk too, or the file would be unreachable after a crash.
            let mut dir = parent.parent();
            while let Some(d) = dir {
                sync_dir(d)?;
                if d == data_dir {
                    break;
                }
                dir = d.parent();
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// NTFS journals directory entries itself; Windows cannot fsync a folder
/// opened the ordinary way.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// SHA-256 of a file on disk, lowercase hex.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Removes `file` if it is there. On Windows a file being served cannot be
/// removed until its reader closes it, so that is tried again for a while.
fn remove_file_patiently(file: &Path) -> io::Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::remove_file(file) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if cfg!(windows) && tries < 50 => {
                tries += 1;
                tracing::debug!(error = %e, "file in use; removing it again shortly");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes every variant of `original` made here (a folder that is not
/// there has none).
fn remove_variants(data_dir: &Path, original: &StoredPath) -> io::Result<()> {
    let mut folder = data_dir
        .join(VARIANTS_DIR)
        .join(original.to_relative_path());
    folder.pop();
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|name| variant_path::is_variant_of(name, original))
        {
            remove_file_patiently(&entry.path())?;
        }
    }
    Ok(())
}

/// Refuses a folder marked for another server; marks an unmarked one.
fn check_marker(data_dir: &Path, server_name: &str) -> Result<(), OpenError> {
    let marker = data_dir.join(MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(owner) if owner.trim() == server_name => Ok(()),
        Ok(owner) => Err(OpenError::OtherServer {
            owner: owner.trim().to_owned(),
            me: server_name.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::warn!(
                data_dir = %data_dir.display(),
                "the data folder has no marker: a new or replaced disk; it is marked now, and repair fills it from the peers"
            );
            let mut file = File::create_new(&marker)?;
            std::io::Write::write_all(&mut file, format!("{server_name}\n").as_bytes())?;
            file.sync_all()?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn remove_stale(tmp_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > STALE_TMP);
        if stale {
            tracing::warn!(file = %entry.path().display(), "removing a stale temporary file");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
