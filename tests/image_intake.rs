//! What happens to a picture on its way in (SPEC §2.7, §8): a decompression
//! bomb is refused from its headers, quickly, leaving nothing; location and
//! personal metadata leave JPEG and PNG files before they are hashed, stored
//! and replicated, while the ICC profile and the orientation stay; a file
//! without such metadata, or any file with `strip_metadata = false`, is
//! stored byte for byte. Metadata is read back with `exiftool`, an
//! independent reader (scripts/install-test-tools.sh installs it).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, JPEG_HEAD, sha256, upload};

const QUIET: &str = "fsync = false\n";

/// A structurally whole baseline JPEG: [`JPEG_HEAD`], an ICC profile in
/// APP2, a scan header and scan data (no 0xFF in it), and EOI.
fn plain_jpeg(icc: &[u8]) -> Vec<u8> {
    let mut jpeg = JPEG_HEAD.to_vec();
    let at = 20; // after SOI and APP0
    jpeg.splice(at..at, icc.iter().copied());
    jpeg.extend_from_slice(b"\xFF\xDA\x00\x0C\x03\x01\x00\x02\x11\x03\x11\x00\x3F\x00");
    jpeg.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 & 0x7F));
    jpeg.extend_from_slice(b"\xFF\xD9");
    jpeg
}

/// An APP2 segment holding an ICC profile (its content does not matter
/// here: only that it comes back whole).
fn icc_segment() -> Vec<u8> {
    let payload = b"ICC_PROFILE\0\x01\x01 a profile that must survive stripping";
    let mut segment = vec![0xFF, 0xE2];
    segment.extend_from_slice(&u16::try_from(payload.len() + 2).expect("len").to_be_bytes());
    segment.extend_from_slice(payload);
    segment
}

/// Runs exiftool on `file` with `args`; panics if it is missing or fails.
fn exiftool(file: &Path, args: &[&str]) {
    let out = Command::new("exiftool")
        .args(args)
        .arg(file)
        .output()
        .expect("exiftool not found: run scripts/install-test-tools.sh (libimage-exiftool-perl)");
    assert!(
        out.status.success(),
        "exiftool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every tag exiftool reads in `bytes` (numbers as numbers).
fn tags(bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("read.img");
    std::fs::write(&file, bytes).expect("write");
    let out = Command::new("exiftool")
        .args(["-json", "-n", "-a"])
        .arg(&file)
        .output()
        .expect("exiftool not found: run scripts/install-test-tools.sh (libimage-exiftool-perl)");
    let mut list: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&out.stdout).expect("exiftool -json");
    list.pop().expect("one file")
}

/// `plain_jpeg` with a camera's metadata written into it by exiftool: GPS,
/// orientation 6 (rotate 90° clockwise), artist, XMP creator, IPTC byline,
/// comment.
fn camera_jpeg() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("camera.jpg");
    std::fs::write(&file, plain_jpeg(&icc_segment())).expect("write");
    exiftool(
        &file,
        &[
            "-overwrite_original",
            "-GPSLatitude=48.8584",
            "-GPSLatitudeRef=N",
            "-GPSLongitude=2.2945",
            "-GPSLongitudeRef=E",
            "-Orientation#=6",
            "-Artist=Jane Doe",
            "-XMP-dc:Creator=Jane Doe",
            "-IPTC:By-line=Jane Doe",
            "-Comment=taken at home",
        ],
    );
    let bytes = std::fs::read(&file).expect("read");
    let before = tags(&bytes);
    assert!(before.contains_key("GPSLatitude"), "{before:?}");
    assert_eq!(before["Orientation"], 6, "{before:?}");
    bytes
}

fn png_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut chunk = u32::try_from(data.len())
        .expect("len")
        .to_be_bytes()
        .to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let crc = !chunk[4..].iter().fold(!0u32, |crc, &b| {
        (0..8).fold(crc ^ u32::from(b), |c, _| {
            (c >> 1) ^ (0xEDB8_8320 & (c & 1).wrapping_neg())
        })
    });
    chunk.extend_from_slice(&crc.to_be_bytes());
    chunk
}

