//! `migrate`: copies a data folder into the bucket of `[storage.s3]`, so a
//! site can move from disks to an object store (SPEC §11).
//!
//! Only stored files are copied: paths of the `{yyyy}/{M}/{d}/{uuid}.{ext}`
//! pattern. Temporary files, variants, quarantined files, the index and the
//! server marker stay behind (they live in `.`-folders or are not of the
//! pattern). The copy is resumable: a file whose object already has the
//! same size (and the same `sha256` metadata, when the object has one) is
//! skipped, and an object only appears once complete, so a migration killed
//! half-way is run again to finish it. Files are copied several at once;
//! each copy is `S3Store::put_file`, the same path an upload takes.
//!
//! Only regular files are copied: a symbolic link, FIFO, socket or device
//! named like a stored file is skipped and named in the output, never
//! followed or opened (a link would upload what it points at; opening a
//! FIFO would wait for a writer forever).
//!
//! The walk runs on a blocking thread and hands files over a short queue,
//! so a folder of millions of files is never listed whole in memory.
//!
//! Progress (files, bytes, rate, time left) is shown while it runs. The
//! copy starts at once; a second walk beside it counts the files and their
//! sizes (one `stat` each, far quicker than their upload), and once it is
//! through the time left is shown too. A terabyte operator gets a count and
//! a rate from the first second, and a time left after the minutes a count
//! of millions of files takes, without waiting for it to start copying.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::Config;
use crate::progress::{self, Tally};
use crate::storage::s3::S3Store;
use crate::storage::{StoredPath, hash_file, not_regular};

/// What a migration did.
#[derive(Debug, Default)]
struct Summary {
    copied: AtomicU64,
    copied_bytes: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    /// Files that are not stored files (left behind on purpose).
    ignored: AtomicU64,
}

/// One thing the walk found.
enum Found {
    File {
        path: StoredPath,
        file: PathBuf,
    },
    /// Something named like a stored file that is not a regular file.
    NotRegular {
        file: PathBuf,
    },
    /// A folder that could not be read: its files are not copied.
    Unreadable {
        folder: PathBuf,
        error: std::io::Error,
    },
    Ignored,
}

/// Copies every stored file below `from` (default: `data_dir`) into the
/// bucket, `concurrency` files at once; fails if any file was not copied.
pub async fn run(
    config: &Config,
    from: Option<PathBuf>,
    concurrency: usize,
    every: Duration,
) -> anyhow::Result<()> {
    let settings = config
        .s3
        .as_ref()
        .context("app.toml has no [storage.s3] table: there is no bucket to migrate into")?;
    let store = S3Store::connect(settings)
        .await
        .with_context(|| format!("cannot use bucket `{}`", settings.bucket))?;
    let from = from.unwrap_or_else(|| config.data_dir.clone());
    if !from.is_dir() {
        anyhow::bail!("{} is not a folder", from.display());
    }
    println!(
        "copying the stored files of {} into bucket `{}`",
        from.display(),
        settings.bucket
    );
    let (found, queue) = mpsc::channel(concurrency * 2);
    let walker = {
        let from = from.clone();
        tokio::task::spawn_blocking(move || walk(&from, &mut |f| found.blocking_send(f).is_ok()))
    };
    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicBool::new(false));
    let counter = {
        let (from, tally, done) = (from.clone(), tally.clone(), done.clone());
        tokio::task::spawn_blocking(move || count(&from, &tally, &done))
    };
    let shown = progress::show("migrate", tally.clone(), every);
    let summary = Summary::default();
    ReceiverStream::new(queue)
        .for_each_concurrent(concurrency, |found| copy(&store, found, &summary, &tally))
        .await;
    // A count still under way has nothing left to tell.
    done.store(true, Ordering::Relaxed);
    shown.finish().await;
    walker.await.context("the folder walk failed")?;
    counter.await.context("the folder count failed")?;
    let count = |n: &AtomicU64| n.load(Ordering::Relaxed);
    println!(
        "copied {} ({} bytes), skipped {} (already in the bucket), failed {}, ignored {} (not stored files)",
        count(&summary.copied),
        count(&summary.copied_bytes),
        count(&summary.skipped),
        count(&summary.failed),
        count(&summary.ignored),
    );
    match count(&summary.failed) {
        0 => Ok(()),
        n => anyhow::bail!("{n} files were not copied; run migrate again to copy them"),
    }
}

async fn copy(store: &S3Store, found: Found, summary: &Summary, tally: &Tally) {
    if let Found::File { file, .. } = &found {
        // Counted as the count walk counts it, whatever becomes of it.
        let size = file_size(file).await;
        copy_found(store, found, summary).await;
        tally.add(1, size);
        return;
    }
    copy_found(store, found, summary).await;
}

async fn file_size(file: &Path) -> u64 {
    tokio::fs::symlink_metadata(file)
        .await
        .map_or(0, |m| m.len())
}

