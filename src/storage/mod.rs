//! Storage: where an upload's bytes become a durable file (SPEC §4, §11).
//!
//! Every file, whatever the backend, is first streamed to a temporary file
//! on this machine, hashed with SHA-256 and measured on the way, sniffed
//! from its first bytes and checked by `images` (header, pixel limits,
//! metadata) — [`Incoming`], `incoming.rs`. Only a complete, accepted file is
//! then placed under its public name by a [`Backend`]:
//! - `disk.rs`: one data folder; the temporary file is renamed (an upload)
//!   or hard-linked (a replica, never replacing a file) after `fsync`;
//! - `volumes.rs`: several data folders, each upload to the least busy;
//! - `s3/`: a bucket of an S3 store, one PUT or a multipart upload with
//!   bounded buffers, answered only once the store has it.
//!
//! A crash, a dropped connection or a refused file therefore never leaves a
//! partial file under a public name: whatever is not placed is deleted when
//! its [`Incoming`] is dropped. With data folders, every placed file is
//! recorded in the index that repair compares (`index`).
//!
//! All blocking file work of uploads and replicas goes through
//! [`DiskTasks`], a bounded share of the blocking thread pool, so uploads
//! can never take the threads that serving stored files and health checks
//! need. This module knows nothing of HTTP.

mod append;
mod dir_sync;
mod disk;
mod incoming;
mod path;
mod regular;
pub mod s3;
mod sniff;
mod trash;
mod variant_path;
mod volumes;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use append::Appender;
pub(crate) use disk::sync_dir;
use disk::{Disk, Publisher};
use incoming::TempFile;
pub use incoming::{Incoming, Written};
use s3::{S3Backend, S3Error, S3Settings, S3Store};
use volumes::Volumes;

use crate::images::{Dimensions, Limits, OverLimit};
use crate::index::{FileEntry, Index, IndexError};
pub use path::StoredPath;
pub use regular::{not_regular, open_regular};
pub use sniff::{ImageType, SNIFF_LEN};
pub use trash::TRASH_DIR;
pub use variant_path::{VARIANTS_DIR, VariantKind, VariantPath};

/// The file in each data folder that names the server the folder belongs to.
pub const MARKER: &str = ".multiserver-upload-server";
/// Name of the folder below a data folder where stored files whose bytes no
/// longer match the index are set aside for an operator (never deleted).
pub const QUARANTINE_DIR: &str = ".quarantine";
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
    /// The S3 store did not take or give the file.
    #[error("the object store failed: {0}")]
    Store(#[source] S3Error),
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

/// A received file under its public name ([`Storage::commit_incoming`]).
#[derive(Debug)]
pub struct Committed {
    pub file: StoredFile,
    pub dimensions: Dimensions,
    /// The stored bytes are not the received ones: metadata was removed.
    pub rewritten: bool,
    /// The stored bytes, for a file that never filled a batch (its copies
    /// are sent from memory).
    pub content: Option<bytes::Bytes>,
}

/// How a replica arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    New,
    /// An identical file was already stored (a resend after a crash or replay).
    AlreadyPresent,
}

/// Where a complete temporary file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A fresh upload: its uuid name cannot be taken.
    Rename,
    /// A replica: fail with `AlreadyExists` (then compare) if the name is
    /// taken.
    NoReplace,
}

/// Where a stored file can be read.
#[derive(Debug)]
pub enum Located {
    /// A file on this machine.
    File {
        file: PathBuf,
        meta: std::fs::Metadata,
    },
    /// An object in the S3 store, served through it.
    Object(S3Store),
    Missing,
}

/// A file being received by a backend: its temporary file and the count of
/// files in flight on its volume.
#[derive(Debug)]
pub struct Slot {
    tmp: TempFile,
    writing: Writing,
    tasks: DiskTasks,
    fsync: bool,
    /// Where the file can take its public name in the task that finishes
    /// it: the data folder it is received in. None when the backend keeps
    /// its files elsewhere (a bucket).
    publisher: Option<Publisher>,
}

impl Slot {
    fn new(
        tmp: TempFile,
        volume: usize,
        count: Arc<AtomicUsize>,
        tasks: DiskTasks,
        fsync: bool,
    ) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self {
            tmp,
            writing: Writing { volume, count },
            tasks,
            fsync,
            publisher: None,
        }
    }
}