/// A PNG of `width`×`height` whose chunks between IHDR and the image data
/// are `extra`.
fn png(width: u32, height: u32, extra: &[Vec<u8>]) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(b"\x08\x02\x00\x00\x00");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    for chunk in extra {
        png.extend(chunk);
    }
    // One white pixel (zlib, stored block): enough for exiftool.
    png.extend(png_chunk(
        b"IDAT",
        b"\x78\x01\x01\x04\x00\xfb\xff\x00\xff\xff\xff\x03\xfe\x01\xfe",
    ));
    png.extend(png_chunk(b"IEND", b""));
    png
}

/// A GIF of a `side`×`side` screen with `frames` image descriptors.
fn gif(side: u16, frames: usize) -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&side.to_le_bytes());
    gif.extend_from_slice(&side.to_le_bytes());
    gif.extend_from_slice(b"\x80\x00\x00\x00\x00\x00\xff\xff\xff");
    for _ in 0..frames {
        gif.extend_from_slice(b"\x21\xf9\x04\x00\x01\x00\x00\x00");
        gif.extend_from_slice(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x4c\x01\x00");
    }
    gif.push(0x3b);
    gif
}

/// The stored bytes of the file an answer names.
fn stored(cluster: &Cluster, node: usize, entry: &serde_json::Value) -> Vec<u8> {
    let path = entry["path"].as_str().expect("path");
    std::fs::read(cluster.nodes[node].data_dir().join(path)).expect("stored file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jpeg_loses_its_location_and_author_but_keeps_orientation_and_icc_profile() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.start_all();
    let camera = camera_jpeg();
    let plain = plain_jpeg(&icc_segment());
    let (status, answer) = upload(
        &cluster.nodes[0],
        &[("camera.jpg", &camera), ("plain.jpg", &plain)],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let files = answer["resp"]["files"].as_array().expect("files");

    let kept = stored(&cluster, 0, &files[0]);
    assert!(kept != camera, "the camera's metadata is still there");
    assert_eq!(
        files[0]["sha256"],
        sha256(&kept),
        "the answer names what is stored"
    );
    assert_eq!(files[0]["size"], kept.len());
    assert_eq!(files[0]["width"], 640);
    let after = tags(&kept);
    let personal: Vec<_> = after
        .keys()
        .filter(|k| {
            k.starts_with("GPS")
                || ["Artist", "Creator", "By-line", "Comment"].contains(&k.as_str())
        })
        .collect();
    assert!(personal.is_empty(), "left: {personal:?} in {after:?}");
    assert_eq!(after["Orientation"], 6, "{after:?}");
    let icc = icc_segment();
    assert!(
        kept.windows(icc.len()).any(|w| w == icc.as_slice()),
        "the ICC profile is gone"
    );
    assert!(kept.len() < camera.len());
    // The peer holds the stripped file, not the original.
    assert!(
        stored(&cluster, 1, &files[0]) == kept,
        "the peer's copy differs"
    );

    // Nothing to remove: byte for byte.
    assert_eq!(files[1]["sha256"], sha256(&plain));
    assert!(stored(&cluster, 0, &files[1]) == plain);
    assert!(cluster.nodes[0].temp_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_png_loses_its_text_and_exif_chunks_but_keeps_its_icc_profile() {
    let cluster = Cluster::single(QUIET);
    let iccp = png_chunk(b"iCCP", b"sRGB\0\0\x78\x01\x03\x00\x00\x00\x00\x01");
    let exif = {
        // Little-endian TIFF: IFD0 with Artist, pointing at its text.
        let mut tiff = b"II\x2a\x00\x08\x00\x00\x00\x01\x00".to_vec();
        tiff.extend_from_slice(b"\x3b\x01\x02\x00\x09\x00\x00\x00\x1a\x00\x00\x00");
        tiff.extend_from_slice(b"\x00\x00\x00\x00Jane Doe\x00");
        tiff
    };
    let with_metadata = png(
        1,
        1,
        &[
            iccp.clone(),
            png_chunk(b"tEXt", b"Author\0Jane Doe"),
            png_chunk(b"iTXt", b"Comment\0\0\0\0\0taken at home"),
            png_chunk(b"eXIf", &exif),
        ],
    );
    let before = tags(&with_metadata);
    assert_eq!(before["Author"], "Jane Doe", "{before:?}");
    assert_eq!(before["Artist"], "Jane Doe", "{before:?}");
    let plain = png(1, 1, std::slice::from_ref(&iccp));

    let (status, answer) = upload(
        &cluster.nodes[0],
        &[("a.png", &with_metadata), ("b.png", &plain)],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let files = answer["resp"]["files"].as_array().expect("files");
    let kept = stored(&cluster, 0, &files[0]);
    assert_eq!(
        sha256(&kept),
        sha256(&plain),
        "only the metadata chunks went"
    );
    assert_eq!(files[0]["sha256"], sha256(&plain));
    let after = tags(&kept);
    for tag in ["Author", "Artist", "Comment"] {
        assert!(!after.contains_key(tag), "{tag} left in {after:?}");
    }
    assert_eq!(files[1]["sha256"], sha256(&plain));
    assert!(stored(&cluster, 0, &files[1]) == plain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_metadata_false_keeps_every_byte() {
    let cluster = Cluster::single("fsync = false\n[images]\nstrip_metadata = false\n");
    let camera = camera_jpeg();
    let (status, answer) = upload(&cluster.nodes[0], &[("camera.jpg", &camera)]).await;
    assert_eq!(status, 200, "{answer}");
    let file = &answer["resp"]["files"][0];
    assert_eq!(file["sha256"], sha256(&camera));
    assert!(stored(&cluster, 0, file) == camera, "a byte changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_is_refused_at_once_and_leaves_nothing() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.start_all();
    let apng = png(
        1000,
        1000,
        &[png_chunk(b"acTL", b"\x00\x00\x00\x64\x00\x00\x00\x00")],
    );
    for (name, bomb, says) in [
        ("square.png", png(100_000, 100_000, &[]), "px; no side"),
        ("tall.png", png(10, 20_000, &[]), "px; no side"),
        // 2,000 frames of a 200×200 screen: 80 million pixels.
        ("frames.gif", gif(200, 2000), "pixels"),
        // 100 frames of 1000×1000.
        ("frames.png", apng.clone(), "pixels"),
    ] {
        let started = Instant::now();
        let (status, answer) = upload(&cluster.nodes[0], &[(name, &bomb)]).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{name}: {:?}",
            started.elapsed()
        );
        assert_eq!(status, 413, "{name}: {answer}");
        assert_eq!(answer["resp"]["success"], 0, "{name}");
        let error = answer["resp"]["error"].as_str().expect("error");
        assert!(error.contains(says), "{name}: {error}");
    }
    // A replica is held to the same limits.
    let response = reqwest::Client::new()
        .put(cluster.nodes[0].do_url(
            "action=sync&format=json&path=2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.png",
        ))
        .header("X-Security-Key", &cluster.nodes[0].key)
        .header("X-Content-SHA256", sha256(&apng))
        .body(apng)
        .send()
        .await
        .expect("sync");
    assert_eq!(response.status().as_u16(), 413);
    for node in &cluster.nodes {
        assert!(
            node.stored().is_empty(),
            "{}: {:?}",
            node.name,
            node.stored()
        );
        assert!(node.temp_files().is_empty(), "{}", node.name);
    }

    // Under the limits, the same shapes are pictures like any other.
    let (status, answer) = upload(&cluster.nodes[0], &[("few.gif", &gif(200, 10))]).await;
    assert_eq!(status, 200, "{answer}");
}

/// The issue's own case, end to end: a real 12-megapixel JPEG (encoded
/// here) carrying a phone's GPS block and orientation 6 is stored without
/// the GPS, keeps its orientation, and its thumbnail is a portrait JPEG that
/// fits 320×320.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_12_megapixel_phone_photo_is_stored_without_gps_and_gets_a_portrait_thumbnail() {
    let cluster = Cluster::single(QUIET);
    let node = &cluster.nodes[0];
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("phone.jpg");
    let photo = image::RgbImage::from_fn(4000, 3000, |x, y| {
        image::Rgb([
            (x / 16 % 256) as u8,
            (y / 12 % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    photo.save(&file).expect("encode 12 MP");
    exiftool(
        &file,
        &[
            "-overwrite_original",
            "-GPSLatitude=31.2304",
            "-GPSLatitudeRef=N",
            "-GPSLongitude=121.4737",
            "-GPSLongitudeRef=E",
            "-Orientation#=6",
        ],
    );
    let bytes = std::fs::read(&file).expect("read");
    let (status, answer) = upload(node, &[("phone.jpg", &bytes)]).await;
    assert_eq!(status, 200, "{answer}");
    let entry = &answer["resp"]["files"][0];
    assert_eq!(
        (entry["width"].as_u64(), entry["height"].as_u64()),
        (Some(4000), Some(3000))
    );
    let path = entry["path"].as_str().expect("path");
    let kept = tags(&std::fs::read(node.data_dir().join(path)).expect("stored"));
    assert!(
        !kept.keys().any(|k| k.starts_with("GPS")),
        "GPS left in the stored file: {kept:?}"
    );
    assert_eq!(kept["Orientation"], 6, "{kept:?}");
    let thumb = reqwest::get(format!("{}/{path}-t.jpg", node.base()))
        .await
        .expect("thumbnail");
    assert_eq!(thumb.status().as_u16(), 200);
    let thumb = thumb.bytes().await.expect("bytes");
    let small = image::load_from_memory(&thumb).expect("a JPEG");
    assert!(
        small.width() <= 320 && small.height() <= 320,
        "{}x{}",
        small.width(),
        small.height()
    );
    assert!(
        small.height() > small.width(),
        "not portrait: {}x{}",
        small.width(),
        small.height()
    );
    assert!(!tags(&thumb).keys().any(|k| k.starts_with("GPS")));
}

/// Exif (little-endian TIFF) whose IFD0 points at a GPS IFD holding a
/// latitude, 48° 51′ 30″ N: what exiftool reads as `GPSLatitude`.
fn gps_tiff() -> Vec<u8> {
    let mut tiff = b"II\x2a\x00\x08\x00\x00\x00\x01\x00".to_vec();
    tiff.extend_from_slice(b"\x25\x88\x04\x00\x01\x00\x00\x00\x1a\x00\x00\x00\x00\x00\x00\x00");
    tiff.extend_from_slice(b"\x02\x00");
    tiff.extend_from_slice(b"\x01\x00\x02\x00\x02\x00\x00\x00N\x00\x00\x00");
    tiff.extend_from_slice(b"\x02\x00\x05\x00\x03\x00\x00\x00\x38\x00\x00\x00\x00\x00\x00\x00");
    for n in [48u32, 51, 30] {
        tiff.extend_from_slice(&n.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
    }
    tiff
}

fn riff_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut chunk = kind.to_vec();
    chunk.extend_from_slice(&u32::try_from(data.len()).expect("len").to_le_bytes());
    chunk.extend_from_slice(data);
    if data.len() % 2 == 1 {
        chunk.push(0);
    }
    chunk
}

/// A simple (VP8L) WebP of 3×2 pixels as the `image` crate writes it, with
/// `chunks` after its image chunk inside the RIFF, and `after` beyond it.
fn webp(chunks: &[Vec<u8>], after: &[u8]) -> Vec<u8> {
    let mut encoded = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(3, 2, image::Rgb([9, 99, 199])))
        .write_to(&mut encoded, image::ImageFormat::WebP)
        .expect("encode");
    let encoded = encoded.into_inner();
    let mut body = encoded[8..].to_vec();
    chunks.iter().for_each(|c| body.extend(c));
    let mut file = b"RIFF".to_vec();
    file.extend_from_slice(&u32::try_from(body.len()).expect("len").to_le_bytes());
    file.extend(body);
    file.extend_from_slice(after);
    file
}

/// Finding of issue 19: GPS survived in a PNG `exIf` chunk (and other
/// spellings of `eXIf`), in chunks after IEND, and in a simple WebP with
/// EXIF or XMP chunks; a WebP with a chunk after the RIFF end was stored
/// undecodable. Each is stored decodable and without its location now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_metadata_leaves_every_png_and_webp_shape_and_the_file_still_decodes() {
    let cluster = Cluster::single(QUIET);
    let gps = gps_tiff();
    let exif = [b"Exif\0\0".as_slice(), &gps].concat();
    let xmp = riff_chunk(
        b"XMP ",
        b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>\
<rdf:Description xmlns:exif='http://ns.adobe.com/exif/1.0/' exif:GPSLatitude='48,51.5N'/></rdf:RDF></x:xmpmeta>",
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("exIf.png", png(1, 1, &[png_chunk(b"exIf", &gps)])),
        ("eXIF.png", png(1, 1, &[png_chunk(b"eXIF", &gps)])),
        (
            "after-iend.png",
            [
                png(1, 1, &[]),
                png_chunk(b"eXIf", &gps),
                png_chunk(b"tEXt", b"GPS\0N 48.8584"),
            ]
            .concat(),
        ),
        ("simple-exif.webp", webp(&[riff_chunk(b"EXIF", &exif)], b"")),
        ("simple-xmp.webp", webp(std::slice::from_ref(&xmp), b"")),
        ("after-riff.webp", webp(&[], &riff_chunk(b"EXIF", &exif))),
    ];
    for (name, bytes) in &cases {
        let (status, answer) = upload(&cluster.nodes[0], &[(name, bytes)]).await;
        assert_eq!(status, 200, "{name}: {answer}");
        let file = &answer["resp"]["files"][0];
        let kept = stored(&cluster, 0, file);
        assert_eq!(file["sha256"], sha256(&kept), "{name}");
        image::load_from_memory(&kept)
            .unwrap_or_else(|e| panic!("{name}: the stored file does not decode: {e}"));
        let after = tags(&kept);
        let left: Vec<_> = after
            .keys()
            .filter(|k| k.starts_with("GPS") || k.starts_with("XMP"))
            .collect();
        assert!(left.is_empty(), "{name}: {left:?} in {after:?}");
        assert!(
            !kept.windows(gps.len()).any(|w| w == gps.as_slice()),
            "{name}: the GPS block is still in the stored file"
        );
    }
}

/// Finding of issue 19: a WebP whose RIFF size ends inside a chunk answered
/// 500 (extended) or was stored as it was (simple), a PNG whose chunk runs past the end was stored; neither parses, so
/// both are refused like any file that is not a valid image, keeping
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_png_or_webp_whose_chunks_do_not_parse_is_refused_with_415() {
    let cluster = Cluster::single(QUIET);
    let gps = gps_tiff();
    let mut short_riff = webp(
        &[riff_chunk(
            b"EXIF",
            &[b"Exif\0\0".as_slice(), &gps].concat(),
        )],
        b"",
    );
    let size = u32::from_le_bytes(short_riff[4..8].try_into().expect("4")) - 10;
    short_riff[4..8].copy_from_slice(&size.to_le_bytes());
    // The same as an extended WebP (VP8X first, its Exif flag set).
    let mut extended = webp(&[], b"");
    let vp8x = riff_chunk(b"VP8X", b"\x08\0\0\0\x02\0\0\x01\0\0");
    extended.splice(12..12, vp8x.iter().copied());
    extended.extend(riff_chunk(
        b"EXIF",
        &[b"Exif\0\0".as_slice(), &gps].concat(),
    ));
    // Smaller than the chunks to remove: the old code's size arithmetic
    // failed there (500).
    extended[4..8].copy_from_slice(&30u32.to_le_bytes());
    let mut long_chunk = png(1, 1, &[png_chunk(b"tEXt", b"GPS\0N 48.8584")]);
    long_chunk.truncate(long_chunk.len() - 20);
    for (name, bytes) in [
        ("short-riff-vp8x.webp", extended),
        ("short-riff.webp", short_riff),
        ("cut.png", long_chunk),
    ] {
        let (status, answer) = upload(&cluster.nodes[0], &[(name, &bytes)]).await;
        assert_eq!(status, 415, "{name}: {answer}");
        assert_eq!(answer["resp"]["success"], 0, "{name}");
    }
    assert!(
        cluster.nodes[0].stored().is_empty(),
        "a refused file was kept"
    );
    assert!(cluster.nodes[0].temp_files().is_empty());
}

/// Issue 19, the same class in JPEG: a multi-picture file's preview after
/// EOI keeps its own Exif (with the GPS position), and anything appended
/// after EOI was stored. Both go; the picture itself is kept byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jpeg_loses_what_follows_its_end() {
    let cluster = Cluster::single(QUIET);
    let gps = gps_tiff();
    let picture = plain_jpeg(&icc_segment());
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&u16::try_from(gps.len() + 8).expect("len").to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&gps);
    let preview = [b"\xFF\xD8".as_slice(), &app1, b"\xFF\xD9"].concat();
    let with_preview = [picture.as_slice(), &preview].concat();
    let (status, answer) = upload(&cluster.nodes[0], &[("mpf.jpg", &with_preview)]).await;
    assert_eq!(status, 200, "{answer}");
    let file = &answer["resp"]["files"][0];
    let kept = stored(&cluster, 0, file);
    assert_eq!(file["sha256"], sha256(&kept));
    assert!(kept == picture, "the bytes after EOI were stored");
}
