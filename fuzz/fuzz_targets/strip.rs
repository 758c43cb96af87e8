//! `images::strip`, what removes location and personal metadata from an
//! upload: real pictures (PNG, simple and extended WebP, JPEG, written by the
//! `image` crate) with metadata planted in every container shape (any chunk
//! type and case, any place, bytes after the end), then bytes changed at
//! random, or raw bytes. Invariants: never a panic; a file that decoded
//! still decodes (with the `image` crate) after stripping, and carries no
//! Exif but the minimal orientation block, no XMP; unless bytes were changed
//! at random, nothing planted is left anywhere in it, it is not refused, and
//! stripping it again changes nothing.

#![no_main]

use std::io::Cursor;

use arbitrary::Arbitrary;
use image::ImageDecoder;
use libfuzzer_sys::fuzz_target;
use multiserver_upload::images::strip::strip;

/// Planted in every metadata block and in the bytes after a file's end.
const SECRET: &[u8] = b"GPS 48.8584 N 2.2945 E";

#[derive(Debug, Arbitrary)]
enum Base {
    Png,
    SimpleWebp,
    ExtendedWebp,
    Jpeg,
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Block {
    /// A kind from the format's list, or these four bytes (PNG and WebP).
    kind: u8,
    raw_kind: Option<[u8; 4]>,
    place: u8,
    orientation: u8,
}

#[derive(Debug, Arbitrary)]
struct Input {
    base: Base,
    width: u8,
    height: u8,
    seed: u8,
    blocks: Vec<Block>,
    trailing: Trailing,
    changes: Vec<(u16, u8)>,
}

#[derive(Debug, Arbitrary)]
enum Trailing {
    Nothing,
    Secret,
    Bytes(Vec<u8>),
}

const PNG_KINDS: [&[u8; 4]; 11] = [
    b"eXIf", b"exIf", b"eXIF", b"exIF", b"tEXt", b"zTXt", b"iTXt", b"tIME", b"prVt", b"zxIf",
    b"caBX",
];
const WEBP_KINDS: [&[u8; 4]; 4] = [b"EXIF", b"XMP ", b"GPSx", b"exif"];

fn camera_tiff(orientation: u8) -> Vec<u8> {
    let mut tiff = b"II\x2a\0\x08\0\0\0\x02\0".to_vec();
    tiff.extend_from_slice(b"\x12\x01\x03\0\x01\0\0\0");
    tiff.extend_from_slice(&[orientation, 0, 0, 0]);
    tiff.extend_from_slice(b"\x25\x88\x04\0\x01\0\0\0\x26\0\0\0\0\0\0\0");
    tiff.extend_from_slice(b"\x01\0\x01\0\x02\0\x02\0\0\0N\0\0\0\0\0\0\0");
    tiff.extend_from_slice(SECRET);
    tiff
}

fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &b| {
        (0..8).fold(crc ^ u32::from(b), |c, _| {
            (c >> 1) ^ (0xEDB8_8320 & (c & 1).wrapping_neg())
        })
    })
}

fn png_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let crc = crc32(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    chunk
}

fn riff_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut chunk = kind.to_vec();
    chunk.extend_from_slice(&(data.len() as u32).to_le_bytes());
    chunk.extend_from_slice(data);
    if data.len() % 2 == 1 {
        chunk.push(0);
    }
    chunk
}

fn jpeg_segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut segment = vec![0xFF, marker];
    segment.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
    segment.extend_from_slice(payload);
    segment
}

fn encoded(format: image::ImageFormat, input: &Input) -> Vec<u8> {
    let (width, height, seed) = (
        u32::from(input.width % 8) + 1,
        u32::from(input.height % 8) + 1,
        input.seed,
    );
    let pixels = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([seed ^ ((x as u8) * 31), (y as u8) * 17, seed.wrapping_mul(7)])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(pixels)
        .write_to(&mut out, format)
        .expect("encode");
    out.into_inner()
}