/// Counts a file in flight on a volume until it is placed or dropped.
#[derive(Debug)]
pub struct Writing {
    volume: usize,
    count: Arc<AtomicUsize>,
}

impl Writing {
    /// The volume the file is received on.
    pub fn volume(&self) -> usize {
        self.volume
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One storage interface with three implementations (SPEC §11): a data
/// folder (`disk`), several (`volumes`), an S3 bucket (`s3`). Uploads,
/// `sync`, serving, read-through, repair and variants all go through
/// [`Storage`], which calls this.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// A temporary file for a new file, where [`Backend::place`] can take it.
    fn begin(&self) -> Result<Slot, StorageError>;
    /// Gives a complete, checked temporary file its public name.
    fn place<'a>(
        &'a self,
        written: Written,
        path: &'a StoredPath,
        place: Place,
    ) -> BoxFuture<'a, Result<Arrival, StorageError>>;
    /// Where the stored file `path` can be read, if it is stored.
    fn locate<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Located>;
    /// Removes the stored file `path`; one that is not there is no error.
    fn remove<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Moves the stored file `path` into the trash, stamped `deleted`
    /// (seconds since the epoch); one that is not there is no error. A
    /// bucket has no trash: the object is removed.
    fn trash<'a>(
        &'a self,
        path: &'a StoredPath,
        deleted: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Whether the trash holds a file of `path`.
    fn trashed<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Result<bool, StorageError>>;
    /// Puts the newest trashed file of `path` back under its name; `false`
    /// if the trash has none.
    fn untrash<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Result<bool, StorageError>>;
    /// Removes what was trashed before `before` (seconds since the
    /// epoch); how many files went.
    fn purge_trash(&self, before: i64) -> BoxFuture<'_, Result<usize, StorageError>>;
    /// Moves the file of `path` aside for an operator; returns where.
    fn quarantine<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, io::Result<PathBuf>>;
    /// Can this backend take new files now?
    fn probe(&self) -> BoxFuture<'_, io::Result<()>>;
    /// The data folders whose files the index covers (none for a bucket).
    fn roots(&self) -> Vec<PathBuf>;
}

/// Which backend [`Storage::open`] builds.
#[derive(Debug, Clone)]
pub enum BackendSettings {
    /// One data folder, or several volumes.
    Disk {
        data_dirs: Vec<PathBuf>,
        min_free: u64,
    },
    S3(S3Settings),
}

#[derive(Debug, Clone)]
pub struct Storage {
    backend: Arc<dyn Backend>,
    /// What is stored here; every commit is recorded in it. None for a
    /// bucket: the store is the record, shared by every front-end.
    index: Option<Index>,
    /// Where variants are kept (the first data folder).
    variants_dir: PathBuf,
    /// A volume was replaced by an empty disk while the others kept their
    /// files (and the index still lists what it held).
    replaced_volume: bool,
    /// Files and bytes committed since the start, for `/metrics`.
    stored: Arc<Stored>,
    /// The disk tasks that write uploads, shared with staged tus uploads.
    tasks: DiskTasks,
}

/// Files and bytes committed by this process (uploads, replicas, fetches).
#[derive(Debug, Default)]
pub struct Stored {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
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
    #[error("{0}")]
    Store(#[from] S3Error),
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
    async fn run<T: Send + 'static, E: From<io::Error> + Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        self.spawn(work).await?.await.map_err(io::Error::other)?
    }
}

