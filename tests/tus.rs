//! Resumable uploads (tus 1.0.0, SPEC §13) against the real binary: the
//! real tus-js-client (Node, `tests/browser/tus-client.mjs`) uploads a
//! large JPEG in 1 MiB chunks, resumes after the server was killed with
//! SIGKILL, and resumes after its connection was cut by a proxy; raw
//! requests check each tus row of SPEC §8, termination, expiry, takeover
//! of a stalled PATCH, the bytes of a stalled PATCH made durable before a
//! kill, token limits, the memory of a 1 GiB upload, and the stored
//! SHA-256 after a kill, a cut and a refused chunk.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use common::{Cluster, Node, eventually, jpeg, png};

const MIB: usize = 1 << 20;
const OFFSET_TYPE: &str = "application/offset+octet-stream";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

/// A tus request to `url` with the tus version and `key`.
fn tus(method: reqwest::Method, url: &str, key: Option<&str>) -> reqwest::RequestBuilder {
    let mut request = client()
        .request(method, url)
        .header("Tus-Resumable", "1.0.0");
    if let Some(key) = key {
        request = request.header("X-Security-Key", key);
    }
    request
}

/// Creates an upload of `length` bytes with `key`; its URL.
async fn create(node: &Node, key: &str, length: usize) -> String {
    let response = tus(
        reqwest::Method::POST,
        &format!("{}/files/", node.base()),
        Some(key),
    )
    .header("Upload-Length", length.to_string())
    .send()
    .await
    .expect("POST");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

async fn patch(url: &str, key: &str, offset: usize, bytes: &[u8]) -> reqwest::Response {
    tus(reqwest::Method::PATCH, url, Some(key))
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", OFFSET_TYPE)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("PATCH")
}

async fn offset_of(url: &str, key: &str) -> (u16, Option<u64>) {
    let response = tus(reqwest::Method::HEAD, url, Some(key))
        .send()
        .await
        .expect("HEAD");
    let offset = response
        .headers()
        .get("upload-offset")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (response.status().as_u16(), offset)
}

/// A raw PATCH from offset 0 of a `length`-byte upload `id`, its head sent
/// and no body byte yet: the test sends (part of) the body, stalls or cuts.
fn raw_patch(node: &Node, id: &str, length: usize) -> TcpStream {
    raw_patch_at(node, id, 0, length, "")
}

/// [`raw_patch`] of a `length`-byte body at `offset`, with `extra` header
/// lines (each ending in CRLF).
fn raw_patch_at(node: &Node, id: &str, offset: usize, length: usize, extra: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
    write!(
        stream,
        "PATCH /files/{id} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n\
         X-Security-Key: {}\r\nUpload-Offset: {offset}\r\nContent-Type: {OFFSET_TYPE}\r\n\
         {extra}Content-Length: {length}\r\n\r\n",
        node.key
    )
    .expect("head");
    stream
}

/// Files (not folders) in the staging folder of `node`.
fn staged(node: &Node) -> Vec<PathBuf> {
    std::fs::read_dir(node.data_dir().join(".staging"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Runs the tus-js-client driver; its JSON events.
fn tus_js(args: &[&str]) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("tests/browser/tus-client.mjs"))
        .args(args)
        .output()
        .expect("node not found: run scripts/install-test-tools.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        out.status.success(),
        "tus-js-client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    events
}

fn event<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {events:?}"))
}

/// The stored file a link names, on `node`.
fn stored_at(node: &Node, link: &str) -> Vec<u8> {
    let path = link.split('/').skip(3).collect::<Vec<_>>().join("/");
    std::fs::read(node.data_dir().join(path)).expect("stored file")
}

fn write_file(dir: &Path, bytes: &[u8]) -> PathBuf {
    let file = dir.join("large.jpg");
    std::fs::write(&file, bytes).expect("write");
    file
}

#[test]
fn tus_js_client_uploads_a_large_jpeg_in_1_mib_chunks_to_every_server() {
    let mut cluster = Cluster::new(&["s1", "s2"], "fsync = false\n");
    cluster.start_all();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let work = tempfile::tempdir().expect("tempdir");
    let bytes = jpeg(24 * MIB, 21);
    let file = write_file(work.path(), &bytes);
    let endpoint = format!("{}/files/", s1.base());
    let events = tus_js(&[
        "--endpoint",
        &endpoint,
        "--file",
        file.to_str().expect("utf-8"),
        "--key",
        &s1.key,
        "--chunk",
        &MIB.to_string(),
    ]);
    let done = event(&events, "success");
    let link = done["link"].as_str().expect("X-Upload-Link");
    assert_eq!(done["result"]["size"], bytes.len());
    assert_eq!(done["result"]["name"], "large.jpg");
    assert_eq!(done["result"]["replicas"][0]["ok"], 1, "{done}");
    assert!(stored_at(s1, link) == bytes, "byte-exact on s1");
    assert!(stored_at(s2, link) == bytes, "byte-exact on s2");
    assert!(
        staged(s1)
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "json")),
        "only the finished upload's answer stays: {:?}",
        staged(s1)
    );
    // HEAD of the finished upload answers the link too.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let url = done["url"].as_str().expect("url");
    let head = rt
        .block_on(async { tus(reqwest::Method::HEAD, url, Some(&s1.key)).send().await })
        .expect("HEAD");
    assert_eq!(head.headers()["x-upload-link"], link);
    assert_eq!(
        head.headers()["upload-offset"],
        bytes.len().to_string().as_str()
    );
}

