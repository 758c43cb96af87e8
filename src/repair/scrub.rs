//! Scrub (SPEC §4a): a slow background pass, every `[repair]
//! scrub_interval_secs`, that rehashes every file the index lists. A file
//! whose bytes no longer hash to the index's SHA-256 (bit rot, a hand
//! edit) is moved aside to `{data_dir}/.quarantine/` — never deleted — and
//! fetched again from a peer with the index's hash as the one it must
//! have; a listed file that is missing is fetched too.
//!
//! It goes at a modest pace: after each file it sleeps as long as that file
//! took to hash, so it never takes more than half of the disk's time. Its
//! status (the last pass: when, files checked, bad and missing ones found,
//! restored) is shown by `/healthz`. It does not compare with peers (that is
//! the anti-entropy passes' job) and never touches a deleted name.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Local};
use serde::Serialize;
use tokio::time::Instant;

use super::Fetcher;
use crate::config::Peer;
use crate::index::FileEntry;
use crate::storage::{Storage, hash_file};

/// The scrub as `/healthz` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScrubStatus {
    /// A pass is under way.
    pub running: bool,
    /// The last finished pass.
    pub last: Option<ScrubPass>,
    /// What every pass since this process started found, so that a monitor
    /// polling less often than passes run misses nothing.
    pub since_start: Findings,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScrubPass {
    pub started: DateTime<Local>,
    pub finished: DateTime<Local>,
    /// Files rehashed (or found missing).
    pub checked: u64,
    #[serde(flatten)]
    pub found: Findings,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Findings {
    /// Files whose bytes no longer matched the index: set aside.
    pub bad: u64,
    /// Files the index lists that were not on disk.
    pub missing: u64,
    /// Bad or missing files fetched again from a peer.
    pub restored: u64,
}

impl Findings {
    fn add(&mut self, finding: &Finding) {
        match *finding {
            Finding::Good => {}
            Finding::Bad { restored } => {
                self.bad += 1;
                self.restored += u64::from(restored);
            }
            Finding::Missing { restored } => {
                self.missing += 1;
                self.restored += u64::from(restored);
            }
        }
    }

    fn total(self, other: Self) -> Self {
        Self {
            bad: self.bad + other.bad,
            missing: self.missing + other.missing,
            restored: self.restored + other.restored,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Scrubber {
    storage: Storage,
    fetcher: Fetcher,
    peers: Arc<[Peer]>,
    status: Arc<Mutex<ScrubStatus>>,
}

/// What one file's check found.
enum Finding {
    Good,
    Bad { restored: bool },
    Missing { restored: bool },
}

impl Scrubber {
    pub fn new(storage: Storage, fetcher: Fetcher, peers: Vec<Peer>) -> Self {
        Self {
            storage,
            fetcher,
            peers: peers.into(),
            status: Arc::default(),
        }
    }

    pub fn status(&self) -> ScrubStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut ScrubStatus)) {
        change(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Scrubs every `every`, the first time one interval after start (a
    /// restart is no reason to reread every file) — or at once when a
    /// volume was replaced.
    pub async fn run(self, every: Duration) {
        if self.storage.index().is_none() {
            // A bucket: the store checks its own copies.
            return;
        }
        if self.storage.replaced_volume() {
            tracing::warn!("a volume was replaced: checking every indexed file now, to refill it");
            self.pass().await;
        }
        loop {
            tokio::time::sleep(every).await;
            self.pass().await;
        }
    }

    async fn pass(&self) {
        self.update(|s| s.running = true);
        let started = Local::now();
        let mut checked = 0;
        let mut found = Findings::default();
        let Some(index) = self.storage.index().cloned() else {
            return self.abandon("a bucket has no index to scrub against");
        };
        let all = index.clone();
        let days = match tokio::task::spawn_blocking(move || all.days()).await {
            Ok(Ok(days)) => days,
            Ok(Err(e)) => return self.abandon(&e.to_string()),
            Err(e) => return self.abandon(&e.to_string()),
        };
        for (day, _) in days {
            let index = index.clone();
            let list = match tokio::task::spawn_blocking(move || index.list_day(day)).await {
                Ok(Ok(list)) => list,
                Ok(Err(e)) => return self.abandon(&e.to_string()),
                Err(e) => return self.abandon(&e.to_string()),
            };
            for entry in list.files {
                let finding = self.check(&entry).await;
                checked += 1;
                found.add(&finding);
            }
        }
        tracing::info!(
            checked,
            bad = found.bad,
            missing = found.missing,
            restored = found.restored,
            "scrub pass finished"
        );
        self.update(|s| {
            s.running = false;
            s.since_start = s.since_start.total(found);
            s.last = Some(ScrubPass {
                started,
                finished: Local::now(),
                checked,
                found,
            });
        });
    }

    fn abandon(&self, error: &str) {
        tracing::error!(%error, "scrub pass abandoned: the index could not be read");
        self.update(|s| s.running = false);
    }

    async fn check(&self, entry: &FileEntry) -> Finding {
        let file = self.storage.find_file(&entry.path).await;
        let started = Instant::now();
        let hashed = match file {
            Some(file) => tokio::task::spawn_blocking(move || hash_file(&file))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Err(std::io::ErrorKind::NotFound.into()),
        };
        // The pace: as long asleep as at work.
        tokio::time::sleep(started.elapsed()).await;
        let path = &entry.path;
        match hashed {
            Ok(sha) if sha == entry.sha256 => Finding::Good,
            Ok(sha) => {
                let aside = match self.storage.quarantine(path).await {
                    Ok(aside) => aside,
                    Err(e) => {
                        tracing::error!(%path, error = %e, "scrub: a damaged file could not be set aside");
                        return Finding::Bad { restored: false };
                    }
                };
                tracing::warn!(%path, expected = %entry.sha256, found = %sha, aside = %aside.display(), "scrub: the file's bytes changed; set aside, fetching it again");
                Finding::Bad {
                    restored: self.restore(entry).await,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(%path, "scrub: an indexed file is missing; fetching it again");
                Finding::Missing {
                    restored: self.restore(entry).await,
                }
            }
            Err(e) => {
                tracing::error!(%path, error = %e, "scrub: the file could not be read");
                Finding::Good
            }
        }
    }

    /// Fetches the file from the first peer that has it with the index's
    /// hash.
    async fn restore(&self, entry: &FileEntry) -> bool {
        for peer in self.peers.iter() {
            match self
                .fetcher
                .fetch(peer, &entry.path, Some((&entry.sha256, entry.size)))
                .await
            {
                Ok(_) => {
                    tracing::info!(path = %entry.path, peer = %peer.name, "scrub: restored from a peer");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path, peer = %peer.name, error = %e, "scrub: not restored from this peer");
                }
            }
        }
        false
    }
}
