//! Putting a checked local file into the bucket with bounded memory.
//!
//! A file up to `part_size` goes in one PUT. A larger one goes as a
//! multipart upload: parts are read from the file one at a time, each into
//! a buffer taken from the process-wide byte budget, with at most
//! `parts_in_flight` parts of one upload on the wire. Memory is therefore
//! bounded twice: per upload by `parts_in_flight × part_size`, and over all
//! uploads by `buffer_budget`.
//!
//! This is `WriteMultipart` with three things it lacks: a part's buffer is
//! handed back to the budget only when that part is acknowledged (the
//! permit travels with the part's task, which `WriteMultipart` cannot carry);
//! an acknowledged part's buffer, with its permit, is read into again for a
//! later part of the same upload (a fresh 16 MiB buffer is a fresh mapping:
//! 4,096 page faults to fill); and an upload that is dropped half-way (the
//! client left, the server is stopping) is aborted. Either way the object becomes visible only when
//! the store acknowledged the completion, and a failed or abandoned upload
//! leaves neither an object nor an open multipart upload (the parts of one
//! whose abort could not reach the store are left to the bucket's lifecycle
//! rule).

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::{
    Attribute, Attributes, MultipartUpload, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload,
};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::{S3Error, S3Store, SHA256_METADATA};
use crate::storage::StoredPath;

/// Names are never reused (SPEC §2.5), so whoever serves the object
/// straight from the bucket (a CDN, the website endpoint) may cache it forever.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

impl S3Store {
    /// Uploads the complete local `file` (`size` bytes, SHA-256 `sha256`)
    /// as the object of `path`; returns once the store acknowledged it.
    pub async fn put_file(
        &self,
        path: &StoredPath,
        file: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<(), S3Error> {
        let location = self.location(path);
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(SHA256_METADATA.into()),
            sha256.to_owned().into(),
        );
        attributes.insert(Attribute::ContentType, path.image_type().mime().into());
        attributes.insert(Attribute::CacheControl, IMMUTABLE.into());
        let file = open(file, size).await?;
        if size <= self.0.part_size as u64 {
            let permit = self.reserve(size).await?;
            let (_, part) = read_part(file, size, None).await?;
            let options = PutOptions {
                attributes,
                ..PutOptions::default()
            };
            let result = self
                .0
                .store
                .put_opts(&location, PutPayload::from(part), options)
                .await;
            drop(permit);
            return result.map(drop).map_err(S3Error::from_store);
        }
        let options = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let upload = self
            .0
            .store
            .put_multipart_opts(&location, options)
            .await
            .map_err(S3Error::from_store)?;
        let mut parts = Parts::new(upload);
        match self.send_parts(&mut parts, file, size).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Awaited here rather than left to the guard, so that the
                // caller's answer comes after the store dropped the parts.
                parts.abort().await;
                Err(e)
            }
        }
    }

    async fn send_parts(
        &self,
        parts: &mut Parts,
        mut file: File,
        size: u64,
    ) -> Result<(), S3Error> {
        let part_size = self.0.part_size as u64;
        let mut sent = 0;
        while sent < size {
            parts.wait_for_capacity(self.0.parts_in_flight).await?;
            let len = part_size.min(size - sent);
            // A spare's permit covers a whole part, so any later one.
            let (buffer, permit) = match parts.spare.pop() {
                Some((buffer, permit)) => (Some(buffer), permit),
                None => (None, self.reserve(len).await?),
            };
            let (rest, part) = read_part(file, len, buffer).await?;
            file = rest;
            parts.put(part, permit)?;
            sent += len;
        }
        parts.wait_for_capacity(1).await?;
        parts.complete().await
    }

    /// Takes `len` bytes of the buffer budget, waiting for other uploads'
    /// parts to be acknowledged if needed. `len` is at most `part_size`,
    /// which `build` keeps within `u32` and within the budget, so the
    /// request can always be granted.
    async fn reserve(&self, len: u64) -> Result<OwnedSemaphorePermit, S3Error> {
        let permits = u32::try_from(len).unwrap_or(u32::MAX);
        Arc::clone(&self.0.budget)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| S3Error::Io(std::io::Error::other("the buffer budget is closed")))
    }
}

