//! The trash of a data folder: where a deleted file waits for `[repair]
//! trash_days` before it is purged, so that an admin can restore it.
//!
//! `{root}/.trash/{yyyy}/{M}/{d}/{name}~{deleted}`, `deleted` in seconds
//! since the epoch: a delete is a rename within the data folder (each
//! volume has its own trash), the name carries the time the purge needs,
//! and a name deleted, restored and deleted again has one file per delete
//! (a restore takes the newest). Nothing here is reachable by a URL: the
//! folder starts with a dot, which no stored-file path does, and the index
//! never lists it. Everything here blocks.

use std::io;
use std::path::{Path, PathBuf};

use super::StoredPath;
use super::disk::sync_dir;

/// Name of the trash folder below a data folder.
pub const TRASH_DIR: &str = ".trash";

/// Moves the stored file `file` (of `path`, below `root`) into the trash;
/// `false` if it is not there.
pub fn move_in(
    root: &Path,
    file: &Path,
    path: &StoredPath,
    deleted: i64,
    fsync: bool,
) -> io::Result<bool> {
    let folder = day_folder(root, path);
    let to = folder.join(format!("{}~{deleted}", path.file_name()));
    match rename_patiently(file, &to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if !file.exists() {
                return Ok(false);
            }
            std::fs::create_dir_all(&folder)?;
            rename_patiently(file, &to)?;
        }
        Err(e) => return Err(e),
    }
    if fsync {
        sync_dir(&folder)?;
        if let Some(from) = file.parent() {
            sync_dir(from)?;
        }
    }
    Ok(true)
}

/// The newest trashed file of `path` below `root`, if any.
pub fn newest(root: &Path, path: &StoredPath) -> io::Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(day_folder(root, path)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let prefix = format!("{}~", path.file_name());
    let mut newest: Option<(i64, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(deleted) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|t| t.parse::<i64>().ok())
        else {
            continue;
        };
        if newest.as_ref().is_none_or(|(t, _)| deleted > *t) {
            newest = Some((deleted, entry.path()));
        }
    }
    Ok(newest.map(|(_, file)| file))
}

/// Moves the newest trashed file of `path` back to `file`, its public
/// name; `false` if the trash has none. A file already under that name
/// stays (the trashed one stays too).
pub fn move_out(root: &Path, file: &Path, path: &StoredPath, fsync: bool) -> io::Result<bool> {
    let Some(trashed) = newest(root, path)? else {
        return Ok(false);
    };
    let parent = file
        .parent()
        .ok_or_else(|| io::Error::other("stored path has no folder"))?;
    std::fs::create_dir_all(parent)?;
    // A hard link never replaces a file; the trashed name goes after.
    match std::fs::hard_link(&trashed, file) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(true),
        Err(e) => return Err(e),
    }
    if fsync {
        sync_dir(parent)?;
    }
    std::fs::remove_file(&trashed)?;
    Ok(true)
}

/// Removes every trashed file deleted before `before` (seconds since the
/// epoch) and the folders that leaves empty; how many files went.
pub fn purge(root: &Path, before: i64) -> io::Result<usize> {
    let trash = root.join(TRASH_DIR);
    let mut purged = 0;
    for year in folders(&trash)? {
        for month in folders(&year)? {
            for day in folders(&month)? {
                for entry in std::fs::read_dir(&day)?.flatten() {
                    let expired = entry
                        .file_name()
                        .to_str()
                        .and_then(|n| n.rsplit_once('~'))
                        .and_then(|(_, t)| t.parse::<i64>().ok())
                        .is_some_and(|deleted| deleted < before);
                    if expired {
                        std::fs::remove_file(entry.path())?;
                        purged += 1;
                    }
                }
                // Fails while the folder still holds files: it stays.
                let _ = std::fs::remove_dir(&day);
            }
            let _ = std::fs::remove_dir(&month);
        }
        let _ = std::fs::remove_dir(&year);
    }
    Ok(purged)
}

/// Renames `from` to `to`. On Windows a file being served cannot be
/// renamed until its reader closes it, so that is tried again for a while.
fn rename_patiently(from: &Path, to: &Path) -> io::Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::rename(from, to) {
            Err(e) if cfg!(windows) && e.kind() != io::ErrorKind::NotFound && tries < 50 => {
                tries += 1;
                tracing::debug!(error = %e, "file in use; moving it to the trash again shortly");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            done => return done,
        }
    }
}

fn day_folder(root: &Path, path: &StoredPath) -> PathBuf {
    let mut folder = root.join(TRASH_DIR).join(path.to_relative_path());
    folder.pop();
    folder
}

fn folders(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trashed_file_comes_back_or_is_purged_after_its_time() {
        let root = tempfile::tempdir().expect("dir");
        let path =
            StoredPath::parse("2026/12/4/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg").expect("path");
        let file = root.path().join(path.to_relative_path());
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, b"one").expect("write");
        assert!(move_in(root.path(), &file, &path, 100, false).expect("trash"));
        assert!(!file.exists());
        assert!(!move_in(root.path(), &file, &path, 101, false).expect("trash"));
        assert!(move_out(root.path(), &file, &path, false).expect("restore"));
        assert_eq!(std::fs::read(&file).expect("read"), b"one");
        assert!(!move_out(root.path(), &file, &path, false).expect("restore"));
        assert!(move_in(root.path(), &file, &path, 200, false).expect("trash"));
        assert_eq!(purge(root.path(), 200).expect("purge"), 0);
        assert_eq!(purge(root.path(), 201).expect("purge"), 1);
        assert!(newest(root.path(), &path).expect("newest").is_none());
        assert!(!root.path().join(TRASH_DIR).join("2026").exists());
    }
}
