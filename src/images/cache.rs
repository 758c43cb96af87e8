//! The variants kept on this server's disk (SPEC §2.7): made on first
//! request, each kept as a file, never replicated.
//!
//! Generation runs on blocking threads, at most `images.workers` at once;
//! at most `images.queue` more wait for a worker, and a request beyond that
//! is refused ([`Busy`]) rather than queued without bound, since anyone may
//! ask for any variant of any name. Concurrent requests for one variant
//! share one generation: it runs as a task of its own (a client that goes
//! away does not cancel it for the others) and leaves the map of
//! generations in flight when it ends, as read-through does.
//!
//! A variant that cannot be made (the original does not decode, is
//! animated, or costs more than its limits) is remembered: a small file,
//! the failure record, holding the reason, is written where the caller
//! says (beside the variants), and while it is there no variant of that
//! original is tried again, by this process or after a restart. A failure
//! to read the original or to write is not remembered: it may pass.
//!
//! A variant is written to a temporary file and renamed into place, so a
//! half-written one is never served. The folder is held under
//! `images.variants_max_bytes` by a check after each write: past the cap,
//! the oldest variants (by modification time) go until it is at 90 %.
//!
//! This module works with paths it is given; which name maps to which path
//! and what the client is answered are the caller's business.

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::variant::{self, DecodeLimits, Request, VariantError};
use crate::metrics::Latency;

/// The folder below the variants' folder where variants are written first.
const TMP_DIR: &str = ".tmp";

/// Buffer of the reader the decoders read the original through.
const READ_BUF: usize = 64 * 1024;

/// What became of a variant asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It is on disk now: serve it.
    Made,
    /// It cannot be made (why is logged, and remembered when it is the
    /// original's fault): send the client to the original instead.
    Fallback,
}

/// One variant to make.
#[derive(Debug, Clone)]
pub struct Job {
    /// Names it in the logs.
    pub label: String,
    /// The original, a file on this machine.
    pub original: PathBuf,
    /// Where the variant goes.
    pub target: PathBuf,
    /// Where the failure record of the original goes (one for all its
    /// variants: what makes one fail makes all fail).
    pub record: PathBuf,
    pub request: Request,
}

/// Every worker is busy and the queue is full.
#[derive(Debug, thiserror::Error)]
#[error("too many variants are being made; try again shortly")]
pub struct Busy;

type Pending = Shared<BoxFuture<'static, Outcome>>;

/// How the cache is sized.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub workers: usize,
    pub queue: usize,
    pub max_bytes: u64,
    pub limits: DecodeLimits,
}

#[derive(Debug, Clone)]
pub struct VariantCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    settings: CacheSettings,
    in_flight: Mutex<HashMap<PathBuf, Pending>>,
    /// Generations admitted (running or waiting): `workers + queue`.
    admitted: Arc<Semaphore>,
    /// Generations running: `workers`.
    running: Arc<Semaphore>,
    /// Bytes in the folder, counted on the first write; `None` until then.
    total: Mutex<Option<u64>>,
    /// Variants made since the start, for the logs.
    made: AtomicU64,
    latency: Latency,
}

impl VariantCache {
    /// A cache keeping its files below `root` (created when first
    /// written); temporary files of an earlier process are removed.
    pub fn new(root: PathBuf, settings: CacheSettings, latency: Latency) -> Self {
        if let Ok(entries) = std::fs::read_dir(root.join(TMP_DIR)) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Self {
            inner: Arc::new(Inner {
                root,
                admitted: Arc::new(Semaphore::new(settings.workers + settings.queue)),
                running: Arc::new(Semaphore::new(settings.workers)),
                settings,
                in_flight: Mutex::default(),
                total: Mutex::new(None),
                made: AtomicU64::new(0),
                latency,
            }),
        }
    }

    /// Makes the variant `job` unless it is already there or its original
    /// has a failure record; joins the generation of the same target
    /// already in flight, if there is one.
    pub async fn make(&self, job: Job) -> Result<Outcome, Busy> {
        let pending = {
            let mut in_flight = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match in_flight.get(&job.target) {
                Some(pending) => pending.clone(),
                None => {
                    let target = job.target.clone();
                    let pending = self.start(job)?;
                    in_flight.insert(target, pending.clone());
                    pending
                }
            }
        };
        Ok(pending.await)
    }

    /// Starts a generation as a task, if there is room in the queue; it
    /// removes itself from the map when done (it cannot before it is in
    /// it: the map is locked now).
    fn start(&self, job: Job) -> Result<Pending, Busy> {
        let admitted = self
            .inner
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let _admitted = admitted;
            let target = job.target.clone();
            let outcome = inner.clone().run(job).await;
            inner
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&target);
            outcome
        });
        Ok(async move {
            task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "variant task failed");
                Outcome::Fallback
            })
        }
        .boxed()
        .shared())
    }
}

