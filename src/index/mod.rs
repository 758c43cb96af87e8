//! The index: what this server holds (name, size, SHA-256, when it arrived)
//! and what was deleted here (tombstones), durable beside the data in
//! `{data_dir}/.index.redb` (SPEC §4a).
//!
//! It is what repair compares instead of the files: per day a digest of
//! every entry (the XOR of one SHA-256 per file or tombstone, so adding or
//! removing an entry updates it in O(1)), and above the days the XOR of
//! their digests, per month, year and the whole store. Two servers whose
//! roots agree hold the same names with the same content and the same
//! tombstones; where they differ, the digests show which days to list.
//!
//! Names are UUIDs, never reused: an entry is never changed, only added or
//! replaced by a tombstone, and a tombstone wins over any copy. Only two
//! things take a tombstone away: an admin's restore (which leaves a
//! `restored` mark, so that a peer's stale tombstone is not applied), and
//! repair once every server has it and none needs it (`repair/tombstones`).
//!
//! The engine is redb (see `store.rs`): one file, crash-safe transactions,
//! and a mode in which two processes share it (an IIS app-pool recycle runs
//! two at once). This module is the only one that knows it. Everything here
//! blocks; callers run it on a blocking thread.

mod digest;
mod store;
mod tree;

use std::path::Path;

use chrono::{Datelike, NaiveDate};

pub use digest::Digest;
pub use store::{Index, IndexCounts, IndexError};
pub use tree::{Level, Prefix, level};

use crate::storage::StoredPath;

/// A stored file as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: StoredPath,
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// When it arrived here, seconds since the Unix epoch.
    pub added: i64,
}

/// Everything the index holds for one day folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayList {
    pub files: Vec<FileEntry>,
    /// Deleted names of that day.
    pub tombstones: Vec<StoredPath>,
}

/// A day folder as a number that sorts like the date: 2026/12/1 is
/// 20261201, before 2026/12/10 = 20261210 (the folder names do not sort).
pub fn day_number(date: NaiveDate) -> u32 {
    let year = u32::try_from(date.year()).unwrap_or(0);
    year * 10_000 + date.month() * 100 + date.day()
}

/// The date of a day number, if it is one.
pub fn day_date(day: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(
        i32::try_from(day / 10_000).ok()?,
        day / 100 % 100,
        day % 100,
    )
}

/// The key of a path in the index: day number, then the file name, so a
/// day's entries are one range.
fn key(path: &StoredPath) -> String {
    format!("{}/{}", day_number(path.date()), path.file_name())
}

/// Where the index of `data_dir` lives.
pub fn index_file(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join(".index.redb")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_sort_like_dates() {
        let d = |y, m, d| day_number(NaiveDate::from_ymd_opt(y, m, d).expect("date"));
        assert!(d(2026, 12, 1) < d(2026, 12, 10));
        assert!(d(2026, 9, 30) < d(2026, 10, 1));
        assert!(d(2025, 12, 31) < d(2026, 1, 1));
        assert_eq!(
            day_date(d(2026, 2, 28)),
            NaiveDate::from_ymd_opt(2026, 2, 28)
        );
        assert_eq!(day_date(20261301), None);
    }
}