#[test]
fn a_client_stopped_half_way_resumes_after_the_server_was_killed() {
    let mut cluster = Cluster::new(&["s1"], "fsync = true\n");
    cluster.start_all();
    let work = tempfile::tempdir().expect("tempdir");
    let bytes = jpeg(16 * MIB, 22);
    let file = write_file(work.path(), &bytes);
    let s1 = &mut cluster.nodes[0];
    let endpoint = format!("{}/files/", s1.base());
    let path = file.to_str().expect("utf-8").to_owned();
    let events = tus_js(&[
        "--endpoint",
        &endpoint,
        "--file",
        &path,
        "--key",
        &s1.key,
        "--chunk",
        &MIB.to_string(),
        "--stop-after",
        &(8 * MIB).to_string(),
    ]);
    let url = event(&events, "stopped")["url"]
        .as_str()
        .expect("url")
        .to_owned();
    s1.kill();
    s1.start();
    let events = tus_js(&[
        "--endpoint",
        &endpoint,
        "--file",
        &path,
        "--key",
        &s1.key,
        "--chunk",
        &MIB.to_string(),
        "--resume",
        &url,
    ]);
    let resumed = event(&events, "resumed")["offset"]
        .as_u64()
        .expect("offset");
    assert!(resumed >= 8 * MIB as u64, "resumed from {resumed}");
    let link = event(&events, "success")["link"].as_str().expect("link");
    assert!(stored_at(s1, link) == bytes, "byte-exact");
}

#[tokio::test]
async fn bytes_past_the_durable_offset_are_cut_away_after_a_kill() {
    let mut cluster = Cluster::new(&["s1"], "fsync = true\n");
    cluster.start_all();
    let s1 = &mut cluster.nodes[0];
    let bytes = jpeg(12 * MIB, 28);
    let url = create(s1, &s1.key, bytes.len()).await;
    let id = url.split("/files/").nth(1).expect("id").to_owned();
    let durable = 4 * MIB;
    assert_eq!(
        patch(&url, &s1.key, 0, &bytes[..durable]).await.status(),
        204
    );
    // 6 MiB of an 8 MiB PATCH whose checksum must vouch for all of it, then
    // the client stalls: nothing of it is committed, yet most is written.
    let checksum = STANDARD.encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes[durable..]));
    let mut stalled = raw_patch_at(
        s1,
        &id,
        durable,
        bytes.len() - durable,
        &format!("Upload-Checksum: sha256 {checksum}\r\n"),
    );
    stalled.write_all(&bytes[durable..10 * MIB]).expect("body");
    let part = s1.data_dir().join(".staging").join(format!("{id}.part"));
    let mut written = 0;
    for _ in 0..600 {
        written = std::fs::metadata(&part).map_or(0, |m| m.len());
        if written > (durable + MIB) as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written > (durable + MIB) as u64, "written {written}");
    assert_eq!(offset_of(&url, &s1.key).await, (200, Some(durable as u64)));
    s1.kill();
    drop(stalled);
    s1.start();
    assert_eq!(offset_of(&url, &s1.key).await, (200, Some(durable as u64)));
    let response = patch(&url, &s1.key, durable, &bytes[durable..]).await;
    assert_eq!(response.status(), 204);
    let link = response.headers()["x-upload-link"]
        .to_str()
        .expect("link")
        .to_owned();
    assert!(stored_at(s1, &link) == bytes, "byte-exact");
}

