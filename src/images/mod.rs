//! Images as images: what a stored file's bytes say about the picture.
//!
//! Its dimensions, read from the format's header (the JPEG frame
//! header, PNG's IHDR, the GIF screen descriptor, the WebP and BMP headers)
//! without decoding any pixel. A file whose header does not parse is not an
//! image, whatever its first bytes claim (`FF D8 FF` followed by HTML), so
//! this is also the structure check of every upload and replica.
//!
//! `imagesize` walks the JPEG segments, which is the part that takes work;
//! for the other formats it reads the numbers at fixed offsets without
//! checking that the chunk or header they belong to is there, so those
//! checks are made here (PNG's IHDR, the WebP frame signatures, BMP's signed
//! height, a GIF's full screen descriptor).
//!
//! [`Limits`] refuse a decompression bomb from its headers: a side or a
//! pixel count (all frames of an animation, `frames.rs`) over the limit,
//! or a JPEG whose scans would cost more decoding than any real encoder's
//! output ([`max_jpeg_scans`]).
//! `strip.rs` removes location and personal metadata without touching the
//! pixels. Variants (thumbnails and widths) are made in `variant.rs` and
//! kept on disk by `cache.rs`.
//!
//! This module takes a reader, bytes or paths and knows nothing of HTTP.

pub mod cache;
mod frames;
pub mod strip;
pub mod variant;

use std::io::{self, BufRead, Seek};

/// Width and height in pixels, both at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimensions {
    pub width: u32,
    pub height: u32,
}

/// The largest picture kept (SPEC §2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Pixels of all frames together.
    pub max_pixels: u64,
    /// Width or height.
    pub max_side: u32,
}

/// Why a picture is refused as too large.
#[derive(Debug, thiserror::Error)]
pub enum OverLimit {
    #[error("the picture is {width}×{height} px; no side may be over {limit} px")]
    Side { width: u32, height: u32, limit: u32 },
    #[error(
        "the picture has more than {limit} pixels (all frames of an animation counted); \
         it is refused as a decompression bomb"
    )]
    Pixels { limit: u64 },
    #[error(
        "the JPEG has more than {limit} scans for its size (encoders write a few dozen at \
         most); it is refused as too costly to decode"
    )]
    Scans { limit: u32 },
}

/// The most scans a JPEG may have, whatever its size. libjpeg's
/// progressive mode writes 10, mozjpeg and jpegli a few more.
pub const MAX_JPEG_SCANS: u32 = 100;

/// How many times `max_pixels` the scans of a JPEG may walk in all: a
/// picture of `max_pixels` may have 20 scans, one of a tenth of that the
/// full [`MAX_JPEG_SCANS`].
const JPEG_SCAN_WORK: u64 = 20;

/// The most scans a JPEG of `area` pixels may have when pictures may be
/// `max_pixels`: every scan walks every block of the frame, so decoding
/// costs scans × area, and that is what is bounded.
pub fn max_jpeg_scans(area: u64, max_pixels: u64) -> u32 {
    let by_work = max_pixels.saturating_mul(JPEG_SCAN_WORK) / area.max(1);
    u32::try_from(by_work)
        .unwrap_or(u32::MAX)
        .clamp(1, MAX_JPEG_SCANS)
}

/// Whether the JPEG at the start of `reader`, of `area` pixels, has more
/// scans than [`max_jpeg_scans`] allows; `Some(limit)` if so. Reads the
/// file up to its end of image, a buffer at a time; not a JPEG is `None`.
pub(crate) fn jpeg_over_scans<R: BufRead>(
    reader: &mut R,
    area: u64,
    max_pixels: u64,
) -> io::Result<Option<u32>> {
    if !reader.fill_buf()?.starts_with(b"\xFF\xD8") {
        return Ok(None);
    }
    let limit = max_jpeg_scans(area, max_pixels);
    let scans = frames::jpeg_scans(reader, limit)?;
    Ok((scans > limit).then_some(limit))
}

impl Limits {
    /// Checks the picture at the start of `reader`, whose header gave
    /// `dimensions`: `Ok(Some(_))` says why it is too large. Only headers
    /// are read; a file that ends early is judged on what it holds.
    pub fn over<R: BufRead + Seek>(
        &self,
        mut reader: R,
        dimensions: Dimensions,
    ) -> io::Result<Option<OverLimit>> {
        let Dimensions { width, height } = dimensions;
        if width > self.max_side || height > self.max_side {
            return Ok(Some(OverLimit::Side {
                width,
                height,
                limit: self.max_side,
            }));
        }
        let pixels = frames::pixels(&mut reader, dimensions, self.max_pixels)?;
        if pixels > self.max_pixels {
            return Ok(Some(OverLimit::Pixels {
                limit: self.max_pixels,
            }));
        }
        reader.seek(io::SeekFrom::Start(0))?;
        let scans = jpeg_over_scans(&mut reader, pixels, self.max_pixels)?;
        Ok(scans.map(|limit| OverLimit::Scans { limit }))
    }
}

