//! The `volumes` backend: several data folders, usually on several disks
//! (SPEC §11, seed 002's volumes).
//!
//! Each upload goes to the volume with the fewest files being received,
//! ties to the one with most free space; a volume with less free space than
//! `min_free` is skipped, and when every volume is that full an upload is
//! answered 507 before anything is read. Links do not name the volume: a
//! stored file is looked for in each volume, in order (a few `stat`s).
//!
//! The index and the variants live in the first volume, the home; every
//! volume carries the server's marker, its own temporary and quarantine
//! folders, so a file is always renamed within one filesystem.
//!
//! A name lives on one volume only. Two files for one name (two peers'
//! replicas at once, each received on another volume) are placed one after
//! the other under a lock of the name, and the second finds the first
//! wherever it is: the same content is a duplicate, other content a
//! conflict, exactly as one folder answers when its hard link finds the
//! name taken.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::disk::Disk;
use super::{Arrival, Backend, Located, Place, Slot, StorageError, StoredPath, Written};

#[derive(Debug)]
pub(crate) struct Volumes {
    volumes: Vec<Disk>,
    /// A volume with fewer free bytes than this takes no new file.
    min_free: u64,
    /// Held from choosing a volume until the new file is counted on it, so
    /// that uploads starting at once do not all see the same counts.
    choosing: Mutex<()>,
    /// Locks of names being placed, a name's lock chosen by its hash:
    /// placing looks in every volume and then writes to one, which must not
    /// interleave with another placing of the same name.
    placing: Vec<tokio::sync::Mutex<()>>,
}

/// Locks of [`Volumes::placing`]; names sharing one wait for each other,
/// which only costs when two files are placed in the same instant.
const PLACING_LOCKS: usize = 64;

impl Volumes {
    pub fn new(volumes: Vec<Disk>, min_free: u64) -> Self {
        Self {
            volumes,
            min_free,
            choosing: Mutex::new(()),
            placing: (0..PLACING_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// The lock taken while `path` is placed.
    fn placing(&self, path: &StoredPath) -> &tokio::sync::Mutex<()> {
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(path.file_name());
        &self.placing[hash as usize % self.placing.len()]
    }

    /// The volume that holds `path`, with the file and its metadata.
    async fn find(&self, path: &StoredPath) -> Option<(&Disk, PathBuf, std::fs::Metadata)> {
        for volume in &self.volumes {
            if let Some((file, meta)) = volume.find(path).await {
                return Some((volume, file, meta));
            }
        }
        None
    }

    /// The number of the volume a new file goes to, if any has room.
    fn pick(&self) -> Option<usize> {
        // statfs is a quick call on a local filesystem; it runs here, on
        // the request's thread, once per volume and upload.
        self.volumes
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v.free_space() {
                Ok(free) if free >= self.min_free => Some((i, v.writing(), free)),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(volume = %v.root().display(), error = %e, "cannot read a volume's free space; skipped");
                    None
                }
            })
            .min_by_key(|&(_, writing, free)| (writing, std::cmp::Reverse(free)))
            .map(|(i, _, _)| i)
    }

    fn volume(&self, number: usize) -> Result<&Disk, StorageError> {
        self.volumes
            .get(number)
            .ok_or_else(|| StorageError::Io(io::Error::other("no such volume")))
    }
}

impl Backend for Volumes {
    fn begin(&self) -> Result<Slot, StorageError> {
        let _choosing = self.choosing.lock().unwrap_or_else(PoisonError::into_inner);
        let number = self.pick().ok_or_else(|| {
            StorageError::DiskFull(io::Error::new(
                io::ErrorKind::StorageFull,
                "every volume is below its minimum free space",
            ))
        })?;
        Ok(self.volume(number)?.publishing_slot(number))
    }

    fn place<'a>(
        &'a self,
        written: Written,
        path: &'a StoredPath,
        place: Place,
    ) -> BoxFuture<'a, Result<Arrival, StorageError>> {
        async move {
            let volume = self.volume(written.writing.volume())?;
            let _placing = self.placing(path).lock().await;
            // A replica may already be on another volume than the one it
            // was received on.
            if matches!(place, Place::NoReplace)
                && let Some((holder, file, _)) = self.find(path).await
                && holder.root() != volume.root()
            {
                let sha256 = written.sha256.clone();
                let same = tokio::task::spawn_blocking(move || super::hash_file(&file))
                    .await
                    .map_err(io::Error::other)??
                    == sha256;
                return if same {
                    Ok(Arrival::AlreadyPresent)
                } else {
                    Err(StorageError::Conflict)
                };
            }
            volume.place(written, path, place).await
        }
        .boxed()
    }

    fn locate<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Located> {
        async move {
            match self.find(path).await {
                Some((_, file, meta)) => Located::File { file, meta },
                None => Located::Missing,
            }
        }
        .boxed()
    }

    fn remove<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Result<(), StorageError>> {
        async move {
            for volume in &self.volumes {
                volume.remove(path).await?;
            }
            Ok(())
        }
        .boxed()
    }

    /// Each volume has its own trash: a delete stays a rename.
    fn trash<'a>(
        &'a self,
        path: &'a StoredPath,
        deleted: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        async move {
            for volume in &self.volumes {
                volume.trash(path, deleted).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn trashed<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Result<bool, StorageError>> {
        async move {
            for volume in &self.volumes {
                if volume.trashed(path).await? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        .boxed()
    }

    fn untrash<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Result<bool, StorageError>> {
        async move {
            for volume in &self.volumes {
                if volume.untrash(path).await? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        .boxed()
    }

    fn purge_trash(&self, before: i64) -> BoxFuture<'_, Result<usize, StorageError>> {
        async move {
            let mut purged = 0;
            for volume in &self.volumes {
                purged += volume.purge_trash(before).await?;
            }
            Ok(purged)
        }
        .boxed()
    }

    fn quarantine<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, io::Result<PathBuf>> {
        async move {
            match self.find(path).await {
                Some((volume, _, _)) => volume.quarantine(path).await,
                None => Err(io::ErrorKind::NotFound.into()),
            }
        }
        .boxed()
    }

    /// Writable while at least one volume is: the others are reported.
    fn probe(&self) -> BoxFuture<'_, io::Result<()>> {
        async move {
            let mut last = Ok(());
            let mut any = false;
            for volume in &self.volumes {
                match volume.probe().await {
                    Ok(()) => any = true,
                    Err(e) => {
                        tracing::error!(volume = %volume.root().display(), error = %e, "a volume is not writable");
                        last = Err(e);
                    }
                }
            }
            if any { Ok(()) } else { last }
        }
        .boxed()
    }

    fn roots(&self) -> Vec<PathBuf> {
        self.volumes
            .iter()
            .map(|v| v.root().to_path_buf())
            .collect()
    }
}
