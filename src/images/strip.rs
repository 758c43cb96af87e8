//! Metadata privacy (SPEC §2.7): location and personal metadata leave JPEG,
//! PNG and WebP files before they are hashed, stored and replicated; the
//! pixels are never decoded or re-encoded.
//!
//! - JPEG: APP1 (Exif, XMP), APP13 (IPTC, Photoshop) and COM segments go,
//!   before the first scan and between scans; APP2 (the ICC profile) and
//!   every other segment stay. Bytes after EOI go (a multi-picture file's
//!   previews, each with its own Exif and GPS, or anything appended).
//! - PNG: only chunks known to hold no personal data stay (the image data,
//!   the colour chunks and `iCCP`, `pHYs`, `bKGD`, `sPLT`, `hIST`, the APNG
//!   animation chunks, a minimal `eXIf`). Every other ancillary chunk goes:
//!   `tEXt`, `zTXt`, `iTXt`, `tIME`, `eXIf` spelled in any other case,
//!   private chunks. Bytes after `IEND` go.
//! - WebP (extended, `VP8X`): `EXIF`, `XMP ` and unknown chunks go, and the
//!   VP8X flags and the RIFF size are fixed to match; `ICCP`, the animation
//!   and alpha chunks stay. A simple WebP (`VP8 ` or `VP8L` first) may hold
//!   nothing but its image chunk: whatever follows it goes. Bytes after the
//!   RIFF end go.
//!
//! Keeping a list of what stays, rather than of what goes, is what makes
//! this hold for chunks no list of metadata names: a reader such as
//! exiftool finds Exif in `exIf` or `zxIf` too.
//!
//! A PNG or WebP whose chunks do not tile the file (a chunk that runs past
//! the end, a RIFF size that ends inside a chunk or past the file, a PNG
//! chunk type that is not four letters, an unknown critical PNG chunk) is
//! not a file a decoder can read: [`strip`] refuses it as
//! [`StripError::Malformed`] rather than store something half walked.
//!
//! An EXIF orientation other than 1 is kept: the removed Exif block is
//! replaced, where it was, by a minimal one that holds only the Orientation
//! tag. The first such minimal block is itself kept as it is (any later
//! Exif block goes, so a file keeps at most one), so stripping is
//! idempotent: a stripped file has nothing left to strip, and a file with
//! no such metadata at all is left byte for byte.
//!
//! The walk is written by hand over `Read + Seek` rather than with a crate
//! such as img-parts, which loads the whole file: here the file stays on
//! disk, segments and chunks are found by their headers and skipped by
//! seeking, and only a metadata block of at most [`META_READ`] bytes is ever
//! held, to find its orientation. [`strip`] returns a [`Plan`], a list of
//! byte ranges to replace; [`Plan::apply`] copies the file with them
//! replaced, in bounded chunks, and the caller decides where the copy goes.
//! A JPEG's entropy-coded data is read (not held) to find the marker after
//! it. The walk ends at bytes that are not a marker where one must be, or
//! at the end of a file without EOI: what follows is copied as it is.

use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};

/// The most of one metadata block read into memory (a JPEG segment is at
/// most 64 KiB anyway; a larger PNG or WebP block is read only this far,
/// where IFD0 and its Orientation are).
const META_READ: u64 = 64 * 1024;
/// The Exif tag of the orientation.
const ORIENTATION: u16 = 0x0112;

/// The PNG chunks that stay (besides a minimal `eXIf`): the critical ones,
/// colour and physical-size information, palettes and histograms, and the
/// APNG animation chunks. None of them holds text, a time or a place.
const PNG_KEPT: [&[u8; 4]; 18] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB",
    b"cICP", b"mDCV", b"cLLI", b"bKGD", b"hIST", b"pHYs", b"sPLT", b"acTL",
];
/// An empty IEND chunk with its CRC.
const PNG_IEND: &[u8; 12] = b"\0\0\0\0IEND\xAE\x42\x60\x82";
/// The APNG frame chunks, kept too.
const PNG_FRAMES: [&[u8; 4]; 2] = [b"fcTL", b"fdAT"];
/// The chunks of an extended WebP that stay (besides a minimal `EXIF`).
const WEBP_KEPT: [&[u8; 4]; 7] = [
    b"VP8X", b"ICCP", b"ANIM", b"ANMF", b"ALPH", b"VP8 ", b"VP8L",
];
/// VP8X flags: the file has an Exif chunk, an XMP chunk.
const VP8X_EXIF: u8 = 0x08;
const VP8X_XMP: u8 = 0x04;

/// Why a file's metadata could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum StripError {
    /// The file's chunks do not parse: it is refused, not stored.
    #[error("the file's structure does not parse: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The edits that remove a file's metadata, in file order.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    edits: Vec<Edit>,
}

/// `remove` bytes at `at` replaced by `insert`.
#[derive(Debug, PartialEq, Eq)]
struct Edit {
    at: u64,
    remove: u64,
    insert: Vec<u8>,
}

/// What must change in the file at the start of `reader` to remove its
/// metadata; `None` when nothing must (the file is stored as it is).
pub fn strip<R: BufRead + Seek>(mut reader: R) -> Result<Option<Plan>, StripError> {
    reader.seek(SeekFrom::Start(0))?;
    let head = reader.fill_buf()?;
    let edits = if head.starts_with(b"\xFF\xD8") {
        jpeg(&mut reader)?
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(&mut reader)?
    } else if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        webp(&mut reader)?
    } else {
        Vec::new()
    };
    Ok((!edits.is_empty()).then_some(Plan { edits }))
}

