//! Names of image variants (SPEC §2.7): a stored file's name followed by
//! `-t.jpg` (the thumbnail) or `-w{N}.jpg` / `-w{N}.png` (a width), as in
//! `2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg-w640.jpg`.
//!
//! Parsing is as strict as for stored files: the original's part must be a
//! stored-file path, the width has no sign and no leading zero, and nothing
//! follows the suffix. Whether a width is one the configuration offers is
//! the caller's question; this module only knows the shape of names.

use std::fmt;
use std::path::PathBuf;

use super::StoredPath;

/// The folder below `data_dir` that holds this server's variants, mirroring
/// the dated folders of the originals. It is never replicated.
pub const VARIANTS_DIR: &str = ".variants";

/// Which variant of an original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VariantKind {
    /// `-t.jpg`: fits inside the configured thumbnail box.
    Thumbnail,
    /// `-w{N}.jpg`: `width` pixels wide, as JPEG.
    WidthJpeg(u32),
    /// `-w{N}.png`: `width` pixels wide, as PNG (transparency kept).
    WidthPng(u32),
}

impl VariantKind {
    /// The name's suffix after the original's name.
    fn suffix(self) -> String {
        match self {
            Self::Thumbnail => "-t.jpg".to_owned(),
            Self::WidthJpeg(width) => format!("-w{width}.jpg"),
            Self::WidthPng(width) => format!("-w{width}.png"),
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Thumbnail | Self::WidthJpeg(_) => "image/jpeg",
            Self::WidthPng(_) => "image/png",
        }
    }
}

/// A validated relative path of a variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VariantPath {
    original: StoredPath,
    kind: VariantKind,
}

impl VariantPath {
    pub fn new(original: StoredPath, kind: VariantKind) -> Self {
        Self { original, kind }
    }

    /// Parses `{stored path}-t.jpg`, `{stored path}-w{N}.jpg` or
    /// `{stored path}-w{N}.png`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let (original, suffix) = s.rsplit_once('-')?;
        let original = StoredPath::parse(original)?;
        let kind = if suffix == "t.jpg" {
            VariantKind::Thumbnail
        } else {
            let size = suffix.strip_prefix('w')?;
            if let Some(digits) = size.strip_suffix(".jpg") {
                VariantKind::WidthJpeg(width(digits)?)
            } else {
                VariantKind::WidthPng(width(size.strip_suffix(".png")?)?)
            }
        };
        Some(Self { original, kind })
    }

    pub fn original(&self) -> &StoredPath {
        &self.original
    }

    pub fn kind(&self) -> VariantKind {
        self.kind
    }

    /// The path below `data_dir/.variants`, in this platform's separators.
    pub fn to_relative_path(&self) -> PathBuf {
        let mut path = self.original.to_relative_path();
        path.set_file_name(self.file_name());
        path
    }

    pub fn file_name(&self) -> String {
        format!("{}{}", self.original.file_name(), self.kind.suffix())
    }
}

/// Whether `file_name` (in the original's day folder) is one of its variants.
pub fn is_variant_of(file_name: &str, original: &StoredPath) -> bool {
    file_name
        .strip_prefix(&original.file_name())
        .is_some_and(|rest| rest.starts_with('-'))
}

/// 1 to 5 digits, no sign, no leading zero.
fn width(s: &str) -> Option<u32> {
    let ok =
        (1..=5).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
    if ok { s.parse().ok() } else { None }
}

impl fmt::Display for VariantPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.original, self.kind.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg";

    #[test]
    fn round_trips_every_kind() {
        for (suffix, kind) in [
            ("-t.jpg", VariantKind::Thumbnail),
            ("-w640.jpg", VariantKind::WidthJpeg(640)),
            ("-w160.png", VariantKind::WidthPng(160)),
        ] {
            let name = format!("{ORIGINAL}{suffix}");
            let v = VariantPath::parse(&name).expect("valid");
            assert_eq!(v.kind(), kind);
            assert_eq!(v.original().to_string(), ORIGINAL);
            assert_eq!(v.to_string(), name);
            assert_eq!(
                v.to_relative_path(),
                PathBuf::from("2014")
                    .join("4")
                    .join("15")
                    .join(format!("{}{suffix}", &ORIGINAL[10..]))
            );
            assert!(is_variant_of(&v.file_name(), v.original()));
        }
    }

    #[test]
    fn a_variant_is_served_as_its_format() {
        assert_eq!(VariantKind::Thumbnail.mime(), "image/jpeg");
        assert_eq!(VariantKind::WidthJpeg(640).mime(), "image/jpeg");
        assert_eq!(VariantKind::WidthPng(640).mime(), "image/png");
    }

    #[test]
    fn rejects_every_other_shape() {
        for suffix in [
            "",
            "-",
            "-t",
            "-t.png",
            "-t.jpeg",
            "-T.jpg",
            "-w.jpg",
            "-w0.jpg",
            "-w0640.jpg",
            "-w+640.jpg",
            "-w-640.jpg",
            "-w640",
            "-w640.gif",
            "-w640.jpg.tmp",
            "-w640.jpgx",
            "-w123456.jpg",
            "-w64 .jpg",
            "-t.jpg-t.jpg",
            "-t.jpg/x",
            "-W640.jpg",
        ] {
            let name = format!("{ORIGINAL}{suffix}");
            assert_eq!(VariantPath::parse(&name), None, "{name:?}");
        }
        for bad in [
            "2014/04/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg-t.jpg",
            "2014/4/15/../5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg-t.jpg",
            "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1-t.jpg",
            "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.svg-t.jpg",
        ] {
            assert_eq!(VariantPath::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_names_of_that_original_are_its_variants() {
        let original = StoredPath::parse(ORIGINAL).expect("valid");
        assert!(!is_variant_of(&original.file_name(), &original));
        assert!(!is_variant_of(
            "5310bcaf-0f8a-45c5-9a61-9bf45b5e09c2.jpg-t.jpg",
            &original
        ));
    }
}
