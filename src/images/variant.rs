//! Making a variant of a picture (SPEC §2.7): a thumbnail that fits a box,
//! or a given width, as JPEG or PNG, never larger than the original, with
//! the EXIF orientation applied and no metadata at all.
//!
//! The steps are decode, resize, orient, encode. A JPEG is decoded with
//! `jpeg-decoder` at the smallest DCT scale (1/8, 1/4, 1/2) that still
//! gives at least the target size, so a 12-megapixel photo is never held
//! whole for a 320 px thumbnail; the other types go through `image`. Both
//! decoders are held to the configured pixel and side limits. Resizing is
//! `fast_image_resize` (Lanczos3, alpha premultiplied), and orientation is
//! applied after resizing, where it moves the fewest pixels.
//!
//! The original is read as a stream, never whole: each decoder reads what
//! it needs and stops at the end of the image data, so bytes after it (a
//! JPEG's trailer after EOI) are never read. Decoding work is bounded
//! before it starts: besides the pixel limits, a JPEG's scans are counted
//! first (a progressive JPEG's cost is scans × area, SPEC §2.7) and one
//! with more than its size allows is not decoded.
//!
//! An animated GIF or WebP is not resized (its first frame alone would
//! misrepresent it); that, like any decoding error, too costly a JPEG or an
//! unsupported pixel format, is an error the caller remembers and answers
//! by sending the client to the original.
//!
//! This module takes a reader and returns bytes; it knows nothing of HTTP,
//! files or caching.

use std::io::{self, BufRead, Cursor, Read, Seek, SeekFrom};

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::gif::GifDecoder;
use image::codecs::webp::WebPDecoder;
use image::metadata::Orientation;
use image::{AnimationDecoder, DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// JPEG quality of thumbnails and JPEG widths.
const JPEG_QUALITY: u8 = 85;

/// What size the variant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Fits inside a square of this side.
    Fit(u32),
    /// This wide (the original's width if it is narrower).
    Width(u32),
}

/// How the variant is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Transparency is flattened onto white.
    Jpeg,
    /// Transparency is kept.
    Png,
}

/// One variant to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub target: Target,
    pub encoding: Encoding,
}

/// The most a decoder may take on (SPEC §2.7 `max_pixels`, `max_side`).
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_pixels: u64,
    pub max_side: u32,
}

impl DecodeLimits {
    /// Bytes of decoded pixels allowed: four per pixel (RGBA).
    fn max_bytes(self) -> u64 {
        self.max_pixels.saturating_mul(4)
    }

    fn admit(self, width: u32, height: u32) -> Result<(), VariantError> {
        let pixels = u64::from(width) * u64::from(height);
        if width > self.max_side || height > self.max_side || pixels > self.max_pixels {
            return Err(VariantError::TooLarge);
        }
        Ok(())
    }

    fn for_image(self) -> Limits {
        let mut limits = Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_bytes());
        limits
    }
}

