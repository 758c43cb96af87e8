//! Appending a stream of chunks to a file the way a received upload is
//! written: chunks are gathered into batches of [`BATCH_BYTES`], and each
//! batch is hashed and written (one vectored write) by a short task on the
//! disk tasks while the next batch is gathered, so the request's task only
//! reads the network. [`Incoming`](super::Incoming) writes its batches with
//! [`append_batch`]; [`Appender`] is the same pipeline for a file that is
//! already open (a resumable upload's staged bytes), which also syncs what
//! it wrote when asked to.

use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::mem;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::DiskTasks;

/// Bytes gathered before a batch goes to a write task (one vectored write).
pub(super) const BATCH_BYTES: usize = 256 * 1024;

/// Appends chunks to an open file on the disk tasks, at most one batch
/// being written while the next is gathered.
pub struct Appender {
    disk: DiskTasks,
    /// The file and hash, while no write task has them; `None` after a
    /// write failed (every later call fails too).
    idle: Option<Sink>,
    /// The write task that has them.
    writing: Option<JoinHandle<io::Result<Sink>>>,
    /// Chunks not yet handed to a write task.
    batch: Vec<Bytes>,
    batch_len: usize,
}

/// The file with what is written to it, as the write tasks pass it on.
struct Sink {
    file: File,
    /// SHA-256 of every byte of the file, when it is known.
    hasher: Option<Sha256>,
    /// The file's length.
    len: u64,
    /// Start writing each batch to the disk at once, so that a sync finds
    /// little left to do.
    write_behind: bool,
    /// Kept until the last write is done, also when the appender is
    /// dropped with a write under way (a lock on the file).
    _held: Box<dyn Send + Sync>,
}

impl Sink {
    fn append(&mut self, batch: &[Bytes]) -> io::Result<()> {
        self.len = append_batch(
            &mut self.file,
            self.len,
            batch,
            self.hasher.as_mut(),
            self.write_behind,
        )?;
        Ok(())
    }
}

impl Appender {
    /// Appends to `file`, which is `len` bytes long and positioned at its
    /// end; `hasher` holds the SHA-256 of those bytes when it is known.
    /// With `write_behind` (the file will be synced) each batch is sent to
    /// the disk as soon as it is written. `held` (a lock on the file) is
    /// dropped only once no write of this appender is under way.
    pub(crate) fn new(
        disk: DiskTasks,
        file: File,
        len: u64,
        hasher: Option<Sha256>,
        write_behind: bool,
        held: Box<dyn Send + Sync>,
    ) -> Self {
        Self {
            disk,
            idle: Some(Sink {
                file,
                hasher,
                len,
                write_behind,
                _held: held,
            }),
            writing: None,
            batch: Vec::new(),
            batch_len: 0,
        }
    }

    /// Appends a chunk; a full batch goes to a write task once the one
    /// before it is done.
    pub async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        self.batch_len += chunk.len();
        self.batch.push(chunk);
        if self.batch_len >= BATCH_BYTES {
            let mut sink = self.sink().await?;
            let batch = self.take_batch();
            let task = self
                .disk
                .spawn(move || {
                    sink.append(&batch)?;
                    Ok(sink)
                })
                .await?;
            self.writing = Some(task);
        }
        Ok(())
    }

    /// Writes everything pushed so far and, with `sync`, makes it durable;
    /// the hash of the whole file then, when it is known.
    pub async fn flush(&mut self, sync: bool) -> io::Result<Option<Sha256>> {
        let mut sink = self.sink().await?;
        let batch = self.take_batch();
        let sink = self
            .disk
            .run(move || {
                sink.append(&batch)?;
                if sync {
                    sink.file.sync_data()?;
                }
                Ok::<_, io::Error>(sink)
            })
            .await?;
        let hash = sink.hasher.clone();
        self.idle = Some(sink);
        Ok(hash)
    }

    /// Cuts the file back to `len` bytes, whose hash is `hasher` (if
    /// known), forgetting whatever was pushed since.
    pub async fn truncate(&mut self, len: u64, hasher: Option<Sha256>) -> io::Result<()> {
        let mut sink = self.sink().await?;
        self.take_batch();
        let sink = self
            .disk
            .run(move || {
                sink.file.set_len(len)?;
                sink.file.seek(SeekFrom::Start(len))?;
                sink.len = len;
                sink.hasher = hasher;
                Ok::<_, io::Error>(sink)
            })
            .await?;
        self.idle = Some(sink);
        Ok(())
    }

    /// The file and hash, once the write task that has them is done.
    async fn sink(&mut self) -> io::Result<Sink> {
        match self.writing.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => self
                .idle
                .take()
                .ok_or_else(|| io::Error::other("an earlier write failed")),
        }
    }

    fn take_batch(&mut self) -> Vec<Bytes> {
        self.batch_len = 0;
        mem::take(&mut self.batch)
    }
}

/// Hashes `batch` into `hasher` (if any) and writes it at the position of
/// `file`, which is `len` bytes long; with `write_behind` the disk starts
/// writing it at once. The file's new length.
pub(super) fn append_batch(
    file: &mut File,
    len: u64,
    batch: &[Bytes],
    hasher: Option<&mut Sha256>,
    write_behind: bool,
) -> io::Result<u64> {
    let added: u64 = batch.iter().map(|chunk| chunk.len() as u64).sum();
    if let Some(hasher) = hasher {
        for chunk in batch {
            hasher.update(chunk);
        }
    }
    write_batch(file, batch)?;
    if write_behind {
        start_writeback(file, len, added);
    }
    Ok(len + added)
}

/// Asks the kernel to start writing a range of `file` to the disk without
/// waiting for it, so that a large file's final flush finds most of it
/// written (it overlaps with receiving the rest). A hint: failures are
/// ignored, the flush at the end is what counts.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and
    // sync_file_range reads no memory of this process.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Elsewhere the flush at the end does all of it.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Writes a batch of chunks with as few system calls as the OS allows.
fn write_batch(file: &mut File, batch: &[Bytes]) -> io::Result<()> {
    // Empty chunks (a stream may yield them) are left out: a write of
    // nothing but empty slices returns 0, which would read as a full disk.
    let mut slices: Vec<IoSlice<'_>> = batch
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| IoSlice::new(b))
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_with_empty_chunks_is_written_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut file = File::create(&path).expect("create");
        let batch = [
            Bytes::new(),
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"c"),
            Bytes::new(),
        ];
        write_batch(&mut file, &batch).expect("write");
        // The last batch of a stream may hold nothing but an empty chunk.
        write_batch(&mut file, &[Bytes::new()]).expect("write an empty batch");
        assert_eq!(std::fs::read(&path).expect("read"), b"abc");
    }
}
