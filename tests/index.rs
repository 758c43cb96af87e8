//! The index at start, against the real binary: a damaged index is set
//! aside and rebuilt from the files (never a crash loop), an index held by
//! another program is waited for and never mistaken for a damaged one, two
//! processes of one server share it as during an IIS recycle, and a file is
//! never served to a peer without its hash.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Cluster, Node, jpeg, sha256};

/// No fsync (speed), no background replay (repair must bring what a server
/// lacks), a repair pass every second, nothing left to settle.
const SETTINGS: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n\
                        [repair]\ninterval_secs = 1\nsettle_secs = 0\n";

/// No connection is kept between requests: under Wine a killed server's
/// connections are held open by the wineserver, and a request sent on one
/// kept from before the kill is never answered.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

fn index_file(node: &Node) -> PathBuf {
    node.data_dir().join(".index.redb")
}

/// The damaged indexes set aside in `node`'s data folder.
fn set_aside(node: &Node) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(node.data_dir())
        .expect("data dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".index.redb.damaged-"))
        })
        .collect();
    out.sort();
    out
}

/// Bytes that look random, the same every run.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Damages `file` one way; returns the damaged bytes.
fn damage(file: &Path, kind: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(file).expect("index");
    let n = bytes.len();
    assert!(n > 8 * 4096, "a real index: {n} bytes");
    match kind {
        // Every page after the header zeroed, as a lost write-back leaves.
        "zeroed pages" => bytes[4096..].fill(0),
        "random bytes in the middle" => {
            let middle = noise(n / 2, 7);
            bytes[n / 4..n / 4 + middle.len()].copy_from_slice(&middle);
        }
        // The magic number kept, the rest of the header garbage.
        "garbage header" => bytes[9..512].copy_from_slice(&noise(503, 11)),
        "truncated" => bytes.truncate(n / 2),
        other => panic!("no damage {other}"),
    }
    std::fs::write(file, &bytes).expect("damage");
    bytes
}

