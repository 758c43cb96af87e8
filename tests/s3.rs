//! The S3 backend (SPEC §11) against a real three-node Garage cluster on
//! loopback, one cluster per test: servers in S3 mode as stateless
//! front-ends, Garage nodes SIGKILLed and restarted under them, and curl as
//! the independent S3 client that checks what the bucket really holds.
//!
//! The first tests need only Garage: they check the cluster script and the
//! harness (and document how Garage behaves when nodes die), so that a
//! failure of the later ones is about the backend, not the ground under it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::garage::Garage;
use common::{Cluster, JPEG_HEAD, Node, jpeg, sha256};

const FAST: &str = "fsync = false\n";
const MIB: u64 = 1 << 20;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client")
}

/// Uploads `files` to `node` (JSON answer); status and answer.
async fn upload_json(node: &Node, files: &[(&str, &[u8])]) -> (u16, serde_json::Value) {
    common::json(
        client()
            .post(node.do_url("action=upload&format=json"))
            .header("X-Security-Key", &node.key)
            .multipart(common::form(files))
            .send()
            .await
            .expect("upload"),
    )
    .await
}

/// Uploads one file, asserts it was stored, returns its stored path.
async fn stored_path(node: &Node, bytes: &[u8]) -> String {
    let (status, v) = upload_json(node, &[("a.jpg", bytes)]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resp"]["success"], 1, "{v}");
    v["resp"]["files"][0]["path"]
        .as_str()
        .expect("path")
        .to_owned()
}

/// `path` (a stored path) with its file name replaced by a fresh one.
fn unknown_beside(path: &str) -> String {
    let dir = path.rsplit_once('/').expect("dated path").0;
    format!("{dir}/0f8a45c5-9a61-4bf4-9b09-5310bcaf0000.jpg")
}

async fn get_bytes(url: &str) -> (u16, Vec<u8>) {
    let r = client().get(url).send().await.expect("get");
    let status = r.status().as_u16();
    (status, r.bytes().await.expect("body").to_vec())
}

// ------------------------------------------------------------ Garage only --

#[test]
fn harness_garage_three_nodes_serve_with_one_node_killed() {
    let garage = Garage::start(3);
    println!("3-node Garage up in {:?}", garage.started_in);
    assert!(garage.list(1).is_empty(), "the probe objects are gone");
    let a = jpeg(300_000, 1);
    assert_eq!(garage.put(1, "2024/1/2/a.jpg", &a), 200);
    for k in 1..=3 {
        let (status, got) = garage.get(k, "2024/1/2/a.jpg");
        assert_eq!(status, 200, "node {k}");
        assert!(got == a, "node {k} answers other bytes");
    }
    garage.kill(3);
    for k in 1..=2 {
        let (status, got) = garage.get(k, "2024/1/2/a.jpg");
        assert_eq!(status, 200, "node {k} with node 3 down");
        assert!(got == a);
    }
    let b = jpeg(100_000, 2);
    assert_eq!(
        garage.put(2, "2024/1/2/b.jpg", &b),
        200,
        "a write with one node down"
    );
    garage.restart(3);
    let back = common::eventually(Duration::from_secs(30), || {
        garage.get(3, "2024/1/2/b.jpg") == (200, b.clone())
    });
    assert!(back, "node 3 serves after its restart\n{}", garage.logs());
    assert_eq!(
        garage.list(3).into_iter().collect::<Vec<_>>(),
        vec![
            ("2024/1/2/a.jpg".to_owned(), a.len() as u64),
            ("2024/1/2/b.jpg".to_owned(), b.len() as u64)
        ]
    );
    assert!(garage.uploads(1).is_empty());
}

#[test]
fn harness_garage_two_of_three_nodes_down_refuses_writes_then_recovers() {
    let garage = Garage::start(3);
    let a = jpeg(10_000, 3);
    assert_eq!(garage.put(1, "2024/1/2/a.jpg", &a), 200);
    garage.kill(2);
    garage.kill(3);
    let started = Instant::now();
    let status = garage.put(1, "2024/1/2/b.jpg", &jpeg(10_000, 4));
    let took = started.elapsed();
    println!("PUT with 2 of 3 nodes down: {status} after {took:?}");
    assert!(
        !(200..300).contains(&status),
        "a write without quorum succeeded"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    garage.restart(2);
    garage.restart(3);
    let restarted = Instant::now();
    let c = jpeg(10_000, 5);
    let back = common::eventually(Duration::from_secs(60), || {
        garage.put(1, "2024/1/2/c.jpg", &c) == 200
    });
    assert!(back, "writes work again\n{}", garage.logs());
    println!(
        "writes work again {:?} after the restarts",
        restarted.elapsed()
    );
    let keys: Vec<String> = garage.list(1).into_keys().collect();
    assert_eq!(keys, ["2024/1/2/a.jpg", "2024/1/2/c.jpg"]);
}

#[test]
fn harness_garage_single_node_comes_up() {
    let garage = Garage::start(1);
    println!("1-node Garage up in {:?}", garage.started_in);
    let a = jpeg(50_000, 6);
    assert_eq!(garage.put(1, "x/a.jpg", &a), 200);
    assert_eq!(garage.get(1, "x/a.jpg"), (200, a));
}

// ------------------------------------------------- our servers in S3 mode --

#[tokio::test]
async fn an_upload_through_one_front_end_is_read_through_two_others() {
    let garage = Garage::start(3);
    let cluster = garage.front_ends(&["s1", "s2", "s3"], FAST, &[]);
    let image = jpeg(200_000, 10);
    let path = stored_path(&cluster.nodes[0], &image).await;

    // The object is in the bucket under the link's path, byte for byte.
    let (status, object) = garage.get(1, &path);
    assert_eq!(status, 200, "object {path}");
    assert!(object == image, "the object is not the upload");
    assert_eq!(garage.list(2).keys().collect::<Vec<_>>(), [&path]);

    let unknown = unknown_beside(&path);
    let mut etags = Vec::new();
    for node in &cluster.nodes[1..] {
        let url = format!("{}/{path}", node.base());
        let r = client().get(&url).send().await.expect("get");
        assert_eq!(r.status(), 200, "{} {url}", node.name);
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert!(r.bytes().await.expect("body").as_ref() == image.as_slice());

        let head = client().head(&url).send().await.expect("head");
        assert_eq!(head.status(), 200);
        assert_eq!(
            head.headers()["content-length"],
            image.len().to_string().as_str()
        );
        let etag = head.headers().get("etag").expect("an ETag").clone();
        etags.push(etag.clone());

        let range = client()
            .get(&url)
            .header("range", "bytes=100-199")
            .send()
            .await
            .expect("range");
        assert_eq!(range.status(), 206, "{}", node.name);
        assert_eq!(
            range.headers()["content-range"],
            format!("bytes 100-199/{}", image.len()).as_str()
        );
        assert_eq!(
            range.bytes().await.expect("body").as_ref(),
            &image[100..200]
        );

        let cached = client()
            .get(&url)
            .header("if-none-match", etag.clone())
            .send()
            .await
            .expect("conditional");
        assert_eq!(cached.status(), 304, "{}", node.name);
        assert_eq!(cached.headers()["etag"], etag);
        let other = client()
            .get(&url)
            .header("if-none-match", "\"other\"")
            .send()
            .await
            .expect("conditional");
        assert_eq!(other.status(), 200);

        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let r = client()
                .request(method.clone(), format!("{}/{unknown}", node.base()))
                .send()
                .await
                .expect("unknown");
            assert_eq!(r.status(), 404, "{method} {unknown} on {}", node.name);
        }
    }
    // One object, one ETag, whichever front-end answers: a cache in front
    // of several of them revalidates with any.
    assert_eq!(etags[0], etags[1]);
    // Nothing on the front-ends' disks: the bucket is the storage.
    for node in &cluster.nodes {
        assert!(node.stored().is_empty(), "{} kept a file", node.name);
    }

    // A thumbnail is made from the object by a front-end that never saw
    // the upload.
    let thumb = client()
        .get(format!("{}/{path}-t.jpg", cluster.nodes[2].base()))
        .send()
        .await
        .expect("thumbnail");
    assert_eq!(thumb.status(), 200);
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");

    // A delete through one front-end removes the object for all.
    let s2 = &cluster.nodes[1];
    let deleted = client()
        .post(s2.admin(&format!("action=delete&format=json&path={path}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 200);
    assert!(
        common::eventually(Duration::from_secs(10), || garage.list(1).is_empty()),
        "the object is gone from the bucket: {:?}",
        garage.list(1)
    );
    let (status, _) = get_bytes(&format!("{}/{path}", cluster.nodes[2].base())).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn key_prefix_goes_before_the_dated_path() {
    let garage = Garage::start(3);
    let cluster = garage.front_ends(&["s1"], FAST, &[("key_prefix", "\"site-a/\"")]);
    let image = jpeg(20_000, 11);
    let path = stored_path(&cluster.nodes[0], &image).await;
    assert!(
        !path.starts_with("site-a"),
        "the link does not name the prefix: {path}"
    );
    let keys: Vec<String> = garage.list(1).into_keys().collect();
    assert_eq!(keys, [format!("site-a/{path}")]);
    let (status, got) = get_bytes(&format!("{}/{path}", cluster.nodes[0].base())).await;
    assert_eq!(status, 200);
    assert!(got == image);
}

/// `v` with every leaf replaced by its JSON type: what a client's parser sees.
fn shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => Value::Null,
    }
}

/// The tags of an XML answer in order, text dropped.
fn tags(xml: &str) -> Vec<&str> {
    xml.split('<')
        .skip(1)
        .filter_map(|s| s.split_once('>').map(|(tag, _)| tag))
        .collect()
}

#[tokio::test]
async fn answers_have_the_same_shape_as_in_disk_mode() {
    let garage = Garage::start(3);
    let s3 = garage.front_ends(&["s1"], FAST, &[]);
    let disk = Cluster::single(FAST);
    let (a, b) = (jpeg(30_000, 12), common::png());
    let files: [(&str, &[u8]); 2] = [("D:\\photos\\xx.jpg", &a), ("b.png", &b)];

    let mut answers = Vec::new();
    for node in [&s3.nodes[0], &disk.nodes[0]] {
        let xml = client()
            .post(node.keyed("action=upload"))
            .multipart(common::form(&files))
            .send()
            .await
            .expect("upload");
        assert_eq!(xml.status(), 200);
        assert_eq!(xml.headers()["content-type"], "text/xml; charset=utf-8");
        let xml = xml.text().await.expect("xml");
        assert!(
            xml.starts_with("<resp><success>1</success><link>http://127.0.0.1:"),
            "{xml}"
        );
        assert!(xml.contains("<name>xx.jpg</name>"), "{xml}");
        assert!(
            xml.contains(&format!("<sha256>{}</sha256>", sha256(&a))),
            "{xml}"
        );

        let json = client()
            .post(node.keyed("action=upload&format=json"))
            .multipart(common::form(&files))
            .send()
            .await
            .expect("upload");
        assert_eq!(json.status(), 200);
        let content_type = json.headers()["content-type"].clone();
        let text = json.text().await.expect("json");
        assert!(
            text.starts_with("{\"resp\":{\"success\":1,\"link\":\"http://"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["resp"]["files"][1]["type"], "image/png");
        assert_eq!(v["resp"]["files"][0]["sha256"], sha256(&a));
        answers.push((tags(&xml).join(" "), content_type, shape(&v), v));
    }
    assert_eq!(answers[0].0, answers[1].0, "XML tags: S3 mode vs disk mode");
    assert_eq!(answers[0].1, answers[1].1, "JSON content type");
    assert_eq!(
        answers[0].2, answers[1].2,
        "JSON shape: S3 mode vs disk mode"
    );
    // The S3-mode links are served, and the bucket holds both requests' files.
    for (file, bytes) in answers[0].3["resp"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .zip([&a, &b])
    {
        let (status, got) = get_bytes(file["link"].as_str().expect("link")).await;
        assert_eq!(status, 200, "{file}");
        assert!(got == *bytes, "{file}");
    }
    assert_eq!(garage.list(1).len(), 4, "two requests of two files each");
}

/// A file of `bytes` bytes: a JPEG head, then a pseudo-random block whose
/// length is no multiple of any part or block size, over and over (so an
/// offset mistake shows, and no store deduplicates it away).
fn big_jpeg(path: &Path, bytes: u64) {
    let block = jpeg(1_048_573, 7)[JPEG_HEAD.len()..].to_vec();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    f.write_all(JPEG_HEAD).expect("write");
    let mut left = bytes - JPEG_HEAD.len() as u64;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).expect("write");
        left -= n as u64;
    }
    f.flush().expect("flush");
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sum")
        .to_owned()
}

#[test]
fn a_300_mib_upload_stays_under_the_memory_budget_and_reads_back_equal() {
    const SIZE: u64 = 300 * MIB;
    const PART: u64 = 16 * MIB;
    const IN_FLIGHT: u64 = 4;
    let garage = Garage::start(3);
    let cluster = garage.front_ends(
        &["s1"],
        FAST,
        &[
            ("part_size_bytes", &PART.to_string()),
            ("parts_in_flight", &IN_FLIGHT.to_string()),
        ],
    );
    let s1 = &cluster.nodes[0];
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("big.jpg");
    big_jpeg(&file, SIZE);
    let expected = sha256_file(&file);

    let v = common::curl_upload(s1, &file);
    assert_eq!(v["resp"]["files"][0]["size"], SIZE);
    assert_eq!(v["resp"]["files"][0]["sha256"], expected.as_str());
    let budget_kib = (64 * MIB + IN_FLIGHT * PART) / 1024;
    let peak = s1.peak_rss_kib();
    println!("peak RSS after a 300 MiB upload: {peak} KiB (budget {budget_kib} KiB)");
    assert!(
        peak < budget_kib,
        "peak RSS {peak} KiB over {budget_kib} KiB"
    );

    let path = v["resp"]["files"][0]["path"].as_str().expect("path");
    assert_eq!(garage.list(2).get(path), Some(&SIZE));
    assert!(
        garage.uploads(1).is_empty(),
        "the multipart upload was completed"
    );
    // Read back by curl from Garage, and through the front-end.
    let from_store = work.path().join("from-store");
    let out = garage.curl(
        3,
        "GET",
        &format!("/{}/{path}", garage.bucket),
        &["-o", &from_store.display().to_string()],
    );
    assert_eq!(common::garage::status_of(&out), 200);
    assert_eq!(sha256_file(&from_store), expected);
    let from_us = work.path().join("from-us");
    let status = Command::new("curl")
        .args(["-sS", "--max-time", "600", "--fail", "-o"])
        .arg(&from_us)
        .arg(format!("{}/{path}", s1.base()))
        .status()
        .expect("curl");
    assert!(status.success());
    assert_eq!(sha256_file(&from_us), expected);
    let peak = s1.peak_rss_kib();
    println!("peak RSS after reading it back: {peak} KiB");
    assert!(
        peak < budget_kib,
        "peak RSS {peak} KiB over {budget_kib} KiB"
    );
}

#[test]
fn a_client_that_leaves_mid_upload_leaves_no_object_and_no_open_upload() {
    const DECLARED: u64 = 100 * MIB;
    let garage = Garage::start(3);
    let cluster = garage.front_ends(
        &["s1"],
        FAST,
        &[("part_size_bytes", &(16 * MIB).to_string())],
    );
    let s1 = &cluster.nodes[0];
    let boundary = "----s3LeavesMidUpload";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let body_len = head.len() as u64 + DECLARED + tail.len() as u64;
    let mut stream = TcpStream::connect(("127.0.0.1", s1.port)).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "POST /do.ashx?action=upload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Security-Key: {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {body_len}\r\n\r\n{head}",
        s1.key
    )
    .expect("headers");
    stream.write_all(JPEG_HEAD).expect("jpeg head");
    // Half the file, a MiB at a time.
    let chunk = jpeg(MIB as usize, 13);
    for _ in 0..DECLARED / 2 / MIB {
        stream
            .write_all(&chunk[..MIB as usize])
            .expect("half the body");
    }
    // 50 MiB in: received into the front-end's scratch folder, not yet
    // sent (a file goes up only once it is complete and checked).
    assert!(
        common::eventually(Duration::from_secs(30), || !s1.temp_files().is_empty()),
        "the upload is being received"
    );
    drop(stream);
    let cleaned = common::eventually(Duration::from_secs(30), || {
        garage.uploads(1).is_empty() && garage.list(1).is_empty() && s1.temp_files().is_empty()
    });
    assert!(
        cleaned,
        "left behind: objects {:?}, uploads {:?}\n{}",
        garage.list(1),
        garage.uploads(1),
        s1.output()
    );
    // And the service carries on.
    let image = jpeg(10_000, 14);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let path = rt.block_on(stored_path(s1, &image));
    assert_eq!(garage.get(2, &path), (200, image));
}

#[tokio::test]
async fn with_one_garage_node_killed_uploads_and_reads_still_succeed() {
    let garage = Garage::start(3);
    // s1 talks to Garage node 1, s2 to node 2; node 3 dies.
    let cluster = garage.front_ends(
        &["s1", "s2"],
        FAST,
        &[("part_size_bytes", &(8 * MIB).to_string())],
    );
    let before = jpeg(100_000, 20);
    let before_path = stored_path(&cluster.nodes[0], &before).await;
    garage.kill(3);

    let small = jpeg(100_000, 21);
    let large = jpeg(20 * MIB as usize, 22); // multipart: three 8 MiB parts
    let started = Instant::now();
    let small_path = stored_path(&cluster.nodes[0], &small).await;
    let large_path = stored_path(&cluster.nodes[1], &large).await;
    println!(
        "two uploads with one Garage node down: {:?}",
        started.elapsed()
    );

    for node in &cluster.nodes {
        for (path, bytes) in [
            (&before_path, &before),
            (&small_path, &small),
            (&large_path, &large),
        ] {
            let (status, got) = get_bytes(&format!("{}/{path}", node.base())).await;
            assert_eq!(status, 200, "{path} through {}", node.name);
            assert!(got == *bytes, "{path} through {}", node.name);
        }
    }
    assert_eq!(garage.list(1).len(), 3);
    assert!(garage.uploads(2).is_empty());
}

#[tokio::test]
async fn with_two_garage_nodes_killed_uploads_answer_503_keep_nothing_and_recover() {
    let garage = Garage::start(3);
    let cluster = garage.front_ends(&["s1"], FAST, &[]);
    let s1 = &cluster.nodes[0];
    let before = stored_path(s1, &jpeg(50_000, 30)).await;
    garage.kill(2);
    garage.kill(3);

    for (n, bytes) in [jpeg(50_000, 31), jpeg(300_000, 32)].iter().enumerate() {
        let started = Instant::now();
        let (status, v) = upload_json(s1, &[("a.jpg", bytes)]).await;
        let took = started.elapsed();
        println!("upload {n} with 2 of 3 Garage nodes down: {status} after {took:?}");
        assert_eq!(status, 503, "{v}");
        assert_eq!(v["resp"]["success"], 0, "{v}");
        assert!(took < Duration::from_secs(30), "503 only after {took:?}");
    }
    // A read of what was stored before may fail too (reads need 2 of 3 as
    // well); it must not hang or crash the front-end.
    let (status, _) = get_bytes(&format!("{}/{before}", s1.base())).await;
    println!("GET with 2 of 3 Garage nodes down: {status}");
    let health = common::raw(
        s1.port,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    println!(
        "healthz with 2 of 3 Garage nodes down: {}",
        health.lines().next().unwrap_or("")
    );
    assert!(
        health.starts_with("HTTP/1.1 "),
        "the front-end still answers: {health}"
    );

    garage.restart(2);
    garage.restart(3);
    // Without restarting the front-end, uploads work again.
    let after = jpeg(60_000, 33);
    let deadline = Instant::now() + Duration::from_secs(60);
    let after_path = loop {
        let (status, v) = upload_json(s1, &[("a.jpg", &after)]).await;
        if status == 200 {
            break v["resp"]["files"][0]["path"]
                .as_str()
                .expect("path")
                .to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "uploads still fail 60 s after the restart: {status} {v}\n{}",
            garage.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Nothing of the refused uploads was kept, whole or in parts.
    let keys: BTreeSet<String> = garage.list(1).into_keys().collect();
    assert_eq!(keys, BTreeSet::from([before.clone(), after_path.clone()]));
    assert!(garage.uploads(1).is_empty());
    let (status, got) = get_bytes(&format!("{}/{after_path}", s1.base())).await;
    assert_eq!(status, 200);
    assert!(got == after);
}

// ---------------------------------------------------------------- migrate --

/// Writes `count` stored files (`{yyyy}/{M}/{d}/{uuid}.jpg`, small valid
/// JPEGs of 1–150 KB over several days) into `root`, plus a leftover
/// temporary file that is not a stored file. Returns path → bytes.
fn data_folder(root: &Path, count: usize) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for i in 0..count {
        let day = 1 + i % 12;
        let month = 1 + (i / 12) % 3;
        let uuid = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            0x5310_bcaf_u32.wrapping_add(i as u32),
            i % 0xffff,
            i % 0xfff,
            (i * 7) % 0xfff,
            (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) & 0xffff_ffff_ffff
        );
        let path = format!("2024/{month}/{day}/{uuid}.jpg");
        let bytes = jpeg(1_000 + (i * 7_919) % 150_000, i as u64);
        let file = root.join(&path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("day folder");
        std::fs::write(&file, &bytes).expect("write");
        files.insert(path, bytes);
    }
    std::fs::create_dir_all(root.join(".tmp")).expect(".tmp");
    std::fs::write(root.join(".tmp/upload-1234.part"), b"partial").expect("temp");
    files
}

fn migrate_command(node: &Node, from: &Path) -> Command {
    // The program the harness runs as the server (the binary under test).
    let mut command = common::server_command();
    command
        .args(["migrate", "--config"])
        .arg(node.config())
        .arg("--from")
        .arg(from)
        .envs(node.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

/// Runs `migrate` to its end (bounded); panics with its output on failure.
fn migrate_to_the_end(node: &Node, from: &Path, log: &Path) {
    let out = std::fs::File::create(log).expect("log");
    let mut child = migrate_command(node, from)
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .expect("spawn migrate");
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("migrate ran for 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "migrate: {status}\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn migrate_copies_1000_files_byte_exact_and_resumes_after_a_kill() {
    const FILES: usize = 1000;
    let garage = Garage::start(3);
    let mut cluster = Cluster::new(&["m1"], FAST);
    cluster.nodes[0].use_s3(&garage, 1, &[]);
    let node = &cluster.nodes[0];
    let work = tempfile::tempdir().expect("tempdir");
    let from: PathBuf = work.path().join("data");
    let files = data_folder(&from, FILES);

    // First run, SIGKILLed once some objects are in the bucket.
    let mut child = migrate_command(node, &from)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn migrate");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut exited = None;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        if !garage.list(1).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        exited.is_none(),
        "migrate ended ({exited:?}) before any object was listed"
    );
    child.kill().expect("SIGKILL migrate");
    child.wait().expect("reap");
    let copied_before_kill = garage.listing(1);
    let after_kill = copied_before_kill.len();
    println!("objects when migrate was killed: {after_kill} of {FILES}");
    assert!(
        after_kill < FILES,
        "migrate finished before the kill: nothing to resume (make the folder larger)"
    );

    // Second run: completes what the first began.
    migrate_to_the_end(node, &from, &work.path().join("migrate-2.log"));
    let check = |run: &str| {
        let listed = garage.list(2);
        let expected: BTreeMap<String, u64> = files
            .iter()
            .map(|(path, bytes)| (path.clone(), bytes.len() as u64))
            .collect();
        assert_eq!(listed.len(), FILES, "{run}: object count");
        assert_eq!(listed, expected, "{run}: keys and sizes");
        let keys: Vec<String> = listed.into_keys().collect();
        let sums = garage.sha256s(3, &keys);
        for (path, bytes) in &files {
            assert_eq!(
                sums[path].0,
                sha256(bytes),
                "{run}: {path} is not byte-exact"
            );
        }
        assert!(
            garage.uploads(1).is_empty(),
            "{run}: open multipart uploads"
        );
        // Resumed, not redone: what the killed run copied is not written
        // again — except what it still had in flight: a PUT whose body was
        // sent before the kill can land after the listing (the store
        // finishes it), at most one per file migrated at once (8).
        let now = garage.listing(1);
        let mut rewritten = Vec::new();
        for (path, object) in &copied_before_kill {
            assert_eq!(now[path].etag, object.etag, "{run}: {path} changed");
            if &now[path] != object {
                rewritten.push(path);
            }
        }
        assert!(rewritten.len() <= 8, "{run}: copied again: {rewritten:?}");
    };
    check("after the resumed run");

    // A third run finds everything there and changes nothing.
    migrate_to_the_end(node, &from, &work.path().join("migrate-3.log"));
    check("after a run with nothing to do");
    // The source is left as it was.
    assert_eq!(
        common::Node::detached("x", "x", 0, work.path().to_path_buf())
            .stored()
            .len(),
        FILES
    );
}

/// Issue 19: `migrate` uploaded what a link in the data folder pointed at
/// (a text file outside, stored as a JPEG) and hung for ever on a FIFO named
/// like a stored file. Both are skipped and named; the run ends, copies the
/// regular files and nothing else.
#[cfg(unix)]
#[test]
fn migrate_skips_links_and_fifos_named_like_stored_files() {
    let garage = Garage::start(3);
    let mut cluster = Cluster::new(&["m1"], FAST);
    cluster.nodes[0].use_s3(&garage, 1, &[]);
    let node = &cluster.nodes[0];
    let work = tempfile::tempdir().expect("tempdir");
    let from: PathBuf = work.path().join("data");
    let files = data_folder(&from, 3);
    let outside = work.path().join("notes.txt");
    std::fs::write(&outside, b"a text file outside the data folder").expect("write");
    let day = from.join("2024/1/1");
    std::os::unix::fs::symlink(
        &outside,
        day.join("5310bcaf-0f8a-45c5-9a61-9bf45b5e0001.jpg"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(&day, day.join("5310bcaf-0f8a-45c5-9a61-9bf45b5e0002.jpg"))
        .expect("symlink to a folder");
    let fifo = day.join("5310bcaf-0f8a-45c5-9a61-9bf45b5e0003.png");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());

    let log = work.path().join("migrate.log");
    let out = std::fs::File::create(&log).expect("log");
    let mut child = migrate_command(node, &from)
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .expect("spawn migrate");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "migrate did not end in 2 minutes (blocked on the FIFO?):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "migrate: {status}\n{output}");
    let expected: BTreeMap<String, u64> = files
        .iter()
        .map(|(path, bytes)| (path.clone(), bytes.len() as u64))
        .collect();
    assert_eq!(garage.list(1), expected, "only the regular files\n{output}");
    assert_eq!(
        output.matches("is not a regular file").count(),
        3,
        "each skipped entry is named:\n{output}"
    );
}

/// Issue 22: a long `migrate` run by Task Scheduler (no terminal) says how
/// far it is every few seconds (here every 100 ms): files of the total,
/// bytes, rate and time left, on standard error.
#[test]
fn migrate_without_a_terminal_prints_progress_lines() {
    const FILES: usize = 150;
    let garage = Garage::start(1);
    let mut cluster = Cluster::new(&["m1"], FAST);
    cluster.nodes[0].use_s3(&garage, 1, &[]);
    let node = &cluster.nodes[0];
    let work = tempfile::tempdir().expect("tempdir");
    let from: PathBuf = work.path().join("data");
    data_folder(&from, FILES);
    let child = migrate_command(node, &from)
        .args(["--concurrency", "1"])
        .env("MULTISERVER_UPLOAD_PROGRESS_EVERY_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn migrate");
    let output = common::output_within(child, Duration::from_secs(300));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "migrate: {}\n{stderr}",
        output.status
    );
    let lines = common::progress_lines(&stderr, "migrate");
    let of_total = format!(" of {FILES} files, ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&of_total) && l.contains("/s, ") && l.ends_with(" left")),
        "a line with the total, a rate and the time left:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains("migrate: "),
        "progress stays off standard output:\n{stdout}"
    );
}

/// A resumable (tus) upload in S3 mode: staged on the front end's disk,
/// then streamed into the bucket as a multipart upload's file is, and the
/// staged bytes removed.
#[tokio::test]
async fn a_tus_upload_streams_its_staged_file_into_the_bucket() {
    let garage = Garage::start(1);
    let cluster = garage.front_ends(&["s1"], FAST, &[]);
    let s1 = &cluster.nodes[0];
    let image = jpeg(20 * MIB as usize, 12);
    let created = client()
        .post(format!("{}/files/", s1.base()))
        .header("Tus-Resumable", "1.0.0")
        .header("X-Security-Key", &s1.key)
        .header("Upload-Length", image.len().to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status(), 201);
    let url = created.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let mut link = None;
    for (i, chunk) in image.chunks(8 * MIB as usize).enumerate() {
        let response = client()
            .patch(&url)
            .header("Tus-Resumable", "1.0.0")
            .header("X-Security-Key", &s1.key)
            .header("Upload-Offset", (i * 8 * MIB as usize).to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(chunk.to_vec())
            .send()
            .await
            .expect("PATCH");
        assert_eq!(response.status(), 204);
        link = response
            .headers()
            .get("x-upload-link")
            .map(|v| v.to_str().expect("ascii").to_owned());
    }
    let link = link.expect("the last PATCH names the link");
    let path = link.split('/').skip(3).collect::<Vec<_>>().join("/");
    let keys: Vec<String> = garage.list(1).into_keys().collect();
    assert_eq!(keys, [path]);
    let (status, got) = get_bytes(&link).await;
    assert_eq!(status, 200);
    assert!(got == image, "byte-exact from the bucket");
    let staged: Vec<_> = std::fs::read_dir(s1.data_dir().join(".staging"))
        .expect("staging")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
        .collect();
    assert!(staged.is_empty(), "the staged bytes are removed");
}