/// Why a variant could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VariantError {
    #[error("animated pictures are not resized")]
    Animated,
    #[error("unsupported picture: {0}")]
    Unsupported(&'static str),
    #[error("the picture is over the decoding limits")]
    TooLarge,
    #[error("the JPEG has more than {0} scans for its size; it is not decoded")]
    TooManyScans(u32),
    #[error("the original could not be read: {0}")]
    Read(#[from] io::Error),
    #[error("the picture does not decode: {0}")]
    Decode(String),
    #[error("resizing failed: {0}")]
    Resize(String),
    #[error("encoding failed: {0}")]
    Encode(String),
}

impl From<image::ImageError> for VariantError {
    fn from(e: image::ImageError) -> Self {
        match e {
            image::ImageError::Limits(_) => Self::TooLarge,
            other => Self::Decode(other.to_string()),
        }
    }
}

/// The encoded variant of the picture read from `original`.
pub fn render<R: BufRead + Seek>(
    mut original: R,
    request: Request,
    limits: DecodeLimits,
) -> Result<Vec<u8>, VariantError> {
    let decoded = if original.fill_buf()?.starts_with(b"\xFF\xD8") {
        decode_jpeg(original, request.target, limits)?
    } else {
        decode_other(original, limits)?
    };
    let (width, height) = decoded.size;
    let (to_width, to_height) = size_for(
        width,
        height,
        swaps_axes(decoded.orientation),
        request.target,
    );
    let mut image = resize(normalize(decoded.image), to_width, to_height)?;
    image.apply_orientation(decoded.orientation);
    encode(image, request.encoding)
}

/// A decoded picture, maybe already reduced by the decoder.
struct Decoded {
    image: DynamicImage,
    orientation: Orientation,
    /// The original's size, before any reduction.
    size: (u32, u32),
}

/// Width and height (before orientation) of the variant of a `width` ×
/// `height` picture; the orientation turns it a quarter when `swaps`.
pub fn size_for(width: u32, height: u32, swaps: bool, target: Target) -> (u32, u32) {
    let (w, h) = if swaps {
        (height, width)
    } else {
        (width, height)
    };
    let (to_w, to_h) = match target {
        Target::Fit(side) if w <= side && h <= side => (w, h),
        Target::Fit(side) if w >= h => (side, scaled(h, side, w)),
        Target::Fit(side) => (scaled(w, side, h), side),
        Target::Width(n) if n >= w => (w, h),
        Target::Width(n) => (n, scaled(h, n, w)),
    };
    if swaps { (to_h, to_w) } else { (to_w, to_h) }
}

/// `x × num / den`, rounded, at least 1 (`num <= den`).
fn scaled(x: u32, num: u32, den: u32) -> u32 {
    let v = (u64::from(x) * u64::from(num) + u64::from(den) / 2) / u64::from(den.max(1));
    u32::try_from(v).unwrap_or(x).max(1)
}

fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

fn decode_jpeg<R: BufRead + Seek>(
    mut original: R,
    target: Target,
    limits: DecodeLimits,
) -> Result<Decoded, VariantError> {
    let orientation = jpeg_orientation(&mut original).unwrap_or(Orientation::NoTransforms);
    // The scans are counted before any is decoded, against the frame's
    // area as its header gives it.
    original.seek(SeekFrom::Start(0))?;
    let header = super::dimensions(&mut original)
        .ok_or_else(|| VariantError::Decode("no frame header".into()))?;
    limits.admit(header.width, header.height)?;
    original.seek(SeekFrom::Start(0))?;
    let area = u64::from(header.width) * u64::from(header.height);
    if let Some(limit) = super::jpeg_over_scans(&mut original, area, limits.max_pixels)? {
        return Err(VariantError::TooManyScans(limit));
    }
    original.seek(SeekFrom::Start(0))?;
    let mut decoder = jpeg_decoder::Decoder::new(original);
    decoder.set_max_decoding_buffer_size(usize::try_from(limits.max_bytes()).unwrap_or(usize::MAX));
    decoder.read_info().map_err(decode_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| VariantError::Decode("no frame header".into()))?;
    let size = (u32::from(info.width), u32::from(info.height));
    limits.admit(size.0, size.1)?;
    let (to_w, to_h) = size_for(size.0, size.1, swaps_axes(orientation), target);
    // Both fit in u16: they are at most the original's, which a JPEG keeps in u16.
    let (w, h) = decoder
        .scale(
            u16::try_from(to_w).unwrap_or(u16::MAX),
            u16::try_from(to_h).unwrap_or(u16::MAX),
        )
        .map_err(decode_error)?;
    let pixels = decoder.decode().map_err(decode_error)?;
    let (w, h) = (u32::from(w), u32::from(h));
    let image = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => {
            image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
        }
        jpeg_decoder::PixelFormat::L8 => {
            image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
        }
        jpeg_decoder::PixelFormat::CMYK32 => return Err(VariantError::Unsupported("CMYK JPEG")),
        jpeg_decoder::PixelFormat::L16 => {
            return Err(VariantError::Unsupported("16-bit JPEG"));
        }
    }
    .ok_or_else(|| VariantError::Decode("fewer pixels than the frame header says".into()))?;
    Ok(Decoded {
        image,
        orientation,
        size,
    })
}

