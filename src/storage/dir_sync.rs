//! Group commit of folder flushes. Many uploads publish into the same day
//! folder at once, and each must see its new name flushed to the disk
//! before its link is handed out. Flushing the folder once per file costs a
//! write and a disk flush each; here one flush serves every name that was
//! in place before it began: a caller arriving while a flush runs waits for
//! the next round, which whoever finds no round under way starts for
//! everybody waiting (the group commit of databases, for folders).

use std::collections::{HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::disk::sync_dir;

/// Failed flushes are remembered for this many rounds, for the callers of
/// that round to find (they wake within a round or two).
const FAILURES_KEPT: u64 = 1024;

#[derive(Debug, Default)]
pub(crate) struct DirSync {
    state: Mutex<State>,
    finished: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// A round is being flushed now.
    running: bool,
    /// Rounds started and finished so far.
    started: u64,
    finished: u64,
    /// Folders to flush in the next round.
    next: HashSet<PathBuf>,
    /// Folders whose flush failed, with the round and the error.
    failures: VecDeque<(u64, PathBuf, io::ErrorKind, String)>,
}

impl DirSync {
    /// Returns once `dir`'s entries as they are now are on the disk. Blocks.
    pub fn sync(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.next.insert(dir.to_path_buf());
        // A round already running may have read the folder before the
        // caller's change: only the next one surely covers it.
        let round = state.started + 1;
        while state.finished < round {
            if state.running {
                state = self
                    .finished
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.running = true;
            state.started += 1;
            let this = state.started;
            let folders = std::mem::take(&mut state.next);
            drop(state);
            let failed: Vec<_> = folders
                .into_iter()
                .filter_map(|d| sync_dir(&d).err().map(|e| (d, e)))
                .collect();
            state = self.lock();
            state.running = false;
            state.finished = this;
            for (d, e) in failed {
                state.failures.push_back((this, d, e.kind(), e.to_string()));
            }
            while state
                .failures
                .front()
                .is_some_and(|f| f.0 + FAILURES_KEPT < this)
            {
                state.failures.pop_front();
            }
            self.finished.notify_all();
        }
        match state.failures.iter().find(|f| f.0 == round && f.1 == dir) {
            Some((_, _, kind, message)) => Err(io::Error::new(*kind, message.clone())),
            None => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_caller_returns_and_a_missing_folder_fails_only_its_own() {
        let root = tempfile::tempdir().expect("tempdir");
        let sync = Arc::new(DirSync::default());
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let sync = sync.clone();
                let dir = root.path().join(format!("d{}", i % 4));
                std::fs::create_dir_all(&dir).expect("mkdir");
                std::thread::spawn(move || (0..50).all(|_| sync.sync(&dir).is_ok()))
            })
            .collect();
        for t in threads {
            assert!(t.join().expect("thread"));
        }
        if cfg!(unix) {
            assert!(sync.sync(&root.path().join("missing")).is_err());
        }
        assert!(sync.sync(root.path()).is_ok());
    }
}