impl Plan {
    /// Copies `source` to `out` with the edits made; returns the bytes
    /// written.
    pub fn apply<R: Read + Seek, W: Write>(&self, mut source: R, mut out: W) -> io::Result<u64> {
        source.seek(SeekFrom::Start(0))?;
        let mut at = 0;
        let mut written = 0;
        for edit in &self.edits {
            let kept = io::copy(&mut (&mut source).take(edit.at - at), &mut out)?;
            if kept != edit.at - at {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            out.write_all(&edit.insert)?;
            let removed = i64::try_from(edit.remove).map_err(io::Error::other)?;
            source.seek(SeekFrom::Current(removed))?;
            at = edit.at + edit.remove;
            written += kept + edit.insert.len() as u64;
        }
        written += io::copy(&mut source, &mut out)?;
        out.flush()?;
        Ok(written)
    }
}

/// Where a walk is, and what it decided so far.
struct Walk<'a, R> {
    reader: &'a mut R,
    edits: Vec<Edit>,
    /// The orientation of the first Exif block removed.
    orientation: Option<u16>,
}

impl<'a, R: Read + Seek> Walk<'a, R> {
    fn new(reader: &'a mut R) -> Self {
        Self {
            reader,
            edits: Vec::new(),
            orientation: None,
        }
    }

    fn position(&mut self) -> io::Result<u64> {
        self.reader.stream_position()
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        self.reader
            .seek(SeekFrom::Current(
                i64::try_from(n).map_err(io::Error::other)?,
            ))
            .map(drop)
    }

    /// Reads a metadata block of `len` bytes (at most [`META_READ`] of it)
    /// and leaves the reader after the block.
    fn read_block(&mut self, len: u64) -> io::Result<Vec<u8>> {
        let mut block = Vec::new();
        self.reader
            .by_ref()
            .take(len.min(META_READ))
            .read_to_end(&mut block)?;
        self.skip(len - block.len() as u64)?;
        Ok(block)
    }

    /// Removes `len` bytes at `at`, an Exif block whose TIFF data is `tiff`
    /// if it is one: its orientation (other than 1) comes back as a minimal
    /// block made by `minimal`.
    fn remove(&mut self, at: u64, len: u64, tiff: Option<&[u8]>, minimal: fn(u16) -> Vec<u8>) {
        let mut insert = Vec::new();
        if self.orientation.is_none()
            && let Some(o) = tiff.and_then(orientation)
        {
            self.orientation = Some(o);
            if o != 1 {
                insert = minimal(o);
            }
        }
        self.edits.push(Edit {
            at,
            remove: len,
            insert,
        });
    }

    /// An Exif block (or, `tiff` being `None`, another APP1 block) of `len`
    /// bytes at `at`: the first minimal block is kept as it is, anything
    /// else removed (see [`Walk::remove`]), so a file keeps at most one.
    /// Whether an Exif block stays in its place.
    fn exif(
        &mut self,
        at: u64,
        len: u64,
        tiff: Option<&[u8]>,
        minimal: fn(u16) -> Vec<u8>,
    ) -> bool {
        if self.orientation.is_none()
            && let Some(tiff) = tiff.filter(|t| is_minimal(t))
        {
            self.orientation = orientation(tiff);
            return true;
        }
        self.remove(at, len, tiff, minimal);
        self.edits.last().is_some_and(|e| !e.insert.is_empty())
    }

    /// Removes everything from `at` to `end` (bytes after the image's end).
    fn remove_rest(&mut self, at: u64, end: u64) {
        if end > at {
            self.edits.push(Edit {
                at,
                remove: end - at,
                insert: Vec::new(),
            });
        }
    }
}

fn jpeg<R: BufRead + Seek>(reader: &mut R) -> io::Result<Vec<Edit>> {
    let end = reader.seek(SeekFrom::End(0))?;
    let mut walk = Walk::new(reader);
    walk.reader.seek(SeekFrom::Start(2))?;
    // The marker that ended a scan's entropy-coded data, and where it is.
    let mut after_scan = None;
    loop {
        let (at, marker) = match after_scan.take() {
            Some(found) => found,
            None => {
                let at = walk.position()?;
                let Ok([0xFF, mut marker]) = read_array(walk.reader) else {
                    break;
                };
                let mut at = at;
                while marker == 0xFF {
                    at += 1;
                    let Ok([next]) = read_array(walk.reader) else {
                        return Ok(walk.edits);
                    };
                    marker = next;
                }
                (at, marker)
            }
        };
        match marker {
            // Standalone markers.
            0x01 | 0xD0..=0xD8 => continue,
            // The end of the image: what follows (a multi-picture file's
            // previews, with their own Exif, or anything appended) goes.
            0xD9 => {
                walk.remove_rest(at + 2, end);
                break;
            }
            0x00 => break,
            _ => {}
        }
        let Ok(len) = read_array(walk.reader).map(u16::from_be_bytes) else {
            break;
        };
        let Some(payload) = u64::from(len).checked_sub(2) else {
            break;
        };
        let segment = u64::from(len) + 2;
        match marker {
            0xE1 => {
                let block = walk.read_block(payload)?;
                walk.exif(at, segment, block.strip_prefix(b"Exif\0\0"), jpeg_exif);
            }
            0xED | 0xFE => {
                walk.skip(payload)?;
                walk.remove(at, segment, None, jpeg_exif);
            }
            // A scan header: its entropy-coded data runs to the next marker
            // (more tables, the next scan, or the end).
            0xDA => {
                walk.skip(payload)?;
                match next_marker(walk.reader)? {
                    Some(found) => after_scan = Some(found),
                    None => break,
                }
            }
            _ => walk.skip(payload)?,
        }
    }
    Ok(walk.edits)
}

