//! Uploads from a client that means harm or is merely hopeless (SPEC §8):
//! multipart framing that never ends, hundreds of uploads at a few bytes a
//! second, more uploads than the server takes at once, files that carry an
//! image's magic bytes and nothing of its structure. None of them may cost
//! memory in proportion to what they send, stop stored files from being
//! served, or leave anything behind.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Cluster, JPEG_HEAD, Node, eventually, jpeg, json, peak_rss_kib, upload};

/// Raw request head of an upload with `body_len` bytes of multipart body.
fn upload_head(node: &Node, body_len: u64, boundary: &str) -> Vec<u8> {
    format!(
        "POST /do.ashx?action=upload&format=json HTTP/1.1\r\nHost: x\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {body_len}\r\n\
         X-Security-Key: {}\r\n\r\n",
        node.key
    )
    .into_bytes()
}

/// Sends `head` then `filler` repeatedly, up to `total` bytes or until the
/// server stops reading; then reads its answer. Returns the answer and how
/// many body bytes were sent.
fn flood(port: u16, head: Vec<u8>, filler: &'static [u8], total: u64) -> (String, u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut sent = 0u64;
    let started = Instant::now();
    if s.write_all(&head).is_ok() {
        while sent < total && started.elapsed() < Duration::from_secs(120) {
            if s.write_all(filler).is_err() {
                break;
            }
            sent += filler.len() as u64;
        }
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    (String::from_utf8_lossy(&answer).into_owned(), sent)
}

#[test]
fn endless_part_headers_and_missing_boundaries_are_refused_with_flat_memory() {
    let cluster = Cluster::single("fsync = false\n");
    let s1 = &cluster.nodes[0];
    let pid = s1.pid().expect("pid");
    let before = peak_rss_kib(pid);
    const TOTAL: u64 = 300 << 20;
    static PAD: [u8; 64 * 1024] = [b'a'; 64 * 1024];
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let port = s1.port;
            let mut head = upload_head(s1, TOTAL + 4096, "B0UNDARY");
            match i {
                // A part header that never ends.
                0 => head.extend_from_slice(
                    b"--B0UNDARY\r\nContent-Disposition: form-data; name=\"file\"; \
                      filename=\"a.jpg\"\r\nX-Pad: ",
                ),
                // A second part whose header never ends, after a good file.
                1 => {
                    head.extend_from_slice(
                        b"--B0UNDARY\r\nContent-Disposition: form-data; name=\"file\"; \
                          filename=\"a.jpg\"\r\n\r\n",
                    );
                    head.extend_from_slice(&jpeg(2000, 1));
                    head.extend_from_slice(b"\r\n--B0UNDARY\r\nX-Pad: ");
                }
                // No boundary at all: a preamble that never ends.
                _ => {}
            }
            std::thread::spawn(move || flood(port, head, &PAD, TOTAL))
        })
        .collect();
    for client in clients {
        let (answer, sent) = client.join().expect("client");
        assert!(
            answer.starts_with("HTTP/1.1 400") || sent < TOTAL,
            "the server read all {sent} bytes: {answer}"
        );
        assert!(
            answer.is_empty() || answer.contains("within 32768 bytes"),
            "{answer}"
        );
    }
    let grown = peak_rss_kib(pid).saturating_sub(before);
    assert!(grown < 48 * 1024, "peak RSS grew by {grown} KiB");
    assert!(
        eventually(Duration::from_secs(10), || {
            s1.output().matches("status=400").count() >= 3
        }),
        "{}",
        s1.output()
    );
    assert!(eventually(Duration::from_secs(10), || s1
        .temp_files()
        .is_empty()));
}

/// An upload that sends its head and the start of a JPEG, then a byte every
/// `gap`, for as long as the returned stream is kept.
fn dribbling_upload(node: &Node) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
    let mut request = upload_head(node, 1 << 20, "slow");
    request.extend_from_slice(
        b"--slow\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n",
    );
    request.extend_from_slice(JPEG_HEAD);
    s.write_all(&request).expect("head");
    s
}