#[tokio::test]
async fn a_stalled_patch_is_committed_and_survives_a_kill() {
    let mut cluster = Cluster::new(&["s1"], "fsync = true\n");
    cluster.start_all();
    let s1 = &mut cluster.nodes[0];
    let bytes = jpeg(12 * MIB, 29);
    let url = create(s1, &s1.key, bytes.len()).await;
    let id = url.split("/files/").nth(1).expect("id").to_owned();
    // Less than the bytes that make a commit while they flow, and not a
    // whole number of the server's write batches: only the stall commits
    // them, and all of them must be written first.
    let sent = 3 * MIB + 12_345;
    let mut stalled = raw_patch(s1, &id, bytes.len());
    stalled.write_all(&bytes[..sent]).expect("body");
    let mut recorded = 0;
    for _ in 0..600 {
        recorded = offset_of(&url, &s1.key).await.1.unwrap_or(0);
        if recorded > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recorded > 0, "nothing of a stalled PATCH was committed");
    s1.kill();
    drop(stalled);
    s1.start();
    let after = offset_of(&url, &s1.key).await.1.expect("offset") as usize;
    assert!(
        after >= recorded as usize && after <= sent,
        "offset {after} of {sent} sent"
    );
    let part = s1.data_dir().join(".staging").join(format!("{id}.part"));
    let staged = std::fs::read(&part).expect("staged bytes");
    assert!(
        staged.len() >= after && staged[..after] == bytes[..after],
        "the {after} bytes recorded are the bytes sent ({} staged)",
        staged.len()
    );
    let response = patch(&url, &s1.key, after, &bytes[after..]).await;
    assert_eq!(response.status(), 204);
    let link = response.headers()["x-upload-link"]
        .to_str()
        .expect("link")
        .to_owned();
    assert!(stored_at(s1, &link) == bytes, "byte-exact");
}

/// A TCP proxy to `port` that cuts every connection once `cut_after`
/// bytes went through it (once), then forwards again.
fn cutting_proxy(port: u16, cut_after: usize) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy_port = listener.local_addr().expect("addr").port();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let (mut c_in, mut s_out) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            let (mut s_in, mut c_out) = (server, client);
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match c_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let before = sent.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                    if before < cut_after && before + n >= cut_after {
                        let _ = c_in.shutdown(std::net::Shutdown::Both);
                        let _ = s_out.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                    if s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_in, &mut c_out);
                let _ = c_out.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    proxy_port
}

#[test]
fn a_connection_cut_in_the_middle_of_a_patch_resumes() {
    let cluster = Cluster::single("fsync = false\n");
    let s1 = &cluster.nodes[0];
    let work = tempfile::tempdir().expect("tempdir");
    let bytes = jpeg(24 * MIB, 23);
    let file = write_file(work.path(), &bytes);
    let proxy = cutting_proxy(s1.port, 14 * MIB);
    let endpoint = format!("http://127.0.0.1:{proxy}/files/");
    // One PATCH for the whole file: the cut lands inside it.
    let events = tus_js(&[
        "--endpoint",
        &endpoint,
        "--file",
        file.to_str().expect("utf-8"),
        "--key",
        &s1.key,
    ]);
    let link = event(&events, "success")["link"].as_str().expect("link");
    assert!(stored_at(s1, link) == bytes, "byte-exact");
    assert!(
        s1.log_lines(|l| l.contains("PATCH") && l.contains("/files/")) >= 2,
        "the upload was resumed by a second PATCH"
    );
}

#[tokio::test]
async fn options_advertises_tus_and_other_versions_are_refused() {
    let cluster = Cluster::single("fsync = false\nmax_file_bytes = 5000000\n");
    let s1 = &cluster.nodes[0];
    let response = client()
        .request(reqwest::Method::OPTIONS, format!("{}/files/", s1.base()))
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(response.status(), 204);
    let h = response.headers();
    assert_eq!(h["tus-resumable"], "1.0.0");
    assert_eq!(h["tus-version"], "1.0.0");
    assert_eq!(h["tus-max-size"], "5000000");
    assert_eq!(h["tus-checksum-algorithm"], "sha1,sha256");
    for extension in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "checksum",
        "expiration",
    ] {
        assert!(
            h["tus-extension"]
                .to_str()
                .expect("ascii")
                .split(',')
                .any(|e| e == extension),
            "{extension}"
        );
    }
    let response = client()
        .post(format!("{}/files/", s1.base()))
        .header("Tus-Resumable", "0.2.2")
        .header("X-Security-Key", &s1.key)
        .header("Upload-Length", "10")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 412);
    assert_eq!(response.headers()["tus-version"], "1.0.0");
}