/// Reads entropy-coded data up to the next marker: where its `FF` is and
/// its code; `None` at the end of the file. In that data an `FF` is
/// followed by `00` (a stuffed byte), a restart marker or more `FF` fill
/// bytes; any other code is a marker.
fn next_marker<R: BufRead + Seek>(reader: &mut R) -> io::Result<Option<(u64, u8)>> {
    let mut start = reader.stream_position()?;
    let mut after_ff = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        for (i, &b) in buf.iter().enumerate() {
            if after_ff {
                match b {
                    0x00 | 0xD0..=0xD7 => after_ff = false,
                    0xFF => {}
                    code => {
                        reader.consume(i + 1);
                        return Ok(Some((start + i as u64 - 1, code)));
                    }
                }
            } else {
                after_ff = b == 0xFF;
            }
        }
        let n = buf.len();
        reader.consume(n);
        start += n as u64;
    }
}

fn png<R: BufRead + Seek>(reader: &mut R) -> Result<Vec<Edit>, StripError> {
    let end = reader.seek(SeekFrom::End(0))?;
    let mut walk = Walk::new(reader);
    let mut at = walk.reader.seek(SeekFrom::Start(8))?;
    // A file that ends where a chunk ends, before IEND, has nothing more to
    // walk (decoders judge whether its image data is whole).
    while at < end {
        if end - at < 12 {
            return Err(StripError::Malformed("a PNG chunk runs past the end"));
        }
        let head: [u8; 8] = read_array(walk.reader)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind: [u8; 4] = [head[4], head[5], head[6], head[7]];
        if len > 0x7FFF_FFFF || !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(StripError::Malformed("a PNG chunk header is not valid"));
        }
        let chunk = u64::from(len) + 12;
        if chunk > end - at {
            return Err(StripError::Malformed("a PNG chunk runs past the end"));
        }
        match &kind {
            b"IEND" => {
                walk.remove_rest(at + chunk, end);
                return Ok(walk.edits);
            }
            b"eXIf" => {
                let block = walk.read_block(len.into())?;
                walk.skip(4)?;
                walk.exif(at, chunk, Some(&block), png_exif);
            }
            k if PNG_KEPT.contains(&k) || PNG_FRAMES.contains(&k) => walk.skip(chunk - 8)?,
            // A decoder must refuse a critical chunk it does not know.
            k if k[0].is_ascii_uppercase() => {
                return Err(StripError::Malformed("a PNG has an unknown critical chunk"));
            }
            _ => {
                walk.skip(chunk - 8)?;
                walk.remove(at, chunk, None, png_exif);
            }
        }
        at += chunk;
    }
    // No IEND: a decoder may still read the file if a chunk follows the
    // image data, and the one that did may have been removed; a stripped
    // copy ends with IEND, so it reads at least as well as the original.
    if !walk.edits.is_empty() {
        walk.edits.push(Edit {
            at: end,
            remove: 0,
            insert: PNG_IEND.to_vec(),
        });
    }
    Ok(walk.edits)
}

fn webp<R: BufRead + Seek>(reader: &mut R) -> Result<Vec<Edit>, StripError> {
    let end = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(0))?;
    let mut walk = Walk::new(reader);
    let header: [u8; 12] = read_array(walk.reader)
        .map_err(|_| StripError::Malformed("a WebP ends inside its RIFF header"))?;
    let riff_size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let riff_end = u64::from(riff_size) + 8;
    if riff_end > end {
        return Err(StripError::Malformed("a WebP's RIFF size is past its end"));
    }
    // Whether the file is extended (VP8X), and its flags.
    let mut vp8x = None;
    let mut exif_kept = false;
    let mut at = 12;
    while at < riff_end {
        if riff_end - at < 8 {
            return Err(StripError::Malformed("a WebP chunk runs past the RIFF end"));
        }
        let head: [u8; 8] = read_array(walk.reader)?;
        let len = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
        let padded = len + (len & 1);
        if padded + 8 > riff_end - at {
            return Err(StripError::Malformed("a WebP chunk runs past the RIFF end"));
        }
        let kind: [u8; 4] = [head[0], head[1], head[2], head[3]];
        let first = at == 12;
        match &kind {
            b"VP8X" if first => {
                let block = walk.read_block(padded)?;
                vp8x = Some(
                    *block
                        .first()
                        .ok_or(StripError::Malformed("a WebP's VP8X chunk is empty"))?,
                );
            }
            b"VP8 " | b"VP8L" if first => walk.skip(padded)?,
            _ if first => {
                return Err(StripError::Malformed("a WebP starts with no image chunk"));
            }
            // A simple WebP is its image chunk and nothing else: anything
            // after it is unreadable to decoders and seen by metadata tools.
            _ if vp8x.is_none() => {
                walk.skip(padded)?;
                walk.remove(at, padded + 8, None, webp_exif);
            }
            b"EXIF" => {
                let block = walk.read_block(len)?;
                walk.skip(padded - len)?;
                let tiff = block.strip_prefix(b"Exif\0\0").unwrap_or(&block);
                exif_kept |= walk.exif(at, padded + 8, Some(tiff), webp_exif);
            }
            k if WEBP_KEPT.contains(&k) => walk.skip(padded)?,
            _ => {
                walk.skip(padded)?;
                walk.remove(at, padded + 8, None, webp_exif);
            }
        }
        at += padded + 8;
    }
    if at == 12 {
        return Err(StripError::Malformed("a WebP has no chunk"));
    }
    let removed: u64 = walk.edits.iter().map(|e| e.remove).sum();
    let inserted: u64 = walk.edits.iter().map(|e| e.insert.len() as u64).sum();
    walk.remove_rest(riff_end, end);
    if walk.edits.is_empty() {
        return Ok(walk.edits);
    }
    let mut edits = Vec::new();
    if removed != inserted {
        // The kept chunks are within the old size, so this fits in 32 bits.
        let size = u32::try_from(u64::from(riff_size) + inserted - removed)
            .map_err(|_| StripError::Malformed("a WebP's RIFF size does not fit"))?;
        edits.push(Edit {
            at: 4,
            remove: 4,
            insert: size.to_le_bytes().to_vec(),
        });
    }
    if let Some(flags) = vp8x {
        let mut new_flags = flags & !VP8X_XMP;
        if !exif_kept {
            new_flags &= !VP8X_EXIF;
        }
        if new_flags != flags {
            edits.push(Edit {
                at: 20,
                remove: 1,
                insert: vec![new_flags],
            });
        }
    }
    edits.append(&mut walk.edits);
    Ok(edits)
}

