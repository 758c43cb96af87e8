//! Image variants between a real server process and a real client (SPEC
//! §2.7): thumbnails and widths made on first request from pictures built
//! here, orientation applied, transparency kept in PNG, the original as
//! fallback, one generation for many requests, 503 past the queue, served
//! like originals (ETag, Range) and removed with their original; variants
//! that cannot be made are remembered and answered with a redirect to the
//! original; decoding is bounded (a JPEG's scans, the original read as a
//! stream) and HEAD costs no read-through.

mod common;

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Duration;

use common::{Cluster, Node, eventually, json, upload};
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use reqwest::StatusCode;

const QUIET: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n";

/// A `width` × `height` gradient encoded as `format`.
fn picture(width: u32, height: u32, alpha: bool, format: ImageFormat) -> Vec<u8> {
    let image = RgbaImage::from_fn(width, height, |x, y| {
        let a = if alpha && x < width / 2 { 0 } else { 255 };
        Rgba([(x % 256) as u8, (y % 256) as u8, 128, a])
    });
    let image = if alpha {
        DynamicImage::ImageRgba8(image)
    } else {
        DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(image).to_rgb8())
    };
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), format)
        .expect("encode");
    out
}

/// A 4000×3000 JPEG with an APP1 EXIF segment saying Orientation = 6
/// (turn 90° clockwise to show) inserted right after SOI.
fn turned_photo() -> Vec<u8> {
    let jpeg = picture(4000, 3000, false, ImageFormat::Jpeg);
    let tiff: &[u8] = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0";
    let len = u16::try_from(2 + 6 + tiff.len()).expect("short");
    [
        &jpeg[..2],
        b"\xFF\xE1",
        &len.to_be_bytes(),
        b"Exif\0\0",
        tiff,
        &jpeg[2..],
    ]
    .concat()
}

/// A GIF of two frames.
fn animated_gif() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut out);
        encoder
            .set_repeat(image::codecs::gif::Repeat::Infinite)
            .expect("repeat");
        for shade in [0u8, 255] {
            let frame = RgbaImage::from_pixel(64, 48, Rgba([shade, 0, 0, 255]));
            encoder
                .encode_frame(image::Frame::new(frame))
                .expect("frame");
        }
    }
    out
}

/// A progressive grayscale JPEG of `side` × `side` whose `scans` scans hold
/// no data (Huffman tables whose one code is `0`, so the zeros a decoder
/// pads a scan with read as "nothing here"): every scan still walks every
/// block. The last scan is broken (a spectral selection progressive mode
/// forbids), as in the attack this guards against: decoding fails after
/// all the work.
fn many_scans(side: u16, scans: usize) -> Vec<u8> {
    let mut jpeg = b"\xFF\xD8\xFF\xDB\x00\x43\x00".to_vec();
    jpeg.extend_from_slice(&[1; 64]);
    jpeg.extend_from_slice(b"\xFF\xC2\x00\x0b\x08");
    jpeg.extend_from_slice(&side.to_be_bytes());
    jpeg.extend_from_slice(&side.to_be_bytes());
    jpeg.extend_from_slice(b"\x01\x01\x11\x00\xFF\xC4\x00\x26");
    for class in [0x00, 0x10] {
        jpeg.extend_from_slice(&[class, 1]);
        jpeg.extend_from_slice(&[0; 16]);
    }
    jpeg.extend_from_slice(b"\xFF\xDA\x00\x08\x01\x01\x00\x00\x00\x00");
    for _ in 2..scans {
        jpeg.extend_from_slice(b"\xFF\xDA\x00\x08\x01\x01\x00\x01\x3f\x00");
    }
    jpeg.extend_from_slice(b"\xFF\xDA\x00\x08\x01\x01\x00\x00\x3f\x00");
    jpeg.extend_from_slice(b"\xFF\xD9");
    jpeg
}

