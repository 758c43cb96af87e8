//! The `disk` backend: one data folder (SPEC §11). Also the unit that
//! `volumes` is made of: every volume is a [`Disk`].
//!
//! A file is written under `{root}/.tmp` (same filesystem as its final
//! place), then renamed (a fresh upload) or hard-linked (a replica, which
//! must not replace a file already there) to its public name, with the file
//! and every folder entry on the way flushed when `fsync` is on. The folder
//! carries a marker with the server's name, so a disk moved to another
//! server is refused and a new (unmarked) disk is recognised and refilled
//! by repair.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::dir_sync::DirSync;
use super::incoming::TempFile;
use super::trash;
use super::{
    Arrival, Backend, DiskTasks, Located, MARKER, OpenError, Place, QUARANTINE_DIR, Slot,
    StorageError, StoredPath, Written, hash_file,
};

/// Name of the folder below a data folder that holds files being written.
const TMP_DIR: &str = ".tmp";
/// Temporary files untouched for this long belong to a process that died.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// One data folder.
#[derive(Debug, Clone)]
pub(crate) struct Disk {
    root: PathBuf,
    tmp_dir: PathBuf,
    fsync: bool,
    tasks: DiskTasks,
    /// Files being received into this folder now.
    writing: Arc<AtomicUsize>,
    /// The folder had no marker: a new or replaced disk.
    new: bool,
    /// Flushes of the folders that files are published into.
    dir_sync: Arc<DirSync>,
}

impl Disk {
    /// Creates the folders, checks that the folder is this server's (a
    /// folder without a marker is a new or replaced disk, marked now and
    /// refilled by repair) and removes temporary files left by a dead
    /// process.
    pub fn open(
        root: &Path,
        fsync: bool,
        server_name: &str,
        tasks: DiskTasks,
    ) -> Result<Self, OpenError> {
        let tmp_dir = root.join(TMP_DIR);
        std::fs::create_dir_all(&tmp_dir)?;
        let new = check_marker(root, server_name)?;
        remove_stale(&tmp_dir);
        Ok(Self {
            root: root.to_path_buf(),
            tmp_dir,
            fsync,
            tasks,
            writing: Arc::default(),
            new,
            dir_sync: Arc::default(),
        })
    }

    /// Whether the folder was new (unmarked) when it was opened.
    pub fn is_new(&self) -> bool {
        self.new
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `path` lives (or would live) in this folder.
    pub fn file(&self, path: &StoredPath) -> PathBuf {
        self.root.join(path.to_relative_path())
    }

    /// Files being received into this folder now.
    pub fn writing(&self) -> usize {
        self.writing.load(Ordering::Relaxed)
    }

    /// Free bytes for this process on the folder's filesystem.
    pub fn free_space(&self) -> io::Result<u64> {
        fs4::available_space(&self.root)
    }

    /// A place for a new file in this folder that takes its public name
    /// here, in the task that finishes it; `volume` is its number in a set
    /// of volumes.
    pub fn publishing_slot(&self, volume: usize) -> Slot {
        let mut slot = self.slot(volume);
        slot.publisher = Some(self.publisher());
        slot
    }

    fn publisher(&self) -> Publisher {
        Publisher {
            root: self.root.clone(),
            dir_sync: self.fsync.then(|| self.dir_sync.clone()),
        }
    }

    /// A place for a new file in this folder, to be taken elsewhere (a
    /// bucket's scratch folder); `volume` is its number in a set of
    /// volumes.
    pub fn slot(&self, volume: usize) -> Slot {
        Slot::new(
            TempFile(self.tmp_dir.join(format!("{}.part", Uuid::new_v4()))),
            volume,
            self.writing.clone(),
            self.tasks.clone(),
            self.fsync,
        )
    }

    /// The stored file `path` here, with its metadata, if it is here as a
    /// regular file: a link or FIFO under that name is not followed and
    /// not served (`regular.rs`).
    pub async fn find(&self, path: &StoredPath) -> Option<(PathBuf, std::fs::Metadata)> {
        let file = self.file(path);
        let meta = tokio::fs::symlink_metadata(&file).await.ok()?;
        if !meta.is_file() {
            tracing::warn!(file = %file.display(), "not a regular file: ignored");
            return None;
        }
        Some((file, meta))
    }
}

impl Backend for Disk {
    fn begin(&self) -> Result<Slot, StorageError> {
        Ok(self.publishing_slot(0))
    }

