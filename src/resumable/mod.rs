//! Partial uploads (SPEC §13): their staged bytes, durable offsets, limits
//! and expiry. Each data folder (each volume) has its own `.staging/`
//! folder, which nothing serves, indexes or replicates; an upload there is
//! `{id}.part` (the bytes) and `{id}.json` (its [`Info`], the committed
//! offset among them).
//!
//! The offset is durable: written bytes are synced before the info naming
//! the new offset replaces the old one by a rename, and only then is a
//! PATCH answered. Bytes past the recorded offset (a process killed in the
//! middle of a chunk) are cut away when the upload is next written.
//!
//! The bytes are hashed (SHA-256) as they are committed, in memory only,
//! so a finished upload is not read again for its hash; bytes cut back
//! take the hash back with them. When no state matches the committed
//! offset (after a restart), completion reads the bytes instead.
//!
//! This room does not speak HTTP and does not store finished files: the
//! tus handler (`http/tus.rs`) hands a finished upload to storage (which
//! links it when it can, or reads it back through the upload pipeline),
//! then records its answer here until it expires. A finished upload's
//! bytes are never written again, so a link to them stays the file stored.

mod staged;

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedMutexGuard, watch};

use crate::auth::Tokens;
use crate::config::ResumableSettings;
use crate::storage::DiskTasks;

pub use staged::Patch;

/// Name of the staging folder in each data folder.
pub const STAGING_DIR: &str = ".staging";
/// How long a PATCH waits for the one it takes over to stop and record its
/// offset before it answers 423 (a completion in progress does not stop).
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);
/// How often expired uploads are looked for.
const REAP_EVERY: Duration = Duration::from_secs(60);

/// What is known of one upload; its `.json` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    /// Declared length; `None` until a deferred length is declared.
    pub length: Option<u64>,
    /// Committed (durable) offset.
    pub offset: u64,
    /// SHA-256 of the credential that created the upload, hex.
    pub owner: String,
    /// The client address, for the per-client limit.
    pub client: Option<String>,
    /// `Upload-Metadata` as the client sent it.
    pub metadata: Option<String>,
    /// Unix seconds after which the upload is removed.
    pub expires: i64,
    /// Largest length this upload may have (the server's and a token's).
    pub limit: u64,
    /// The image types it may be (extensions), checked at completion.
    pub types: Vec<String>,
    /// The token `jti` whose file count this upload took, to give back if
    /// the upload ends without a stored file.
    pub counted: Option<String>,
    /// The answer of a finished upload.
    pub finished: Option<Finished>,
}

/// What the last PATCH of a finished upload answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finished {
    pub link: String,
    /// The per-file JSON entry of a multipart upload's answer.
    pub result: String,
}

impl Info {
    /// Bytes this upload holds or may come to hold in staging.
    fn reserved(&self) -> u64 {
        match (&self.finished, self.length) {
            (Some(_), _) => 0,
            (None, Some(length)) => length,
            (None, None) => self.offset,
        }
    }
}

/// Why an upload cannot be created or written.
#[derive(Debug, thiserror::Error)]
pub enum ResumableError {
    /// 507: staging is full, for everyone or for this client.
    #[error("{0}")]
    Full(String),
    /// 423: another PATCH holds the upload and did not give it up.
    #[error("another request is still writing this upload; try again shortly")]
    Locked,
    /// 400: a length other than the one declared before.
    #[error("Upload-Length differs from the length declared before")]
    LengthChanged,
    /// The upload was removed (terminated, expired) meanwhile.
    #[error("no such upload")]
    Gone,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One partial or finished upload.
#[derive(Debug)]
pub struct Upload {
    pub id: String,
    dir: PathBuf,
    info: Mutex<Info>,
    /// Held by the request writing the upload.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Bumped by a request that takes the upload over; the writer stops.
    takeover: watch::Sender<u64>,
    /// SHA-256 of the bytes up to the committed offset, as they were
    /// committed; in memory only, so after a restart the bytes are read
    /// again at completion.
    hashed: Mutex<Option<Hashed>>,
}

/// A SHA-256 state and the offset it has hashed up to.
#[derive(Debug, Clone)]
struct Hashed {
    offset: u64,
    state: Sha256,
}

impl Upload {
    /// A copy of what is recorded now.
    pub fn info(&self) -> Info {
        lock(&self.info).clone()
    }