/// The Orientation in IFD0 of TIFF data (the body of an Exif block).
fn orientation(tiff: &[u8]) -> Option<u16> {
    let big = match tiff.get(..4)? {
        b"MM\0\x2a" => true,
        b"II\x2a\0" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let entries = u16_at(ifd)?;
    (0..usize::from(entries))
        .map(|i| ifd + 2 + 12 * i)
        .find(|&entry| u16_at(entry) == Some(ORIENTATION) && u16_at(entry + 2) == Some(3))
        .and_then(|entry| u16_at(entry + 8))
        .filter(|o| (1..=8).contains(o))
}

/// TIFF data with one IFD holding only the Orientation tag.
fn minimal_tiff(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    tiff.extend_from_slice(&ORIENTATION.to_be_bytes());
    tiff.extend_from_slice(b"\0\x03\0\0\0\x01");
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0; 6]);
    tiff
}

/// Whether TIFF data is exactly what [`minimal_tiff`] makes: kept as it is.
fn is_minimal(tiff: &[u8]) -> bool {
    orientation(tiff).is_some_and(|o| tiff == minimal_tiff(o))
}

fn jpeg_exif(orientation: u16) -> Vec<u8> {
    let tiff = minimal_tiff(orientation);
    let len = u16::try_from(tiff.len() + 8).unwrap_or(u16::MAX);
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(&len.to_be_bytes());
    segment.extend_from_slice(b"Exif\0\0");
    segment.extend_from_slice(&tiff);
    segment
}

fn png_exif(orientation: u16) -> Vec<u8> {
    let tiff = minimal_tiff(orientation);
    let len = u32::try_from(tiff.len()).unwrap_or(u32::MAX);
    let mut chunk = len.to_be_bytes().to_vec();
    chunk.extend_from_slice(b"eXIf");
    chunk.extend_from_slice(&tiff);
    let crc = crc32(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    chunk
}

fn webp_exif(orientation: u16) -> Vec<u8> {
    let tiff = minimal_tiff(orientation);
    let len = u32::try_from(tiff.len()).unwrap_or(u32::MAX);
    let mut chunk = b"EXIF".to_vec();
    chunk.extend_from_slice(&len.to_le_bytes());
    chunk.extend_from_slice(&tiff);
    chunk
}

/// PNG's chunk CRC, bit by bit: it only ever covers a few dozen bytes here.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &b| {
        (0..8).fold(crc ^ u32::from(b), |c, _| {
            (c >> 1) ^ (0xEDB8_8320 & (c & 1).wrapping_neg())
        })
    })
}

