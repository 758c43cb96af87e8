//! How many pixels a file asks a decoder for, all frames counted: the
//! measure of a decompression bomb (SPEC §2.7). A still picture is its
//! width × height. An animation is decoded frame after frame onto its
//! canvas, so each frame costs at least the canvas:
//!
//! - GIF: every image descriptor counts the larger of the logical screen and
//!   the frame it describes (a decoder enlarges its canvas for a frame that
//!   does not fit);
//! - animated PNG: `acTL`'s frame count × the IHDR area (every frame fits in
//!   it, and the count is announced before any pixel data);
//! - animated WebP: every `ANMF` frame counts the larger of the canvas and
//!   the frame.
//!
//! The walk reads headers and skips payloads (PNG and WebP chunks by
//! seeking; GIF sub-blocks, at most 255 bytes each, by reading), so memory
//! stays bounded whatever the file. A file that ends early counts what it
//! holds, which lets a partly received file be refused before its end.
//!
//! A JPEG has one frame, but a progressive one is decoded scan after scan,
//! and every scan walks every block of the frame: its cost is scans × area,
//! whatever the file's size (a scan may hold no data at all). So the scans
//! (SOS segments) are counted too, up to the end of the image (EOI): the
//! segments by their lengths, the entropy-coded data by looking for the
//! next marker, a buffer at a time.

use std::io::{self, BufRead, Read, Seek, SeekFrom};

use super::Dimensions;

/// The pixels of every frame of the file at the start of `reader`, whose
/// first frame or canvas is `dimensions`. Counting stops once `stop_above`
/// is passed: the answer is then only known to be larger.
pub(super) fn pixels<R: BufRead + Seek>(
    mut reader: R,
    dimensions: Dimensions,
    stop_above: u64,
) -> io::Result<u64> {
    let area = u64::from(dimensions.width) * u64::from(dimensions.height);
    let mut count = Count {
        total: 0,
        stop_above,
    };
    let head = reader.fill_buf()?;
    let walked = if head.starts_with(b"GIF") {
        gif(&mut reader, area, &mut count)
    } else if head.starts_with(b"\x89PNG") {
        png(&mut reader, area, &mut count)
    } else if head.starts_with(b"RIFF") {
        webp(&mut reader, area, &mut count)
    } else {
        Ok(())
    };
    match walked {
        Err(e) if e.kind() != io::ErrorKind::UnexpectedEof => Err(e),
        _ => Ok(count.total.max(area)),
    }
}

/// A running sum of frames; `add` says when counting further is useless.
struct Count {
    total: u64,
    stop_above: u64,
}

impl Count {
    fn add(&mut self, pixels: u64) -> bool {
        self.total = self.total.saturating_add(pixels);
        self.total > self.stop_above
    }
}

fn gif<R: BufRead + Seek>(reader: &mut R, screen: u64, count: &mut Count) -> io::Result<()> {
    let header: [u8; 13] = read_array(reader)?;
    skip_color_table(reader, header[10])?;
    loop {
        let [introducer] = read_array(reader)?;
        match introducer {
            0x2C => {
                let descriptor: [u8; 9] = read_array(reader)?;
                let width = u16::from_le_bytes([descriptor[4], descriptor[5]]);
                let height = u16::from_le_bytes([descriptor[6], descriptor[7]]);
                if count.add(screen.max(u64::from(width) * u64::from(height))) {
                    return Ok(());
                }
                skip_color_table(reader, descriptor[8])?;
                // LZW minimum code size, then the data sub-blocks.
                read_array::<_, 1>(reader)?;
                skip_sub_blocks(reader)?;
            }
            0x21 => {
                read_array::<_, 1>(reader)?;
                skip_sub_blocks(reader)?;
            }
            // The trailer, or bytes that are not a block: the picture ends.
            _ => return Ok(()),
        }
    }
}

fn skip_color_table<R: Read>(reader: &mut R, flags: u8) -> io::Result<()> {
    if flags & 0x80 != 0 {
        skip_read(reader, 3 << ((flags & 7) + 1))?;
    }
    Ok(())
}

fn skip_sub_blocks<R: Read>(reader: &mut R) -> io::Result<()> {
    loop {
        let [len] = read_array(reader)?;
        if len == 0 {
            return Ok(());
        }
        skip_read(reader, len.into())?;
    }
}

fn png<R: Read + Seek>(reader: &mut R, area: u64, count: &mut Count) -> io::Result<()> {
    reader.seek(SeekFrom::Start(8))?;
    loop {
        let head: [u8; 8] = read_array(reader)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        match &head[4..] {
            b"acTL" => {
                let frames: [u8; 4] = read_array(reader)?;
                let frames = u32::from_be_bytes(frames).max(1);
                count.add(area.saturating_mul(frames.into()));
                return Ok(());
            }
            // acTL comes before the image data, or not at all.
            b"IDAT" | b"IEND" => return Ok(()),
            _ => {
                reader.seek(SeekFrom::Current(i64::from(len) + 4))?;
            }
        }
    }
}