#[tokio::test]
async fn every_tus_row_of_the_bad_input_table() {
    let settings = "fsync = false\nmax_file_bytes = 3000000\n\
        [resumable]\nmax_bytes = 5000000\nmax_bytes_per_client = 5000000\n";
    let cluster = Cluster::single(settings);
    let s1 = &cluster.nodes[0];
    let files = format!("{}/files/", s1.base());
    let bytes = jpeg(2 * MIB, 24);
    let url = create(s1, &s1.key, bytes.len()).await;

    // No credential: 403 on every method, and nothing learnt.
    for method in [
        reqwest::Method::POST,
        reqwest::Method::HEAD,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
    ] {
        let target = if method == reqwest::Method::POST {
            &files
        } else {
            &url
        };
        let response = tus(method.clone(), target, None)
            .header("Upload-Length", "10")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 403, "{method}");
    }
    // Another valid credential (the admin key): 404 for this upload.
    let (status, _) = offset_of(&url, &s1.admin_key).await;
    assert_eq!(status, 404);
    assert_eq!(
        patch(&url, &s1.admin_key, 0, &bytes[..10]).await.status(),
        404
    );
    // A wrong key: 403.
    assert_eq!(offset_of(&url, "not-a-key").await.0, 403);

    // Wrong Content-Type: 415, nothing written.
    let response = tus(reqwest::Method::PATCH, &url, Some(&s1.key))
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/octet-stream")
        .body(bytes[..1000].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(response.status(), 415);
    assert_eq!(offset_of(&url, &s1.key).await, (200, Some(0)));

    // A first chunk, then the wrong offset: 409.
    let response = patch(&url, &s1.key, 0, &bytes[..MIB]).await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        response.headers()["upload-offset"],
        MIB.to_string().as_str()
    );
    assert!(response.headers().contains_key("upload-expires"));
    assert_eq!(patch(&url, &s1.key, 0, &bytes[MIB..]).await.status(), 409);

    // A checksum mismatch: 460 and the chunk is discarded.
    use sha2::Digest;
    let wrong = STANDARD.encode(sha1::Sha1::digest(b"something else"));
    let response = tus(reqwest::Method::PATCH, &url, Some(&s1.key))
        .header("Upload-Offset", MIB.to_string())
        .header("Content-Type", OFFSET_TYPE)
        .header("Upload-Checksum", format!("sha1 {wrong}"))
        .body(bytes[MIB..].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(response.status(), 460);
    assert_eq!(offset_of(&url, &s1.key).await, (200, Some(MIB as u64)));
    let part = staged(s1)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "part"))
        .expect("part");
    assert_eq!(std::fs::metadata(&part).expect("part").len(), MIB as u64);
    // The right checksum completes the file.
    let right = STANDARD.encode(sha2::Sha256::digest(&bytes[MIB..]));
    let response = tus(reqwest::Method::PATCH, &url, Some(&s1.key))
        .header("Upload-Offset", MIB.to_string())
        .header("Content-Type", OFFSET_TYPE)
        .header("Upload-Checksum", format!("sha256 {right}"))
        .body(bytes[MIB..].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(response.status(), 204);
    let link = response.headers()["x-upload-link"]
        .to_str()
        .expect("link")
        .to_owned();
    let result: Value = serde_json::from_str(
        response.headers()["x-upload-result"]
            .to_str()
            .expect("ascii"),
    )
    .expect("JSON");
    assert_eq!(result["link"], link.as_str());
    assert_eq!(result["sha256"], common::sha256(&bytes));
    assert!(stored_at(s1, &link) == bytes);

    // Over max_file_bytes: 413 at creation.
    let response = tus(reqwest::Method::POST, &files, Some(&s1.key))
        .header("Upload-Length", "3000001")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 413);

    // Staging full, counting declared lengths: 507.
    let _a = create(s1, &s1.key, 2_900_000).await;
    let b = create(s1, &s1.key, 2_000_000).await;
    let response = tus(reqwest::Method::POST, &files, Some(&s1.key))
        .header("Upload-Length", "200000")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 507);
    // Terminating one makes room; its files are gone.
    let response = tus(reqwest::Method::DELETE, &b, Some(&s1.key))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status(), 204);
    assert_eq!(offset_of(&b, &s1.key).await.0, 404);
    let id = b.rsplit('/').next().expect("id");
    assert!(!staged(s1).iter().any(|p| p.to_string_lossy().contains(id)));

    // Not an image at completion: 415 with the reason, nothing kept.
    let html = b"<!DOCTYPE html><html><script>alert(1)</script></html>".to_vec();
    let url = create(s1, &s1.key, html.len()).await;
    let before = s1.stored().len();
    let response = patch(&url, &s1.key, 0, &html).await;
    assert_eq!(response.status(), 415);
    assert!(response.text().await.expect("reason").contains("type"));
    assert_eq!(s1.stored().len(), before);
    assert_eq!(offset_of(&url, &s1.key).await.0, 404);
    let id = url.rsplit('/').next().expect("id");
    assert!(!staged(s1).iter().any(|p| p.to_string_lossy().contains(id)));
}

