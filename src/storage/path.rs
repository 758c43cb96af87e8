//! The stored-file pattern `{yyyy}/{M}/{d}/{uuid}.{ext}` (month and day not
//! zero-padded, as the original). It is the only shape of path that is ever
//! served or accepted from a peer, so temporary files, journals, logs and
//! config can never be reached through it.

use std::fmt;
use std::path::PathBuf;

use chrono::{Datelike, NaiveDate};
use uuid::Uuid;

use super::ImageType;

/// A validated relative path of a stored file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredPath {
    date: NaiveDate,
    id: Uuid,
    ext: ImageType,
}

impl StoredPath {
    pub fn new(date: NaiveDate, id: Uuid, ext: ImageType) -> Self {
        Self { date, id, ext }
    }

    /// A new upload's name: today (the server's local date) and a fresh
    /// uuid. The only place a name is made.
    pub fn dated(ext: ImageType) -> Self {
        Self::new(chrono::Local::now().date_naive(), Uuid::new_v4(), ext)
    }

    /// Parses `2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg`; anything
    /// else (padding, `..`, backslashes, upper case, other names) is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('/');
        let (y, m, d, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let year = number(y, 4, 4)?;
        let month = number(m, 1, 2)?;
        let day = number(d, 1, 2)?;
        let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
        let (stem, ext) = name.split_once('.')?;
        let ext = ImageType::ALL.into_iter().find(|t| t.extension() == ext)?;
        // Only the canonical lowercase hyphenated form, so one file has one name.
        if stem.len() != 36 || stem.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let id = Uuid::try_parse(stem).ok()?;
        if id.hyphenated().to_string() != stem {
            return None;
        }
        Some(Self { date, id, ext })
    }

    /// The day folder's date.
    pub fn date(&self) -> NaiveDate {
        self.date
    }

    pub fn image_type(&self) -> ImageType {
        self.ext
    }

    /// The path below `data_dir`, in this platform's separators.
    pub fn to_relative_path(&self) -> PathBuf {
        [
            self.date.year().to_string(),
            self.date.month().to_string(),
            self.date.day().to_string(),
            self.file_name(),
        ]
        .iter()
        .collect()
    }

    pub fn file_name(&self) -> String {
        format!("{}.{}", self.id.hyphenated(), self.ext.extension())
    }
}

/// Digits only, no sign, no leading zero, `min..=max` characters long.
fn number(s: &str, min: usize, max: usize) -> Option<u32> {
    let ok = (min..=max).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0');
    if ok { s.parse().ok() } else { None }
}

impl fmt::Display for StoredPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.date.year(),
            self.date.month(),
            self.date.day(),
            self.file_name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg";

    #[test]
    fn round_trips_the_original_shape() {
        let p = StoredPath::parse(GOOD).expect("valid");
        assert_eq!(p.to_string(), GOOD);
        assert_eq!(p.image_type(), ImageType::Jpg);
        assert_eq!(
            p.date(),
            NaiveDate::from_ymd_opt(2014, 4, 15).expect("date")
        );
        assert_eq!(p.file_name(), &GOOD[10..]);
        assert_eq!(
            p.to_relative_path(),
            PathBuf::from("2014").join("4").join("15").join(&GOOD[10..])
        );
    }

    #[test]
    fn rejects_every_other_shape() {
        for bad in [
            "",
            "2014/04/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
            "2014/4/015/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
            "2014/13/1/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
            "2014/2/30/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
            "14/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
            "/2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
            "2014/4/15/../5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
            "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg/x",
            "2014/4/15/5310BCAF-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
            "2014/4/15/5310bcaf0f8a45c59a619bf45b5e09c1.jpg",
            "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.svg",
            "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg.tmp",
            "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1",
            "2014\\4\\15\\5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
            "2014/4/15/..",
            "+014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
            "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg\0",
            "log/upload-errors.jsonl",
        ] {
            assert_eq!(StoredPath::parse(bad), None, "{bad:?}");
        }
    }
}