impl Storage {
    /// Opens the backend (checking each data folder is this server's, or
    /// that the bucket answers), and, for data folders, the index in the
    /// first one (built from the files of every folder if it is new); then
    /// finishes deletes a dead process left half done.
    pub async fn open(
        settings: &BackendSettings,
        scratch_dir: &Path,
        fsync: bool,
        server_name: &str,
    ) -> Result<Self, OpenError> {
        let tasks = DiskTasks::new(DISK_TASKS);
        let mut replaced_volume = false;
        let backend: Arc<dyn Backend> = match settings {
            BackendSettings::Disk {
                data_dirs,
                min_free,
            } => {
                let mut disks = Vec::new();
                for dir in data_dirs {
                    disks.push(Disk::open(dir, fsync, server_name, tasks.clone())?);
                }
                let new = disks.iter().filter(|d| d.is_new()).count();
                replaced_volume = new > 0 && new < disks.len();
                match <[Disk; 1]>::try_from(disks) {
                    Ok([disk]) => Arc::new(disk),
                    Err(disks) => Arc::new(Volumes::new(disks, *min_free)),
                }
            }
            BackendSettings::S3(s3) => {
                // Uploads are received and checked here before they go up.
                let scratch = Disk::open(scratch_dir, false, server_name, tasks.clone())?;
                Arc::new(S3Backend::new(S3Store::connect(s3).await?, scratch))
            }
        };
        let roots = backend.roots();
        let index = match roots.first() {
            Some(home) => Some(Index::open(home, &roots)?),
            None => None,
        };
        let storage = Self {
            backend,
            index,
            variants_dir: roots
                .first()
                .map_or_else(|| scratch_dir.to_path_buf(), |home| home.clone())
                .join(VARIANTS_DIR),
            replaced_volume,
            stored: Arc::default(),
            tasks,
        };
        if let Some(index) = &storage.index {
            // A process that died between a tombstone and the file's move
            // to the trash left the file: finish the delete.
            for path in index.tombstones()? {
                if let Located::File { .. } = storage.backend.locate(&path).await {
                    tracing::warn!(%path, "trashing a deleted file left by an interrupted delete");
                    let now = chrono::Utc::now().timestamp();
                    let trashed = match storage.backend.trash(&path, now).await {
                        Ok(()) => storage.remove_variants(&path).await,
                        Err(e) => Err(e),
                    };
                    trashed.map_err(|e| match e {
                        StorageError::Io(e) | StorageError::DiskFull(e) => OpenError::Io(e),
                        other => OpenError::Io(io::Error::other(other.to_string())),
                    })?;
                }
            }
        }
        Ok(storage)
    }

    /// Whether a volume was found empty and new beside volumes with files:
    /// its files are listed in the index but missing, which a scrub pass
    /// finds and fetches from the peers.
    pub fn replaced_volume(&self) -> bool {
        self.replaced_volume
    }

    /// The share of blocking threads that writes files, for others that
    /// write large files as uploads do ([`Appender`]).
    pub(crate) fn disk_tasks(&self) -> DiskTasks {
        self.tasks.clone()
    }

    /// The index of a server with data folders; none for a bucket.
    pub fn index(&self) -> Option<&Index> {
        self.index.as_ref()
    }

    /// Where the stored file `path` can be read, if it is stored.
    pub async fn locate(&self, path: &StoredPath) -> Located {
        self.backend.locate(path).await
    }

    /// The stored file `path` on this machine's disks, if it is there.
    pub async fn find_file(&self, path: &StoredPath) -> Option<PathBuf> {
        match self.locate(path).await {
            Located::File { file, .. } => Some(file),
            Located::Object(_) | Located::Missing => None,
        }
    }

    /// The most free bytes of any data folder a new file could go to (no
    /// limit for a bucket).
    pub async fn free_space(&self) -> io::Result<u64> {
        let roots = self.backend.roots();
        tokio::task::spawn_blocking(move || {
            if roots.is_empty() {
                return Ok(u64::MAX);
            }
            roots
                .iter()
                .try_fold(0, |most, root| Ok(most.max(fs4::available_space(root)?)))
        })
        .await
        .map_err(io::Error::other)?
    }

    /// The stored file `path` as a file on this machine (for a bucket, a
    /// temporary copy removed when the returned value is dropped).
    pub async fn local_copy(&self, path: &StoredPath) -> io::Result<Option<LocalCopy>> {
        match self.locate(path).await {
            Located::File { file, .. } => Ok(Some(LocalCopy {
                file,
                _temporary: None,
            })),
            Located::Object(store) => {
                let tmp = self.backend.begin().map_err(io::Error::other)?;
                let file = tmp.tmp.0.clone();
                if store
                    .download(path, &file)
                    .await
                    .map_err(io::Error::other)?
                {
                    Ok(Some(LocalCopy {
                        file,
                        _temporary: Some(tmp),
                    }))
                } else {
                    Ok(None)
                }
            }
            Located::Missing => Ok(None),
        }
    }

    /// Where a variant of a stored file lives (or would live) on disk.
    pub fn variant_path(&self, variant: &VariantPath) -> PathBuf {
        self.variants_dir.join(variant.to_relative_path())
    }