fn decode_error(e: jpeg_decoder::Error) -> VariantError {
    VariantError::Decode(e.to_string())
}

fn decode_other<R: BufRead + Seek>(
    mut original: R,
    limits: DecodeLimits,
) -> Result<Decoded, VariantError> {
    let format = image::guess_format(original.fill_buf()?)?;
    let (image, orientation) = match format {
        ImageFormat::Gif => {
            let mut decoder = GifDecoder::new(original)?;
            decoder.set_limits(limits.for_image())?;
            let mut frames = decoder.into_frames();
            let first = frames
                .next()
                .ok_or_else(|| VariantError::Decode("no frame".into()))??;
            if frames.next().is_some() {
                return Err(VariantError::Animated);
            }
            (
                DynamicImage::ImageRgba8(first.into_buffer()),
                Orientation::NoTransforms,
            )
        }
        ImageFormat::WebP => {
            let mut decoder = WebPDecoder::new(original)?;
            if decoder.has_animation() {
                return Err(VariantError::Animated);
            }
            decoder.set_limits(limits.for_image())?;
            let orientation = decoder.orientation()?;
            (DynamicImage::from_decoder(decoder)?, orientation)
        }
        ImageFormat::Png | ImageFormat::Bmp => {
            let mut reader = ImageReader::with_format(original, format);
            reader.limits(limits.for_image());
            let mut decoder = reader.into_decoder()?;
            let orientation = decoder.orientation()?;
            (DynamicImage::from_decoder(decoder)?, orientation)
        }
        _ => return Err(VariantError::Unsupported("not a stored image type")),
    };
    limits.admit(image.width(), image.height())?;
    Ok(Decoded {
        size: (image.width(), image.height()),
        image,
        orientation,
    })
}

/// The EXIF orientation in a JPEG's APP1 segment, read before decoding so
/// that the decoder's scale can be chosen for the turned size. Only the
/// segments before the first scan are walked, and only an APP1 body (at
/// most 64 KiB) is read into memory.
fn jpeg_orientation<R: Read + Seek>(jpeg: &mut R) -> Option<Orientation> {
    jpeg.seek(SeekFrom::Start(2)).ok()?;
    let mut byte = [0u8; 1];
    loop {
        jpeg.read_exact(&mut byte).ok()?;
        if byte[0] != 0xFF {
            return None;
        }
        jpeg.read_exact(&mut byte).ok()?;
        // Fill bytes: the marker follows.
        while byte[0] == 0xFF {
            jpeg.read_exact(&mut byte).ok()?;
        }
        match byte[0] {
            // Start of scan or end of image: no metadata after this.
            0xDA | 0xD9 => return None,
            // Markers without a length.
            0x01 | 0xD0..=0xD8 => {}
            marker => {
                let mut len = [0u8; 2];
                jpeg.read_exact(&mut len).ok()?;
                let body_len = u16::from_be_bytes(len).checked_sub(2)?;
                if marker == 0xE1 {
                    let mut body = vec![0u8; usize::from(body_len)];
                    jpeg.read_exact(&mut body).ok()?;
                    if let Some(tiff) = body.strip_prefix(b"Exif\0\0") {
                        return Orientation::from_exif_chunk(tiff);
                    }
                } else {
                    jpeg.seek(SeekFrom::Current(i64::from(body_len))).ok()?;
                }
            }
        }
    }
}

/// One of the three pixel layouts the rest works with: gray, RGB, RGBA.
fn normalize(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => {
            image
        }
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other if !other.color().has_color() => DynamicImage::ImageLuma8(other.to_luma8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    }
}