    /// The hash state of the first `offset` bytes, if it is known.
    fn hashed_to(&self, offset: u64) -> Option<Sha256> {
        lock(&self.hashed)
            .as_ref()
            .filter(|h| h.offset == offset)
            .map(|h| h.state.clone())
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counts {
    pub started: AtomicU64,
    pub completed: AtomicU64,
    pub expired: AtomicU64,
}

/// Every staged upload of this server.
#[derive(Debug, Clone)]
pub struct Resumable {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dirs: Vec<PathBuf>,
    settings: ResumableSettings,
    fsync: bool,
    tokens: Tokens,
    /// Where staged bytes are written, as received uploads are.
    disk: DiskTasks,
    uploads: Mutex<HashMap<String, Arc<Upload>>>,
    counts: Counts,
}

/// A new upload's settings, from the POST that creates it.
pub struct NewUpload {
    pub length: Option<u64>,
    pub owner: String,
    pub client: Option<String>,
    pub metadata: Option<String>,
    pub limit: u64,
    pub types: Vec<String>,
    pub counted: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Resumable {
    /// Opens (creating) the staging folder of each data folder and loads
    /// the uploads a previous process left there.
    pub(crate) fn open(
        data_dirs: &[PathBuf],
        settings: ResumableSettings,
        fsync: bool,
        tokens: Tokens,
        disk: DiskTasks,
    ) -> io::Result<Self> {
        let dirs: Vec<PathBuf> = data_dirs.iter().map(|d| d.join(STAGING_DIR)).collect();
        let mut uploads = HashMap::new();
        for dir in &dirs {
            std::fs::create_dir_all(dir)?;
            for (id, info) in staged::load(dir)? {
                let upload = Self::upload(id.clone(), dir.clone(), info);
                uploads.insert(id, Arc::new(upload));
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                dirs,
                settings,
                fsync,
                tokens,
                disk,
                uploads: Mutex::new(uploads),
                counts: Counts::default(),
            }),
        })
    }

    fn upload(id: String, dir: PathBuf, info: Info) -> Upload {
        Upload {
            id,
            dir,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            takeover: watch::Sender::new(0),
            // Bytes are cut back to the offset before any is written, so
            // an empty upload's hash is known even after a restart.
            hashed: Mutex::new((info.offset == 0).then(|| Hashed {
                offset: 0,
                state: Sha256::new(),
            })),
            info: Mutex::new(info),
        }
    }

    pub fn counts(&self) -> &Counts {
        &self.inner.counts
    }

    /// Bytes now in staging (committed offsets of partial uploads).
    pub fn staged_bytes(&self) -> u64 {
        lock(&self.inner.uploads)
            .values()
            .map(|u| {
                let info = lock(&u.info);
                if info.finished.is_some() {
                    0
                } else {
                    info.offset
                }
            })
            .sum()
    }

    /// Checks that `more` bytes fit in staging, in total and for `client`.
    fn fits(&self, more: u64, client: Option<&str>, except: Option<&str>) -> Result<(), String> {
        let settings = &self.inner.settings;
        let uploads = lock(&self.inner.uploads);
        let (mut total, mut mine) = (0u64, 0u64);
        for (id, upload) in uploads.iter() {
            if Some(id.as_str()) == except {
                continue;
            }
            let info = lock(&upload.info);
            let reserved = info.reserved();
            total = total.saturating_add(reserved);
            if client.is_some() && info.client.as_deref() == client {
                mine = mine.saturating_add(reserved);
            }
        }
        if total.saturating_add(more) > settings.max_bytes {
            return Err(format!(
                "the staging space for resumable uploads is full ({} bytes); try again later",
                settings.max_bytes
            ));
        }
        if client.is_some() && mine.saturating_add(more) > settings.max_bytes_per_client {
            return Err(format!(
                "this client's resumable uploads already hold {mine} bytes \
                 (at most {} per client); finish or terminate one first",
                settings.max_bytes_per_client
            ));
        }
        Ok(())
    }

    /// Creates an upload, if staging has room for its declared length.
    pub async fn create(&self, new: NewUpload) -> Result<Arc<Upload>, ResumableError> {
        self.fits(new.length.unwrap_or(0), new.client.as_deref(), None)
            .map_err(ResumableError::Full)?;
        let id = staged::new_id();
        let dir = self.pick_dir().await;
        let info = Info {
            length: new.length,
            offset: 0,
            owner: new.owner,
            client: new.client,
            metadata: new.metadata,
            expires: self.expiry(),
            limit: new.limit,
            types: new.types,
            counted: new.counted,
            finished: None,
        };
        let fsync = self.inner.fsync;
        {
            let (dir, id, info) = (dir.clone(), id.clone(), info.clone());
            tokio::task::spawn_blocking(move || staged::create(&dir, &id, &info, fsync))
                .await
                .map_err(io::Error::other)??;
        }
        let upload = Arc::new(Self::upload(id.clone(), dir, info));
        lock(&self.inner.uploads).insert(id, upload.clone());
        self.inner.counts.started.fetch_add(1, Ordering::Relaxed);
        Ok(upload)
    }

    /// The staging folder with the most free space.
    async fn pick_dir(&self) -> PathBuf {
        let dirs = self.inner.dirs.clone();
        let first = dirs.first().cloned().unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            dirs.into_iter()
                .max_by_key(|d| fs4::available_space(d).unwrap_or(0))
        })
        .await
        .ok()
        .flatten()
        .unwrap_or(first)
    }

