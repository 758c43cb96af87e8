//! Stored files are regular files, nothing else. A data folder is the
//! operator's, but what lies in it under a stored-file name is not trusted
//! to be a file: a symbolic link would serve, hash, replicate or migrate
//! whatever it points at (a text file outside, as `image/jpeg`), and a FIFO
//! would block the thread that opens it for as long as no one writes to it
//! (the index rebuild at start, scrub, `migrate`).
//!
//! So every walk of a data folder looks at the type of the entry itself
//! (never following a link), and every stored file is opened with
//! [`open_regular`], which neither follows a link nor waits for a writer,
//! and checks what it opened. The callers skip (and log) what is refused.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::path::Path;

/// Whether `path` is a regular file itself (not a link to one); its
/// metadata if so. `Ok(None)` for a link, FIFO, socket, device or folder.
fn is_regular(path: &Path) -> io::Result<Option<Metadata>> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok(meta.is_file().then_some(meta))
}

/// Opens `path` for reading if it is a regular file; an error of kind
/// `InvalidInput` if it is anything else. Never follows a link at the last
/// component and never blocks on a FIFO.
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    // Checked before opening so that nothing else is ever opened (a device
    // may act on open); the flags close the gap of a swap in between.
    if is_regular(path)?.is_none() {
        return Err(not_regular(path));
    }
    let file = options().open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() {
        Ok((file, meta))
    } else {
        Err(not_regular(path))
    }
}

/// The error for something that is not a regular file, naming it.
pub fn not_regular(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is not a regular file (skipped)", path.display()),
    )
}

/// O_NOFOLLOW: a link at the end of the path fails to open (ELOOP) instead
/// of being followed; O_NONBLOCK: opening a FIFO returns at once instead of
/// waiting for a writer (it has no effect on reading a regular file).
#[cfg(target_os = "linux")]
fn options() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    options
}

/// FILE_FLAG_OPEN_REPARSE_POINT: a symbolic link or junction is opened as
/// itself, whose metadata then says it is not a file. (Windows has no FIFOs
/// in the file system.)
#[cfg(windows)]
fn options() -> OpenOptions {
    use std::os::windows::fs::OpenOptionsExt;
    const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
    let mut options = OpenOptions::new();
    options
        .read(true)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    options
}

/// Other systems: only the check before opening.
#[cfg(not(any(target_os = "linux", windows)))]
fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true);
    options
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn links_fifos_and_folders_are_not_regular() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, b"bytes").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(status.success());

        let (_, meta) = open_regular(&file).expect("a regular file opens");
        assert_eq!(meta.len(), 5);
        assert!(is_regular(&file).expect("stat").is_some());
        for other in [&link, &fifo, &dir.path().to_path_buf()] {
            let e = open_regular(other).expect_err("refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{}", other.display());
            assert!(is_regular(other).expect("stat").is_none());
        }
    }
}
