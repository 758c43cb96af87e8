//! Which image type a file is, decided from its first bytes only. The
//! client's filename and part `Content-Type` are never consulted, so the
//! stored extension always matches the bytes.
//!
//! The signatures are checked in full (a GIF must start `GIF87a` or
//! `GIF89a`, a BMP must have a known header size), stricter than generic
//! type detectors that accept `GIF` or `BM` followed by anything: text that
//! happens to start with those letters is not an image.

/// The image types this service stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageType {
    Jpg,
    Png,
    Gif,
    Webp,
    Bmp,
}

/// Bytes needed to recognise every type above.
pub const SNIFF_LEN: usize = 18;

impl ImageType {
    pub const ALL: [ImageType; 5] = [Self::Jpg, Self::Png, Self::Gif, Self::Webp, Self::Bmp];

    /// The stored extension, also the name used in `allowed_types`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpg => "jpg",
            Self::Png => "png",
            Self::Gif => "gif",
            Self::Webp => "webp",
            Self::Bmp => "bmp",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
            Self::Bmp => "image/bmp",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "jpeg" => Some(Self::Jpg),
            _ => Self::ALL.into_iter().find(|t| t.extension() == name),
        }
    }

    /// The type of a file starting with `head`, if it is one of ours.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(b"\xFF\xD8\xFF") {
            Some(Self::Jpg)
        } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
            Some(Self::Gif)
        } else if head.starts_with(b"RIFF")
            && head.get(8..12) == Some(b"WEBP")
            && head.get(12..15) == Some(b"VP8")
        {
            Some(Self::Webp)
        } else if head.starts_with(b"BM") && is_bmp_header(head) {
            Some(Self::Bmp)
        } else {
            None
        }
    }
}

/// A BMP's reserved bytes are zero and its info header has a known size.
fn is_bmp_header(head: &[u8]) -> bool {
    let (Some(reserved), Some(dib)) = (head.get(6..10), head.get(14..18)) else {
        return false;
    };
    let dib = u32::from_le_bytes([dib[0], dib[1], dib[2], dib[3]]);
    reserved == [0, 0, 0, 0] && matches!(dib, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_type_from_its_magic() {
        let cases: [(&[u8], ImageType); 5] = [
            (b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00", ImageType::Jpg),
            (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", ImageType::Png),
            (b"GIF89a\x01\x00\x01\x00", ImageType::Gif),
            (b"RIFF\x24\x00\x00\x00WEBPVP8 ", ImageType::Webp),
            (
                b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00",
                ImageType::Bmp,
            ),
        ];
        for (head, expected) in cases {
            assert_eq!(ImageType::sniff(head), Some(expected), "{expected:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_image() {
        for head in [
            &b"<svg xmlns=\"http://www.w3.org/2000/svg\">"[..],
            b"<html><script>alert(1)</script>",
            b"<%@ Page Language=\"C#\" %>",
            b"<?php echo 1; ?>",
            b"%PDF-1.7\n",
            b"",
            b"\xFF\xD8",
            b"GIF8",
            b"GIF is a format",
            b"BMW 3 series, 2014 model",
            b"RIFF\x24\x00\x00\x00WAVEfmt ",
        ] {
            assert_eq!(ImageType::sniff(head), None, "{head:?}");
        }
    }

    #[test]
    fn both_gif_versions_are_gifs() {
        assert_eq!(ImageType::sniff(b"GIF87a\x01\x00"), Some(ImageType::Gif));
        assert_eq!(ImageType::sniff(b"GIF88a\x01\x00"), None);
    }

    /// Each input fails exactly one of the conditions: a WebP needs all three.
    #[test]
    fn a_webp_needs_riff_webp_and_vp8() {
        assert_eq!(
            ImageType::sniff(b"RIFF\x24\x00\x00\x00WEBPVP8L"),
            Some(ImageType::Webp)
        );
        assert_eq!(
            ImageType::sniff(b"RIFF\x24\x00\x00\x00WEBPVP8X"),
            Some(ImageType::Webp)
        );
        for head in [
            &b"RIFX\x24\x00\x00\x00WEBPVP8 "[..],
            b"RIFF\x24\x00\x00\x00AVI VP8 ",
            b"RIFF\x24\x00\x00\x00WEBPVP9 ",
            b"RIFF\x24\x00\x00\x00WEBP",
        ] {
            assert_eq!(ImageType::sniff(head), None, "{head:?}");
        }
    }

    /// Each input fails exactly one of the conditions: a BMP needs `BM`,
    /// zero reserved bytes and a known info header size.
    #[test]
    fn a_bmp_needs_bm_zero_reserved_bytes_and_a_known_header_size() {
        let bmp = |magic: &[u8; 2], reserved: [u8; 4], dib: u32| {
            let mut head = magic.to_vec();
            head.extend_from_slice(&[0x3a, 0, 0, 0]);
            head.extend_from_slice(&reserved);
            head.extend_from_slice(&[0x36, 0, 0, 0]);
            head.extend_from_slice(&dib.to_le_bytes());
            ImageType::sniff(&head)
        };
        for dib in [12, 16, 40, 52, 56, 64, 108, 124] {
            assert_eq!(bmp(b"BM", [0; 4], dib), Some(ImageType::Bmp), "{dib}");
        }
        assert_eq!(bmp(b"BN", [0; 4], 40), None);
        assert_eq!(bmp(b"BM", [0, 0, 1, 0], 40), None);
        assert_eq!(bmp(b"BM", [0; 4], 41), None);
        assert_eq!(
            ImageType::sniff(b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00"),
            None
        );
    }

    #[test]
    fn each_type_has_its_extension_and_mime_type() {
        let named: Vec<_> = ImageType::ALL
            .iter()
            .map(|t| (t.extension(), t.mime()))
            .collect();
        assert_eq!(
            named,
            [
                ("jpg", "image/jpeg"),
                ("png", "image/png"),
                ("gif", "image/gif"),
                ("webp", "image/webp"),
                ("bmp", "image/bmp"),
            ]
        );
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(ImageType::from_name("JPEG"), Some(ImageType::Jpg));
        assert_eq!(ImageType::from_name("Png"), Some(ImageType::Png));
        assert_eq!(ImageType::from_name(" gif "), Some(ImageType::Gif));
        assert_eq!(ImageType::from_name("webp"), Some(ImageType::Webp));
        assert_eq!(ImageType::from_name("svg"), None);
    }
}
