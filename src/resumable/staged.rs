//! An upload's two files in a staging folder, and [`Patch`]: one request
//! appending to the bytes and moving the durable offset forward.
//!
//! Order is what makes the offset durable: the bytes are synced first, then
//! the info naming the new offset is written beside the old one, synced and
//! renamed over it, so the recorded offset never names bytes a crash could
//! lose.

use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedMutexGuard, watch};

use super::{Hashed, Info, Resumable, ResumableError, Upload, lock};
use crate::storage::{Appender, sync_dir};

fn part(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.part"))
}

fn info_file(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// A new upload id: 256 bits of which 244 random (two version-4 UUIDs),
/// hex, so an id is never guessed and is safe in a file name and a URL.
pub fn new_id() -> String {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    format!("{}{}", a.simple(), b.simple())
}

/// Whether `id` is one [`new_id`] could have made (nothing else is looked
/// up on disk).
pub fn valid_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Creates an empty upload's files.
pub fn create(dir: &Path, id: &str, info: &Info, fsync: bool) -> io::Result<()> {
    let file = std::fs::File::create(part(dir, id))?;
    if fsync {
        file.sync_all()?;
    }
    write_info(dir, id, info, fsync)
}

/// Replaces an upload's info durably.
pub fn write_info(dir: &Path, id: &str, info: &Info, fsync: bool) -> io::Result<()> {
    let json = serde_json::to_vec(info).map_err(io::Error::other)?;
    let tmp = dir.join(format!("{id}.json.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&json)?;
    if fsync {
        file.sync_all()?;
    }
    drop(file);
    std::fs::rename(&tmp, info_file(dir, id))?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The uploads recorded in `dir`. Leftovers of an interrupted write (a
/// `.tmp` info, bytes without info) are removed; an unreadable info is
/// logged and left for an operator.
pub fn load(dir: &Path) -> io::Result<Vec<(String, Info)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(".tmp") {
            std::fs::remove_file(&path)?;
            continue;
        }
        if let Some(id) = name.strip_suffix(".part").filter(|id| valid_id(id)) {
            if !info_file(dir, id).exists() {
                std::fs::remove_file(&path)?;
            }
            continue;
        }
        let Some(id) = name.strip_suffix(".json").filter(|id| valid_id(id)) else {
            continue;
        };
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|json| serde_json::from_slice::<Info>(&json).map_err(|e| e.to_string()))
        {
            Ok(info) => found.push((id.to_owned(), info)),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "a resumable upload's record cannot be read; left in place");
            }
        }
    }
    Ok(found)
}

/// Removes a finished upload's bytes (its info stays until it expires).
pub fn remove_part(dir: &Path, id: &str) -> io::Result<()> {
    match std::fs::remove_file(part(dir, id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes an upload's files: the info first, so a crash in between
/// leaves bytes that the next start removes.
pub fn remove(dir: &Path, id: &str) -> io::Result<()> {
    match std::fs::remove_file(info_file(dir, id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    remove_part(dir, id)
}

/// One request writing an upload: it holds the upload's writer lock, and
/// the bytes it appends count only once [`Patch::commit`] records them.
/// They are hashed and written on the disk tasks as a received upload's
/// are ([`Appender`]), so the request's task only reads the network.
pub struct Patch {
    resumable: Resumable,
    upload: Arc<Upload>,
    /// Holds the writer lock too, until its last write is done.
    file: Appender,
    committed: u64,
    /// Appended since the last commit.
    pending: u64,
    /// SHA-256 of the bytes up to the committed offset, if the upload's
    /// was known when this request began.
    hash: Option<Sha256>,
    takeover: watch::Receiver<u64>,
}

impl Patch {
    pub(super) async fn open(
        resumable: Resumable,
        upload: Arc<Upload>,
        writer: OwnedMutexGuard<()>,
    ) -> Result<Self, ResumableError> {
        let committed = upload.info().offset;
        let path = part(&upload.dir, &upload.id);
        let file = tokio::task::spawn_blocking(move || -> io::Result<std::fs::File> {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)?;
            // Bytes past the committed offset were never acknowledged.
            file.set_len(committed)?;
            file.seek(SeekFrom::Start(committed))?;
            Ok(file)
        })
        .await
        .map_err(io::Error::other)??;
        let takeover = upload.takeover.subscribe();
        let hash = upload.hashed_to(committed);
        let file = Appender::new(
            resumable.inner.disk.clone(),
            file,
            committed,
            hash.clone(),
            resumable.inner.fsync,
            Box::new(writer),
        );
        Ok(Self {
            resumable,
            upload,
            file,
            committed,
            pending: 0,
            hash,
            takeover,
        })
    }

    pub fn upload(&self) -> &Arc<Upload> {
        &self.upload
    }

    /// The committed offset.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The offset with the bytes appended since the last commit.
    pub fn offset(&self) -> u64 {
        self.committed + self.pending
    }

    /// Bytes appended since the last commit.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Where the upload's bytes are (to read a complete one back).
    pub fn part_path(&self) -> PathBuf {
        part(&self.upload.dir, &self.upload.id)
    }

    /// The SHA-256 of the committed bytes, hex, when it is known (this
    /// process hashed every byte as it was committed).
    pub fn sha256(&self) -> Option<String> {
        if self.pending != 0 {
            return None;
        }
        self.hash.clone().map(|h| hex::encode(h.finalize()))
    }

    pub async fn append(&mut self, chunk: Bytes) -> io::Result<()> {
        self.pending += chunk.len() as u64;
        self.file.push(chunk).await
    }

    /// Makes the appended bytes durable and records the new offset (which
    /// also renews the upload's expiry).
    pub async fn commit(&mut self) -> io::Result<u64> {
        let hash = self.file.flush(self.resumable.inner.fsync).await?;
        let mut info = self.upload.info();
        info.offset = self.committed + self.pending;
        info.expires = self.resumable.expiry();
        self.resumable.record(&self.upload, info).await?;
        self.committed += self.pending;
        self.pending = 0;
        self.hash = hash;
        *lock(&self.upload.hashed) = self.hash.clone().map(|state| Hashed {
            offset: self.committed,
            state,
        });
        Ok(self.committed)
    }

    /// Forgets the bytes appended since the last commit.
    pub async fn discard(&mut self) -> io::Result<()> {
        self.file
            .truncate(self.committed, self.hash.clone())
            .await?;
        self.pending = 0;
        Ok(())
    }

    /// Resolves when another request takes this upload over.
    pub async fn taken_over(&mut self) {
        if self.takeover.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