#[tokio::test]
async fn one_client_address_has_its_share_of_staging() {
    let settings = "fsync = false\n[resumable]\nmax_bytes_per_client = 3000000\n";
    let cluster = Cluster::single(settings);
    let s1 = &cluster.nodes[0];
    let _first = create(s1, &s1.key, 2_000_000).await;
    let response = tus(
        reqwest::Method::POST,
        &format!("{}/files/", s1.base()),
        Some(&s1.key),
    )
    .header("Upload-Length", "1500000")
    .send()
    .await
    .expect("POST");
    assert_eq!(response.status(), 507);
    assert!(
        response
            .text()
            .await
            .expect("reason")
            .contains("per client")
    );
    // Behind a trusted proxy, another client address has a share of its own.
    let response = tus(
        reqwest::Method::POST,
        &format!("{}/files/", s1.base()),
        Some(&s1.key),
    )
    .header("X-Forwarded-For", "203.0.113.7")
    .header("Upload-Length", "1500000")
    .send()
    .await
    .expect("POST");
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn the_environment_sets_a_resumable_limit_beside_app_toml() {
    let mut cluster = Cluster::new(&["s1"], "fsync = false\n[resumable]\nexpire_secs = 600\n");
    cluster.nodes[0].env.push((
        "MULTISERVER_UPLOAD_RESUMABLE_MAX_BYTES".into(),
        "5000".into(),
    ));
    cluster.start_all();
    let s1 = &cluster.nodes[0];
    let files = format!("{}/files/", s1.base());
    let post = |length: u32| {
        tus(reqwest::Method::POST, &files, Some(&s1.key))
            .header("Upload-Length", length.to_string())
            .send()
    };
    assert_eq!(post(6000).await.expect("POST").status(), 507);
    let response = post(4000).await.expect("POST");
    assert_eq!(response.status(), 201);
    // app.toml's expiry still holds: about ten minutes away.
    let expires = response.headers()["upload-expires"].to_str().expect("date");
    let at = chrono::DateTime::parse_from_rfc2822(&expires.replace("GMT", "+0000"))
        .expect("an HTTP date")
        .timestamp();
    assert!((now() + 500..now() + 700).contains(&at), "{expires}");
}

#[tokio::test]
async fn creation_with_upload_defer_length_and_method_override() {
    let cluster = Cluster::single("fsync = false\n");
    let s1 = &cluster.nodes[0];
    let bytes = png();
    // creation-with-upload, deferred length: the data comes with the POST.
    let response = tus(
        reqwest::Method::POST,
        &format!("{}/files/", s1.base()),
        Some(&s1.key),
    )
    .header("Upload-Defer-Length", "1")
    .header("Content-Type", OFFSET_TYPE)
    .body(bytes[..10].to_vec())
    .send()
    .await
    .expect("POST");
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["upload-offset"], "10");
    let url = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let head = tus(reqwest::Method::HEAD, &url, Some(&s1.key))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.headers()["upload-defer-length"], "1");
    // The length comes with the last PATCH, sent as a POST with an override.
    let response = tus(reqwest::Method::POST, &url, Some(&s1.key))
        .header("X-HTTP-Method-Override", "PATCH")
        .header("Upload-Offset", "10")
        .header("Upload-Length", bytes.len().to_string())
        .header("Content-Type", OFFSET_TYPE)
        .body(bytes[10..].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
    let link = response.headers()["x-upload-link"]
        .to_str()
        .expect("link")
        .to_owned();
    assert!(stored_at(s1, &link) == bytes);
}