    fn place<'a>(
        &'a self,
        written: Written,
        path: &'a StoredPath,
        place: Place,
    ) -> BoxFuture<'a, Result<Arrival, StorageError>> {
        let (publisher, path) = (self.publisher(), path.clone());
        async move {
            self.tasks
                .run(move || publisher.place(written.tmp, &path, place, &written.sha256))
                .await
        }
        .boxed()
    }

    fn locate<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Located> {
        async move {
            match self.find(path).await {
                Some((file, meta)) => Located::File { file, meta },
                None => Located::Missing,
            }
        }
        .boxed()
    }

    fn remove<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Result<(), StorageError>> {
        let file = self.file(path);
        async move {
            self.tasks
                .run(move || Ok(remove_file_patiently(&file)?))
                .await
        }
        .boxed()
    }

    fn trash<'a>(
        &'a self,
        path: &'a StoredPath,
        deleted: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        let (root, file, path, fsync) =
            (self.root.clone(), self.file(path), path.clone(), self.fsync);
        async move {
            self.tasks
                .run(move || {
                    trash::move_in(&root, &file, &path, deleted, fsync)?;
                    Ok(())
                })
                .await
        }
        .boxed()
    }

    fn trashed<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Result<bool, StorageError>> {
        let (root, path) = (self.root.clone(), path.clone());
        async move {
            self.tasks
                .run(move || Ok(trash::newest(&root, &path)?.is_some()))
                .await
        }
        .boxed()
    }

    fn untrash<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, Result<bool, StorageError>> {
        let (root, file, path, fsync) =
            (self.root.clone(), self.file(path), path.clone(), self.fsync);
        async move {
            self.tasks
                .run(move || Ok(trash::move_out(&root, &file, &path, fsync)?))
                .await
        }
        .boxed()
    }

    fn purge_trash(&self, before: i64) -> BoxFuture<'_, Result<usize, StorageError>> {
        let root = self.root.clone();
        async move {
            self.tasks
                .run(move || Ok(trash::purge(&root, before)?))
                .await
        }
        .boxed()
    }

    fn quarantine<'a>(&'a self, path: &'a StoredPath) -> BoxFuture<'a, io::Result<PathBuf>> {
        let from = self.file(path);
        let folder = self.root.join(QUARANTINE_DIR);
        let date = path.date();
        let to = folder.join(format!(
            "{}-{}-{}-{}.{}",
            date.format("%Y"),
            date.format("%-m"),
            date.format("%-d"),
            path.file_name(),
            chrono::Local::now().format("%Y%m%d%H%M%S")
        ));
        async move {
            let moved = to.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&folder)?;
                std::fs::rename(&from, &moved)
            })
            .await
            .map_err(io::Error::other)??;
            Ok(to)
        }
        .boxed()
    }

    fn probe(&self) -> BoxFuture<'_, io::Result<()>> {
        let probe = self.tmp_dir.join(format!("{}.probe", Uuid::new_v4()));
        async move {
            tokio::task::spawn_blocking(move || {
                std::fs::write(&probe, b"ok")?;
                std::fs::remove_file(&probe)
            })
            .await
            .map_err(io::Error::other)?
        }
        .boxed()
    }

    fn roots(&self) -> Vec<PathBuf> {
        vec![self.root.clone()]
    }
}

/// Gives a received file its public name in a data folder, from the disk
/// task that finished it (see [`super::Storage::commit_incoming`]).
#[derive(Debug, Clone)]
pub(super) struct Publisher {
    root: PathBuf,
    /// The folder flushes, when `fsync` is on.
    dir_sync: Option<Arc<DirSync>>,
}