/// A client that does not follow redirects.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Lines of `node`'s log files saying a variant of `name` could not be
/// made: one per decoding attempt that failed.
fn failed_attempts(node: &Node, name: &str) -> usize {
    node.log_lines(|l| l.contains("variant not made") && l.contains(name))
}

/// Asserts that `answer` sends the client to the original named `name`.
fn assert_sent_to_original(answer: &reqwest::Response, name: &str) {
    assert_eq!(answer.status(), StatusCode::FOUND, "{name}");
    assert_eq!(header(answer, "location"), name);
    assert_eq!(header(answer, "x-thumbnail"), "fallback");
    assert_eq!(header(answer, "cache-control"), "no-cache");
}

/// Uploads `bytes` and returns its stored path.
async fn stored(node: &Node, name: &str, bytes: &[u8]) -> String {
    let (status, up) = upload(node, &[(name, bytes)]).await;
    assert_eq!(status, 200, "{up}");
    up["resp"]["files"][0]["path"]
        .as_str()
        .expect("path")
        .to_owned()
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::Client::new().get(url).send().await.expect("get")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn decoded(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).expect("an image")
}

/// Files below `data/.variants` (temporary files left out).
fn variant_files(node: &Node) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut folders = vec![node.data_dir().join(".variants")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name() != ".tmp" {
                    folders.push(path);
                }
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Lines of `node`'s log files saying a variant named `name` was made.
fn generations(node: &Node, name: &str) -> usize {
    node.log_lines(|l| l.contains("variant made") && l.contains(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turned_photo_gets_a_portrait_thumbnail_and_offered_widths_only() {
    let cluster = Cluster::single(QUIET);
    let node = &cluster.nodes[0];
    let path = stored(node, "photo.jpg", &turned_photo()).await;
    let base = format!("{}/{path}", node.base());

    let thumbnail = get(&format!("{base}-t.jpg")).await;
    assert_eq!(thumbnail.status(), StatusCode::OK);
    assert_eq!(header(&thumbnail, "content-type"), "image/jpeg");
    assert_eq!(header(&thumbnail, "x-content-type-options"), "nosniff");
    assert!(header(&thumbnail, "cache-control").contains("immutable"));
    assert_eq!(header(&thumbnail, "x-thumbnail"), "");
    let bytes = thumbnail.bytes().await.expect("body");
    assert!(bytes.starts_with(b"\xFF\xD8"), "a JPEG");
    assert!(
        !bytes.windows(6).any(|w| w == b"Exif\0\0"),
        "no metadata in a thumbnail"
    );
    let image = decoded(&bytes);
    assert_eq!(
        (image.width(), image.height()),
        (240, 320),
        "fits 320×320 and is portrait, as shown"
    );

    let wide = get(&format!("{base}-w640.jpg")).await;
    assert_eq!(wide.status(), StatusCode::OK);
    let image = decoded(&wide.bytes().await.expect("body"));
    assert_eq!((image.width(), image.height()), (640, 853));

    for other in ["-w641.jpg", "-w0640.jpg", "-t.png", "-w640.gif", "-x.jpg"] {
        let answer = get(&format!("{base}{other}")).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{other}");
    }

    // HEAD tells whether a variant was made; it never makes one.
    let client = reqwest::Client::new();
    let head = client
        .head(format!("{base}-w1280.jpg"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    let head = client
        .head(format!("{base}-w640.jpg"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-type"), "image/jpeg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variant_is_served_like_an_original_with_etag_and_range() {
    let cluster = Cluster::single(QUIET);
    let node = &cluster.nodes[0];
    let path = stored(node, "p.jpg", &picture(900, 600, false, ImageFormat::Jpeg)).await;
    let url = format!("{}/{path}-w320.jpg", node.base());
    let first = get(&url).await;
    assert_eq!(first.status(), StatusCode::OK);
    let etag = header(&first, "etag");
    assert!(etag.starts_with('"'), "{etag:?}");
    let whole = first.bytes().await.expect("body");

    let client = reqwest::Client::new();
    let again = client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("get");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, "etag"), etag);

    let part = client
        .get(&url)
        .header("range", "bytes=0-9")
        .send()
        .await
        .expect("get");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&part, "content-type"), "image/jpeg");
    assert_eq!(&part.bytes().await.expect("body")[..], &whole[..10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn png_keeps_alpha_and_gif_and_bmp_get_a_thumbnail_or_the_original() {
    let cluster = Cluster::single(QUIET);
    let node = &cluster.nodes[0];
    let base = node.base();

    let png = stored(node, "a.png", &picture(400, 300, true, ImageFormat::Png)).await;
    let answer = get(&format!("{base}/{png}-w160.png")).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(header(&answer, "content-type"), "image/png");
    let image = decoded(&answer.bytes().await.expect("body"));
    assert!(image.color().has_alpha(), "{:?}", image.color());
    let rgba = image.to_rgba8();
    assert_eq!(rgba.dimensions(), (160, 120));
    assert_eq!(rgba.get_pixel(10, 60).0[3], 0, "transparent half kept");
    assert_eq!(rgba.get_pixel(150, 60).0[3], 255);

    let gif = picture(500, 250, false, ImageFormat::Gif);
    let bmp = picture(500, 250, false, ImageFormat::Bmp);
    for (name, bytes) in [("s.gif", gif), ("b.bmp", bmp)] {
        let path = stored(node, name, &bytes).await;
        let answer = get(&format!("{base}/{path}-t.jpg")).await;
        assert_eq!(answer.status(), StatusCode::OK, "{name}");
        if header(&answer, "x-thumbnail") == "fallback" {
            assert_eq!(&answer.bytes().await.expect("body")[..], &bytes[..]);
        } else {
            let image = decoded(&answer.bytes().await.expect("body"));
            assert_eq!((image.width(), image.height()), (320, 160), "{name}");
        }
    }

    // An animation is not resized: the client is sent to the original.
    let animated = animated_gif();
    let path = stored(node, "anim.gif", &animated).await;
    let name = path.rsplit('/').next().expect("name");
    let answer = no_redirects()
        .get(format!("{base}/{path}-t.jpg"))
        .send()
        .await
        .expect("get");
    assert_sent_to_original(&answer, name);
    let followed = get(&format!("{base}/{path}-t.jpg")).await;
    assert_eq!(followed.status(), StatusCode::OK);
    assert_eq!(header(&followed, "content-type"), "image/gif");
    assert_eq!(&followed.bytes().await.expect("body")[..], &animated[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_first_requests_share_one_generation() {
    let cluster = Cluster::single(QUIET);
    let node = &cluster.nodes[0];
    let path = stored(
        node,
        "p.jpg",
        &picture(2400, 1600, false, ImageFormat::Jpeg),
    )
    .await;
    let url = format!("{}/{path}-w320.jpg", node.base());
    let client = reqwest::Client::new();
    let answers = futures_util::future::join_all((0..50).map(|_| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let response = client.get(&url).send().await.expect("get");
            let status = response.status();
            (status, response.bytes().await.expect("body"))
        }
    }))
    .await;
    let first = &answers[0].1;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK);
        assert_eq!(body, first, "every answer is the same variant");
    }
    let name = format!("{path}-w320.jpg");
    assert!(
        eventually(Duration::from_secs(5), || generations(node, &name) >= 1),
        "no generation logged:\n{}",
        node.output()
    );
    assert_eq!(generations(node, &name), 1, "{}", node.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    let cluster = Cluster::single(&format!("{QUIET}[images]\nworkers = 1\nqueue = 1\n"));
    let node = &cluster.nodes[0];
    let path = stored(
        node,
        "p.jpg",
        &picture(3000, 2000, false, ImageFormat::Jpeg),
    )
    .await;
    let client = reqwest::Client::new();
    let suffixes = [
        "-t.jpg",
        "-w160.jpg",
        "-w320.jpg",
        "-w640.jpg",
        "-w1280.jpg",
        "-w160.png",
        "-w320.png",
        "-w640.png",
        "-w1280.png",
    ];
    let answers = futures_util::future::join_all(suffixes.iter().map(|suffix| {
        let client = client.clone();
        let url = format!("{}/{path}{suffix}", node.base());
        async move {
            let response = client.get(&url).send().await.expect("get");
            (response.status(), header(&response, "retry-after"))
        }
    }))
    .await;
    let busy: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    let made = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    assert!(!busy.is_empty(), "{answers:?}");
    assert!(made >= 1, "{answers:?}");
    assert_eq!(busy.len() + made, suffixes.len(), "{answers:?}");
    for (_, retry_after) in busy {
        assert!(retry_after.parse::<u64>().is_ok(), "{retry_after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_original_removes_its_variants() {
    let cluster = Cluster::single(QUIET);
    let node = &cluster.nodes[0];
    let keep = stored(node, "k.jpg", &picture(800, 600, false, ImageFormat::Jpeg)).await;
    let path = stored(node, "p.jpg", &picture(800, 600, false, ImageFormat::Jpeg)).await;
    for (p, suffix) in [(&path, "-t.jpg"), (&path, "-w160.jpg"), (&keep, "-t.jpg")] {
        let answer = get(&format!("{}/{p}{suffix}", node.base())).await;
        assert_eq!(answer.status(), StatusCode::OK);
    }
    assert_eq!(variant_files(node).len(), 3);

    let (status, answer) = json(
        reqwest::Client::new()
            .post(node.admin(&format!("action=delete&format=json&path={path}")))
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let left = variant_files(node);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0]
            .to_string_lossy()
            .ends_with(&format!("{}-t.jpg", keep.rsplit('/').next().expect("name")))
    );
    let answer = get(&format!("{}/{path}-t.jpg", node.base())).await;
    assert_eq!(answer.status(), StatusCode::GONE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_variants_folder_stays_under_its_cap_oldest_first() {
    const CAP: u64 = 40_000;
    let cluster = Cluster::single(&format!("{QUIET}[images]\nvariants_max_bytes = {CAP}\n"));
    let node = &cluster.nodes[0];
    let mut last = String::new();
    for seed in 0..4u32 {
        let path = stored(
            node,
            "p.jpg",
            &picture(900 + seed, 600, false, ImageFormat::Jpeg),
        )
        .await;
        for suffix in ["-t.jpg", "-w640.jpg"] {
            let answer = get(&format!("{}/{path}{suffix}", node.base())).await;
            assert_eq!(answer.status(), StatusCode::OK);
            assert_eq!(header(&answer, "x-thumbnail"), "");
            last = format!("{path}{suffix}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let files = variant_files(node);
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).expect("variant").len())
        .sum();
    assert!(total <= CAP, "{total} bytes in {files:?}");
    assert!(files.len() < 8, "nothing was removed: {files:?}");
    let newest = last.rsplit('/').next().expect("name");
    assert!(
        files.iter().any(|f| f.to_string_lossy().ends_with(newest)),
        "the newest variant was removed: {files:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_eager_thumbnail_the_thumbnail_is_made_at_upload() {
    let cluster = Cluster::single(&format!("{QUIET}[images]\neager_thumbnail = true\n"));
    let node = &cluster.nodes[0];
    let path = stored(node, "e.jpg", &picture(800, 600, false, ImageFormat::Jpeg)).await;
    let name = path.rsplit('/').next().expect("name").to_owned();
    // No request for it: made by the upload alone.
    assert!(
        eventually(Duration::from_secs(20), || variant_files(node)
            .iter()
            .any(|f| f.to_string_lossy().ends_with(&format!("{name}-t.jpg")))),
        "{:?}",
        variant_files(node)
    );
    let thumb = get(&format!("{}/{path}-t.jpg", node.base())).await;
    assert_eq!(thumb.status(), StatusCode::OK);
    // One generation: the request found the eager one's file.
    assert!(eventually(Duration::from_secs(5), || generations(
        node, &name
    ) == 1));
    assert_eq!(generations(node, &name), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jpeg_with_thousands_of_scans_is_refused_at_upload_and_a_real_progressive_one_is_not() {
    let cluster = Cluster::single(QUIET);
    let node = &cluster.nodes[0];
    let (status, answer) = upload(node, &[("scans.jpg", &many_scans(1000, 3000))]).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.to_string().contains("scans"), "{answer}");
    assert!(node.stored().is_empty(), "{:?}", node.stored().len());

    let mut progressive = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut progressive, 85);
    encoder.set_progressive(true);
    let pixels: Vec<u8> = (0..800 * 600 * 3).map(|i: u32| (i % 251) as u8).collect();
    encoder
        .encode(&pixels, 800, 600, jpeg_encoder::ColorType::Rgb)
        .expect("progressive");
    let path = stored(node, "real.jpg", &progressive).await;
    let thumbnail = get(&format!("{}/{path}-t.jpg", node.base())).await;
    assert_eq!(thumbnail.status(), StatusCode::OK);
    let image = decoded(&thumbnail.bytes().await.expect("body"));
    assert_eq!((image.width(), image.height()), (320, 240));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_costly_jpeg_already_on_disk_costs_one_attempt_remembered_across_a_restart() {
    let mut cluster = Cluster::single(QUIET);
    let base = cluster.nodes[0].base();
    let legit = stored(
        &cluster.nodes[0],
        "p.jpg",
        &picture(1600, 1200, false, ImageFormat::Jpeg),
    )
    .await;
    // Restored from a backup, or received before the upload check existed.
    let (folder, _) = legit.rsplit_once('/').expect("folder");
    let name = "0b5a3c1e-4f2d-4c8a-9e7b-1d2c3b4a5f60.jpg";
    let hostile = format!("{folder}/{name}");
    std::fs::write(
        cluster.nodes[0].data_dir().join(&hostile),
        many_scans(1000, 3000),
    )
    .expect("restore");

    // Asked for alongside a legitimate thumbnail, which is still made.
    let client = no_redirects();
    let asked = [
        format!("{base}/{hostile}-t.jpg"),
        format!("{base}/{legit}-t.jpg"),
    ];
    let answers = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join_all(asked.iter().map(|url| client.get(url).send())),
    )
    .await
    .expect("both answered");
    let mut answers = answers.into_iter().map(|a| a.expect("get"));
    assert_sent_to_original(&answers.next().expect("hostile"), name);
    let made = answers.next().expect("legit");
    assert_eq!(made.status(), StatusCode::OK);
    assert_eq!(header(&made, "content-type"), "image/jpeg");
    let record = cluster.nodes[0]
        .data_dir()
        .join(".variants")
        .join(folder)
        .join(format!("{name}-failed"));
    let reason = std::fs::read_to_string(&record).expect("failure record");
    assert!(reason.contains("scans"), "{reason}");

    // Every variant of it, again and after a restart: no decoding.
    for round in 0..2 {
        for suffix in ["-t.jpg", "-w160.jpg", "-w640.png"] {
            let answer = client
                .get(format!("{base}/{hostile}{suffix}"))
                .send()
                .await
                .expect("get");
            assert_sent_to_original(&answer, name);
            let head = client
                .head(format!("{base}/{hostile}{suffix}"))
                .send()
                .await
                .expect("head");
            assert_sent_to_original(&head, name);
        }
        if round == 0 {
            cluster.node(0).terminate();
            cluster.node(0).start();
        }
    }
    let node = &cluster.nodes[0];
    assert_eq!(failed_attempts(node, name), 1, "{}", node.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_animated_gif_variant_sends_a_redirect_not_the_original_and_decodes_once() {
    let cluster = Cluster::single(QUIET);
    let node = &cluster.nodes[0];
    // Frames of noise: a GIF of a few MB.
    let mut gif = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut gif);
        let mut x: u32 = 7;
        for _ in 0..4 {
            let frame = RgbaImage::from_fn(640, 480, |_, _| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let [r, g, b, _] = x.to_le_bytes();
                Rgba([r, g, b, 255])
            });
            encoder
                .encode_frame(image::Frame::new(frame))
                .expect("frame");
        }
    }
    assert!(gif.len() > 500_000, "{}", gif.len());
    let path = stored(node, "anim.gif", &gif).await;
    let name = path.rsplit('/').next().expect("name");
    let client = no_redirects();
    let mut received = 0;
    for _ in 0..10 {
        let answer = client
            .get(format!("{}/{path}-w320.jpg", node.base()))
            .send()
            .await
            .expect("get");
        assert_sent_to_original(&answer, name);
        received += answer.bytes().await.expect("body").len();
    }
    assert!(received < 10_000, "{received} bytes for ten redirects");
    assert!(eventually(Duration::from_secs(5), || failed_attempts(
        node, name
    ) == 1));
    assert_eq!(failed_attempts(node, name), 1, "{}", node.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jpeg_with_a_long_trailer_is_read_only_up_to_its_end_of_image() {
    const TRAILER: usize = 200 << 20;
    let mut cluster = Cluster::single(QUIET);
    let mut jpeg = picture(1200, 900, false, ImageFormat::Jpeg);
    jpeg.resize(jpeg.len() + TRAILER, 0x5A);
    let path = stored(&cluster.nodes[0], "t.jpg", &jpeg).await;
    drop(jpeg);
    // A fresh process: its peak memory is this request's.
    cluster.node(0).terminate();
    cluster.node(0).start();
    let node = &cluster.nodes[0];
    let before = node.peak_rss_kib();
    let answer = get(&format!("{}/{path}-w160.png", node.base())).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let image = decoded(&answer.bytes().await.expect("body"));
    assert_eq!((image.width(), image.height()), (160, 120));
    let grown = node.peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "peak memory grew by {grown} KiB for a {TRAILER}-byte original"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_of_a_variant_never_fetches_its_original_from_a_peer() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.start_all();
    let path = stored(
        &cluster.nodes[0],
        "p.jpg",
        &picture(800, 600, false, ImageFormat::Jpeg),
    )
    .await;
    let sentinel = stored(
        &cluster.nodes[0],
        "q.jpg",
        &picture(80, 60, false, ImageFormat::Jpeg),
    )
    .await;
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let on_s2 = s2.data_dir().join(&path);
    assert!(
        eventually(Duration::from_secs(10), || on_s2.is_file()),
        "not replicated"
    );
    std::fs::remove_file(&on_s2).expect("remove");

    let client = reqwest::Client::new();
    for suffix in ["-t.jpg", "-w160.png"] {
        let head = client
            .head(format!("{}/{path}{suffix}", s2.base()))
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), StatusCode::NOT_FOUND, "{suffix}");
    }
    // A request s1 logs after any the HEADs could have caused.
    let direct = get(&format!("{}/{sentinel}", s1.base())).await;
    assert_eq!(direct.status(), StatusCode::OK);
    let asked = |p: &str| {
        let target = format!("target=/{p} ");
        s1.log_lines(|l| l.contains(&target))
    };
    assert!(eventually(Duration::from_secs(5), || asked(&sentinel) == 1));
    assert_eq!(asked(&path), 0, "{}", s1.output());
    assert!(!on_s2.exists(), "the HEAD fetched the original");

    // A GET still makes the variant, fetching the original once.
    let thumbnail = get(&format!("{}/{path}-t.jpg", s2.base())).await;
    assert_eq!(thumbnail.status(), StatusCode::OK);
    assert_eq!(header(&thumbnail, "content-type"), "image/jpeg");
}