#[tokio::test]
async fn a_new_patch_takes_over_from_a_stalled_one() {
    let cluster = Cluster::single("fsync = false\n");
    let s1 = &cluster.nodes[0];
    let bytes = jpeg(MIB, 25);
    let url = create(s1, &s1.key, bytes.len()).await;
    let path = url.split("/files/").nth(1).expect("id").to_owned();
    // A PATCH that sends half its body, then stalls (connection kept open).
    let half = bytes.len() / 2;
    let mut stalled = raw_patch(s1, &path, bytes.len());
    stalled.write_all(&bytes[..half]).expect("half");
    stalled.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The next PATCH takes over: the stalled one keeps what it received,
    // so this one's offset is now wrong, and HEAD tells the right one.
    let response = patch(&url, &s1.key, 0, &bytes).await;
    assert_eq!(response.status(), 409);
    let (_, offset) = offset_of(&url, &s1.key).await;
    let offset = offset.expect("offset") as usize;
    assert_eq!(
        offset, half,
        "everything the stalled PATCH received is kept"
    );
    let response = patch(&url, &s1.key, offset, &bytes[offset..]).await;
    assert_eq!(response.status(), 204);
    let link = response.headers()["x-upload-link"]
        .to_str()
        .expect("link")
        .to_owned();
    assert!(stored_at(s1, &link) == bytes, "never interleaved");
    drop(stalled);
}