impl Publisher {
    /// Gives the complete temporary file `tmp`, whose content hashes to
    /// `sha256`, the name `path`. Blocks.
    pub(super) fn place(
        &self,
        tmp: TempFile,
        path: &StoredPath,
        place: Place,
        sha256: &str,
    ) -> Result<Arrival, StorageError> {
        let target = self.root.join(path.to_relative_path());
        match publish(tmp, &target, &self.root, self.dir_sync.as_deref(), place) {
            Ok(()) => Ok(Arrival::New),
            // Two senders may deliver the same name at once (a replay
            // beside a late original): only one may create it, the other
            // compares.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if hash_file(&target)? == sha256 {
                    Ok(Arrival::AlreadyPresent)
                } else {
                    Err(StorageError::Conflict)
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Gives a complete temporary file the name `target`, creating (and,
/// with `fsync`, syncing) the dated folders on the way.
fn publish(
    mut tmp: TempFile,
    target: &Path,
    root: &Path,
    fsync: Option<&DirSync>,
    place: Place,
) -> io::Result<()> {
    let parent = target
        .parent()
        .ok_or_else(|| io::Error::other("stored path has no folder"))?;
    let give_name = |tmp: &TempFile| match place {
        Place::Rename => std::fs::rename(&tmp.0, target),
        // A hard link is an atomic create-if-absent; the temporary name is
        // removed afterwards.
        Place::NoReplace => std::fs::hard_link(&tmp.0, target),
    };
    // The day's folder exists but for the first files of a day: it is
    // created only when the name cannot be given without it. Several
    // uploads may find it missing at once: each creates it (no error if
    // another just did) and flushes the folders above it.
    let created = match give_name(&tmp) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(parent)?;
            give_name(&tmp)?;
            true
        }
        done => {
            done?;
            false
        }
    };
    if place == Place::Rename {
        tmp.0 = PathBuf::new();
    }
    if let Some(dir_sync) = fsync {
        dir_sync.sync(parent)?;
        if created {
            // New day (or month, or year) folders: their entries must reach
            // the disk too, or the file would be unreachable after a crash.
            let mut dir = parent.parent();
            while let Some(d) = dir {
                sync_dir(d)?;
                if d == root {
                    break;
                }
                dir = d.parent();
            }
        }
    }
    Ok(())
}

/// Flushes a folder's entries (new or renamed files in it) to the disk.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// NTFS journals directory entries itself; Windows cannot fsync a folder
/// opened the ordinary way.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Removes `file` if it is there. On Windows a file being served cannot be
/// removed until its reader closes it, so that is tried again for a while.
pub(super) fn remove_file_patiently(file: &Path) -> io::Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::remove_file(file) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if cfg!(windows) && tries < 50 => {
                tries += 1;
                tracing::debug!(error = %e, "file in use; removing it again shortly");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Refuses a folder marked for another server; marks an unmarked one (and
/// says so).
fn check_marker(root: &Path, server_name: &str) -> Result<bool, OpenError> {
    let marker = root.join(MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(owner) if owner.trim() == server_name => Ok(false),
        Ok(owner) => Err(OpenError::OtherServer {
            owner: owner.trim().to_owned(),
            me: server_name.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::warn!(
                data_dir = %root.display(),
                "the data folder has no marker: a new or replaced disk; it is marked now, and repair fills it from the peers"
            );
            let mut file = File::create_new(&marker)?;
            std::io::Write::write_all(&mut file, format!("{server_name}\n").as_bytes())?;
            file.sync_all()?;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

fn remove_stale(tmp_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > STALE_TMP);
        if stale {
            tracing::warn!(file = %entry.path().display(), "removing a stale temporary file");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_that_find_the_day_folder_missing_at_once_all_land() {
        for round in 0..300 {
            let root = tempfile::tempdir().expect("tempdir");
            let day = root.path().join("2026").join("12").join(round.to_string());
            let start = Arc::new(std::sync::Barrier::new(32));
            let threads: Vec<_> = (0..32)
                .map(|i| {
                    let tmp = root.path().join(format!("{i}.part"));
                    std::fs::write(&tmp, b"x").expect("tmp");
                    let (root, target, start) = (
                        root.path().to_path_buf(),
                        day.join(format!("{i}.jpg")),
                        start.clone(),
                    );
                    std::thread::spawn(move || {
                        start.wait();
                        publish(TempFile(tmp), &target, &root, None, Place::Rename)
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("thread").expect("published");
            }
            assert_eq!(std::fs::read_dir(&day).expect("day").count(), 32);
        }
    }
}