fn read_array<R: Read, const N: usize>(reader: &mut R) -> io::Result<[u8; N]> {
    let mut buf = [0; N];
    reader.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn stripped(bytes: &[u8]) -> Option<Vec<u8>> {
        let plan = strip(Cursor::new(bytes)).expect("walk")?;
        let mut out = Vec::new();
        let n = plan.apply(Cursor::new(bytes), &mut out).expect("apply");
        assert_eq!(n, out.len() as u64);
        Some(out)
    }

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&u16::try_from(payload.len() + 2).expect("len").to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    /// Exif with Orientation 6 and a GPS IFD pointer, little-endian.
    fn camera_exif() -> Vec<u8> {
        let mut tiff = b"II\x2a\0\x08\0\0\0\x02\0".to_vec();
        tiff.extend_from_slice(b"\x12\x01\x03\0\x01\0\0\0\x06\0\0\0");
        tiff.extend_from_slice(b"\x25\x88\x04\0\x01\0\0\0\x26\0\0\0");
        tiff.extend_from_slice(b"\0\0\0\0GPS-DATA-HERE");
        tiff
    }

    const SOF: &[u8] =
        b"\xFF\xC0\x00\x11\x08\x01\xE0\x02\x80\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01";

    #[test]
    fn reads_the_orientation_in_either_byte_order() {
        assert_eq!(orientation(&camera_exif()), Some(6));
        assert_eq!(orientation(&minimal_tiff(8)), Some(8));
        assert!(is_minimal(&minimal_tiff(3)));
        assert!(!is_minimal(&camera_exif()));
    }

    #[test]
    fn a_jpeg_loses_exif_xmp_iptc_and_comments_but_keeps_icc_and_orientation() {
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend_from_slice(&camera_exif());
        let icc = segment(0xE2, b"ICC_PROFILE\0\x01\x01profile");
        let mut jpeg = b"\xFF\xD8".to_vec();
        jpeg.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        jpeg.extend(segment(0xE1, &exif));
        jpeg.extend(segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>"));
        jpeg.extend(&icc);
        jpeg.extend(segment(0xED, b"Photoshop 3.0\0IPTC"));
        jpeg.extend(segment(0xFE, b"a comment"));
        jpeg.extend(SOF);
        jpeg.extend(b"\xFF\xDA\x00\x02pixels\xFF\xD9");
        let out = stripped(&jpeg).expect("something to strip");
        let mut want = b"\xFF\xD8".to_vec();
        want.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        want.extend(jpeg_exif(6));
        want.extend(&icc);
        want.extend(SOF);
        want.extend(b"\xFF\xDA\x00\x02pixels\xFF\xD9");
        assert_eq!(out, want);
        assert_eq!(stripped(&out), None, "stripping twice changes nothing");
    }

    #[test]
    fn a_jpeg_without_metadata_is_left_alone() {
        let mut jpeg = b"\xFF\xD8".to_vec();
        jpeg.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        jpeg.extend(SOF);
        jpeg.extend(b"random \xFF\xE1 data after the frame header");
        assert_eq!(stripped(&jpeg), None);
    }

    fn png_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = u32::try_from(data.len())
            .expect("len")
            .to_be_bytes()
            .to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let crc = crc32(&c[4..]);
        c.extend_from_slice(&crc.to_be_bytes());
        c
    }

    #[test]
    fn a_png_loses_its_text_and_exif_chunks() {
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        let ihdr = png_chunk(b"IHDR", b"\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0");
        let iccp = png_chunk(b"iCCP", b"p\0\0data");
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(&ihdr);
        png.extend(&iccp);
        png.extend(png_chunk(b"tEXt", b"Author\0Someone"));
        png.extend(png_chunk(b"eXIf", &camera_exif()));
        png.extend(png_chunk(b"IDAT", b"pixels"));
        png.extend(png_chunk(b"iTXt", b"Comment\0\0\0\0\0hello"));
        png.extend(png_chunk(b"IEND", b""));
        let out = stripped(&png).expect("something to strip");
        let mut want = b"\x89PNG\r\n\x1a\n".to_vec();
        want.extend(&ihdr);
        want.extend(&iccp);
        want.extend(png_exif(6));
        want.extend(png_chunk(b"IDAT", b"pixels"));
        want.extend(png_chunk(b"IEND", b""));
        assert_eq!(out, want);
        assert_eq!(stripped(&out), None);
    }

    fn webp_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = kind.to_vec();
        c.extend_from_slice(&u32::try_from(data.len()).expect("len").to_le_bytes());
        c.extend_from_slice(data);
        if data.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    fn webp(flags: u8, chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut body = b"WEBP".to_vec();
        body.extend(webp_chunk(b"VP8X", &[flags, 0, 0, 0, 9, 0, 0, 9, 0, 0]));
        for c in chunks {
            body.extend(c);
        }
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&u32::try_from(body.len()).expect("len").to_le_bytes());
        file.extend(body);
        file
    }

    #[test]
    fn a_webp_loses_exif_and_xmp_and_its_flags_say_so() {
        let iccp = webp_chunk(b"ICCP", b"profile");
        let image = webp_chunk(b"VP8L", b"\x2fpixels");
        let xmp = webp_chunk(b"XMP ", b"<x:xmpmeta/>");
        let mut plain_exif = b"II\x2a\0\x08\0\0\0\x01\0".to_vec();
        plain_exif.extend_from_slice(b"\x25\x88\x04\0\x01\0\0\0\x1a\0\0\0\0\0\0\0GPS");
        let out = stripped(&webp(
            0x2C,
            &[
                iccp.clone(),
                image.clone(),
                webp_chunk(b"EXIF", &plain_exif),
                xmp,
            ],
        ))
        .expect("something to strip");
        assert_eq!(out, webp(0x20, &[iccp.clone(), image.clone()]));
        let rotated = stripped(&webp(
            0x28,
            &[image.clone(), webp_chunk(b"EXIF", &camera_exif())],
        ))
        .expect("something to strip");
        assert_eq!(rotated, webp(0x28, &[image.clone(), webp_exif(6)]));
        assert_eq!(stripped(&rotated), None);
        assert_eq!(stripped(&webp(0x20, &[iccp, image])), None);
    }

    // The tests below use literal bytes only: nothing expected is made by
    // the code under test. Chunk CRCs are zero: the walk does not read them.

    const SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
    const IHDR: &[u8] = b"\0\0\0\x0dIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\0\0\0\0";
    const IDAT: &[u8] = b"\0\0\0\x02IDATxx\0\0\0\0";
    const IEND: &[u8] = b"\0\0\0\0IEND\0\0\0\0";

    fn strip_bytes(bytes: &[u8]) -> Result<Option<Vec<u8>>, StripError> {
        let Some(plan) = strip(Cursor::new(bytes))? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        plan.apply(Cursor::new(bytes), &mut out)?;
        Ok(Some(out))
    }

    fn refused(bytes: &[u8]) -> bool {
        matches!(strip(Cursor::new(bytes)), Err(StripError::Malformed(_)))
    }

    #[test]
    fn a_png_loses_exif_in_any_case_unknown_chunks_and_bytes_after_iend() {
        let input = [
            SIG,
            IHDR,
            b"\0\0\0\x03exIfGPS\0\0\0\0",
            b"\0\0\0\x03eXIFGPS\0\0\0\0",
            b"\0\0\0\x01prVtx\0\0\0\0",
            b"\0\0\0\x01tIMEx\0\0\0\0",
            b"\0\0\0\x04pHYsxxxx\0\0\0\0",
            IDAT,
            IEND,
            b"\0\0\0\x04tEXtGPS!\0\0\0\0",
        ]
        .concat();
        let want = [SIG, IHDR, b"\0\0\0\x04pHYsxxxx\0\0\0\0", IDAT, IEND].concat();
        assert_eq!(strip_bytes(&input).expect("parses"), Some(want));
        let clean = [SIG, IHDR, IDAT, IEND].concat();
        assert_eq!(strip_bytes(&clean).expect("parses"), None);
        // Ending where a chunk ends, before IEND: nothing more to walk.
        assert_eq!(strip_bytes(&[SIG, IHDR].concat()).expect("parses"), None);
    }

    #[test]
    fn a_png_whose_chunks_do_not_parse_is_refused() {
        // A chunk longer than the file, a cut chunk header, a critical chunk
        // no decoder knows, a type that is not four letters.
        assert!(refused(&[SIG, IHDR, b"\0\0\0\x09IDATxx\0\0\0\0"].concat()));
        assert!(refused(&[SIG, IHDR, b"\0\0\0"].concat()));
        assert!(refused(
            &[SIG, IHDR, b"\0\0\0\x01GPSxx\0\0\0\0", IEND].concat()
        ));
        assert!(refused(
            &[SIG, IHDR, b"\0\0\0\x01tE-tx\0\0\0\0", IEND].concat()
        ));
        assert!(refused(
            &[SIG, IHDR, b"\x80\0\0\0tEXt\0\0\0\0", IEND].concat()
        ));
    }

    /// A simple lossless WebP: RIFF size 18, one VP8L chunk of 5 bytes and
    /// its padding.
    const SIMPLE: &[u8] = b"RIFF\x12\0\0\0WEBPVP8L\x05\0\0\0\x2fabcd\0";

    #[test]
    fn a_simple_webp_keeps_only_its_image_chunk_and_nothing_after_the_riff_end() {
        let input = [
            b"RIFF\x2a\0\0\0WEBPVP8L\x05\0\0\0\x2fabcd\0".as_slice(),
            b"EXIF\x04\0\0\0GPS!",
            b"XMP \x03\0\0\0GPS\0",
        ]
        .concat();
        assert_eq!(strip_bytes(&input).expect("parses"), Some(SIMPLE.to_vec()));
        let trailing = [SIMPLE, b"EXIF\x04\0\0\0GPS!"].concat();
        assert_eq!(
            strip_bytes(&trailing).expect("parses"),
            Some(SIMPLE.to_vec())
        );
        assert_eq!(strip_bytes(SIMPLE).expect("parses"), None);
    }

    #[test]
    fn an_extended_webp_loses_unknown_chunks_and_its_riff_size_follows() {
        let vp8x = b"VP8X\x0a\0\0\0\x08\0\0\0\0\0\0\0\0\0".as_slice();
        let input = [
            b"RIFF\x3c\0\0\0WEBP".as_slice(),
            vp8x,
            b"VP8L\x05\0\0\0\x2fabcd\0",
            b"GPSx\x04\0\0\0GPS!",
            b"EXIF\x04\0\0\0II*\0",
        ]
        .concat();
        // The Exif flag goes with the Exif chunk (it held no orientation).
        let want = [
            b"RIFF\x24\0\0\0WEBP".as_slice(),
            b"VP8X\x0a\0\0\0\0\0\0\0\0\0\0\0\0\0",
            b"VP8L\x05\0\0\0\x2fabcd\0",
        ]
        .concat();
        assert_eq!(strip_bytes(&input).expect("parses"), Some(want));
    }

    #[test]
    fn a_webp_whose_riff_size_does_not_match_its_chunks_is_refused() {
        // Ends inside the image chunk; ends past the file; no image chunk
        // first; no chunk at all.
        assert!(refused(b"RIFF\x0e\0\0\0WEBPVP8L\x05\0\0\0\x2fabcd\0"));
        assert!(refused(b"RIFF\x40\0\0\0WEBPVP8L\x05\0\0\0\x2fabcd\0"));
        assert!(refused(b"RIFF\x12\0\0\0WEBPEXIF\x05\0\0\0\x2fabcd\0"));
        assert!(refused(b"RIFF\x04\0\0\0WEBP"));
    }

    #[test]
    fn a_png_keeps_one_minimal_exif_and_loses_a_second_exif() {
        // Orientation 6, big-endian, one IFD: the minimal block itself.
        let minimal = b"\0\0\0\x1aeXIfMM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0\0\0\0\0";
        // Little-endian, orientation 3: not minimal, and not a second
        // orientation either.
        let gps = b"\0\0\0\x1aeXIfII\x2a\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x03\0\0\0\0\0\0\0\0\0\0\0";
        let input = [SIG, IHDR, minimal, gps, IDAT, IEND].concat();
        let want = [SIG, IHDR, minimal, IDAT, IEND].concat();
        assert_eq!(strip_bytes(&input).expect("parses"), Some(want));
    }

    #[test]
    fn a_jpeg_loses_comments_between_scans_and_bytes_after_eoi() {
        // SOI, a scan header, entropy-coded data with a stuffed byte, a
        // restart marker and fill bytes, a comment between scans, a second
        // scan, EOI, then a preview JPEG with its own Exif.
        let head = b"\xFF\xD8\xFF\xDA\x00\x03\x01a\xFF\x00b\xFF\xD3c\xFF\xFF".as_slice();
        let comment = b"\xFF\xFE\x00\x05GPS".as_slice();
        let tail = b"\xFF\xDA\x00\x03\x01d\xFF\xD9".as_slice();
        let preview = b"\xFF\xD8\xFF\xE1\x00\x0aExif\0\0GPS\xFF\xD9".as_slice();
        let input = [head, comment, tail, preview].concat();
        assert_eq!(
            strip_bytes(&input).expect("parses"),
            Some([head, tail].concat())
        );
        // Without EOI (a cut file) nothing after the scan is touched.
        let cut = b"\xFF\xD8\xFF\xDA\x00\x03\x01a\xFF\x00b".as_slice();
        assert_eq!(strip_bytes(cut).expect("parses"), None);
    }

    #[test]
    fn a_png_without_iend_that_loses_a_chunk_gets_one() {
        // As the fuzzer found it: IEND misspelt `nEND` is an unknown chunk
        // after the image data; without it the decoder met the end of the
        // file where it wanted a chunk.
        let input = [SIG, IHDR, IDAT, b"\0\0\0\0nEND\0\0\0\0"].concat();
        let want = [SIG, IHDR, IDAT, b"\0\0\0\0IEND\xAE\x42\x60\x82"].concat();
        assert_eq!(strip_bytes(&input).expect("parses"), Some(want));
    }

    // Camera metadata, literal: nothing expected below is made by the code
    // under test.

    /// TIFF data as cameras write it: ImageWidth (a SHORT too) and Make
    /// before the Orientation, 8; little-endian.
    const CAMERA_TIFF: &[u8] = b"II\x2a\0\x08\0\0\0\x03\0\
        \x00\x01\x03\0\x01\0\0\0\x80\x02\0\0\
        \x0f\x01\x02\0\x04\0\0\0Cam\0\
        \x12\x01\x03\0\x01\0\0\0\x08\0\0\0\
        \0\0\0\0";

    /// What replaces an Exif block of orientation 8: big-endian TIFF data,
    /// one IFD, one entry.
    const MINIMAL_8: &[u8] = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x08\0\0\0\0\0\0";

    #[test]
    fn the_orientation_is_found_after_other_entries_of_ifd0() {
        assert_eq!(orientation(CAMERA_TIFF), Some(8));
        assert_eq!(orientation(MINIMAL_8), Some(8));
        // The Orientation tag with another type than SHORT is not one.
        let mut long = CAMERA_TIFF.to_vec();
        long[36] = 4;
        assert_eq!(orientation(&long), None);
    }

    #[test]
    fn a_camera_orientation_stays_in_each_format_as_a_minimal_block() {
        let scan = b"\xFF\xDA\x00\x03\x01a\xFF\xD9".as_slice();
        let jpeg = [
            b"\xFF\xD8\xFF\xE1\x00\x3aExif\0\0".as_slice(),
            CAMERA_TIFF,
            scan,
        ]
        .concat();
        let want = [
            b"\xFF\xD8\xFF\xE1\x00\x22Exif\0\0".as_slice(),
            MINIMAL_8,
            scan,
        ]
        .concat();
        assert_eq!(strip_bytes(&jpeg).expect("parses"), Some(want));

        let exif = [b"\0\0\0\x32eXIf".as_slice(), CAMERA_TIFF, b"\0\0\0\0"].concat();
        let png = [SIG, IHDR, &exif, IDAT, IEND].concat();
        // The CRC over `eXIf` and the data, as zlib computes it.
        let minimal = [b"\0\0\0\x1aeXIf".as_slice(), MINIMAL_8, b"\x86\x58\x30\x34"].concat();
        let want = [SIG, IHDR, &minimal, IDAT, IEND].concat();
        assert_eq!(strip_bytes(&png).expect("parses"), Some(want));

        let image = b"VP8L\x05\0\0\0\x2fabcd\0".as_slice();
        let webp = [
            b"RIFF\x5e\0\0\0WEBPVP8X\x0a\0\0\0\x08\0\0\0\0\0\0\0\0\0".as_slice(),
            image,
            b"EXIF\x32\0\0\0",
            CAMERA_TIFF,
        ]
        .concat();
        let want = [
            b"RIFF\x46\0\0\0WEBPVP8X\x0a\0\0\0\x08\0\0\0\0\0\0\0\0\0".as_slice(),
            image,
            b"EXIF\x1a\0\0\0",
            MINIMAL_8,
        ]
        .concat();
        assert_eq!(strip_bytes(&webp).expect("parses"), Some(want));
    }

    #[test]
    fn a_jpeg_comment_after_a_standalone_marker_and_fill_bytes_goes() {
        let input = b"\xFF\xD8\xFF\x01\xFF\xFF\xFE\x00\x05GPS\xFF\xDA\x00\x03\x01a\xFF\xD9";
        let want = b"\xFF\xD8\xFF\x01\xFF\xFF\xDA\x00\x03\x01a\xFF\xD9".to_vec();
        assert_eq!(strip_bytes(input).expect("parses"), Some(want));
    }

    #[test]
    fn a_comment_after_a_scan_of_several_bytes_goes() {
        let input = b"\xFF\xD8\xFF\xDA\x00\x03\x01abc\xFF\xFE\x00\x05GPS\xFF\xD9";
        let want = b"\xFF\xD8\xFF\xDA\x00\x03\x01abc\xFF\xD9".to_vec();
        assert_eq!(strip_bytes(input).expect("parses"), Some(want.clone()));
        // The same, read through a buffer smaller than the scan's data.
        let plan = strip(io::BufReader::with_capacity(4, Cursor::new(input)))
            .expect("walk")
            .expect("something to strip");
        let mut out = Vec::new();
        plan.apply(Cursor::new(input), &mut out).expect("apply");
        assert_eq!(out, want);
    }

    #[test]
    fn a_jpeg_walk_ends_where_no_marker_is() {
        // `FF 00` where a segment must start: what follows is not walked,
        // even if it reads as a comment.
        let input = b"\xFF\xD8\xFF\x00\x00\x05GPS\xFF\xFE\x00\x05GPS\xFF\xD9";
        assert_eq!(strip_bytes(input).expect("parses"), None);
    }

    #[test]
    fn an_even_exif_chunk_goes_and_the_chunk_after_it_stays() {
        let image = b"VP8L\x05\0\0\0\x2fabcd\0".as_slice();
        let iccp = b"ICCP\x03\0\0\0abc\0".as_slice();
        let input = [
            b"RIFF\x3c\0\0\0WEBPVP8X\x0a\0\0\0\x28\0\0\0\0\0\0\0\0\0".as_slice(),
            image,
            b"EXIF\x04\0\0\0II*\0",
            iccp,
        ]
        .concat();
        let want = [
            b"RIFF\x30\0\0\0WEBPVP8X\x0a\0\0\0\x20\0\0\0\0\0\0\0\0\0".as_slice(),
            image,
            iccp,
        ]
        .concat();
        assert_eq!(strip_bytes(&input).expect("parses"), Some(want));
    }

    #[test]
    fn a_riff_file_that_is_not_a_webp_is_left_alone() {
        assert_eq!(
            strip_bytes(b"RIFF\x0c\0\0\0WAVEfmt \0\0\0\0").expect("parses"),
            None
        );
    }

    /// A file of `len` bytes, zero but for `parts` (each at its offset),
    /// that holds none of its zeros in memory.
    struct Sparse {
        parts: Vec<(u64, &'static [u8])>,
        len: u64,
        at: u64,
    }

    impl Read for Sparse {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = usize::try_from(self.len.saturating_sub(self.at))
                .unwrap_or(usize::MAX)
                .min(out.len());
            let out = &mut out[..n];
            out.fill(0);
            for (start, bytes) in &self.parts {
                for (i, b) in bytes.iter().enumerate() {
                    let offset = start + i as u64;
                    if (self.at..self.at + n as u64).contains(&offset) {
                        out[(offset - self.at) as usize] = *b;
                    }
                }
            }
            self.at += n as u64;
            Ok(n)
        }
    }

    impl Seek for Sparse {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.at = match to {
                SeekFrom::Start(n) => n,
                SeekFrom::End(n) => self.len.saturating_add_signed(n),
                SeekFrom::Current(n) => self.at.saturating_add_signed(n),
            };
            Ok(self.at)
        }
    }

    #[test]
    fn a_png_chunk_of_the_largest_length_is_walked() {
        // IDAT of 2^31 - 1 bytes (the most PNG allows), then a text chunk
        // and IEND: 2 GiB that are never read, only skipped.
        let idat = 8 + 25;
        let text = idat + 12 + 0x7FFF_FFFF;
        let png = Sparse {
            parts: vec![
                (0, SIG),
                (8, IHDR),
                (idat, b"\x7F\xFF\xFF\xFFIDAT"),
                (text, b"\0\0\0\x01tEXtx\0\0\0\0"),
                (text + 13, IEND),
            ],
            len: text + 13 + 12,
            at: 0,
        };
        let plan = strip(io::BufReader::new(png))
            .expect("walked")
            .expect("something to strip");
        assert_eq!(
            plan.edits,
            [Edit {
                at: 0x8000_002C,
                remove: 13,
                insert: Vec::new(),
            }]
        );
    }

    #[test]
    fn a_webp_riff_size_that_ends_inside_a_chunk_header_is_malformed() {
        // Four bytes of a header left in the RIFF, and the file ends there:
        // the file is refused, not an error reading it.
        assert!(refused(b"RIFF\x16\0\0\0WEBPVP8L\x05\0\0\0\x2fabcd\0EXIF"));
    }

    #[test]
    fn an_empty_chunk_at_the_riff_end_is_walked() {
        let input = [
            b"RIFF\x2c\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0\0\0\0\0\0\0".as_slice(),
            b"VP8L\x05\0\0\0\x2fabcd\0",
            b"GPSx\0\0\0\0",
        ]
        .concat();
        let want = [
            b"RIFF\x24\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0\0\0\0\0\0\0".as_slice(),
            b"VP8L\x05\0\0\0\x2fabcd\0",
        ]
        .concat();
        assert_eq!(strip_bytes(&input).expect("parses"), Some(want));
    }

    #[test]
    fn after_a_simple_webp_image_chunk_even_image_and_kept_chunks_go() {
        // VP8X and a second VP8L are image chunks only first; ICCP is kept
        // only in an extended file.
        let input = [
            b"RIFF\x3e\0\0\0WEBPVP8L\x05\0\0\0\x2fabcd\0".as_slice(),
            b"VP8X\x0a\0\0\0\x2c\0\0\0\0\0\0\0\0\0",
            b"VP8L\x05\0\0\0\x2fefgh\0",
            b"ICCP\x03\0\0\0abc\0",
        ]
        .concat();
        assert_eq!(strip_bytes(&input).expect("parses"), Some(SIMPLE.to_vec()));
    }

    #[test]
    fn an_orientation_2_kib_into_the_exif_block_is_kept() {
        // IFD0 after 2 KiB of other TIFF data (where a camera may put its
        // maker notes): still within what is read of a block.
        let head = b"\xFF\xD8\xFF\xE1\x08\x1aExif\0\0MM\0\x2a\0\0\x08\0".as_slice();
        let ifd0 = b"\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0".as_slice();
        let scan = b"\xFF\xDA\x00\x03\x01a\xFF\xD9".as_slice();
        let input = [head, &[0; 0x800 - 8], ifd0, scan].concat();
        let want = [
            b"\xFF\xD8\xFF\xE1\x00\x22Exif\0\0".as_slice(),
            b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0",
            scan,
        ]
        .concat();
        assert_eq!(strip_bytes(&input).expect("parses"), Some(want));
    }
}