#[tokio::test]
async fn an_abandoned_upload_expires_and_its_bytes_are_gone() {
    let cluster = Cluster::single("fsync = false\n[resumable]\nexpire_secs = 1\n");
    let s1 = &cluster.nodes[0];
    let bytes = jpeg(MIB, 26);
    let url = create(s1, &s1.key, bytes.len()).await;
    assert_eq!(patch(&url, &s1.key, 0, &bytes[..1000]).await.status(), 204);
    assert!(!staged(s1).is_empty());
    assert!(
        eventually(Duration::from_secs(30), || staged(s1).is_empty()),
        "still staged: {:?}",
        staged(s1)
    );
    assert_eq!(offset_of(&url, &s1.key).await.0, 404);
    let metrics = client()
        .get(format!("{}/metrics", s1.base()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("multiserver_upload_resumable_expired_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("multiserver_upload_resumable_started_total 1"),
        "{metrics}"
    );
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn token(claims: Value) -> String {
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"tus-token-secret").expect("key");
    mac.update(body.as_bytes());
    format!(
        "{body}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

async fn create_with_token(node: &Node, token: &str, length: usize) -> reqwest::Response {
    client()
        .post(format!("{}/files/", node.base()))
        .header("Tus-Resumable", "1.0.0")
        .header("Authorization", format!("Bearer {token}"))
        .header("Upload-Length", length.to_string())
        .send()
        .await
        .expect("POST")
}

async fn patch_with_token(
    url: &str,
    token: &str,
    offset: usize,
    bytes: &[u8],
) -> reqwest::Response {
    client()
        .patch(url)
        .header("Tus-Resumable", "1.0.0")
        .header("X-Upload-Token", token)
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", OFFSET_TYPE)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("PATCH")
}

#[tokio::test]
async fn a_tokens_limits_hold_and_a_started_upload_outlives_it() {
    let settings = "fsync = false\n[auth]\ntoken_secrets = { t1 = \"tus-token-secret\" }\n\
         admin_keys = [\"admin-tus\"]\nclock_skew_secs = 0\n";
    let cluster = Cluster::single(settings);
    let s1 = &cluster.nodes[0];
    let bytes = jpeg(MIB, 27);
    let jti = |n: &str| format!("{n}-{}", std::process::id());
    // max_bytes against Upload-Length.
    let small = token(json!({"kid": "t1", "exp": now() + 600, "max_bytes": 1000}));
    assert_eq!(
        create_with_token(s1, &small, bytes.len()).await.status(),
        413
    );
    // types: a PNG-only token cannot complete a JPEG.
    let png_only = token(json!({"kid": "t1", "exp": now() + 600, "types": ["png"]}));
    let response = create_with_token(s1, &png_only, bytes.len()).await;
    assert_eq!(response.status(), 201);
    let url = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert_eq!(
        patch_with_token(&url, &png_only, 0, &bytes).await.status(),
        415
    );
    // max_files: one upload is one file.
    let once = token(json!({"kid": "t1", "exp": now() + 600, "max_files": 1, "jti": jti("once")}));
    assert_eq!(create_with_token(s1, &once, 100).await.status(), 201);
    assert_eq!(create_with_token(s1, &once, 100).await.status(), 403);
    // Another token does not see the upload: 404.
    let other = token(json!({"kid": "t1", "exp": now() + 600}));
    assert_eq!(
        patch_with_token(&url, &other, 0, &bytes).await.status(),
        404
    );
    // exp is checked at creation; a started upload finishes after it.
    let brief = token(json!({"kid": "t1", "exp": now() + 2}));
    let response = create_with_token(s1, &brief, bytes.len()).await;
    assert_eq!(response.status(), 201);
    let url = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert_eq!(
        patch_with_token(&url, &brief, 0, &bytes[..1000])
            .await
            .status(),
        204
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(create_with_token(s1, &brief, 100).await.status(), 403);
    let response = patch_with_token(&url, &brief, 1000, &bytes[1000..]).await;
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
    assert!(response.headers().contains_key("x-upload-link"));
}

#[tokio::test]
async fn a_1_gib_tus_upload_keeps_memory_flat() {
    const GIB: usize = 1 << 30;
    const CHUNK: usize = 32 * MIB;
    let settings = "fsync = false\nmax_file_bytes = 1100000000\n";
    let cluster = Cluster::single(settings);
    let s1 = &cluster.nodes[0];
    let url = create(s1, &s1.key, GIB).await;
    let zeros = bytes::Bytes::from(vec![0u8; MIB]);
    let mut offset = 0;
    while offset < GIB {
        // A JPEG signature, then zeros: quick to make, real to send.
        let first = offset == 0;
        let zeros = zeros.clone();
        let pieces = (0..CHUNK / MIB).map(move |i| {
            let mut piece = zeros.clone();
            if first && i == 0 {
                let mut head = common::JPEG_HEAD.to_vec();
                head.extend_from_slice(&piece[common::JPEG_HEAD.len()..]);
                piece = bytes::Bytes::from(head);
            }
            Ok::<_, std::io::Error>(piece)
        });
        let response = tus(reqwest::Method::PATCH, &url, Some(&s1.key))
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", OFFSET_TYPE)
            .header("Content-Length", CHUNK.to_string())
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                pieces,
            )))
            .send()
            .await
            .expect("PATCH");
        assert_eq!(response.status(), 204, "{:?}", response.text().await);
        offset += CHUNK;
    }
    let (_, done) = offset_of(&url, &s1.key).await;
    assert_eq!(done, Some(GIB as u64));
    let peak = s1.peak_rss_kib();
    println!("peak RSS after a 1 GiB tus upload: {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

/// A baseline JPEG of about `size` bytes that exiftool reads: a frame
/// header, a scan (no 0xFF in its data) and its end.
fn plain_jpeg(size: usize) -> Vec<u8> {
    let mut bytes = common::JPEG_HEAD.to_vec();
    bytes.extend_from_slice(b"\xFF\xDA\x00\x0C\x03\x01\x00\x02\x11\x03\x11\x00\x3F\x00");
    let scan = size.saturating_sub(bytes.len() + 2);
    bytes.extend((0..scan).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 & 0x7F));
    bytes.extend_from_slice(b"\xFF\xD9");
    bytes
}

/// The GPS tags exiftool finds in `bytes`.
fn gps_tags(bytes: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("read.jpg");
    std::fs::write(&file, bytes).expect("write");
    let out = Command::new("exiftool")
        .args(["-json", "-a", "-GPS:all"])
        .arg(&file)
        .output()
        .expect("exiftool not found: run scripts/install-test-tools.sh (libimage-exiftool-perl)");
    let list: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&out.stdout).expect("exiftool -json");
    list.iter()
        .flat_map(|tags| tags.keys())
        .filter(|k| k.starts_with("GPS"))
        .cloned()
        .collect()
}

/// Uploads `bytes` in two PATCHes; the final answer's per-file entry and
/// the stored file.
async fn upload_in_two(node: &Node, bytes: &[u8]) -> (Value, Vec<u8>) {
    let url = create(node, &node.key, bytes.len()).await;
    let half = bytes.len() / 2;
    assert_eq!(
        patch(&url, &node.key, 0, &bytes[..half]).await.status(),
        204
    );
    let response = patch(&url, &node.key, half, &bytes[half..]).await;
    assert_eq!(response.status(), 204);
    let result: Value = serde_json::from_str(
        response.headers()["x-upload-result"]
            .to_str()
            .expect("ascii"),
    )
    .expect("JSON");
    let stored = stored_at(node, result["link"].as_str().expect("link"));
    (result, stored)
}

#[tokio::test]
async fn a_finished_upload_is_stripped_of_its_location_or_else_kept_byte_for_byte() {
    let cluster = Cluster::single("fsync = true\n");
    let s1 = &cluster.nodes[0];
    let plain = plain_jpeg(3 * MIB);
    let work = tempfile::tempdir().expect("tempdir");
    let camera = work.path().join("camera.jpg");
    std::fs::write(&camera, &plain).expect("write");
    let out = Command::new("exiftool")
        .args([
            "-overwrite_original",
            "-GPSLatitude=48.8584",
            "-GPSLatitudeRef=N",
            "-GPSLongitude=2.2945",
            "-GPSLongitudeRef=E",
        ])
        .arg(&camera)
        .output()
        .expect("exiftool not found: run scripts/install-test-tools.sh (libimage-exiftool-perl)");
    assert!(out.status.success(), "{out:?}");
    let camera = std::fs::read(&camera).expect("read");
    assert!(!gps_tags(&camera).is_empty(), "exiftool wrote no location");

    let (result, stored) = upload_in_two(s1, &camera).await;
    assert!(stored != camera, "the location was stored");
    assert!(gps_tags(&stored).is_empty(), "{:?}", gps_tags(&stored));
    assert_eq!(result["sha256"], common::sha256(&stored));
    assert_eq!(result["size"], stored.len());
    assert_eq!(result["width"], 640);

    let (result, stored) = upload_in_two(s1, &plain).await;
    assert!(stored == plain, "a file without metadata changed");
    assert_eq!(result["sha256"], common::sha256(&plain));
    assert_eq!(result["size"], plain.len());
    assert_eq!(result["height"], 480);

    assert!(s1.temp_files().is_empty(), "{:?}", s1.temp_files());
    assert!(
        staged(s1)
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "json")),
        "{:?}",
        staged(s1)
    );
}

