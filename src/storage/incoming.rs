//! A file being received: chunks from the network are gathered into batches,
//! and each batch is hashed and written by a short task on a blocking
//! thread. No thread waits for the network: between batches a slow client
//! holds memory for one batch and nothing else, so hundreds of phone uploads
//! at a few KiB/s cannot starve the thread pool. One batch is written while
//! the next is gathered, so parsing and disk work still overlap.
//!
//! A file smaller than a batch (most pictures) is checked and stripped in
//! memory before anything is written, and written once.
//!
//! The first batch written is also where a decompression bomb is caught:
//! once its header is on disk, a picture over the limits is refused without
//! waiting for the rest. At the end, the whole file is checked again (an
//! animation's frames may come later) and, for uploads, its metadata is
//! removed: into a second temporary file that replaces the first, hashed
//! anew, only when there is something to remove.
//!
//! A complete file already on this disk (a finished resumable upload) is
//! checked the same way by [`adopt`] and, when it has nothing to strip,
//! hard-linked instead of copied.
//!
//! The temporary file is created by the first write and deleted whenever
//! the upload is abandoned, including the case where the client leaves
//! while a write task is still queued or running: the task itself checks,
//! after its work, whether its upload was dropped meanwhile.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Cursor, Seek, SeekFrom, Write};
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::append::{BATCH_BYTES, append_batch};
use super::{
    Arrival, DiskTasks, ImageRules, ImageType, Place, Publisher, SNIFF_LEN, Slot, StorageError,
    StoredPath, Writing,
};
use crate::images::strip::StripError;
use crate::images::{self, Dimensions, Limits};

/// Read buffer of the checks and of the stripped copy.
const READ_BUF: usize = 64 * 1024;

/// A file being received. Dropping it before [`Incoming::finish`] abandons it
/// and deletes its temporary file.
pub struct Incoming {
    tmp: TempFile,
    /// Counts this file on its volume until it is placed (taken by
    /// [`Incoming::finish`]).
    counted: Option<Writing>,
    disk: DiskTasks,
    fsync: bool,
    /// Gives the file its public name once finished, where the backend can.
    publisher: Option<Publisher>,
    /// The file and hash so far, while no write task has them.
    idle: Option<Writer>,
    /// The write task that has them.
    writing: Option<JoinHandle<Result<Writer, StorageError>>>,
    /// Set when this upload is dropped; write tasks still under way then
    /// remove the file themselves.
    abandoned: Arc<AtomicBool>,
    /// Chunks not yet handed to a write task.
    batch: Vec<Bytes>,
    batch_len: usize,
    size: u64,
    limit: u64,
    head: Vec<u8>,
    allowed: Vec<ImageType>,
    rules: ImageRules,
}

/// Where the task that finishes a file places it ([`Incoming::finish_as`]).
struct Then {
    publisher: Publisher,
    path: StoredPath,
    place: Place,
    /// A replica's hash as its sender stored it.
    expected: Option<String>,
}

/// A complete, flushed temporary file, not yet under a public name.
pub struct Written {
    pub(super) tmp: TempFile,
    pub(super) writing: Writing,
    pub size: u64,
    pub sha256: String,
    pub image_type: ImageType,
    pub dimensions: Dimensions,
    /// The stored bytes are not the received ones: metadata was removed.
    pub rewritten: bool,
    /// The stored bytes themselves, for a file that never filled a batch:
    /// its copies to the peers are sent from memory.
    pub content: Option<Bytes>,
}

/// How a received file is finished: flushed or not, its type, the rules
/// it is checked against.
#[derive(Debug, Clone, Copy)]
struct End {
    fsync: bool,
    image_type: ImageType,
    rules: ImageRules,
}

/// Reads a complete file's header and checks it against the limits; the
/// plan to remove its metadata if the rules say so and there is any.
fn inspect<R: io::BufRead + Seek>(
    reader: &mut R,
    end: End,
) -> Result<(Dimensions, Option<images::strip::Plan>), StorageError> {
    let dimensions = images::dimensions(&mut *reader).ok_or(StorageError::Malformed {
        kind: end.image_type.extension(),
    })?;
    reader.seek(SeekFrom::Start(0))?;
    if let Some(over) = end.rules.limits.over(&mut *reader, dimensions)? {
        return Err(over.into());
    }
    let plan = if end.rules.strip_metadata {
        images::strip::strip(&mut *reader).map_err(|e| match e {
            // Chunks that do not tile the file: no decoder reads it either.
            StripError::Malformed(_) => StorageError::Malformed {
                kind: end.image_type.extension(),
            },
            StripError::Io(e) => e.into(),
        })?
    } else {
        None
    };
    Ok((dimensions, plan))
}

