//! The `s3` backend: [`S3Store`] behind the storage interface.
//!
//! A file is received and checked in a scratch folder on this machine like
//! any upload, then sent to the bucket; the answer waits for the store's
//! acknowledgement, and the scratch file is removed either way. A replica
//! (`sync`, e.g. from a disk cluster during a migration) whose name is
//! already in the bucket is compared by the SHA-256 kept in the object's
//! metadata. There is no quarantine: the store checks its own blocks.

use std::io;
use std::path::PathBuf;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{S3Error, S3Store};
use crate::storage::disk::Disk;
use crate::storage::{Arrival, Backend, Located, Place, Slot, StorageError, StoredPath, Written};

#[derive(Debug)]
pub(crate) struct S3Backend {
    store: S3Store,
    /// Where files are received before they go up.
    scratch: Disk,
}

impl S3Backend {
    pub fn new(store: S3Store, scratch: Disk) -> Self {
        Self { store, scratch }
    }
}

impl From<S3Error> for StorageError {
    fn from(e: S3Error) -> Self {
        StorageError::Store(e)
    }
}

impl Backend for S3Backend {
    fn begin(&self) -> Result<Slot, StorageError> {
        Ok(self.scratch.slot(0))
    }

    fn place<'a>(
        &'a self,
        written: Written,
        path: &'a StoredPath,
        place: Place,
    ) -> BoxFuture<'a, Result<Arrival, StorageError>> {
        async move {
            if let Place::NoReplace = place
                && let Some(there) = self.store.head(path).await?
            {
                return match there.sha256 {
                    Some(sha256) if sha256.eq_ignore_ascii_case(&written.sha256) => {
                        Ok(Arrival::AlreadyPresent)
                    }
                    None if there.size == written.size => Ok(Arrival::AlreadyPresent),
                    _ => Err(StorageError::Conflict),
                };
            }
            self.store
                .put_file(path, &written.tmp.0, written.size, &written.sha256)
                .await?;
            Ok(Arrival::New)
        }
        .boxed()
    }

    fn locate<'a>(&'a self, _path: &'a StoredPath) -> BoxFuture<'a, Located> {
        // Whether the object is there is the store's answer to the GET.
        let store = self.store.clone();
        async move { Located::Object(store) }.boxed()
    }

    fn remove<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Result<(), StorageError>> {
        async move { Ok(self.store.delete(path).await?) }.boxed()
    }

    /// A bucket has no trash here (its own versioning can keep deleted
    /// objects): the object is removed.
    fn trash<'a>(
        &'a self,
        path: &'a StoredPath,
        _deleted: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        self.remove(path)
    }

    fn trashed<'a>(&'a self, _path: &'a StoredPath) -> BoxFuture<'a, Result<bool, StorageError>> {
        async move { Ok(false) }.boxed()
    }

    fn untrash<'a>(&'a self, _path: &'a StoredPath) -> BoxFuture<'a, Result<bool, StorageError>> {
        async move { Ok(false) }.boxed()
    }

    fn purge_trash(&self, _before: i64) -> BoxFuture<'_, Result<usize, StorageError>> {
        async move { Ok(0) }.boxed()
    }

    fn quarantine<'a>(&'a self, _path: &'a StoredPath) -> BoxFuture<'a, io::Result<PathBuf>> {
        async move {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a bucket has no quarantine",
            ))
        }
        .boxed()
    }

    fn probe(&self) -> BoxFuture<'_, io::Result<()>> {
        async move {
            self.scratch.probe().await?;
            self.store.probe().await.map_err(io::Error::other)
        }
        .boxed()
    }

    fn roots(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}