    /// The folder of this server's variants.
    pub fn variants_dir(&self) -> PathBuf {
        self.variants_dir.clone()
    }

    /// Starts receiving a file of at most `limit` bytes of one of `allowed`,
    /// checked and stripped as `rules` say. Fails at once (nothing read)
    /// when no volume has room.
    pub fn begin(
        &self,
        limit: u64,
        allowed: &[ImageType],
        rules: ImageRules,
    ) -> Result<Incoming, StorageError> {
        Ok(Incoming::new(self.backend.begin()?, limit, allowed, rules))
    }

    /// Takes the complete file `source` on this machine (a finished
    /// resumable upload) without copying its bytes when it can: checked as
    /// [`Storage::begin`]'s files are and linked, if nothing is to be
    /// stripped and it lies on the filesystem where it would be received.
    /// `None`: it must be received through [`Storage::begin`] instead.
    /// `sha256` is the file's hash (hex) when it is known: then its bytes
    /// are not read again.
    pub async fn adopt(
        &self,
        source: PathBuf,
        limit: u64,
        allowed: &[ImageType],
        rules: ImageRules,
        sha256: Option<String>,
    ) -> Result<Option<Written>, StorageError> {
        let slot = self.backend.begin()?;
        let allowed = allowed.to_vec();
        slot.tasks
            .clone()
            .run(move || incoming::adopt(slot, &source, limit, &allowed, rules, sha256))
            .await
    }

    /// Finishes a received file ([`Incoming::finish`]) and gives it its
    /// public name: `path` if one was chosen when it began (see
    /// [`Storage::commit_named`]), else a dated one (today, local time). In
    /// a data folder both happen in one disk task; a bucket takes the
    /// finished file as [`Storage::commit_written`] does. The file may be
    /// under its name before this returns: call it where it cannot be
    /// dropped midway (a task of its own), so that what follows a commit
    /// (its record here, its copies) always happens.
    pub async fn commit_incoming(
        &self,
        incoming: Incoming,
        path: Option<StoredPath>,
    ) -> Result<Committed, StorageError> {
        if !incoming.publishes() {
            return self.commit_written(incoming.finish().await?, path).await;
        }
        let image_type = incoming.complete_type()?;
        let path = path.unwrap_or_else(|| StoredPath::dated(image_type));
        if image_type != path.image_type() {
            return Err(chosen_for_another_type(&path));
        }
        let (written, _) = incoming
            .finish_as(path.clone(), Place::Rename, None)
            .await?;
        let file = StoredFile {
            path,
            size: written.size,
            sha256: written.sha256,
        };
        self.record(&file);
        Ok(Committed {
            file,
            dimensions: written.dimensions,
            rewritten: written.rewritten,
            content: written.content,
        })
    }

    /// Gives a complete upload its public name: `path` if one was chosen
    /// when it began, else a dated one (today, local time).
    pub async fn commit_written(
        &self,
        written: Written,
        path: Option<StoredPath>,
    ) -> Result<Committed, StorageError> {
        let (dimensions, rewritten, content) = (
            written.dimensions,
            written.rewritten,
            written.content.clone(),
        );
        let path = path.unwrap_or_else(|| StoredPath::dated(written.image_type));
        let file = self.commit_named(written, path).await?;
        Ok(Committed {
            file,
            dimensions,
            rewritten,
            content,
        })
    }

    /// Gives a complete upload the dated name chosen for it when it began
    /// ([`StoredPath::dated`]), because its copies were already sent to the
    /// peers under that name while it arrived.
    async fn commit_named(
        &self,
        written: Written,
        path: StoredPath,
    ) -> Result<StoredFile, StorageError> {
        if written.image_type != path.image_type() {
            return Err(chosen_for_another_type(&path));
        }
        let file = StoredFile {
            path,
            size: written.size,
            sha256: written.sha256.clone(),
        };
        self.backend
            .place(written, &file.path, Place::Rename)
            .await?;
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
        self.refuse_deleted(path)?;
        let (size, sha256) = (written.size, written.sha256.clone());
        let arrival = self.backend.place(written, path, Place::NoReplace).await?;
        self.placed_replica(path, size, sha256, arrival).await
    }