fn webp<R: Read + Seek>(reader: &mut R, canvas: u64, count: &mut Count) -> io::Result<()> {
    reader.seek(SeekFrom::Start(12))?;
    loop {
        let head: [u8; 8] = read_array(reader)?;
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let mut skip = i64::from(len) + i64::from(len & 1);
        if &head[..4] == b"ANMF" {
            if len < 12 {
                return Ok(());
            }
            let frame: [u8; 12] = read_array(reader)?;
            skip -= 12;
            let width = u24(&frame[6..9]) + 1;
            let height = u24(&frame[9..12]) + 1;
            if count.add(canvas.max(width * height)) {
                return Ok(());
            }
        }
        reader.seek(SeekFrom::Current(skip))?;
    }
}

/// The scans of the JPEG at the start of `reader`, counted up to its end
/// (EOI, bytes that are not a marker, or the end of the file). Counting
/// stops once `stop_above` is passed: the answer is then only known to be
/// larger.
pub(super) fn jpeg_scans<R: BufRead>(reader: &mut R, stop_above: u32) -> io::Result<u32> {
    let mut scans = 0;
    match walk_jpeg(reader, stop_above, &mut scans) {
        Err(e) if e.kind() != io::ErrorKind::UnexpectedEof => Err(e),
        _ => Ok(scans),
    }
}

fn walk_jpeg<R: BufRead>(reader: &mut R, stop_above: u32, scans: &mut u32) -> io::Result<()> {
    // SOI.
    read_array::<_, 2>(reader)?;
    let mut marker = segment_marker(reader)?;
    loop {
        marker = match marker {
            // EOI, or bytes that are not a segment: the picture ends.
            None | Some(0xD9) => return Ok(()),
            // Markers without a length.
            Some(0x01 | 0xD0..=0xD8) => segment_marker(reader)?,
            Some(0xDA) => {
                *scans += 1;
                if *scans > stop_above {
                    return Ok(());
                }
                skip_segment(reader)?;
                Some(marker_after_scan(reader)?)
            }
            Some(_) => {
                skip_segment(reader)?;
                segment_marker(reader)?
            }
        };
    }
}

/// The marker where a segment must start, after any fill bytes; `None`
/// when something else is there.
fn segment_marker<R: Read>(reader: &mut R) -> io::Result<Option<u8>> {
    let [first] = read_array(reader)?;
    if first != 0xFF {
        return Ok(None);
    }
    loop {
        match read_array(reader)? {
            [0xFF] => {}
            [marker] => return Ok(Some(marker)),
        }
    }
}

/// Skips a segment's body, whose 2-byte length counts itself.
fn skip_segment<R: Read>(reader: &mut R) -> io::Result<()> {
    let len: [u8; 2] = read_array(reader)?;
    skip_read(reader, u64::from(u16::from_be_bytes(len).saturating_sub(2)))
}

/// Reads entropy-coded data up to the marker that ends it: an `FF` not
/// followed by a stuffed zero or a restart marker.
fn marker_after_scan<R: BufRead>(reader: &mut R) -> io::Result<u8> {
    loop {
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if let Some(at) = buf.iter().position(|&b| b == 0xFF) {
                reader.consume(at + 1);
                break;
            }
            let len = buf.len();
            reader.consume(len);
        }
        let mut code = 0xFF;
        while code == 0xFF {
            [code] = read_array(reader)?;
        }
        if !matches!(code, 0x00 | 0xD0..=0xD7) {
            return Ok(code);
        }
    }
}

fn u24(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |n, &b| (n << 8) | u64::from(b))
}

fn read_array<R: Read, const N: usize>(reader: &mut R) -> io::Result<[u8; N]> {
    let mut buf = [0; N];
    reader.read_exact(&mut buf)?;
    Ok(buf)
}