/// What [`Writer::complete`] found and wrote.
struct Completed {
    size: u64,
    sha256: String,
    dimensions: Dimensions,
    rewritten: bool,
    content: Option<Bytes>,
}

impl Incoming {
    pub(super) fn new(slot: Slot, limit: u64, allowed: &[ImageType], rules: ImageRules) -> Self {
        let Slot {
            tmp,
            writing,
            tasks: disk,
            fsync,
            publisher,
        } = slot;
        Self {
            tmp,
            counted: Some(writing),
            disk,
            fsync,
            publisher,
            idle: Some(Writer {
                file: None,
                hasher: Sha256::new(),
                len: 0,
                write_behind: fsync,
            }),
            writing: None,
            abandoned: Arc::new(AtomicBool::new(false)),
            batch: Vec::new(),
            batch_len: 0,
            size: 0,
            limit,
            head: Vec::with_capacity(SNIFF_LEN),
            allowed: allowed.to_vec(),
            rules,
        }
    }

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
            let writer = self.writer().await?;
            let (batch, path, abandoned) = self.take_batch();
            let limits = self.rules.limits;
            let task = self
                .disk
                .spawn(move || {
                    let first = writer.file.is_none();
                    let mut writer = writer.write(&path, &batch, &abandoned)?;
                    if first {
                        writer.refuse_early(limits)?;
                    }
                    Ok(writer)
                })
                .await?;
            self.writing = Some(task);
        }
        Ok(())
    }

    /// Writes what is left, checks that the file is a non-empty allowed
    /// image whose header parses and that is within the limits, strips its
    /// metadata if the rules say so, and flushes it.
    pub async fn finish(self) -> Result<Written, StorageError> {
        Ok(self.complete(None).await?.0)
    }

    /// Whether [`Incoming::finish_as`] can place this file.
    pub(super) fn publishes(&self) -> bool {
        self.publisher.is_some()
    }

    /// [`Incoming::finish`], then the file takes the name `path` as
    /// `place` says, in the same disk task (one hand-off to a blocking
    /// thread per file instead of two); a replica's content must hash to
    /// `expected` first. Once that task runs, the file is placed even if
    /// this future is dropped: only a caller that cannot be dropped midway
    /// (a task of its own, or one whose sender retries) may call it. The
    /// file given back is no longer temporary.
    pub(super) async fn finish_as(
        mut self,
        path: StoredPath,
        place: Place,
        expected: Option<String>,
    ) -> Result<(Written, Arrival), StorageError> {
        let publisher = self.publisher.take().ok_or_else(|| {
            StorageError::Io(io::Error::other("this backend places its files itself"))
        })?;
        let then = Then {
            publisher,
            path,
            place,
            expected,
        };
        let (written, arrival) = self.complete(Some(then)).await?;
        let arrival = arrival.ok_or_else(|| StorageError::Io(io::Error::other("not placed")))?;
        Ok((written, arrival))
    }

    /// The type of a complete file: it is not empty, and its first bytes
    /// show an allowed type.
    pub(super) fn complete_type(&self) -> Result<ImageType, StorageError> {
        if self.size == 0 {
            return Err(StorageError::Empty);
        }
        self.image_type()
    }

    async fn complete(
        mut self,
        then: Option<Then>,
    ) -> Result<(Written, Option<Arrival>), StorageError> {
        let image_type = self.complete_type()?;
        let writer = self.writer().await?;
        let (batch, _, abandoned) = self.take_batch();
        let end = End {
            fsync: self.fsync,
            image_type,
            rules: self.rules,
        };
        // The task owns the temporary file: if its result is never taken
        // (this future dropped), dropping it removes the file.
        let tmp = mem::replace(&mut self.tmp, TempFile(PathBuf::new()));
        let (completed, tmp, arrival) = self
            .disk
            .spawn(move || {
                let completed = writer.complete(&tmp.0, &batch, &abandoned, end)?;
                let Some(then) = then else {
                    return Ok((completed, tmp, None));
                };
                if let Some(expected) = &then.expected
                    && !completed.sha256.eq_ignore_ascii_case(expected)
                {
                    return Err(StorageError::HashMismatch);
                }
                let arrival =
                    then.publisher
                        .place(tmp, &then.path, then.place, &completed.sha256)?;
                Ok::<_, StorageError>((completed, TempFile(PathBuf::new()), Some(arrival)))
            })
            .await?
            .await
            .map_err(io::Error::other)??;
        let Completed {
            size,
            sha256,
            dimensions,
            rewritten,
            content,
        } = completed;
        let writing = self
            .counted
            .take()
            .ok_or_else(|| StorageError::Io(io::Error::other("the file was already finished")))?;
        let written = Written {
            tmp,
            writing,
            size,
            sha256,
            image_type,
            dimensions,
            rewritten,
            content,
        };
        Ok((written, arrival))
    }

    /// The file's type, once its first bytes have shown it (an allowed
    /// one: [`Incoming::write`] refuses the others).
    pub fn sniffed(&self) -> Option<ImageType> {
        if self.head.len() < SNIFF_LEN {
            return None;
        }
        ImageType::sniff(&self.head).filter(|t| self.allowed.contains(t))
    }

    /// The file and hash, once the write task that has them is done.
    async fn writer(&mut self) -> Result<Writer, StorageError> {
        match self.writing.take() {
            Some(task) => Ok(task.await.map_err(io::Error::other)??),
            None => self
                .idle
                .take()
                .ok_or_else(|| StorageError::Io(io::Error::other("an earlier write failed"))),
        }
    }

    fn take_batch(&mut self) -> (Vec<Bytes>, PathBuf, Arc<AtomicBool>) {
        self.batch_len = 0;
        (
            mem::take(&mut self.batch),
            self.tmp.0.clone(),
            self.abandoned.clone(),
        )
    }

    fn image_type(&self) -> Result<ImageType, StorageError> {
        image_type(&self.head, &self.allowed)
    }
}

