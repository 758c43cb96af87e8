//! A file being received: chunks from the network are gathered into batches,
//! and each batch is hashed and written by a short task on a blocking
//! thread. No thread waits for the network: between batches a slow client
//! holds memory for one batch and nothing else, so hundreds of phone uploads
//! at a few KiB/s cannot starve the thread pool. One batch is written while
//! the next is gathered, so parsing and disk work still overlap.
//!
//! The temporary file is created by the first write and deleted whenever
//! the upload is abandoned, including the case where the client leaves
//! while a write task is still queued or running: the task itself checks,
//! after its work, whether its upload was dropped meanwhile.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, IoSlice, Seek, SeekFrom, Write};
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::{DiskTasks, ImageType, SNIFF_LEN, StorageError};
use crate::images::{self, Dimensions};

/// Bytes gathered before a batch goes to a write task (one vectored write).
const BATCH_BYTES: usize = 256 * 1024;

/// A file being received. Dropping it before [`Incoming::finish`] abandons it
/// and deletes its temporary file.
pub struct Incoming {
    tmp: TempFile,
    disk: DiskTasks,
    fsync: bool,
    /// The file and hash so far, while no write task has them.
    idle: Option<Writer>,
    /// The write task that has them.
    writing: Option<JoinHandle<io::Result<Writer>>>,
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
}

/// A complete, flushed temporary file, not yet under a public name.
pub struct Written {
    pub(super) tmp: TempFile,
    pub size: u64,
    pub sha256: String,
    pub image_type: ImageType,
    pub dimensions: Dimensions,
}

impl Incoming {
    pub(super) fn new(
        tmp: TempFile,
        disk: DiskTasks,
        fsync: bool,
        limit: u64,
        allowed: &[ImageType],
    ) -> Self {
        Self {
            tmp,
            disk,
            fsync,
            idle: Some(Writer {
                file: None,
                hasher: Sha256::new(),
            }),
            writing: None,
            abandoned: Arc::new(AtomicBool::new(false)),
            batch: Vec::new(),
            batch_len: 0,
            size: 0,
            limit,
            head: Vec::with_capacity(SNIFF_LEN),
            allowed: allowed.to_vec(),
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
            let task = self
                .disk
                .spawn(move || writer.write(&path, &batch, &abandoned))
                .await?;
            self.writing = Some(task);
        }
        Ok(())
    }

    /// Writes what is left, checks that the file is a non-empty allowed
    /// image whose header parses, and flushes it.
    pub async fn finish(mut self) -> Result<Written, StorageError> {
        if self.size == 0 {
            return Err(StorageError::Empty);
        }
        let image_type = self.image_type()?;
        let writer = self.writer().await?;
        let (batch, path, abandoned) = self.take_batch();
        let fsync = self.fsync;
        let (sha256, dimensions) = self
            .disk
            .spawn(move || writer.complete(&path, &batch, &abandoned, fsync, image_type))
            .await?
            .await
            .map_err(io::Error::other)??;
        Ok(Written {
            tmp: mem::replace(&mut self.tmp, TempFile(PathBuf::new())),
            size: self.size,
            sha256,
            image_type,
            dimensions,
        })
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
}

impl Writer {
    /// Hashes and writes one batch.
    fn write(mut self, path: &Path, batch: &[Bytes], abandoned: &AtomicBool) -> io::Result<Self> {
        let result = self.append(path, batch);
        if abandoned.load(Ordering::SeqCst) {
            drop(self.file.take());
            let _ = std::fs::remove_file(path);
            return Err(io::Error::other("upload abandoned"));
        }
        result.map(|()| self)
    }

    /// Writes the last batch, reads the image header, flushes; returns the
    /// hash and the dimensions.
    fn complete(
        self,
        path: &Path,
        batch: &[Bytes],
        abandoned: &AtomicBool,
        fsync: bool,
        image_type: ImageType,
    ) -> Result<(String, Dimensions), StorageError> {
        let mut writer = self.write(path, batch, abandoned)?;
        let file = writer
            .file
            .as_mut()
            .ok_or_else(|| StorageError::Io(io::Error::other("no file was written")))?;
        file.seek(SeekFrom::Start(0))?;
        let dimensions =
            images::dimensions(BufReader::new(&*file)).ok_or(StorageError::Malformed {
                kind: image_type.extension(),
            })?;
        if fsync {
            file.sync_all()?;
        }
        Ok((hex::encode(writer.hasher.finalize()), dimensions))
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
        for chunk in batch {
            self.hasher.update(chunk);
        }
        write_batch(file, batch)
    }
}

/// A temporary file path, deleted on drop unless it was published (emptied).
pub(super) struct TempFile(pub(super) PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
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