fn resize(image: DynamicImage, width: u32, height: u32) -> Result<DynamicImage, VariantError> {
    if image.width() == width && image.height() == height {
        return Ok(image);
    }
    let mut resized = DynamicImage::new(width, height, image.color());
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&image, &mut resized, &options)
        .map_err(|e| VariantError::Resize(e.to_string()))?;
    Ok(resized)
}

fn encode(image: DynamicImage, encoding: Encoding) -> Result<Vec<u8>, VariantError> {
    let mut out = Vec::new();
    match encoding {
        Encoding::Png => image
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .map_err(|e| VariantError::Encode(e.to_string()))?,
        Encoding::Jpeg => {
            let too_wide = || VariantError::Encode("wider or taller than a JPEG can be".into());
            let width = u16::try_from(image.width()).map_err(|_| too_wide())?;
            let height = u16::try_from(image.height()).map_err(|_| too_wide())?;
            let (pixels, color) = match image {
                DynamicImage::ImageLuma8(gray) => (gray.into_raw(), jpeg_encoder::ColorType::Luma),
                DynamicImage::ImageRgba8(rgba) => (on_white(rgba), jpeg_encoder::ColorType::Rgb),
                other => (other.into_rgb8().into_raw(), jpeg_encoder::ColorType::Rgb),
            };
            jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY)
                .encode(&pixels, width, height, color)
                .map_err(|e| VariantError::Encode(e.to_string()))?;
        }
    }
    Ok(out)
}

