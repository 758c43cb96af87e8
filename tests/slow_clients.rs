//! Slow and stalled clients (SPEC §8): headers that never end, bodies that
//! stop or drip, are dropped after the configured timeouts and leave no
//! partial file; many of them at once do not stop real uploads.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Cluster, eventually, form, jpeg, json};
use futures_util::StreamExt;

const SETTINGS: &str = "fsync = false\nheader_timeout_secs = 1\nclient_idle_timeout_secs = 1\n\
                        client_min_bytes_per_sec = 1024\n";

/// Reads until the server closes; returns what it said and how long it took.
fn until_closed(mut s: TcpStream, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    (String::from_utf8_lossy(&buf).into_owned(), start.elapsed())
}

/// Request headers and the start of a JPEG part, without the rest.
fn upload_head(node: &common::Node, body_len: usize, boundary: &str) -> Vec<u8> {
    let head = format!(
        "POST /do.ashx?action=upload HTTP/1.1\r\nHost: x\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {body_len}\r\n\
         X-Security-Key: {}\r\n\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n",
        node.key
    );
    let mut bytes = head.into_bytes();
    bytes.push(0xFF);
    bytes
}

#[test]
fn headers_that_never_end_are_cut_off() {
    let cluster = Cluster::single(SETTINGS);
    let s1 = &cluster.nodes[0];
    let mut s = TcpStream::connect(("127.0.0.1", s1.port)).expect("connect");
    s.write_all(b"POST /do.ashx?action=upload HTTP/1.1\r\nHost: x\r\nContent-Le")
        .expect("write");
    let (_, took) = until_closed(s, Duration::from_secs(20));
    assert!(took < Duration::from_secs(10), "still open after {took:?}");
}

#[test]
fn a_dripping_body_is_dropped_and_its_partial_file_deleted() {
    let cluster = Cluster::single(SETTINGS);
    let s1 = &cluster.nodes[0];
    let mut s = TcpStream::connect(("127.0.0.1", s1.port)).expect("connect");
    s.write_all(&upload_head(s1, 1 << 20, "drip"))
        .expect("head");
    s.write_all(&common::JPEG_HEAD[1..]).expect("magic");
    // 50 bytes every 200 ms: never idle for a second, but far below 1 KiB/s.
    let start = Instant::now();
    let mut dropped = false;
    while start.elapsed() < Duration::from_secs(15) {
        if s.write_all(&[0u8; 50]).is_err() {
            dropped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        s.set_nonblocking(true).expect("nonblocking");
        let mut peek = [0u8; 64];
        let answered = matches!(s.peek(&mut peek), Ok(n) if n > 0);
        s.set_nonblocking(false).expect("blocking");
        if answered {
            break;
        }
    }
    let (answer, _) = until_closed(s, Duration::from_secs(5));
    assert!(dropped || answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.is_empty() || answer.contains("bytes per second"),
        "{answer}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "dropped only after {:?}",
        start.elapsed()
    );
    assert!(eventually(Duration::from_secs(5), || s1
        .temp_files()
        .is_empty()));
    assert!(s1.stored().is_empty());
}

#[tokio::test]
async fn many_slow_clients_do_not_stop_real_uploads() {
    // Timeouts long enough that all slow clients are connected at once.
    let cluster =
        Cluster::single("fsync = false\nheader_timeout_secs = 8\nclient_idle_timeout_secs = 8\n");
    let s1 = &cluster.nodes[0];
    let port = s1.port;
    let head = upload_head(s1, 1 << 20, "slow");
    // 100 clients that start an upload and then stall, and 50 that never
    // finish their headers.
    let mut slow = Vec::new();
    for i in 0..150 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        if i < 100 {
            s.write_all(&head).expect("head");
            s.write_all(&common::JPEG_HEAD[1..]).expect("magic");
        } else {
            s.write_all(b"POST /do.ashx HTTP/1.1\r\n").expect("partial");
        }
        slow.push(s);
    }
    // None of the stalled uploads has a temporary file: a file is created by
    // its first full batch of bytes.
    std::thread::sleep(Duration::from_millis(500));
    assert!(s1.temp_files().is_empty(), "{:?}", s1.temp_files());
    // Meanwhile 20 real uploads, 10 at a time, all succeed.
    let client = reqwest::Client::new();
    let uploads = (0..20).map(|i| {
        let client = client.clone();
        let url = s1.keyed("action=upload&format=json");
        async move {
            json(
                client
                    .post(url)
                    .multipart(form(&[("a.jpg", &jpeg(50_000, i))]))
                    .send()
                    .await
                    .expect("upload"),
            )
            .await
        }
    });
    let results: Vec<(u16, serde_json::Value)> = futures_util::stream::iter(uploads)
        .buffer_unordered(10)
        .collect()
        .await;
    for (status, v) in &results {
        assert_eq!(*status, 200, "{v}");
    }
    assert_eq!(s1.stored().len(), 20);
    // The slow ones are dropped and their partial files deleted.
    assert!(
        eventually(Duration::from_secs(30), || s1.temp_files().is_empty()),
        "{} partial files left",
        s1.temp_files().len()
    );
    drop(slow);
}