/// GET of a stored file as a peer fetching for repair asks it: the status,
/// the body and `X-Content-SHA256`.
async fn peer_get(
    client: &reqwest::Client,
    node: &Node,
    path: &str,
) -> (u16, Vec<u8>, Option<String>) {
    let response = client
        .get(format!("{}/{path}", node.base()))
        .header("X-Multiserver-Repair", "1")
        .header("X-Security-Key", &node.key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get: {e:?}\n{}", node.output()));
    let status = response.status().as_u16();
    let hash = response
        .headers()
        .get("x-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, response.bytes().await.expect("body").to_vec(), hash)
}

async fn upload(client: &reqwest::Client, node: &Node, files: &[Vec<u8>]) -> Vec<String> {
    let named: Vec<(String, &[u8])> = files
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("f{i}.jpg"), b.as_slice()))
        .collect();
    let parts: Vec<(&str, &[u8])> = named.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    common::upload_all(client, node, &parts)
        .await
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_index_is_set_aside_and_rebuilt_from_the_files() {
    let mut c = Cluster::new(&["s1", "s2"], SETTINGS);
    c.start_all();
    let client = client();
    // Enough entries for an index of many pages.
    let mut held: Vec<(String, Vec<u8>)> = Vec::new();
    for round in 0..4u64 {
        let files: Vec<Vec<u8>> = (0..12).map(|i| jpeg(3_000, round * 100 + i)).collect();
        let paths = upload(&client, &c.nodes[0], &files).await;
        held.extend(paths.into_iter().zip(files));
    }
    let kinds = [
        "zeroed pages",
        "random bytes in the middle",
        "garbage header",
        "truncated",
    ];
    for (n, kind) in kinds.into_iter().enumerate() {
        // Killed, as a power cut: redb's own recovery comes on top.
        c.nodes[0].kill();
        let damaged = damage(&index_file(&c.nodes[0]), kind);
        // A file s1 lacks: only repair brings it (no replay).
        let extra = jpeg(3_000, 9_000 + n as u64);
        let extra_path = upload(&client, &c.nodes[1], std::slice::from_ref(&extra)).await;
        // Panics if the server exits at start.
        c.nodes[0].start();
        let s1 = &c.nodes[0];
        let aside = set_aside(s1);
        assert_eq!(aside.len(), n + 1, "{kind}: one more index set aside");
        assert!(
            aside
                .iter()
                .any(|a| std::fs::read(a).expect("aside") == damaged),
            "{kind}: the damaged file is kept as it was"
        );
        // The rebuilt index knows every file: each is served with its hash.
        for (path, bytes) in &held {
            let (status, body, hash) = peer_get(&client, s1, path).await;
            assert_eq!(status, 200, "{kind}: {path}");
            assert_eq!(&body, bytes, "{kind}: {path}");
            assert_eq!(hash.as_deref(), Some(sha256(bytes).as_str()), "{kind}");
        }
        // Repair works on the rebuilt index.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body, _) = peer_get(&client, s1, &extra_path[0]).await;
            if status == 200 {
                assert_eq!(body, extra, "{kind}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{kind}: repair never brought the file"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        held.push((extra_path[0].clone(), extra));
    }
    assert!(c.nodes[0].is_running());
}

/// Opens the index as another program would, excluding everyone else.
fn hold(file: &Path) -> redb::Database {
    redb::Database::create(file).expect("the test holds the index")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_held_by_another_program_is_waited_for_not_rebuilt() {
    let mut c = Cluster::new(&["s1"], SETTINGS);
    c.start_all();
    let client = client();
    let files: Vec<Vec<u8>> = (0..2).map(|i| jpeg(3_000, i)).collect();
    let paths = upload(&client, &c.nodes[0], &files).await;
    let s1 = &c.nodes[0];
    let (status, _) = common::json(
        client
            .post(s1.admin(&format!("action=delete&format=json&path={}", paths[0])))
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_eq!(status, 200);
    c.nodes[0].terminate();

    // Held for a moment: the start waits, then opens the same index.
    let file = index_file(&c.nodes[0]);
    let holder = hold(&file);
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        drop(holder);
    });
    c.nodes[0].start();
    release.join().expect("released");
    let s1 = &c.nodes[0];
    assert!(set_aside(s1).is_empty(), "a held index is not damaged");
    assert!(
        s1.output().contains("held by another program"),
        "the wait is logged:\n{}",
        s1.output()
    );
    // The tombstone survived: the deleted name is still known as deleted.
    let (status, _, _) = peer_get(&client, s1, &paths[0]).await;
    assert_eq!(status, 410, "the delete was kept");
    let (status, body, _) = peer_get(&client, s1, &paths[1]).await;
    assert_eq!((status, body), (200, files[1].clone()));
    c.nodes[0].terminate();

    // Held for good: the start gives up with a clear message, and leaves
    // the index where it is.
    let holder = hold(&file);
    let s1 = &c.nodes[0];
    let mut child = common::server_command()
        .args(["serve", "--config"])
        .arg(s1.config())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the start neither opened the index nor gave up");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success());
    assert!(
        stderr.contains("cannot be opened") && stderr.contains(".index.redb"),
        "{stderr}"
    );
    drop(holder);
    assert!(file.exists() && set_aside(s1).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_of_one_server_share_the_index_as_in_an_iis_recycle() {
    let mut c = Cluster::new(&["s1"], SETTINGS);
    c.start_all();
    let client = client();
    let first = jpeg(3_000, 1);
    let before = upload(&client, &c.nodes[0], std::slice::from_ref(&first)).await;
    let old = &c.nodes[0];
    let port = common::free_port();
    let mut new = Node::detached(&old.name, &old.key, port, old.dir.clone());
    new.args = vec!["--listen".into(), format!("127.0.0.1:{port}")];
    new.start();
    let second = jpeg(3_000, 2);
    let after = upload(&client, &new, std::slice::from_ref(&second)).await;
    // Each process sees what the other recorded.
    for node in [&c.nodes[0], &new] {
        for (path, bytes) in [(&before[0], &first), (&after[0], &second)] {
            let (status, body, hash) = peer_get(&client, node, path).await;
            assert_eq!((status, &body), (200, bytes));
            assert_eq!(hash.as_deref(), Some(sha256(bytes).as_str()));
        }
    }
    new.kill();
    c.nodes[0].kill();
    assert!(set_aside(&c.nodes[0]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_served_with_its_hash_at_once() {
    let c = Cluster::single("fsync = false\n");
    let s1 = &c.nodes[0];
    let client = client();
    let mut without = 0;
    for i in 0..40u64 {
        let bytes = jpeg(2_000, 500 + i);
        let path = format!("2026/1/2/{}.jpg", uuid::Uuid::new_v4());
        let response = client
            .put(s1.do_url(&format!("action=sync&format=json&path={path}")))
            .header("X-Security-Key", &s1.key)
            .header("X-Content-SHA256", sha256(&bytes))
            .body(bytes.clone())
            .send()
            .await
            .expect("sync");
        assert_eq!(response.status(), 200);
        let (status, body, hash) = peer_get(&client, s1, &path).await;
        assert_eq!((status, &body), (200, &bytes));
        match hash {
            Some(hash) => assert_eq!(hash, sha256(&bytes)),
            None => without += 1,
        }
    }
    assert_eq!(without, 0, "replicas served without X-Content-SHA256");
}