/// The type `head` (a file's first bytes) shows, if it is one of `allowed`.
fn image_type(head: &[u8], allowed: &[ImageType]) -> Result<ImageType, StorageError> {
    ImageType::sniff(head)
        .filter(|t| allowed.contains(t))
        .ok_or_else(|| StorageError::UnsupportedType {
            allowed: allowed
                .iter()
                .map(|t| t.extension())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Takes a complete file already on this machine's disk (a finished
/// resumable upload, durable there) as it is: checked as
/// [`Incoming::finish`] checks a received file, then hard-linked into
/// `slot` and hashed (unless `sha256` is its known hash), with at most
/// one read and no write. `None` when it must be
/// copied through [`Incoming`] instead: it has metadata to strip, or the
/// link cannot be made (another filesystem, or one without links). The
/// source is left in place either way.
pub(super) fn adopt(
    slot: Slot,
    source: &Path,
    limit: u64,
    allowed: &[ImageType],
    rules: ImageRules,
    sha256: Option<String>,
) -> Result<Option<Written>, StorageError> {
    let file = File::open(source)?;
    let size = file.metadata()?.len();
    if size == 0 {
        return Err(StorageError::Empty);
    }
    if size > limit {
        return Err(StorageError::TooLarge { limit });
    }
    let mut reader = BufReader::with_capacity(READ_BUF, file);
    let head = reader.fill_buf()?;
    let image_type = image_type(&head[..head.len().min(SNIFF_LEN)], allowed)?;
    let end = End {
        fsync: slot.fsync,
        image_type,
        rules,
    };
    let (dimensions, plan) = inspect(&mut reader, end)?;
    if plan.is_some() {
        return Ok(None);
    }
    if let Err(e) = std::fs::hard_link(source, &slot.tmp.0) {
        tracing::debug!(error = %e, "a finished upload cannot be linked; it is copied");
        return Ok(None);
    }
    let sha256 = match sha256 {
        Some(known) => known,
        None => {
            reader.seek(SeekFrom::Start(0))?;
            let mut hasher = Sha256::new();
            io::copy(&mut reader, &mut hasher)?;
            hex::encode(hasher.finalize())
        }
    };
    Ok(Some(Written {
        tmp: slot.tmp,
        writing: slot.writing,
        size,
        sha256,
        image_type,
        dimensions,
        rewritten: false,
        content: None,
    }))
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Before the TempFile field removes the path: a write task that
        // creates the file after that removal sees this and removes it.
        self.abandoned.store(true, Ordering::SeqCst);
    }
}

/// The temporary file as the write tasks pass it on.
struct Writer {
    /// Created by the first write.
    file: Option<File>,
    hasher: Sha256,
    /// Bytes written so far.
    len: u64,
    /// Start writing each batch to the disk at once (the file will be
    /// flushed at the end: this way the flush has little left to do).
    write_behind: bool,
}

impl Writer {
    /// Hashes and writes one batch.
    fn write(
        mut self,
        path: &Path,
        batch: &[Bytes],
        abandoned: &AtomicBool,
    ) -> Result<Self, StorageError> {
        let result = self.append(path, batch);
        if abandoned.load(Ordering::SeqCst) {
            drop(self.file.take());
            let _ = std::fs::remove_file(path);
            return Err(io::Error::other("upload abandoned").into());
        }
        result?;
        Ok(self)
    }

    /// Refuses a picture whose header, already written, is over `limits`;
    /// a header not yet complete is left to [`Writer::complete`].
    fn refuse_early(&mut self, limits: Limits) -> Result<(), StorageError> {
        let file = self.open_file()?;
        file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::with_capacity(READ_BUF, &*file);
        let over = match images::dimensions(&mut reader) {
            Some(dimensions) => {
                reader.seek(SeekFrom::Start(0))?;
                limits.over(&mut reader, dimensions)?
            }
            None => None,
        };
        drop(reader);
        file.seek(SeekFrom::End(0))?;
        match over {
            Some(over) => Err(over.into()),
            None => Ok(()),
        }
    }

    fn open_file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("no file was written"))
    }

    /// Writes the last batch, reads the image header, checks the limits,
    /// strips the metadata if `rules` say so, flushes; returns the size and
    /// hash of the file as it will be stored, the dimensions, whether
    /// stripping rewrote it, and (a file smaller than a batch) its bytes.
    fn complete(
        self,
        path: &Path,
        batch: &[Bytes],
        abandoned: &AtomicBool,
        end: End,
    ) -> Result<Completed, StorageError> {
        if self.file.is_none() {
            return self.complete_in_memory(path, batch, abandoned, end);
        }
        let mut writer = self.write(path, batch, abandoned)?;
        let file = writer.open_file()?;
        file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::with_capacity(READ_BUF, &*file);
        let (dimensions, plan) = inspect(&mut reader, end)?;
        let Some(plan) = plan else {
            drop(reader);
            if end.fsync {
                file.sync_all()?;
            }
            return Ok(Completed {
                size: writer.len,
                sha256: hex::encode(writer.hasher.finalize()),
                dimensions,
                rewritten: false,
                content: None,
            });
        };
        let mut copy = TempFile(path.with_extension("strip"));
        let mut out = Hashing {
            file: BufWriter::new(File::create_new(&copy.0)?),
            hasher: Sha256::new(),
        };
        let size = plan.apply(&mut reader, &mut out)?;
        drop(reader);
        let stripped = out.file.into_inner().map_err(|e| e.into_error())?;
        if end.fsync {
            stripped.sync_all()?;
        }
        // Windows renames over a file only once nothing holds it open.
        drop(writer.file.take());
        drop(stripped);
        std::fs::rename(&copy.0, path)?;
        copy.0 = PathBuf::new();
        // As in `write`: an upload dropped meanwhile has removed `path`
        // already, or removes it after this check.
        if abandoned.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(path);
            return Err(io::Error::other("upload abandoned").into());
        }
        Ok(Completed {
            size,
            sha256: hex::encode(out.hasher.finalize()),
            dimensions,
            rewritten: true,
            content: None,
        })
    }

    /// [`Writer::complete`] for a file that never filled a batch: all of it
    /// is in `batch`, so it is checked (and stripped) in memory and only the
    /// bytes to store are written, once, instead of being read back.
    fn complete_in_memory(
        self,
        path: &Path,
        batch: &[Bytes],
        abandoned: &AtomicBool,
        end: End,
    ) -> Result<Completed, StorageError> {
        let whole = match batch {
            [one] => one.clone(),
            _ => Bytes::from(batch.concat()),
        };
        let mut reader = Cursor::new(&whole[..]);
        let (dimensions, plan) = inspect(&mut reader, end)?;
        let Some(plan) = plan else {
            // The flush right after does what write-behind would start.
            let unhurried = Self {
                write_behind: false,
                ..self
            };
            let mut writer = unhurried.write(path, batch, abandoned)?;
            if end.fsync {
                writer.open_file()?.sync_all()?;
            }
            return Ok(Completed {
                size: writer.len,
                sha256: hex::encode(writer.hasher.finalize()),
                dimensions,
                rewritten: false,
                content: Some(whole),
            });
        };
        reader.set_position(0);
        let mut stripped = Vec::with_capacity(whole.len());
        plan.apply(&mut reader, &mut stripped)?;
        let stripped = Bytes::from(stripped);
        let fresh = Self {
            file: None,
            hasher: Sha256::new(),
            len: 0,
            write_behind: false,
        };
        let mut writer = fresh.write(path, std::slice::from_ref(&stripped), abandoned)?;
        if end.fsync {
            writer.open_file()?.sync_all()?;
        }
        Ok(Completed {
            size: writer.len,
            sha256: hex::encode(writer.hasher.finalize()),
            dimensions,
            rewritten: true,
            content: Some(stripped),
        })
    }

    fn append(&mut self, path: &Path, batch: &[Bytes]) -> io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)?,
            ),
        };
        self.len = append_batch(
            file,
            self.len,
            batch,
            Some(&mut self.hasher),
            self.write_behind,
        )?;
        Ok(())
    }
}

/// A file being written and hashed on the way.
struct Hashing {
    file: BufWriter<File>,
    hasher: Sha256,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A temporary file path, deleted on drop unless it was published (emptied).
#[derive(Debug)]
pub(super) struct TempFile(pub(super) PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