/// The stored file's answer entry of a last PATCH, and the stored bytes.
fn finished(node: &Node, response: &reqwest::Response) -> (Value, Vec<u8>) {
    assert_eq!(response.status(), 204);
    let result: Value = serde_json::from_str(
        response.headers()["x-upload-result"]
            .to_str()
            .expect("ascii"),
    )
    .expect("JSON");
    let stored = stored_at(node, result["link"].as_str().expect("link"));
    (result, stored)
}

#[tokio::test]
async fn the_sha256_is_right_after_a_kill_a_cut_and_a_refused_chunk() {
    let mut cluster = Cluster::new(&["s1"], "fsync = true\n");
    cluster.start_all();
    let s1 = &mut cluster.nodes[0];
    let bytes = plain_jpeg(6 * MIB);
    let expected = common::sha256(&bytes);

    // Killed half way: the hash of the first half is lost with the
    // process, so completion reads the bytes.
    let url = create(s1, &s1.key, bytes.len()).await;
    let half = bytes.len() / 2;
    assert_eq!(patch(&url, &s1.key, 0, &bytes[..half]).await.status(), 204);
    s1.kill();
    s1.start();
    let response = patch(&url, &s1.key, half, &bytes[half..]).await;
    let (result, stored) = finished(s1, &response);
    assert!(stored == bytes, "byte-exact");
    assert_eq!(result["sha256"], expected, "after a kill");

    // A connection cut in the middle of a PATCH (what arrived is kept),
    // then a chunk refused by its checksum (cut back): the hash kept in
    // memory follows the committed bytes only.
    let url = create(s1, &s1.key, bytes.len()).await;
    let id = url.split("/files/").nth(1).expect("id").to_owned();
    let mut cut = raw_patch(s1, &id, bytes.len());
    cut.write_all(&bytes[..2 * MIB]).expect("body");
    drop(cut);
    let mut recorded = None;
    for _ in 0..600 {
        recorded = offset_of(&url, &s1.key).await.1;
        if recorded == Some(2 * MIB as u64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(recorded, Some(2 * MIB as u64), "kept before the cut");
    let wrong = STANDARD.encode([0u8; 32]);
    let response = tus(reqwest::Method::PATCH, &url, Some(&s1.key))
        .header("Upload-Offset", (2 * MIB).to_string())
        .header("Content-Type", OFFSET_TYPE)
        .header("Upload-Checksum", format!("sha256 {wrong}"))
        .body(bytes[2 * MIB..4 * MIB].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(response.status(), 460);
    assert_eq!(offset_of(&url, &s1.key).await, (200, Some(2 * MIB as u64)));
    let response = patch(&url, &s1.key, 2 * MIB, &bytes[2 * MIB..]).await;
    let (result, stored) = finished(s1, &response);
    assert!(stored == bytes, "byte-exact");
    assert_eq!(
        result["sha256"], expected,
        "after a cut and a refused chunk"
    );
}