/// RGB pixels of `rgba` laid over white, for JPEG, which has no alpha.
fn on_white(rgba: image::RgbaImage) -> Vec<u8> {
    rgba.pixels()
        .flat_map(|p| {
            let [r, g, b, a] = p.0;
            let over = |c: u8| {
                let c = u32::from(c) * u32::from(a) + 255 * (255 - u32::from(a));
                u8::try_from((c + 127) / 255).unwrap_or(u8::MAX)
            };
            [over(r), over(g), over(b)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_pixels: 50_000_000,
        max_side: 16_384,
    };

    #[test]
    fn sizes_fit_the_box_or_the_width_and_never_grow() {
        assert_eq!(size_for(4000, 3000, false, Target::Fit(320)), (320, 240));
        assert_eq!(size_for(3000, 4000, false, Target::Fit(320)), (240, 320));
        assert_eq!(size_for(200, 100, false, Target::Fit(320)), (200, 100));
        assert_eq!(size_for(4000, 3000, false, Target::Width(640)), (640, 480));
        assert_eq!(size_for(500, 300, false, Target::Width(640)), (500, 300));
        assert_eq!(size_for(10_000, 1, false, Target::Width(160)), (160, 1));
        // Turned a quarter: the shown width is the stored height.
        assert_eq!(size_for(4000, 3000, true, Target::Width(640)), (853, 640));
        assert_eq!(size_for(4000, 3000, true, Target::Fit(320)), (320, 240));
    }

    fn jpeg(width: u16, height: u16) -> Vec<u8> {
        let pixels: Vec<u8> = (0..usize::from(width) * usize::from(height))
            .flat_map(|i| [(i % 251) as u8, 90, 200])
            .collect();
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
            .expect("encode");
        out
    }

    /// `jpeg` with an APP1 EXIF segment (big-endian TIFF, one IFD entry:
    /// Orientation) right after SOI.
    fn with_orientation(jpeg: &[u8], orientation: u8) -> Vec<u8> {
        let tiff: Vec<u8> = [
            &b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0"[..],
            &[orientation, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        let len = u16::try_from(2 + 6 + tiff.len()).expect("short");
        [
            &jpeg[..2],
            b"\xFF\xE1",
            &len.to_be_bytes(),
            b"Exif\0\0",
            &tiff,
            &jpeg[2..],
        ]
        .concat()
    }

    fn decoded(bytes: &[u8]) -> DynamicImage {
        image::load_from_memory(bytes).expect("decodes")
    }

    #[test]
    fn reads_the_orientation_before_the_frame() {
        let plain = jpeg(16, 8);
        assert_eq!(jpeg_orientation(&mut Cursor::new(&plain)), None);
        assert_eq!(
            jpeg_orientation(&mut Cursor::new(with_orientation(&plain, 6))),
            Some(Orientation::Rotate90)
        );
        assert_eq!(
            jpeg_orientation(&mut Cursor::new(b"\xFF\xD8\xFF\xE1\x00")),
            None
        );
        assert_eq!(
            jpeg_orientation(&mut Cursor::new(b"\xFF\xD8\xFF\xE1\x00\x01")),
            None
        );
    }

    #[test]
    fn a_turned_jpeg_gives_a_turned_thumbnail() {
        let original = with_orientation(&jpeg(400, 300), 6);
        let thumbnail = render(
            Cursor::new(&original),
            Request {
                target: Target::Fit(100),
                encoding: Encoding::Jpeg,
            },
            LIMITS,
        )
        .expect("thumbnail");
        let image = decoded(&thumbnail);
        assert_eq!((image.width(), image.height()), (75, 100));
        assert_eq!(
            jpeg_orientation(&mut Cursor::new(&thumbnail)),
            None,
            "no metadata kept"
        );
    }

    #[test]
    fn a_png_width_keeps_its_transparency() {
        let mut rgba = image::RgbaImage::new(300, 200);
        for (x, _, p) in rgba.enumerate_pixels_mut() {
            *p = image::Rgba([200, 10, 10, if x < 150 { 0 } else { 255 }]);
        }
        let mut png = Vec::new();
        DynamicImage::ImageRgba8(rgba)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .expect("png");
        let request = Request {
            target: Target::Width(160),
            encoding: Encoding::Png,
        };
        let image =
            decoded(&render(Cursor::new(&png), request, LIMITS).expect("variant")).to_rgba8();
        assert_eq!(image.dimensions(), (160, 107));
        assert_eq!(image.get_pixel(5, 50).0[3], 0);
        assert_eq!(image.get_pixel(150, 50).0[3], 255);
    }

    #[test]
    fn limits_and_garbage_are_errors() {
        let small = DecodeLimits {
            max_pixels: 100,
            max_side: 16_384,
        };
        let request = Request {
            target: Target::Fit(10),
            encoding: Encoding::Jpeg,
        };
        assert!(matches!(
            render(Cursor::new(jpeg(20, 20)), request, small),
            Err(VariantError::TooLarge)
        ));
        assert!(render(Cursor::new(b"\xFF\xD8\xFF\xE0garbage"), request, LIMITS).is_err());
        assert!(render(Cursor::new(b"GIF89a\x01\x00\x01\x00"), request, LIMITS).is_err());
    }

    #[test]
    fn a_jpeg_with_too_many_scans_is_not_decoded_and_trailing_bytes_are_not_read() {
        let request = Request {
            target: Target::Fit(10),
            encoding: Encoding::Jpeg,
        };
        let hostile = crate::images::frames::tests::many_scans(2000, 2000, 3000);
        assert!(matches!(
            render(Cursor::new(&hostile), request, LIMITS),
            Err(VariantError::TooManyScans(100))
        ));
        // A big frame is allowed fewer scans: 20 × max_pixels in all.
        let big = crate::images::frames::tests::many_scans(7000, 7000, 30);
        assert!(matches!(
            render(Cursor::new(&big), request, LIMITS),
            Err(VariantError::TooManyScans(20))
        ));
        let mut trailed = jpeg(64, 48);
        trailed.extend(std::iter::repeat_n(0xAB, 1 << 20));
        let mut reader = Cursor::new(&trailed);
        render(&mut reader, request, LIMITS).expect("thumbnail");
        assert!(reader.position() < 64 * 1024, "{}", reader.position());
    }
}