    /// Finishes a received replica and stores it under the name its sender
    /// chose, if its content hashes to `expected_sha256`, as
    /// [`Storage::commit_replica`] does. In a single data folder, finishing
    /// and placing happen in one disk task (with volumes, a replica may
    /// already be on another volume: that is looked up first, and the
    /// file finished apart). If this future is dropped midway, the replica
    /// may be placed all the same: its sender, answered nothing, sends it
    /// again and finds it there.
    pub async fn commit_replica_incoming(
        &self,
        incoming: Incoming,
        path: &StoredPath,
        expected_sha256: &str,
    ) -> Result<Arrival, StorageError> {
        let in_one_task = incoming.publishes()
            && self.backend.roots().len() == 1
            && incoming.complete_type().ok() == Some(path.image_type());
        if !in_one_task {
            let written = incoming.finish().await?;
            return self.commit_replica(written, path, expected_sha256).await;
        }
        self.refuse_deleted(path)?;
        let (written, arrival) = incoming
            .finish_as(
                path.clone(),
                Place::NoReplace,
                Some(expected_sha256.to_owned()),
            )
            .await?;
        self.placed_replica(path, written.size, written.sha256, arrival)
            .await
    }

    /// A replica's name deleted here is refused.
    fn refuse_deleted(&self, path: &StoredPath) -> Result<(), StorageError> {
        if let Some(index) = &self.index
            && index.is_deleted(path)?
        {
            return Err(StorageError::Deleted);
        }
        Ok(())
    }

    /// Records a replica just placed, unless a delete came meanwhile.
    async fn placed_replica(
        &self,
        path: &StoredPath,
        size: u64,
        sha256: String,
        arrival: Arrival,
    ) -> Result<Arrival, StorageError> {
        // A delete may have come between the check before the placing and
        // the placing. Its tombstone is durable before it removes the
        // file, so either its removal came after this placing, or the
        // tombstone is seen here and this file goes: a delete that wins
        // leaves nothing.
        if let Some(index) = &self.index
            && index.is_deleted(path)?
        {
            self.discard(path).await?;
            return Err(StorageError::Deleted);
        }
        // An identical file already there is recorded too: after a crash it
        // may be the index that missed it.
        self.record(&StoredFile {
            path: path.clone(),
            size,
            sha256,
        });
        Ok(arrival)
    }

