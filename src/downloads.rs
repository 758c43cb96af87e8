//! Download counts: the served GETs of each stored file, counted in memory
//! on the GET path and added to the index's `downloads` table in batches,
//! so that a GET costs a lock and a map update, never a write.
//!
//! A batch is flushed every `[downloads] flush_secs`, as soon as
//! `max_pending` names wait, before counts are read (so a reader sees every
//! GET answered before it asked), and at a graceful stop; a kill loses at
//! most what waited since the last flush. The names waiting are bounded: at
//! `max_pending` the flusher is woken, and while flushes cannot keep up (a
//! stalled disk) a name past twice that many is not counted, so a flood of
//! GETs of many names cannot grow memory without end.
//!
//! Without an index (a bucket-backed server keeps none) nothing is counted
//! and reads are refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::DownloadSettings;
use crate::index::{Index, IndexError};
use crate::storage::StoredPath;

/// Why counts cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CountsError {
    #[error("download counts are kept in the index, and a bucket-backed server has none")]
    NoIndex,
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The counts of this server; cheap to clone (one shared state).
#[derive(Debug, Clone)]
pub struct Downloads {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    index: Index,
    /// Whether served GETs are counted (`[downloads] count`).
    counting: bool,
    /// Served GETs per name since the last flush.
    pending: Mutex<HashMap<StoredPath, u64>>,
    max_pending: usize,
    /// Wakes the flusher once `max_pending` names wait.
    full: Notify,
    /// One flush at a time: a reader's flush waits for a running one.
    flushing: tokio::sync::Mutex<()>,
    /// GETs not counted since the last flush: too many names waited.
    dropped: AtomicU64,
}

impl Downloads {
    pub fn new(index: Option<Index>, settings: &DownloadSettings) -> Self {
        Self {
            inner: index.map(|index| {
                Arc::new(Inner {
                    index,
                    counting: settings.count,
                    pending: Mutex::new(HashMap::new()),
                    max_pending: settings.max_pending.max(1),
                    full: Notify::new(),
                    flushing: tokio::sync::Mutex::new(()),
                    dropped: AtomicU64::new(0),
                })
            }),
        }
    }

    /// Counts one served GET of `path`. Never waits for a write.
    pub fn count(&self, path: &StoredPath) {
        let Some(inner) = self.inner.as_ref().filter(|i| i.counting) else {
            return;
        };
        let mut pending = inner.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = pending.get_mut(path) {
            *n = n.saturating_add(1);
            return;
        }
        let waiting = pending.len();
        if waiting >= inner.max_pending.saturating_mul(2) {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.insert(path.clone(), 1);
        if waiting + 1 >= inner.max_pending {
            inner.full.notify_one();
        }
    }

    /// Adds what waits to the index; returns once that is durable. A batch
    /// the index refused waits again for the next flush.
    pub async fn flush(&self) -> Result<(), IndexError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let _one = inner.flushing.lock().await;
        let batch: Vec<(StoredPath, u64)> = {
            let mut pending = inner.pending.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::take(&mut *pending).into_iter().collect()
        };
        let dropped = inner.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                gets = dropped,
                max_pending = inner.max_pending,
                "served GETs not counted: too many names waited for a flush"
            );
        }
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = inner.index.add_downloads(batch.clone()).await {
            let mut pending = inner.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (path, n) in batch {
                let count = pending.entry(path).or_insert(0);
                *count = count.saturating_add(n);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Flushes every `every`, and early when `max_pending` names wait;
    /// runs until aborted (the stop flushes once more).
    pub async fn run(self, every: Duration) {
        let Some(inner) = self.inner.clone().filter(|i| i.counting) else {
            return;
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = inner.full.notified() => {}
            }
            if let Err(e) = self.flush().await {
                tracing::error!(error = %e, "download counts could not be added to the index");
            }
        }
    }

    /// The served GETs of `path` counted here, those not flushed yet
    /// included.
    pub async fn of(&self, path: &StoredPath) -> Result<u64, CountsError> {
        let index = self.flushed().await?;
        let path = path.clone();
        read(move || index.downloads(&path)).await
    }

    /// The `top` most read names of `day` (a day number), most read first.
    pub async fn top(&self, day: u32, top: usize) -> Result<Vec<(StoredPath, u64)>, CountsError> {
        let index = self.flushed().await?;
        read(move || index.top_downloads(day, top)).await
    }

    /// The index, once everything counted so far is in it.
    async fn flushed(&self) -> Result<Index, CountsError> {
        let inner = self.inner.as_ref().ok_or(CountsError::NoIndex)?;
        self.flush().await?;
        Ok(inner.index.clone())
    }
}

/// Runs an index read on a blocking thread.
async fn read<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, CountsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| IndexError::Io(std::io::Error::other(e)))?
        .map_err(CountsError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_pending: usize) -> DownloadSettings {
        DownloadSettings {
            count: true,
            flush_every: Duration::from_secs(3600),
            max_pending,
        }
    }

    fn name(n: u8) -> StoredPath {
        StoredPath::parse(&format!(
            "2026/12/5/00000000-0000-4000-8000-0000000000{n:02x}.jpg"
        ))
        .expect("a stored name")
    }

    fn open(dir: &std::path::Path) -> Index {
        Index::open(dir, &[dir.to_path_buf()]).expect("index")
    }

    #[tokio::test]
    async fn downloads_counted_in_memory_are_read_with_the_flushed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let downloads = Downloads::new(Some(open(dir.path())), &settings(100));
        for _ in 0..3 {
            downloads.count(&name(1));
        }
        downloads.count(&name(2));
        downloads.flush().await.expect("flush");
        downloads.count(&name(1));
        assert_eq!(downloads.of(&name(1)).await.expect("read"), 4);
        assert_eq!(downloads.of(&name(3)).await.expect("read"), 0);
        let top = downloads.top(20261205, 5).await.expect("top");
        assert_eq!(top, [(name(1), 4), (name(2), 1)]);
        assert!(downloads.top(20261206, 5).await.expect("top").is_empty());
    }

    #[tokio::test]
    async fn downloads_of_many_names_are_bounded_and_wake_the_flusher() {
        let dir = tempfile::tempdir().expect("tempdir");
        let downloads = Downloads::new(Some(open(dir.path())), &settings(2));
        let inner = downloads.inner.clone().expect("an index");
        downloads.count(&name(1));
        downloads.count(&name(2));
        // The second name made a flush due; the permit waits for the flusher.
        tokio::time::timeout(Duration::from_secs(5), inner.full.notified())
            .await
            .expect("woken");
        for n in 3..10 {
            downloads.count(&name(n));
        }
        // A name already waiting is still counted past the bound.
        downloads.count(&name(1));
        let waiting = inner.pending.lock().expect("lock").clone();
        assert_eq!(waiting.len(), 4, "{waiting:?}");
        assert_eq!(waiting[&name(1)], 2);
        assert_eq!(inner.dropped.load(Ordering::Relaxed), 5);
        downloads.flush().await.expect("flush");
        assert!(inner.pending.lock().expect("lock").is_empty());
        assert_eq!(inner.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(downloads.of(&name(9)).await.expect("read"), 0);
    }

    #[tokio::test]
    async fn downloads_off_or_without_an_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let off = Downloads::new(
            Some(open(dir.path())),
            &DownloadSettings {
                count: false,
                ..settings(10)
            },
        );
        off.count(&name(1));
        assert_eq!(off.of(&name(1)).await.expect("read"), 0);
        let none = Downloads::new(None, &settings(10));
        none.count(&name(1));
        assert!(matches!(none.of(&name(1)).await, Err(CountsError::NoIndex)));
    }
}