async fn copy_found(store: &S3Store, found: Found, summary: &Summary) {
    match found {
        Found::Ignored => {
            summary.ignored.fetch_add(1, Ordering::Relaxed);
        }
        Found::NotRegular { file } => {
            eprintln!("{}", not_regular(&file));
            summary.ignored.fetch_add(1, Ordering::Relaxed);
        }
        Found::Unreadable { folder, error } => {
            eprintln!("cannot read {}: {error}", folder.display());
            summary.failed.fetch_add(1, Ordering::Relaxed);
        }
        Found::File { path, file } => match copy_file(store, &path, &file).await {
            Ok(Copied::Sent(bytes)) => {
                summary.copied.fetch_add(1, Ordering::Relaxed);
                summary.copied_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Ok(Copied::AlreadyThere) => {
                summary.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("{path}: {e:#}");
                summary.failed.fetch_add(1, Ordering::Relaxed);
            }
        },
    }
}

enum Copied {
    Sent(u64),
    AlreadyThere,
}

async fn copy_file(store: &S3Store, path: &StoredPath, file: &Path) -> anyhow::Result<Copied> {
    let meta = tokio::fs::symlink_metadata(file)
        .await
        .context("cannot read the file")?;
    if !meta.is_file() {
        return Err(not_regular(file).into());
    }
    let size = meta.len();
    let object = store.head(path).await?;
    // Hashed only when needed: for a copy, or to compare with the object.
    let hash = || {
        let file = file.to_path_buf();
        async move {
            tokio::task::spawn_blocking(move || hash_file(&file))
                .await?
                .context("cannot read the file")
        }
    };
    let sha256 = match object {
        Some(o) if o.size == size => match o.sha256 {
            None => return Ok(Copied::AlreadyThere),
            Some(theirs) => {
                let ours = hash().await?;
                if ours == theirs {
                    return Ok(Copied::AlreadyThere);
                }
                ours
            }
        },
        _ => hash().await?,
    };
    store.put_file(path, file, size, &sha256).await?;
    Ok(Copied::Sent(size))
}

/// Counts the stored files below `root` and their bytes into `tally`'s
/// total, unless `done` is set first.
fn count(root: &Path, tally: &Tally, done: &AtomicBool) {
    let (mut files, mut bytes) = (0u64, 0u64);
    walk(root, &mut |found| {
        if let Found::File { file, .. } = found {
            files += 1;
            bytes += std::fs::symlink_metadata(file).map_or(0, |m| m.len());
        }
        !done.load(Ordering::Relaxed)
    });
    if !done.load(Ordering::Relaxed) {
        tally.set_total(files, bytes);
    }
}

/// Walks `root` to the depth of stored files (`yyyy/M/d/name`), handing
/// each file found to `found` until it returns `false`; folders whose name
/// starts with `.` are not entered.
fn walk(root: &Path, found: &mut dyn FnMut(Found) -> bool) {
    fn visit(
        folder: &Path,
        relative: &str,
        depth: usize,
        found: &mut dyn FnMut(Found) -> bool,
    ) -> bool {
        let entries = match std::fs::read_dir(folder) {
            Ok(entries) => entries,
            Err(error) => {
                return found(Found::Unreadable {
                    folder: folder.to_path_buf(),
                    error,
                });
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    let unreadable = Found::Unreadable {
                        folder: folder.to_path_buf(),
                        error,
                    };
                    if !found(unreadable) {
                        return false;
                    }
                    continue;
                }
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                if !found(Found::Ignored) {
                    return false;
                }
                continue;
            };
            let path = if relative.is_empty() {
                name.to_owned()
            } else {
                format!("{relative}/{name}")
            };
            // The entry's own type: a link is not followed.
            let kind = entry.file_type().ok();
            let is_dir = kind.is_some_and(|t| t.is_dir());
            let sent = if is_dir {
                // `.tmp`, `.variants`, `.quarantine`, and anything deeper
                // than a day folder, are never stored files.
                if name.starts_with('.') || depth == 3 {
                    true
                } else {
                    visit(&entry.path(), &path, depth + 1, found)
                }
            } else {
                let item = match StoredPath::parse(&path) {
                    Some(stored) if depth == 3 && kind.is_some_and(|t| t.is_file()) => {
                        Found::File {
                            path: stored,
                            file: entry.path(),
                        }
                    }
                    Some(_) if depth == 3 => Found::NotRegular { file: entry.path() },
                    _ => Found::Ignored,
                };
                found(item)
            };
            if !sent {
                return false;
            }
        }
        true
    }
    visit(root, "", 0, found);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn walk_finds_stored_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let name = "5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg";
        for folder in [
            "2014/4/15",
            ".tmp",
            ".variants/2014/4/15",
            ".quarantine/2014/4/15",
            "2014/4/15/x",
        ] {
            std::fs::create_dir_all(root.join(folder)).expect("mkdir");
        }
        for file in [
            format!("2014/4/15/{name}"),
            format!(".tmp/{name}"),
            format!(".variants/2014/4/15/{name}"),
            format!(".quarantine/2014/4/15/{name}"),
            format!("2014/4/15/x/{name}"),
            "2014/4/15/notes.txt".to_owned(),
            "index.redb".to_owned(),
        ] {
            std::fs::write(root.join(file), b"x").expect("write");
        }
        let (tx, mut rx) = mpsc::channel(64);
        let root = root.to_path_buf();
        tokio::task::spawn_blocking(move || walk(&root, &mut |f| tx.blocking_send(f).is_ok()))
            .await
            .expect("walk");
        let (mut files, mut ignored) = (Vec::new(), 0);
        while let Some(found) = rx.recv().await {
            match found {
                Found::File { path, .. } => files.push(path.to_string()),
                Found::Ignored => ignored += 1,
                Found::NotRegular { file } => panic!("{}: not regular", file.display()),
                Found::Unreadable { folder, error } => panic!("{}: {error}", folder.display()),
            }
        }
        assert_eq!(files, vec![format!("2014/4/15/{name}")]);
        assert_eq!(ignored, 2, "notes.txt and the index");
    }
}