fn block_kind<'a>(block: &'a Block, kinds: &[&'a [u8; 4]]) -> &'a [u8; 4] {
    block
        .raw_kind
        .as_ref()
        .unwrap_or(kinds[usize::from(block.kind) % kinds.len()])
}

fn png(input: &Input) -> Vec<u8> {
    let base = encoded(image::ImageFormat::Png, input);
    let mut chunks = Vec::new();
    let mut at = 8;
    while at < base.len() {
        let len = u32::from_be_bytes(base[at..at + 4].try_into().expect("4")) as usize;
        chunks.push(base[at..at + len + 12].to_vec());
        at += len + 12;
    }
    let iend = chunks.pop().expect("IEND");
    for block in &input.blocks {
        let kind = block_kind(block, &PNG_KINDS);
        let data = if kind.eq_ignore_ascii_case(b"eXIf") {
            camera_tiff(block.orientation)
        } else {
            [b"Location\0".as_slice(), SECRET].concat()
        };
        let place = 1 + usize::from(block.place) % chunks.len();
        chunks.insert(place, png_chunk(kind, &data));
    }
    let mut png = base[..8].to_vec();
    chunks.iter().for_each(|c| png.extend(c));
    png.extend(iend);
    png
}

fn webp(input: &Input, extended: bool) -> Vec<u8> {
    let base = encoded(image::ImageFormat::WebP, input);
    let image = &base[12..];
    let mut body = b"WEBP".to_vec();
    if extended {
        let width = u32::from_le_bytes([image[9], image[10], image[11], image[12]]) & 0x3FFF;
        let height = (u32::from_le_bytes([image[10], image[11], image[12], image[13]]) >> 6) & 0x3FFF;
        let mut vp8x = vec![0x0C, 0, 0, 0];
        vp8x.extend_from_slice(&width.to_le_bytes()[..3]);
        vp8x.extend_from_slice(&height.to_le_bytes()[..3]);
        body.extend(riff_chunk(b"VP8X", &vp8x));
    }
    body.extend_from_slice(image);
    for block in &input.blocks {
        let kind = block_kind(block, &WEBP_KINDS);
        let data = if kind == b"EXIF" {
            [b"Exif\0\0".as_slice(), &camera_tiff(block.orientation)].concat()
        } else {
            [b"<x:xmpmeta>".as_slice(), SECRET].concat()
        };
        body.extend(riff_chunk(kind, &data));
    }
    let mut webp = b"RIFF".to_vec();
    webp.extend_from_slice(&(body.len() as u32).to_le_bytes());
    webp.extend(body);
    webp
}

fn jpeg(input: &Input) -> Vec<u8> {
    let base = encoded(image::ImageFormat::Jpeg, input);
    let mut jpeg = base[..2].to_vec();
    for block in &input.blocks {
        jpeg.extend(match block.kind % 4 {
            0 => jpeg_segment(0xE1, &[b"Exif\0\0".as_slice(), &camera_tiff(block.orientation)].concat()),
            1 => jpeg_segment(0xE1, &[b"http://ns.adobe.com/xap/1.0/\0".as_slice(), SECRET].concat()),
            2 => jpeg_segment(0xED, &[b"Photoshop 3.0\0".as_slice(), SECRET].concat()),
            _ => jpeg_segment(0xFE, SECRET),
        });
    }
    jpeg.extend_from_slice(&base[2..]);
    jpeg
}

/// Pixels, Exif and XMP as the `image` crate reads them.
fn decode(bytes: &[u8]) -> Option<(Option<Vec<u8>>, Option<Vec<u8>>)> {
    let mut decoder = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_decoder()
        .ok()?;
    // A header may claim any size: only pictures the service would take
    // are decoded (the stripper never decodes anything itself).
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > 1 << 24 {
        return None;
    }
    let exif = decoder.exif_metadata().ok()?;
    let xmp = decoder.xmp_metadata().ok()?;
    image::DynamicImage::from_decoder(decoder).ok()?;
    Some((exif, xmp))
}

/// The minimal block SPEC §2.7 keeps: one IFD with only the orientation.
fn is_orientation_only(tiff: &[u8]) -> bool {
    let tiff = tiff.strip_prefix(b"Exif\0\0").unwrap_or(tiff);
    tiff.len() == 26
        && tiff.starts_with(b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0")
        && (2..=8).contains(&tiff[19])
        && tiff[20..] == [0; 6]
}

fn stripped(bytes: &[u8]) -> Option<Option<Vec<u8>>> {
    let plan = strip(Cursor::new(bytes)).ok()?;
    Some(plan.map(|plan| {
        let mut out = Vec::new();
        plan.apply(Cursor::new(bytes), &mut out).expect("apply");
        out
    }))
}

fuzz_target!(|input: Input| {
    let mut bytes = match &input.base {
        Base::Png => png(&input),
        Base::SimpleWebp => webp(&input, false),
        Base::ExtendedWebp => webp(&input, true),
        Base::Jpeg => jpeg(&input),
        Base::Raw(bytes) => bytes.clone(),
    };
    match &input.trailing {
        Trailing::Nothing => {}
        Trailing::Secret => bytes.extend_from_slice(SECRET),
        Trailing::Bytes(more) => bytes.extend_from_slice(more),
    }
    for &(at, value) in &input.changes {
        if !bytes.is_empty() {
            let at = usize::from(at) % bytes.len();
            bytes[at] = value;
        }
    }
    // Whether the file is exactly what was built: then it must be accepted
    // and come out clean.
    let planted_only = !matches!(input.base, Base::Raw(_))
        && input.changes.is_empty()
        && !matches!(input.trailing, Trailing::Bytes(_))
        && input.blocks.iter().all(|b| b.raw_kind.is_none());
    let Some(result) = stripped(&bytes) else {
        assert!(!planted_only, "a valid picture was refused");
        return;
    };
    let out = result.unwrap_or_else(|| bytes.clone());
    // Known gap (fuzz/README.md, finding 4): a JPEG that is not exactly
    // what was built may be walked otherwise than a tolerant decoder reads
    // it (its walk stops, or takes a damaged length at its word), so such a
    // file is only held to not panicking.
    let damaged_jpeg = !planted_only && bytes.starts_with(b"\xFF\xD8");
    if !damaged_jpeg && decode(&bytes).is_some() {
        let (exif, xmp) = decode(&out).expect("the stripped file does not decode");
        assert!(exif.as_deref().is_none_or(is_orientation_only), "Exif left: {exif:?}");
        assert!(xmp.is_none(), "XMP left");
    }
    if planted_only {
        assert!(
            !out.windows(SECRET.len()).any(|w| w == SECRET),
            "planted metadata left"
        );
        assert_eq!(stripped(&out), Some(None), "stripping twice changes something");
    }
});
