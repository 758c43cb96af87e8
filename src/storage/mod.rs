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
//! Creating, hashing and writing the file run on one blocking task fed by a
//! small channel, so the multipart parser on the async side and the disk work
//! proceed in parallel. Chunks go over in batches: a small image is one
//! hand-off, not one wake-up of the writer per network chunk.
//! This module knows nothing of HTTP.

mod path;
mod sniff;

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use path::StoredPath;
pub use sniff::{ImageType, SNIFF_LEN};

/// Name of the folder below `data_dir` that holds files still being written.
const TMP_DIR: &str = ".tmp";
/// Temporary files untouched for this long belong to a process that died.
const STALE_TMP: Duration = Duration::from_secs(3600);
/// Bytes gathered before a batch goes to the writer (one vectored write).
const BATCH_BYTES: usize = 256 * 1024;
/// Batches in flight between the parser and the writer.
const PIPE_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the file is empty")]
    Empty,
    #[error("the content is not an allowed image type ({allowed})")]
    UnsupportedType { allowed: String },
    #[error("the content does not match its X-Content-SHA256")]
    HashMismatch,
    #[error("a different file is already stored under this name")]
    Conflict,
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
}

impl Storage {
    /// Creates the folders and removes temporary files left by a dead process.
    pub fn open(data_dir: &Path, fsync: bool) -> io::Result<Self> {
        let tmp_dir = data_dir.join(TMP_DIR);
        std::fs::create_dir_all(&tmp_dir)?;
        remove_stale(&tmp_dir);
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            tmp_dir,
            fsync,
        })
    }

    /// Where a stored file lives on disk.
    pub fn file_path(&self, path: &StoredPath) -> PathBuf {
        self.data_dir.join(path.to_relative_path())
    }

    /// Starts receiving a file of at most `limit` bytes of one of `allowed`.
    pub fn begin(&self, limit: u64, allowed: &[ImageType]) -> Incoming {
        let tmp = TempFile(self.tmp_dir.join(format!("{}.part", Uuid::new_v4())));
        let (tx, rx) = mpsc::channel(PIPE_DEPTH);
        let fsync = self.fsync;
        let path = tmp.0.clone();
        let writer = tokio::task::spawn_blocking(move || write_all(&path, rx, fsync));
        Incoming {
            tmp,
            tx: Some(tx),
            writer: Some(writer),
            batch: Vec::new(),
            batch_len: 0,
            size: 0,
            limit,
            head: Vec::with_capacity(SNIFF_LEN),
            allowed: allowed.to_vec(),
        }
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
        tokio::task::spawn_blocking(move || publish(tmp, &target, &data_dir, fsync, Place::Rename))
            .await
            .map_err(io::Error::other)??;
        Ok(StoredFile { path, size, sha256 })
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
        let target = self.file_path(path);
        let fsync = self.fsync;
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            // Two senders may deliver the same name at once (a replay beside
            // a late original): only one may create it, the other compares.
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
        .await
        .map_err(io::Error::other)?
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

/// A file being received. Dropping it before [`Incoming::finish`] abandons it
/// and deletes its temporary file.
pub struct Incoming {
    tmp: TempFile,
    tx: Option<mpsc::Sender<Piece>>,
    writer: Option<JoinHandle<io::Result<String>>>,
    /// Chunks not yet handed to the writer.
    batch: Vec<Bytes>,
    batch_len: usize,
    size: u64,
    limit: u64,
    head: Vec<u8>,
    allowed: Vec<ImageType>,
}

/// A complete, flushed temporary file, not yet under a public name.
pub struct Written {
    tmp: TempFile,
    pub size: u64,
    pub sha256: String,
    pub image_type: ImageType,
}

impl Incoming {
    /// Appends a chunk. Fails as soon as the limit is passed or the first
    /// bytes show a type that is not allowed, so a refused file is not read
    /// to its end.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(StorageError::TooLarge { limit: self.limit });
        }
        if self.head.len() < SNIFF_LEN {
            let take = (SNIFF_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            if self.head.len() == SNIFF_LEN {
                self.image_type()?;
            }
        }
        self.batch_len += chunk.len();
        self.batch.push(chunk);
        if self.batch_len >= BATCH_BYTES {
            self.hand_over(false).await?;
        }
        Ok(())
    }

    /// Sends the gathered chunks (and, at the end, the end mark) to the writer.
    async fn hand_over(&mut self, end: bool) -> Result<(), StorageError> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        let sent = match &self.tx {
            Some(tx) => {
                (batch.is_empty() || tx.send(Piece::Data(batch)).await.is_ok())
                    && (!end || tx.send(Piece::End).await.is_ok())
            }
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.writer_error().await)
        }
    }

    /// Flushes the file and checks it is a non-empty allowed image.
    pub async fn finish(mut self) -> Result<Written, StorageError> {
        if self.size == 0 {
            return Err(StorageError::Empty);
        }
        let image_type = self.image_type()?;
        self.hand_over(true).await?;
        drop(self.tx.take());
        let sha256 = match self.writer.take() {
            Some(writer) => writer.await.map_err(io::Error::other)??,
            None => return Err(StorageError::Io(io::Error::other("writer already gone"))),
        };
        Ok(Written {
            tmp: self.tmp,
            size: self.size,
            sha256,
            image_type,
        })
    }

    fn image_type(&self) -> Result<ImageType, StorageError> {
        ImageType::sniff(&self.head)
            .filter(|t| self.allowed.contains(t))
            .ok_or_else(|| StorageError::UnsupportedType {
                allowed: self
                    .allowed
                    .iter()
                    .map(|t| t.extension())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    async fn writer_error(&mut self) -> StorageError {
        match self.writer.take() {
            Some(writer) => match writer.await {
                Ok(Err(e)) => e.into(),
                Ok(Ok(_)) => StorageError::Io(io::Error::other("writer stopped early")),
                Err(e) => StorageError::Io(io::Error::other(e)),
            },
            None => StorageError::Io(io::Error::other("writer already gone")),
        }
    }
}

/// A temporary file path, deleted on drop unless it was published (emptied).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// What the parser hands to the writer.
enum Piece {
    Data(Vec<Bytes>),
    /// The file is complete. Without it, a closed channel means abandoned.
    End,
}

/// The writer task: create the file, hash and write every batch; at the end
/// mark, fsync and return the hash. An abandoned file is removed here too,
/// as the [`TempFile`] may have been dropped before the file existed.
fn write_all(path: &Path, mut rx: mpsc::Receiver<Piece>, fsync: bool) -> io::Result<String> {
    let mut file = File::create_new(path)?;
    let mut hasher = Sha256::new();
    while let Some(piece) = rx.blocking_recv() {
        match piece {
            Piece::Data(batch) => {
                for chunk in &batch {
                    hasher.update(chunk);
                }
                write_batch(&mut file, &batch)?;
            }
            Piece::End => {
                if fsync {
                    file.sync_all()?;
                }
                return Ok(hex::encode(hasher.finalize()));
            }
        }
    }
    drop(file);
    let _ = std::fs::remove_file(path);
    Err(io::Error::other("upload abandoned"))
}

/// Writes a batch of chunks with as few system calls as the OS allows.
fn write_batch(file: &mut File, batch: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