fn skip_read<R: Read>(reader: &mut R, n: u64) -> io::Result<()> {
    let skipped = io::copy(&mut reader.take(n), &mut io::sink())?;
    if skipped < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Cursor;

    use super::*;

    const SIDE: Dimensions = Dimensions {
        width: 10,
        height: 10,
    };

    fn count(bytes: &[u8]) -> u64 {
        pixels(Cursor::new(bytes), SIDE, u64::MAX).expect("walk")
    }

    fn gif_frames(frames: usize, complete: bool) -> Vec<u8> {
        let mut gif = b"GIF89a\x0a\x00\x0a\x00\x80\x00\x00\0\0\0\xff\xff\xff".to_vec();
        for _ in 0..frames {
            gif.extend_from_slice(b"\x21\xf9\x04\x00\x00\x00\x00\x00");
            gif.extend_from_slice(b"\x2c\0\0\0\0\x0a\x00\x0a\x00\x00\x02\x02\x4c\x01\x00");
        }
        if complete {
            gif.push(0x3b);
        }
        gif
    }

    #[test]
    fn a_still_picture_is_its_area() {
        assert_eq!(count(b"\xFF\xD8\xFF"), 100);
        assert_eq!(count(&gif_frames(1, true)), 100);
    }

    #[test]
    fn every_gif_frame_counts_even_in_a_truncated_file() {
        assert_eq!(count(&gif_frames(1000, true)), 100_000);
        let partial = gif_frames(500, false);
        let truncated = gif_frames(1000, false);
        assert_eq!(count(&truncated[..partial.len()]), 50_000);
        assert!(pixels(Cursor::new(&gif_frames(1000, true)), SIDE, 5_000).expect("walk") > 5_000);
    }

    #[test]
    fn an_animated_png_counts_its_announced_frames() {
        let mut png =
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\0\0\0\x0a\0\0\0\x0a\x08\x02\0\0\0\0\0\0\0"
                .to_vec();
        png.extend_from_slice(b"\x00\x00\x00\x08acTL\x00\x00\x00\x07\x00\x00\x00\x00\0\0\0\0");
        assert_eq!(count(&png), 700);
    }

    #[test]
    fn an_animated_webp_counts_every_frame() {
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\x02\0\0\0\x09\0\0\x09\0\0".to_vec();
        webp.extend_from_slice(b"ANIM\x06\0\0\0\0\0\0\0\0\0");
        for _ in 0..3 {
            webp.extend_from_slice(b"ANMF\x10\0\0\0\0\0\0\0\0\0\x13\0\0\x13\0\0\0\0\0\0");
        }
        assert_eq!(count(&webp), 3 * 400);
    }

    #[test]
    fn counting_stops_at_the_first_frame_past_the_limit() {
        let gif = gif_frames(1000, true);
        assert_eq!(pixels(Cursor::new(&gif), SIDE, 5_000).expect("walk"), 5_100);
        assert_eq!(pixels(Cursor::new(&gif), SIDE, 5_100).expect("walk"), 5_200);
    }

    /// A 10 × 10 screen holding a 10 × 10 frame, a 20 × 30 frame and a 5 × 5
    /// frame, the last two with local colour tables of 8 entries.
    #[test]
    fn a_gif_frame_larger_than_its_screen_counts_its_own_area() {
        let mut gif = b"GIF89a\x0a\x00\x0a\x00\x80\x00\x00\0\0\0\xff\xff\xff".to_vec();
        gif.extend_from_slice(b"\x2c\0\0\0\0\x0a\x00\x0a\x00\x00\x02\x02\x4c\x01\x00");
        for size in [b"\x14\x00\x1e\x00", b"\x05\x00\x05\x00"] {
            gif.extend_from_slice(b"\x2c\0\0\0\0");
            gif.extend_from_slice(size);
            gif.push(0x82);
            gif.extend_from_slice(&[0; 24]);
            gif.extend_from_slice(b"\x02\x02\x4c\x01\x00");
        }
        gif.push(0x3b);
        assert_eq!(count(&gif), 100 + 600 + 100);
    }

    #[test]
    fn an_actl_after_the_image_data_is_not_read() {
        let mut png =
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\0\0\0\x0a\0\0\0\x0a\x08\x02\0\0\0\0\0\0\0"
                .to_vec();
        png.extend_from_slice(b"\x00\x00\x00\x02IDAT\x78\x9c\0\0\0\0");
        png.extend_from_slice(b"\x00\x00\x00\x08acTL\x00\x00\x00\x07\x00\x00\x00\x00\0\0\0\0");
        assert_eq!(count(&png), 100);
    }

    /// After an odd-length chunk and its pad byte: a frame of 512 × 65537
    /// (sizes stored minus one, 24-bit little-endian), then a frame header
    /// of 20 × 20 with no frame data.
    #[test]
    fn animated_webp_sizes_are_read_in_full_after_padded_chunks() {
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\x02\0\0\0\x09\0\0\x09\0\0".to_vec();
        webp.extend_from_slice(b"ICCP\x03\0\0\0abc\0");
        webp.extend_from_slice(b"ANIM\x06\0\0\0\0\0\0\0\0\0");
        webp.extend_from_slice(b"ANMF\x10\0\0\0\0\0\0\0\0\0\xff\x01\x00\x00\x00\x01\0\0\0\0");
        webp.extend_from_slice(b"ANMF\x0c\0\0\0\0\0\0\0\0\0\x13\0\0\x13\0\0");
        assert_eq!(count(&webp), 512 * 65_537 + 400);
    }

    /// A reader that fails, as a disk does, once `good` bytes are read.
    struct FailingAfter {
        inner: Cursor<Vec<u8>>,
        good: u64,
    }

    impl Read for FailingAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let left = self.good.saturating_sub(self.inner.position());
            if left == 0 {
                return Err(io::Error::other("read error"));
            }
            let n = buf.len().min(usize::try_from(left).expect("small"));
            self.inner.read(&mut buf[..n])
        }
    }

    impl Seek for FailingAfter {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    #[test]
    fn a_read_error_is_an_error_not_the_end_of_the_file() {
        let failing = |bytes: Vec<u8>| {
            io::BufReader::new(FailingAfter {
                inner: Cursor::new(bytes),
                good: 40,
            })
        };
        let walked = pixels(failing(gif_frames(10, true)), SIDE, u64::MAX);
        assert_eq!(walked.expect_err("read error").kind(), io::ErrorKind::Other);
        let scanned = jpeg_scans(&mut failing(many_scans(16, 16, 10)), u32::MAX);
        assert_eq!(
            scanned.expect_err("read error").kind(),
            io::ErrorKind::Other
        );
    }

    /// A progressive grayscale JPEG of `width` × `height` with `scans`
    /// scans holding no data: Huffman tables whose one code is `0`, so the
    /// zeros a decoder pads a scan with read as "nothing here".
    pub(in crate::images) fn many_scans(width: u16, height: u16, scans: usize) -> Vec<u8> {
        let mut jpeg = b"\xFF\xD8\xFF\xDB\x00\x43\x00".to_vec();
        jpeg.extend_from_slice(&[1; 64]);
        jpeg.extend_from_slice(b"\xFF\xC2\x00\x0b\x08");
        jpeg.extend_from_slice(&height.to_be_bytes());
        jpeg.extend_from_slice(&width.to_be_bytes());
        jpeg.extend_from_slice(b"\x01\x01\x11\x00\xFF\xC4\x00\x26");
        for class in [0x00, 0x10] {
            jpeg.push(class);
            jpeg.push(1);
            jpeg.extend_from_slice(&[0; 15]);
            jpeg.push(0);
        }
        // The DC scan, then AC scans.
        jpeg.extend_from_slice(b"\xFF\xDA\x00\x08\x01\x01\x00\x00\x00\x00");
        for _ in 1..scans {
            jpeg.extend_from_slice(b"\xFF\xDA\x00\x08\x01\x01\x00\x01\x3f\x00");
        }
        jpeg.extend_from_slice(b"\xFF\xD9");
        jpeg
    }

    fn scans(bytes: &[u8]) -> u32 {
        jpeg_scans(&mut Cursor::new(bytes), u32::MAX).expect("walk")
    }

    #[test]
    fn a_jpeg_counts_its_scans_up_to_its_end() {
        assert_eq!(scans(&many_scans(16, 16, 3000)), 3000);
        let mut progressive = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut progressive, 80);
        encoder.set_progressive(true);
        let pixels: Vec<u8> = (0..64 * 48 * 3).map(|i| (i * 7 % 256) as u8).collect();
        encoder
            .encode(&pixels, 64, 48, jpeg_encoder::ColorType::Rgb)
            .expect("encode");
        let counted = scans(&progressive);
        assert!((2..=20).contains(&counted), "{counted}");
        // Stuffed zeros and restart markers are data; after EOI nothing counts.
        let mut baseline = many_scans(16, 16, 1);
        baseline.truncate(baseline.len() - 2);
        baseline.extend_from_slice(b"\x12\xFF\x00\x34\xFF\xD0\x56\xFF\xFF\xD9");
        baseline.extend_from_slice(&many_scans(16, 16, 50));
        assert_eq!(scans(&baseline), 1);
        // A standalone marker, fill bytes before a marker; after EOI, bytes
        // that would read as a segment and a scan count nothing.
        let mut marked = b"\xFF\xD8\xFF\x01\xFF\xFF\xFF\xFE\x00\x04ab".to_vec();
        marked.extend_from_slice(b"\xFF\xDA\x00\x08\x01\x01\x00\x00\x00\x00\x12\x34");
        marked.extend_from_slice(b"\xFF\xDA\x00\x08\x01\x01\x00\x01\x3f\x00\xFF\xD9");
        marked.extend_from_slice(b"\x00\x02\xFF\xDA\x00\x08\x01\x01\x00\x01\x3f\x00\xFF\xD9");
        assert_eq!(scans(&marked), 2);
        // A truncated file counts what it holds; counting stops past the limit.
        let long = many_scans(16, 16, 1000);
        assert!((490..500).contains(&scans(&long[..long.len() / 2])));
        assert_eq!(jpeg_scans(&mut Cursor::new(&long), 10).expect("walk"), 11);
    }
}