impl Inner {
    /// Waits for a worker, then generates on a blocking thread.
    async fn run(self: Arc<Self>, job: Job) -> Outcome {
        let Ok(running) = self.running.clone().acquire_owned().await else {
            return Outcome::Fallback;
        };
        tokio::task::spawn_blocking(move || {
            let _running = running;
            self.generate(&job)
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "variant generation failed");
            Outcome::Fallback
        })
    }

    /// Reads, renders and writes one variant (on a blocking thread).
    fn generate(&self, job: &Job) -> Outcome {
        let Job {
            label,
            original,
            target,
            record,
            request,
        } = job;
        // A generation that ended just before this one began may have made
        // it, or found that it cannot be made.
        if target.is_file() {
            return Outcome::Made;
        }
        if record.is_file() {
            return Outcome::Fallback;
        }
        let started = Instant::now();
        let file = match std::fs::File::open(original) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(variant = %label, error = %e, "the original could not be read; the client is sent to it");
                return Outcome::Fallback;
            }
        };
        let encoded = match variant::render(
            BufReader::with_capacity(READ_BUF, file),
            *request,
            self.settings.limits,
        ) {
            Ok(encoded) => encoded,
            Err(VariantError::Read(e)) => {
                tracing::warn!(variant = %label, error = %e, "the original could not be read; the client is sent to it");
                return Outcome::Fallback;
            }
            Err(e) => {
                tracing::info!(
                    variant = %label,
                    reason = %e,
                    ms = started.elapsed().as_millis(),
                    "variant not made; remembered, the client is sent to the original"
                );
                self.remember(label, record, &e);
                return Outcome::Fallback;
            }
        };
        if let Err(e) = self.write(target, &encoded) {
            tracing::warn!(variant = %label, error = %e, "variant could not be written; the client is sent to the original");
            return Outcome::Fallback;
        }
        // The original deleted while this ran: its delete has already
        // swept the folder, so this one goes now.
        if !original.exists() {
            let _ = std::fs::remove_file(target);
            return Outcome::Fallback;
        }
        self.latency.variant(started.elapsed());
        let made = self.made.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            variant = %label,
            bytes = encoded.len(),
            ms = started.elapsed().as_millis(),
            made,
            "variant made"
        );
        self.account(encoded.len() as u64);
        Outcome::Made
    }

    /// Writes the failure record of `label`'s original, so that it is not
    /// decoded again; one that cannot be written only costs another try.
    fn remember(&self, label: &str, record: &Path, why: &VariantError) {
        let text = format!("{why}\n");
        match self.write(record, text.as_bytes()) {
            Ok(()) => self.account(text.len() as u64),
            Err(e) => {
                tracing::warn!(variant = label, error = %e, "the failure record could not be written");
            }
        }
    }

    /// Writes `bytes` at `target` through a temporary file.
    fn write(&self, target: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp_dir = self.root.join(TMP_DIR);
        std::fs::create_dir_all(&tmp_dir)?;
        let tmp = tmp_dir.join(format!("{}.part", Uuid::new_v4()));
        let written = (|| {
            let mut file = std::fs::File::create_new(&tmp)?;
            file.write_all(bytes)?;
            // Renamed unsynced, a crash could leave an empty file under
            // the variant's name, served as is from then on.
            file.sync_data()?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&tmp, target)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Counts `added` bytes; past the cap, removes the oldest variants.
    fn account(&self, added: u64) {
        let mut total = self.total.lock().unwrap_or_else(PoisonError::into_inner);
        let now = match *total {
            Some(bytes) => bytes + added,
            // The first write counts the folder (the new file included).
            None => variants(&self.root).iter().map(|v| v.size).sum(),
        };
        *total = Some(if now > self.settings.max_bytes {
            self.evict()
        } else {
            now
        });
    }

    /// Removes the oldest variants until the folder is at 90 % of its cap;
    /// returns the bytes left.
    fn evict(&self) -> u64 {
        let mut all = variants(&self.root);
        all.sort_by_key(|v| v.modified);
        let mut left: u64 = all.iter().map(|v| v.size).sum();
        let goal = self.settings.max_bytes / 10 * 9;
        let mut removed = 0;
        for v in all {
            if left <= goal {
                break;
            }
            if std::fs::remove_file(&v.path).is_ok() {
                left -= v.size;
                removed += 1;
            }
        }
        tracing::info!(
            removed,
            bytes_left = left,
            "variants over their size cap; the oldest removed"
        );
        left
    }
}

/// A variant file on disk.
struct Found {
    path: PathBuf,
    size: u64,
    modified: SystemTime,
}

/// Every variant below `root` (temporary files left out).
fn variants(root: &Path) -> Vec<Found> {
    let mut out = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                if entry.file_name() != TMP_DIR {
                    folders.push(entry.path());
                }
            } else {
                out.push(Found {
                    path: entry.path(),
                    size: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
    }
    out
}