    fn expiry(&self) -> i64 {
        let secs = i64::try_from(self.inner.settings.expire.as_secs()).unwrap_or(i64::MAX);
        crate::auth::now().saturating_add(secs)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Upload>> {
        lock(&self.inner.uploads).get(id).cloned()
    }

    /// Takes `upload` over for writing: a request writing it now is told to
    /// stop (it records what it received), then its place is taken; 423 if
    /// it does not give it up in time.
    async fn take_over(&self, upload: &Upload) -> Result<OwnedMutexGuard<()>, ResumableError> {
        upload.takeover.send_modify(|n| *n = n.wrapping_add(1));
        let guard = tokio::time::timeout(TAKEOVER_WAIT, upload.writer.clone().lock_owned())
            .await
            .map_err(|_| ResumableError::Locked)?;
        if self.get(&upload.id).is_none() {
            return Err(ResumableError::Gone);
        }
        Ok(guard)
    }

    /// Starts writing `upload` at its committed offset (cutting away any
    /// bytes a killed process left past it).
    pub async fn patch(&self, upload: &Arc<Upload>) -> Result<Patch, ResumableError> {
        let guard = self.take_over(upload).await?;
        Patch::open(self.clone(), upload.clone(), guard).await
    }

    /// Records `info` as `upload`'s, durably.
    async fn record(&self, upload: &Upload, info: Info) -> io::Result<()> {
        let (dir, id, fsync) = (upload.dir.clone(), upload.id.clone(), self.inner.fsync);
        let written = info.clone();
        tokio::task::spawn_blocking(move || staged::write_info(&dir, &id, &written, fsync))
            .await
            .map_err(io::Error::other)??;
        *lock(&upload.info) = info;
        Ok(())
    }

    /// Declares the length of an upload created without one.
    pub async fn declare_length(&self, patch: &Patch, length: u64) -> Result<(), ResumableError> {
        let upload = patch.upload();
        let info = upload.info();
        if let Some(known) = info.length {
            return if known == length {
                Ok(())
            } else {
                Err(ResumableError::LengthChanged)
            };
        }
        let more = length.saturating_sub(info.offset);
        self.fits(more, info.client.as_deref(), Some(&upload.id))
            .map_err(ResumableError::Full)?;
        let mut info = info;
        info.length = Some(length);
        self.record(upload, info).await?;
        Ok(())
    }

    /// Checks that `more` bytes may still be staged for `upload` (an
    /// upload of deferred length grows as it arrives).
    pub fn may_grow(&self, upload: &Upload, more: u64) -> Result<(), ResumableError> {
        let info = upload.info();
        if info.length.is_some() {
            return Ok(());
        }
        self.fits(
            info.offset.saturating_add(more),
            info.client.as_deref(),
            Some(&upload.id),
        )
        .map_err(ResumableError::Full)
    }

    /// Records the answer of a finished upload and removes its bytes; the
    /// answer is kept until it expires.
    pub async fn finish(&self, upload: &Upload, finished: Finished) -> io::Result<()> {
        let mut info = upload.info();
        info.finished = Some(finished);
        info.counted = None;
        info.expires = self.expiry();
        self.record(upload, info).await?;
        self.inner.counts.completed.fetch_add(1, Ordering::Relaxed);
        let (dir, id) = (upload.dir.clone(), upload.id.clone());
        tokio::task::spawn_blocking(move || staged::remove_part(&dir, &id))
            .await
            .map_err(io::Error::other)?
    }

    /// Removes `upload` and its bytes (terminated, refused at completion or
    /// expired); a token's file taken for it is given back.
    pub async fn remove(&self, upload: &Upload) -> io::Result<()> {
        let info = upload.info();
        lock(&self.inner.uploads).remove(&upload.id);
        if let Some(jti) = &info.counted {
            self.inner.tokens.give_back_jti(jti).await;
        }
        let (dir, id) = (upload.dir.clone(), upload.id.clone());
        tokio::task::spawn_blocking(move || staged::remove(&dir, &id))
            .await
            .map_err(io::Error::other)?
    }

    /// Terminates `upload` (tus `DELETE`): a request writing it is stopped
    /// first.
    pub async fn terminate(&self, upload: &Upload) -> Result<(), ResumableError> {
        let _guard = self.take_over(upload).await?;
        self.remove(upload).await?;
        Ok(())
    }

    /// Removes every upload past its expiry that no request is writing.
    pub async fn reap(&self) -> usize {
        let now = crate::auth::now();
        let expired: Vec<Arc<Upload>> = lock(&self.inner.uploads)
            .values()
            .filter(|u| lock(&u.info).expires < now)
            .cloned()
            .collect();
        let mut removed = 0;
        for upload in expired {
            // One being written is not abandoned: its next commit renews it.
            let Ok(_guard) = upload.writer.clone().try_lock_owned() else {
                continue;
            };
            if upload.info().expires >= now {
                continue;
            }
            match self.remove(&upload).await {
                Ok(()) => {
                    tracing::info!(id = %upload.id, "an expired resumable upload was removed");
                    if upload.info().finished.is_none() {
                        self.inner.counts.expired.fetch_add(1, Ordering::Relaxed);
                    }
                    removed += 1;
                }
                Err(e) => {
                    tracing::error!(id = %upload.id, error = %e, "an expired resumable upload could not be removed");
                }
            }
        }
        removed
    }

    /// Removes expired uploads now and every [`REAP_EVERY`] (or sooner,
    /// when uploads expire sooner than that), until the task is dropped.
    pub async fn run_reaper(self) {
        let every = REAP_EVERY.min(self.inner.settings.expire);
        loop {
            self.reap().await;
            tokio::time::sleep(every).await;
        }
    }
}