/// The dimensions in the header at the start of `reader`, or `None` if the
/// header does not parse or names an empty picture.
pub fn dimensions<R: BufRead + Seek>(mut reader: R) -> Option<Dimensions> {
    let head = reader.fill_buf().ok()?;
    let (width, height) = if head.starts_with(b"BM") {
        bmp_size(head)?
    } else {
        if !header_is_whole(head) {
            return None;
        }
        let size = imagesize::reader_size(reader).ok()?;
        (
            u32::try_from(size.width).ok()?,
            u32::try_from(size.height).ok()?,
        )
    };
    (width > 0 && height > 0).then_some(Dimensions { width, height })
}

/// Whether the chunk or header that holds the dimensions is really there.
fn header_is_whole(head: &[u8]) -> bool {
    if head.starts_with(b"\x89PNG") {
        // The first chunk is IHDR, 13 bytes; sizes fit in 31 bits.
        head.get(8..16) == Some(b"\0\0\0\x0dIHDR")
            && head
                .get(16..24)
                .is_some_and(|wh| wh[0] < 0x80 && wh[4] < 0x80)
    } else if head.starts_with(b"GIF") {
        // Header and logical screen descriptor.
        head.len() >= 13
    } else if head.starts_with(b"RIFF") {
        match head.get(12..16) {
            // Lossy: a key frame's start code.
            Some(b"VP8 ") => head.get(23..26) == Some(b"\x9d\x01\x2a"),
            // Lossless: its signature byte.
            Some(b"VP8L") => head.get(20) == Some(&0x2f),
            // Extended: the canvas size is in the VP8X chunk.
            Some(b"VP8X") => head.len() >= 30,
            _ => false,
        }
    } else {
        true
    }
}

/// A BMP's size: 16-bit in the old 12-byte core header, else signed 32-bit
/// with a negative height for top-down pictures.
fn bmp_size(head: &[u8]) -> Option<(u32, u32)> {
    let dib = u32::from_le_bytes(head.get(14..18)?.try_into().ok()?);
    if dib == 12 {
        let w = u16::from_le_bytes(head.get(18..20)?.try_into().ok()?);
        let h = u16::from_le_bytes(head.get(20..22)?.try_into().ok()?);
        return Some((w.into(), h.into()));
    }
    let w = i32::from_le_bytes(head.get(18..22)?.try_into().ok()?);
    let h = i32::from_le_bytes(head.get(22..26)?.try_into().ok()?);
    Some((u32::try_from(w).ok()?, h.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn of(bytes: &[u8]) -> Option<Dimensions> {
        dimensions(Cursor::new(bytes))
    }

    #[test]
    fn reads_the_frame_header_of_a_jpeg() {
        let jpeg = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\
\xFF\xC0\x00\x11\x08\x01\xE0\x02\x80\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01";
        assert_eq!(
            of(jpeg),
            Some(Dimensions {
                width: 640,
                height: 480
            })
        );
    }

    #[test]
    fn reads_every_other_type() {
        let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x03\x00\x00\x00\x02\x08\x02\x00\x00\x00";
        let gif = b"GIF89a\x03\x00\x02\x00\x80\x00\x00";
        let webp =
            b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00\x30\x01\x00\x9d\x01\x2a\x03\x00\x02\x00";
        let bmp = b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00\
\x03\x00\x00\x00\xfe\xff\xff\xff\x01\x00\x18\x00";
        for bytes in [&png[..], gif, webp, bmp] {
            assert_eq!(
                of(bytes),
                Some(Dimensions {
                    width: 3,
                    height: 2
                }),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn magic_bytes_alone_are_not_an_image() {
        for bytes in [
            &b"\xFF\xD8\xFF<html><script>alert(1)</script></html>"[..],
            b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
            b"\xFF\xD8\xFF\xE0\x00\x00",
            b"\x89PNG\r\n\x1a\n<?php echo 1; ?>",
            b"GIF89a",
            b"GIF89a\x00\x00\x00\x00",
            b"GIF89a\x01\x00\x01\x00",
            b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00<html>",
            b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00",
        ] {
            assert_eq!(of(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn a_jpeg_may_have_fewer_scans_the_larger_it_is() {
        let max = 50_000_000;
        assert_eq!(max_jpeg_scans(640 * 480, max), MAX_JPEG_SCANS);
        assert_eq!(max_jpeg_scans(10_000_000, max), 100);
        assert_eq!(max_jpeg_scans(50_000_000, max), 20);
        assert_eq!(max_jpeg_scans(u64::MAX, max), 1);
        assert_eq!(max_jpeg_scans(0, max), MAX_JPEG_SCANS);
    }
}