#[test]
fn hundreds_of_slow_uploads_leave_file_serving_and_health_answering() {
    let cluster = Cluster::single(
        "fsync = false\nclient_idle_timeout_secs = 60\nclient_min_bytes_per_sec = 0\n\
         max_uploads_in_flight = 2000\nmax_connections_per_client = 2000\n",
    );
    let s1 = &cluster.nodes[0];
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stored = jpeg(300_000, 7);
    let (status, answer) = runtime.block_on(upload(s1, &[("a.jpg", &stored)]));
    assert_eq!(status, 200, "{answer}");
    let link = answer["resp"]["link"].as_str().expect("link").to_owned();
    let path = link
        .split_once("/20")
        .map(|(_, p)| format!("/20{p}"))
        .expect("path");

    // 600 uploads that each got a first batch of bytes to the server and
    // then send a byte every few hundred milliseconds, like phones on a bad
    // network.
    let mut slow: Vec<TcpStream> = (0..600).map(|_| dribbling_upload(s1)).collect();
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(8) {
        for s in &mut slow {
            let _ = s.write_all(&[0]);
        }
        for target in [path.as_str(), "/healthz"] {
            let asked = Instant::now();
            let answer = common::raw(
                s1.port,
                format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
                Duration::from_secs(5),
            );
            worst = worst.max(asked.elapsed());
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "GET {target} while 600 uploads dribble: {answer:.200}"
            );
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(rounds > 3);
    assert!(
        worst < Duration::from_secs(1),
        "slowest answer took {worst:?}"
    );
    // A real upload still gets through.
    let (status, answer) = runtime.block_on(upload(s1, &[("b.jpg", &jpeg(5000, 8))]));
    assert_eq!(status, 200, "{answer}");
    drop(slow);
    assert!(
        eventually(Duration::from_secs(20), || s1.temp_files().is_empty()),
        "left behind: {:?}",
        s1.temp_files()
    );
}

#[test]
fn uploads_over_the_in_flight_limit_get_503_with_retry_after() {
    let cluster = Cluster::single("fsync = false\nmax_uploads_in_flight = 4\n");
    let s1 = &cluster.nodes[0];
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let slow: Vec<TcpStream> = (0..4).map(|_| dribbling_upload(s1)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let response = runtime.block_on(
        reqwest::Client::new()
            .post(s1.keyed("action=upload&format=json"))
            .multipart(common::form(&[("c.jpg", &jpeg(5000, 9))]))
            .send(),
    );
    let response = response.expect("answer");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let (_, body) = runtime.block_on(json(response));
    assert_eq!(body["resp"]["success"], 0);
    assert!(
        body["resp"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("busy")),
        "{body}"
    );
    drop(slow);
    let ok = eventually(Duration::from_secs(10), || {
        runtime
            .block_on(upload(s1, &[("d.jpg", &jpeg(5000, 10))]))
            .0
            == 200
    });
    assert!(ok, "uploads do not resume once the slow ones are gone");
}

#[tokio::test]
async fn magic_bytes_without_an_image_behind_them_are_refused() {
    let cluster = Cluster::single("fsync = false\n");
    let s1 = &cluster.nodes[0];
    let mut html = b"\xFF\xD8\xFF".to_vec();
    html.extend_from_slice(b"<html><body><script>alert(document.cookie)</script></body></html>");
    let cases: [(&str, Vec<u8>); 4] = [
        ("a.jpg", html),
        ("b.jpg", JPEG_HEAD[..20].to_vec()),
        (
            "c.png",
            b"\x89PNG\r\n\x1a\n<?php system($_GET['c']); ?>".to_vec(),
        ),
        (
            "d.webp",
            b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00<svg onload=alert(1)>".to_vec(),
        ),
    ];
    for (name, bytes) in &cases {
        let (status, answer) = upload(s1, &[(name, bytes)]).await;
        assert_eq!(status, 415, "{name}: {answer}");
        assert!(
            answer["resp"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("header does not parse")),
            "{name}: {answer}"
        );
    }
    assert!(s1.stored().is_empty(), "{:?}", s1.stored().len());
    // A real header: stored, with its dimensions in the answer.
    let (status, answer) = upload(s1, &[("e.jpg", &jpeg(3000, 3))]).await;
    assert_eq!(status, 200, "{answer}");
    let file = &answer["resp"]["files"][0];
    assert_eq!(
        (file["width"].as_u64(), file["height"].as_u64()),
        (Some(640), Some(480))
    );
}

#[tokio::test]
async fn a_replica_is_checked_like_an_upload() {
    let cluster = Cluster::single("fsync = false\nallowed_types = [\"png\"]\n");
    let s1 = &cluster.nodes[0];
    let client = reqwest::Client::new();
    let jpg = jpeg(3000, 4);
    let mut html = b"\xFF\xD8\xFF".to_vec();
    html.extend_from_slice(b"<html>");
    for (bytes, expected) in [(&jpg, 415), (&html, 415)] {
        let response = client
            .put(s1.do_url(
                "action=sync&format=json&path=2026/12/1/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
            ))
            .header("X-Security-Key", &s1.key)
            .header("X-Content-SHA256", common::sha256(bytes))
            .body(bytes.clone())
            .send()
            .await
            .expect("sync");
        assert_eq!(response.status().as_u16(), expected);
    }
    assert!(s1.stored().is_empty());
}

#[tokio::test]
async fn answers_and_logs_keep_keys_and_caches_out() {
    let cluster = Cluster::single("fsync = false\n");
    let s1 = &cluster.nodes[0];
    let client = reqwest::Client::new();
    // A misspelled key parameter: refused, and its value never logged.
    let response = client
        .post(format!(
            "{}/do.ashx?action=upload&Security+Key={}&security_key={}",
            s1.base(),
            s1.key,
            s1.key
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 403);
    for (name, value) in [
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(
            response.headers().get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{name}"
        );
    }
    // A range past the end of a stored file: 416, not cached for a year.
    let (status, answer) = upload(s1, &[("a.jpg", &jpeg(3000, 5))]).await;
    assert_eq!(status, 200, "{answer}");
    let link = answer["resp"]["link"].as_str().expect("link");
    let response = client
        .get(link)
        .header("Range", "bytes=999999-")
        .send()
        .await
        .expect("range");
    assert_eq!(response.status().as_u16(), 416);
    let cache = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(!cache.contains("immutable"), "{cache}");
    // The upload page: a policy against framing and foreign scripts.
    let page = client
        .get(format!("{}/.m/upload", s1.base()))
        .header("X-Security-Key", &s1.key)
        .send()
        .await
        .expect("page");
    let policy = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(
        eventually(Duration::from_secs(5), || s1
            .output()
            .contains("Security+Key=***")),
        "{}",
        s1.output()
    );
    assert!(!s1.output().contains(&s1.key), "{}", s1.output());
}

#[tokio::test]
async fn xml_answers_carry_no_character_xml_forbids() {
    let cluster = Cluster::single("fsync = false\n");
    let s1 = &cluster.nodes[0];
    let response = reqwest::Client::new()
        .post(s1.keyed("action=upload"))
        .multipart(common::form(&[("a\u{FFFE}b\u{FFFF}.jpg", &jpeg(3000, 6))]))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("text");
    assert!(text.starts_with("<resp><success>1</success>"), "{text}");
    for c in ['\u{FFFE}', '\u{FFFF}'] {
        assert!(!text.contains(c), "{text}");
    }
    assert!(
        text.contains("<name>a\u{FFFD}b\u{FFFD}.jpg</name>"),
        "{text}"
    );
}