/// Opens the file to upload and checks it still has the size it was
/// measured with, so that the store gets exactly what was checked.
async fn open(file: &Path, size: u64) -> Result<File, S3Error> {
    let file = file.to_path_buf();
    let (file, actual) = tokio::task::spawn_blocking(move || {
        // A stored file, never what a link in the data folder points at.
        let (file, meta) = crate::storage::open_regular(&file)?;
        Ok::<_, std::io::Error>((file, meta.len()))
    })
    .await
    .map_err(std::io::Error::other)??;
    if actual != size {
        return Err(S3Error::SizeChanged {
            expected: size,
            actual,
        });
    }
    Ok(file)
}

/// Reads the next `len` bytes of `file` on a blocking thread: one hand-off
/// per part, not one per 64 KiB. Into `reuse`, an earlier part's buffer,
/// when nothing holds it any more.
async fn read_part(
    mut file: File,
    len: u64,
    reuse: Option<Bytes>,
) -> Result<(File, Bytes), S3Error> {
    let (file, part) = tokio::task::spawn_blocking(move || {
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        let mut buf = match reuse.map(Bytes::try_into_mut) {
            Some(Ok(mut buf)) => {
                buf.clear();
                buf.resize(len, 0);
                buf
            }
            _ => BytesMut::zeroed(len),
        };
        file.read_exact(&mut buf)?;
        Ok::<_, std::io::Error>((file, buf.freeze()))
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok((file, part))
}

/// The parts of one multipart upload on the wire, and the upload itself,
/// which is aborted unless it was completed, even when dropped.
struct Parts {
    /// `None` once completed or aborted.
    upload: Option<Box<dyn MultipartUpload>>,
    /// Each task holds its part's budget permit until the store answered,
    /// then gives it back with the part's bytes.
    in_flight: JoinSet<Sent>,
    /// Buffers of acknowledged parts, with their permits, to read the next
    /// parts into.
    spare: Vec<(Bytes, OwnedSemaphorePermit)>,
}

/// What a part's task ends with: the store's answer, and the part's buffer
/// and permit.
type Sent = (object_store::Result<()>, Bytes, OwnedSemaphorePermit);

impl Parts {
    fn new(upload: Box<dyn MultipartUpload>) -> Self {
        Self {
            upload: Some(upload),
            in_flight: JoinSet::new(),
            spare: Vec::new(),
        }
    }

    fn put(&mut self, part: Bytes, permit: OwnedSemaphorePermit) -> Result<(), S3Error> {
        let Some(upload) = self.upload.as_mut() else {
            return Err(finished());
        };
        let request = upload.put_part(PutPayload::from(part.clone()));
        self.in_flight
            .spawn(async move { (request.await, part, permit) });
        Ok(())
    }

    /// Waits until fewer than `max` parts are on the wire; the first part
    /// that failed fails the upload.
    async fn wait_for_capacity(&mut self, max: usize) -> Result<(), S3Error> {
        while self.in_flight.len() >= max {
            match self.in_flight.join_next().await {
                None => break,
                Some(Ok((Ok(()), part, permit))) => self.spare.push((part, permit)),
                Some(Ok((Err(e), _, _))) => return Err(S3Error::from_store(e)),
                Some(Err(e)) => return Err(std::io::Error::other(e).into()),
            }
        }
        Ok(())
    }

    async fn complete(&mut self) -> Result<(), S3Error> {
        let Some(upload) = self.upload.as_mut() else {
            return Err(finished());
        };
        upload.complete().await.map_err(S3Error::from_store)?;
        self.upload = None;
        Ok(())
    }

    async fn abort(&mut self) {
        // Parts still sending would otherwise land after the abort and be
        // kept by the store.
        self.in_flight.shutdown().await;
        if let Some(mut upload) = self.upload.take() {
            abort_upload(upload.as_mut()).await;
        }
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        let mut in_flight = std::mem::take(&mut self.in_flight);
        // Dropped inside the runtime (a request future dropped); outside it
        // there is nothing left to run the abort on.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                in_flight.shutdown().await;
                abort_upload(upload.as_mut()).await;
            });
        }
    }
}

async fn abort_upload(upload: &mut dyn MultipartUpload) {
    match upload.abort().await {
        Ok(()) => tracing::debug!("multipart upload aborted"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot abort a multipart upload; the bucket's lifecycle rule must remove its parts")
        }
    }
}

/// A part or a completion after the upload was completed or aborted.
fn finished() -> S3Error {
    S3Error::Io(std::io::Error::other(
        "the multipart upload is already finished",
    ))
}