    /// Deletes a stored file here: first the tombstone, durably, so that
    /// nothing brings the name back, then the file goes to the trash and
    /// its variants are removed. Deleting a name that is not here succeeds
    /// and leaves the tombstone.
    pub async fn delete(&self, path: &StoredPath) -> Result<(), StorageError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(index) = &self.index {
            index.tombstone(path.clone(), now).await?;
        }
        self.backend.trash(path, now).await?;
        self.remove_variants(path).await
    }

    /// Whether this server holds `path`, held it (a tombstone) or has it
    /// in the trash: whether a delete of it here leaves anything to keep.
    pub async fn held(&self, path: &StoredPath) -> Result<bool, StorageError> {
        if let Some(index) = &self.index {
            let (index, key) = (index.clone(), path.clone());
            let known = tokio::task::spawn_blocking(move || {
                Ok::<_, IndexError>(index.get(&key)?.is_some() || index.is_deleted(&key)?)
            })
            .await
            .map_err(io::Error::other)??;
            if known {
                return Ok(true);
            }
        }
        match self.locate(path).await {
            // A bucket is shared by every front-end and keeps no record of
            // what it held: a delete always goes to it.
            Located::File { .. } | Located::Object(_) => Ok(true),
            Located::Missing => self.backend.trashed(path).await,
        }
    }

    /// Deletes `path` here if this server holds or held it ([`held`]);
    /// a name never seen here leaves no state. Whether it was held.
    ///
    /// [`held`]: Self::held
    pub async fn delete_if_held(&self, path: &StoredPath) -> Result<bool, StorageError> {
        let held = self.held(path).await?;
        if held {
            self.delete(path).await?;
        }
        Ok(held)
    }

    /// Whether the trash holds a file of `path`.
    pub async fn in_trash(&self, path: &StoredPath) -> Result<bool, StorageError> {
        self.backend.trashed(path).await
    }

    /// Takes `path` back into service: first its tombstone goes (a
    /// `restored` mark keeps a peer's stale tombstone from deleting it
    /// again), then the newest trashed file comes back under its name and
    /// is indexed. Whether the trash had a file of it; without one, a
    /// deleted name is still no longer deleted here, and repair brings its
    /// file from a peer that restored it.
    pub async fn restore(&self, path: &StoredPath) -> Result<bool, StorageError> {
        let trashed = self.backend.trashed(path).await?;
        if let Some(index) = &self.index {
            let (read, key) = (index.clone(), path.clone());
            let deleted = tokio::task::spawn_blocking(move || read.is_deleted(&key))
                .await
                .map_err(io::Error::other)??;
            if trashed || deleted {
                index
                    .untombstone(path.clone(), chrono::Utc::now().timestamp())
                    .await?;
            }
        }
        if !trashed || !self.backend.untrash(path).await? {
            return Ok(false);
        }
        if let Some(file) = self.find_file(path).await {
            let (size, sha256) = tokio::task::spawn_blocking(move || {
                Ok::<_, io::Error>((std::fs::metadata(&file)?.len(), hash_file(&file)?))
            })
            .await
            .map_err(io::Error::other)??;
            self.record(&StoredFile {
                path: path.clone(),
                size,
                sha256,
            });
        }
        Ok(true)
    }

    /// Drops the tombstones of `paths`: every server has them and none
    /// needs them any more.
    pub async fn forget(&self, paths: Vec<StoredPath>) -> Result<(), StorageError> {
        if let Some(index) = &self.index {
            index.forget(paths, Vec::new()).await?;
        }
        Ok(())
    }

    /// Removes what was put in the trash more than `keep` ago; how many
    /// files went.
    pub async fn purge_trash(&self, keep: std::time::Duration) -> Result<usize, StorageError> {
        let before =
            chrono::Utc::now().timestamp() - i64::try_from(keep.as_secs()).unwrap_or(i64::MAX);
        self.backend.purge_trash(before).await
    }

    async fn remove_variants(&self, path: &StoredPath) -> Result<(), StorageError> {
        let variants = self.variants_dir.clone();
        let path = path.clone();
        tokio::task::spawn_blocking(move || remove_variants(&variants, &path))
            .await
            .map_err(io::Error::other)??;
        Ok(())
    }

    /// Removes a stored file whose link was never handed out (no
    /// tombstone: the name was never announced).
    pub async fn discard(&self, path: &StoredPath) -> Result<(), StorageError> {
        self.backend.remove(path).await?;
        self.remove_variants(path).await
    }

    /// Moves the file of `path` aside to `.quarantine/` in its data folder,
    /// under its date, name and the time now, so that its name is free for
    /// a good copy; returns where it went.
    pub async fn quarantine(&self, path: &StoredPath) -> io::Result<PathBuf> {
        self.backend.quarantine(path).await
    }

    fn record(&self, file: &StoredFile) {
        self.stored.files.fetch_add(1, Ordering::Relaxed);
        self.stored.bytes.fetch_add(file.size, Ordering::Relaxed);
        if let Some(index) = &self.index {
            index.record(FileEntry {
                path: file.path.clone(),
                size: file.size,
                sha256: file.sha256.clone(),
                added: chrono::Utc::now().timestamp(),
            });
        }
    }

    /// Files and bytes committed since the start.
    pub fn stored(&self) -> &Stored {
        &self.stored
    }

    /// Can this server still store uploads?
    pub async fn probe(&self) -> io::Result<()> {
        self.backend.probe().await
    }
}

/// A stored file as a file on this machine.
#[derive(Debug)]
pub struct LocalCopy {
    file: PathBuf,
    /// A downloaded copy, removed on drop.
    _temporary: Option<Slot>,
}

impl std::ops::Deref for LocalCopy {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.file
    }
}

/// A name chosen for a file of another type than the one received.
fn chosen_for_another_type(path: &StoredPath) -> StorageError {
    StorageError::Io(io::Error::other(format!(
        "{path} was chosen for another type than the file's"
    )))
}

/// SHA-256 of a stored file on disk, lowercase hex; an `InvalidInput`
/// error for anything but a regular file (`regular.rs`).
pub fn hash_file(path: &Path) -> io::Result<String> {
    let (mut file, _) = open_regular(path)?;
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

/// Removes every variant of `original` made here (a folder that is not
/// there has none).
fn remove_variants(variants_dir: &Path, original: &StoredPath) -> io::Result<()> {
    let mut folder = variants_dir.join(original.to_relative_path());
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
            disk::remove_file_patiently(&entry.path())?;
        }
    }
    Ok(())
}
