//! Peers that misbehave, and what they must not do to this server (SPEC §2.6,
//! §4, §5, §8): a health-check flood over a long journal, answers that are
//! not a stored copy (redirects, HTML, `success` 0, a huge or hostile error
//! body), peer Uris that lead back here, a peer that is stopped, a peer that
//! refuses a file for good, and a full `log_dir`. Fake peers are small TCP
//! servers inside the test; everything listens on loopback only.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{BIN, Cluster, Node, Tmpfs, eventually, jpeg, run_replay, upload};
use serde_json::Value;

/// No fsync (speed), and no background replay during the test.
const QUIET: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n";

// ---------------------------------------------------------------------------
// 1. /healthz is O(1): a flood of it cannot slow uploads down.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stay_fast_under_a_healthz_flood_with_50000_owed_copies() {
    const OWED: usize = 50_000;
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    // s2 stays down; s1's journal already owes it 50,000 copies.
    let log_dir = cluster.nodes[0].log_dir();
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let mut journal = String::with_capacity(OWED * 320);
    for _ in 0..OWED {
        let id = uuid::Uuid::new_v4();
        journal.push_str(
            &serde_json::json!({
                "id": id,
                "time": "2014-04-15T10:00:00+08:00",
                "from": "s1",
                "peer": "s2",
                "path": format!("2014/4/15/{id}.jpg"),
                "size": 140_000,
                "sha256": "ab".repeat(32),
                "attempts": 3,
                "last_error": "Connection refused (os error 111)",
            })
            .to_string(),
        );
        journal.push('\n');
    }
    std::fs::write(log_dir.join("upload-errors.jsonl"), journal).expect("journal");
    cluster.node(0).start();
    let s1 = &cluster.nodes[0];
    let healthz = format!("{}/healthz", s1.base());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let (status, v) = common::json(client.get(&healthz).send().await.expect("healthz")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["journal_backlog"], OWED, "{v}");

    // 300 callers, each in a bounded loop, until the uploads are done.
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..300)
        .map(|_| {
            let (client, url, stop) = (client.clone(), healthz.clone(), stop.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(90);
                let mut answered = 0usize;
                for _ in 0..5_000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    if let Ok(r) = client.get(&url).send().await
                        && r.bytes().await.is_ok()
                    {
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut slowest = Duration::ZERO;
    for i in 0..20u64 {
        let image = jpeg(140_000, 100 + i);
        let started = Instant::now();
        let (status, v) =
            tokio::time::timeout(Duration::from_secs(60), upload(s1, &[("a.jpg", &image)]))
                .await
                .unwrap_or_else(|_| panic!("upload {i} took over a minute under the flood"));
        let took = started.elapsed();
        assert_eq!(status, 200, "{v}");
        assert_eq!(replica(&v, "s2")["journaled"], 1, "{v}");
        assert!(
            took < Duration::from_secs(1),
            "upload {i} took {took:?} under the health-check flood"
        );
        slowest = slowest.max(took);
    }
    stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for task in flood {
        answered += task.await.expect("flood task");
    }
    eprintln!("slowest upload {slowest:?}; {answered} health checks answered meanwhile");
    assert!(answered >= 300, "the flood did not run: {answered}");
    let (status, v) = common::json(client.get(&healthz).send().await.expect("healthz")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["journal_backlog"], OWED + 20, "{v}");
    let peak = s1.peak_rss_kib();
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
}

// ---------------------------------------------------------------------------
// 2. Answers that are not a stored copy.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_answer_that_is_not_a_stored_copy_is_journaled_and_read_only_a_little() {
    let mut cluster = Cluster::new(&["s1"], QUIET);
    // Where the redirect points: it must never be asked, nor see the key.
    let sink = FakePeer::start(Reply::Bytes(answer(
        "200 OK",
        &[(SERVER_HEADER, "redirect")],
        br#"{"resp":{"success":1}}"#,
    )));
    let key = "fake-peer-key-3c1e";
    let fakes = [
        (
            "redirect",
            FakePeer::start(Reply::Bytes(answer(
                "303 See Other",
                &[("Location", &sink.uri())],
                b"",
            ))),
        ),
        (
            "html",
            FakePeer::start(Reply::Bytes(answer(
                "200 OK",
                &[("Content-Type", "text/html"), (SERVER_HEADER, "html")],
                b"<html><body>Welcome to nginx!</body></html>",
            ))),
        ),
        (
            "unsuccessful",
            FakePeer::start(Reply::Bytes(answer(
                "200 OK",
                &[
                    ("Content-Type", "text/xml"),
                    (SERVER_HEADER, "unsuccessful"),
                ],
                b"<resp><success>0</success></resp>",
            ))),
        ),
        (
            "huge",
            FakePeer::start(Reply::Endless {
                head: format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    1u64 << 30
                ),
                len: 1 << 30,
            }),
        ),
        (
            "forger",
            FakePeer::start(Reply::Bytes(answer(
                "500 Internal Server Error",
                &[("Content-Type", "text/plain")],
                b"disk error\n2099-01-01T00:00:00.000000Z  INFO forged line\x1b[2J\x1b[31mred",
            ))),
        ),
    ];
    for (name, fake) in &fakes {
        cluster.nodes[0].add_server(name, &fake.uri(), key);
    }
    cluster.node(0).start();
    let s1 = &cluster.nodes[0];
    let before = s1.peak_rss_kib();
    let started = Instant::now();
    let (status, v) = tokio::time::timeout(
        Duration::from_secs(60),
        upload(s1, &[("a.jpg", &jpeg(200_000, 1))]),
    )
    .await
    .expect("the upload answered within a minute");
    let took = started.elapsed();
    let growth = s1.peak_rss_kib().saturating_sub(before);
    eprintln!("answered in {took:?}; peak RSS grew {growth} KiB");
    assert_eq!(status, 200, "{v}");

    // Every fake was asked once; the redirect target never.
    for (name, fake) in &fakes {
        assert_eq!(fake.requests().len(), 1, "{name}: {:?}", fake.requests());
    }
    assert!(
        sink.requests().is_empty(),
        "a redirect was followed: {:?}",
        sink.requests()
    );
    assert!(growth < 64 * 1024, "peak RSS grew {growth} KiB");
    assert!(took < Duration::from_secs(20), "{took:?}");

    let path = v["resp"]["files"][0]["path"].as_str().expect("path");
    let journal = s1.journal();
    for (name, _) in &fakes {
        let r = replica(&v, name);
        assert_eq!(r["ok"], 0, "{name}: {r}");
        assert_eq!(r["journaled"], 1, "{name}: {r}");
        let error = r["error"].as_str().expect("error");
        assert!(!error.chars().any(char::is_control), "{name}: {error:?}");
        let entry = journal
            .iter()
            .find(|e| e["peer"] == *name && e["path"] == path)
            .unwrap_or_else(|| panic!("{name} not journaled: {journal:#?}"));
        let last = entry["last_error"].as_str().expect("last_error");
        assert!(!last.chars().any(char::is_control), "{name}: {last:?}");
    }
    assert!(
        replica(&v, "forger")["error"]
            .as_str()
            .is_some_and(|e| e.contains("\\n2099-01-01") && e.contains("\\u{1b}")),
        "{v}"
    );

    // Nothing the forger sent shows up as a line or an escape sequence.
    assert!(
        eventually(Duration::from_secs(5), || s1.output().contains("forger")),
        "{}",
        s1.output()
    );
    let output = s1.output();
    assert!(
        !output.lines().any(|l| l.starts_with("2099-01-01")),
        "a forged log line:\n{output}"
    );
    assert!(!output.contains('\u{1b}'), "a raw ESC in the logs");
}

// ---------------------------------------------------------------------------
// 3. A peer Uri that leads back to this server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_uri_that_leads_back_here_is_refused_or_never_counts() {
    let cluster = Cluster::new(&["s1", "s2", "s3"], QUIET);
    let s1 = &cluster.nodes[0];
    let own = format!("http://127.0.0.1:{}/do.ashx", s1.port);
    let other = format!("http://127.0.0.1:{}/do.ashx", cluster.nodes[1].port);
    let cases = [
        // s2 is this server under another spelling of the same URL.
        (
            [
                own.clone(),
                own.replace("http://127.0.0.1", "HTTP://127.0.0.1"),
                other.clone(),
            ],
            "this server (s1)",
        ),
        // Two peers at one address.
        (
            [own.clone(), other.clone(), other.clone()],
            "both s2 and s3",
        ),
    ];
    for (uris, problem) in &cases {
        write_servers(s1, &[("s1", &uris[0]), ("s2", &uris[1]), ("s3", &uris[2])]);
        let output = std::process::Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(s1.config())
            .output()
            .expect("check-config");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{problem}: {stderr}");
        for needle in ["servers.xml.config", "Server/@Uri", problem] {
            assert!(stderr.contains(needle), "{needle}: {stderr}");
        }
    }
    // `serve` refuses it the same way.
    let serve = tokio::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(s1.config())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), serve)
        .await
        .expect("serve refused to start instead of running")
        .expect("serve");
    assert_eq!(output.status.code(), Some(2), "{output:?}");

    // Another host name for this server cannot be seen in the config; the
    // copy never counts, because the answer names s1, not s2.
    let mut cluster = Cluster::new(&["s1"], QUIET);
    let (port, key) = (cluster.nodes[0].port, cluster.nodes[0].key.clone());
    cluster.nodes[0].add_server("s2", &format!("http://localhost:{port}/do.ashx"), &key);
    cluster.node(0).start();
    let s1 = &cluster.nodes[0];
    let (status, v) = upload(s1, &[("a.jpg", &jpeg(50_000, 2))]).await;
    assert_eq!(status, 200, "{v}");
    let r = replica(&v, "s2");
    assert_eq!(r["ok"], 0, "{v}");
    assert_eq!(r["journaled"], 1, "{v}");
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not come from this peer") && e.contains("`s1`")),
        "{v}"
    );
    let journal = s1.journal();
    assert_eq!(journal.len(), 1, "{journal:#?}");
    assert_eq!(journal[0]["peer"], "s2");
}

// ---------------------------------------------------------------------------
// 4. `replay --url` follows no redirect and wants the success envelope.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_url_follows_no_redirect_and_wants_a_success_envelope() {
    let cluster = Cluster::new(&["s1"], QUIET);
    let s1 = &cluster.nodes[0];
    let sink = FakePeer::start(Reply::Bytes(answer(
        "200 OK",
        &[("Content-Type", "application/json")],
        br#"{"resp":{"success":1,"replayed":0,"failed":0,"dropped":0,"remaining":0,"busy":false}}"#,
    )));
    let redirect = FakePeer::start(Reply::Bytes(answer(
        "303 See Other",
        &[("Location", &sink.uri())],
        b"",
    )));
    let output = run_replay(s1, &redirect.uri()).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(redirect.requests().len(), 1, "{stderr}");
    assert!(
        sink.requests().is_empty(),
        "the redirect was followed: {:?}",
        sink.requests()
    );
    assert!(!output.status.success(), "{output:?}");
    assert!(stderr.contains("redirect"), "{stderr}");

    // A 200 that is not the envelope is no success either.
    let html = FakePeer::start(Reply::Bytes(answer(
        "200 OK",
        &[("Content-Type", "text/html")],
        b"<html>maintenance</html>",
    )));
    let output = run_replay(s1, &html.uri()).await;
    assert_eq!(html.requests().len(), 1);
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("success envelope"), "{stderr}");
}

// ---------------------------------------------------------------------------
// 5. A stopped peer holds up neither the uploads nor the other peer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_peer_holds_up_neither_the_uploads_nor_the_other_peer() {
    const IDLE: Duration = Duration::from_secs(2);
    let mut cluster = Cluster::new(
        &["s1", "s2", "s3"],
        "fsync = false\n[replication]\nidle_timeout_secs = 2\nretry_interval_secs = 3600\n",
    );
    cluster.start_all();
    let _stopped = Stopped::new(cluster.nodes[1].pid().expect("s2 runs"));
    let (s1, s3) = (&cluster.nodes[0], &cluster.nodes[2]);

    let uploads = (0..48u64).map(|i| async move {
        let image = jpeg(60_000, 300 + i);
        let started = Instant::now();
        let (status, v) = upload(s1, &[("a.jpg", &image)]).await;
        (status, v, started.elapsed())
    });
    let answers = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join_all(uploads),
    )
    .await
    .expect("48 uploads answered within two minutes");
    let slowest = answers.iter().map(|(_, _, t)| *t).max().unwrap_or_default();
    eprintln!("48 concurrent uploads: slowest {slowest:?}");
    for (status, v, took) in &answers {
        assert_eq!(*status, 200, "{v}");
        assert_eq!(replica(v, "s3")["ok"], 1, "{v}");
        assert_eq!(replica(v, "s2")["journaled"], 1, "{v}");
        assert!(*took < IDLE * 3, "an upload took {took:?}");
    }
    // The breaker is open: later uploads do not wait for s2 at all.
    for i in 0..5u64 {
        let started = Instant::now();
        let (status, v) = upload(s1, &[("b.jpg", &jpeg(60_000, 400 + i))]).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{v}");
        assert_eq!(replica(&v, "s3")["ok"], 1, "{v}");
        assert_eq!(replica(&v, "s2")["journaled"], 1, "{v}");
        assert!(
            took < Duration::from_secs(1),
            "a later upload took {took:?}"
        );
    }
    assert_eq!(s3.stored(), s1.stored());
    assert_eq!(s1.stored().len(), 53);
    let journal = s1.journal();
    assert_eq!(journal.len(), 53, "{journal:#?}");
    assert!(journal.iter().all(|e| e["peer"] == "s2"), "{journal:#?}");
}

// ---------------------------------------------------------------------------
// 6. A file a peer refuses for good waits for an operator.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_refused_for_good_is_kept_for_an_operator_and_not_resent() {
    let mut cluster = Cluster::new(&["s1"], QUIET);
    let picky = FakePeer::start(Reply::Bytes(answer(
        "409 Conflict",
        &[
            ("Content-Type", "application/json"),
            (SERVER_HEADER, "picky"),
        ],
        br#"{"resp":{"success":0,"error":"a different replica already has this name"}}"#,
    )));
    cluster.nodes[0].add_server("picky", &picky.uri(), "picky-key");
    cluster.node(0).start();
    let s1 = &cluster.nodes[0];
    let client = reqwest::Client::new();
    for round in 1..=2usize {
        let (status, v) = upload(s1, &[("a.jpg", &jpeg(30_000, 500 + round as u64))]).await;
        assert_eq!(status, 200, "{v}");
        let r = replica(&v, "picky");
        assert_eq!(r["journaled"], 1, "{v}");
        // A refusal says nothing about the peer's health: each upload asks.
        assert_eq!(picky.requests().len(), round);
        let journal = s1.journal();
        assert_eq!(journal.len(), round, "{journal:#?}");
        assert!(
            journal.iter().all(|e| e["needs_operator"] == true
                && e["last_error"].as_str().is_some_and(|s| s.contains("409"))),
            "{journal:#?}"
        );

        let (status, v) = common::json(
            client
                .post(s1.do_url("action=uploaderrors&format=json"))
                .header("X-Security-Key", &s1.key)
                .send()
                .await
                .expect("uploaderrors"),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["resp"]["replayed"], 0, "{v}");
        assert_eq!(v["resp"]["failed"], 0, "{v}");
        assert_eq!(v["resp"]["remaining"], round, "{v}");
        assert_eq!(v["resp"]["needs_operator"], round, "{v}");
        assert_eq!(picky.requests().len(), round, "resent");

        let (status, v) = common::json(
            reqwest::get(format!("{}/healthz", s1.base()))
                .await
                .expect("healthz"),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["journal_needs_operator"], round, "{v}");
        assert_eq!(v["journal_backlog"], round, "{v}");
    }
}

// ---------------------------------------------------------------------------
// 7. A full log_dir.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_dir_answers_507_leaves_no_torn_line_and_fails_health() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    let log_dir = cluster.nodes[0].log_dir();
    let _tmpfs = match Tmpfs::mount(&log_dir, "1m") {
        Ok(tmpfs) => tmpfs,
        Err(e) => {
            eprintln!("SKIPPED: this test needs to mount a small tmpfs (root): {e}");
            return;
        }
    };
    // One entry owed already, nearly filling its page of the tmpfs: the
    // next append fits part way, then finds the disk full.
    let old = serde_json::json!({
        "id": uuid::Uuid::new_v4(),
        "time": "2014-04-15T10:00:00+08:00",
        "from": "s1",
        "peer": "s2",
        "path": "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
        "size": 3,
        "sha256": "00".repeat(32),
        "attempts": 1,
        "last_error": "x".repeat(3_700),
    });
    let journal_path = log_dir.join("upload-errors.jsonl");
    std::fs::write(&journal_path, format!("{old}\n")).expect("journal");
    let before = std::fs::read(&journal_path).expect("journal");
    assert!(
        before.len() > 3_900 && before.len() < 4_000,
        "{}",
        before.len()
    );
    cluster.node(0).start();
    let s1 = &cluster.nodes[0];
    let filler = log_dir.join("filler");
    fill(&filler);

    let (status, v) = upload(s1, &[("a.jpg", &jpeg(30_000, 600))]).await;
    assert_eq!(status, 507, "{v}");
    assert_eq!(v["resp"]["success"], 0, "{v}");
    assert_eq!(
        std::fs::read(&journal_path).expect("journal"),
        before,
        "the failed append left a torn line"
    );
    assert!(s1.stored().is_empty(), "a file without its journal entry");
    let mut last = Value::Null;
    let failing = eventually(Duration::from_secs(5), || {
        let (status, v) = health(s1);
        last = v;
        status == 503
    });
    assert!(failing, "/healthz with log_dir full: {last}");
    assert_eq!(last["log_dir_writable"], false, "{last}");
    assert_eq!(last["data_dir_writable"], true, "{last}");

    // Space again: healthy, and uploads are journaled again.
    std::fs::remove_file(&filler).expect("remove filler");
    assert!(eventually(Duration::from_secs(5), || health(s1).0 == 200));
    let (status, v) = upload(s1, &[("a.jpg", &jpeg(30_000, 601))]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s1.journal().len(), 2);
}

// ---------------------------------------------------------------------------
// Helpers.

/// The header in which the service names itself on every do.ashx answer.
const SERVER_HEADER: &str = "X-Multiserver-Server";

/// An upload answer's replica outcome for `peer`.
fn replica<'a>(v: &'a Value, peer: &str) -> &'a Value {
    v["resp"]["files"][0]["replicas"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["peer"] == peer))
        .unwrap_or_else(|| panic!("no outcome for {peer}: {v}"))
}

/// `GET /healthz`: the status and the JSON body.
fn health(node: &Node) -> (u16, Value) {
    let answer = common::raw(
        node.port,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Replaces `node`'s servers.xml.config with these `(Name, Uri)` entries.
fn write_servers(node: &Node, entries: &[(&str, &str)]) {
    let servers: String = entries
        .iter()
        .map(|(name, uri)| {
            format!("  <Server Name=\"{name}\" Uri=\"{uri}\" SecurityKey=\"k\" />\n")
        })
        .collect();
    std::fs::write(
        node.dir.join("servers.xml.config"),
        format!("<Servers>\n{servers}</Servers>\n"),
    )
    .expect("servers.xml.config");
}

/// Writes `path` until its filesystem is full (at most 4 MiB).
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    for _ in 0..64 {
        if let Err(e) = file.write_all(&chunk) {
            assert_eq!(e.kind(), ErrorKind::StorageFull, "{e}");
            return;
        }
    }
    panic!("the filesystem of {} never filled up", path.display());
}

/// A process stopped with SIGSTOP for as long as this lives.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Self {
        let stopped = Self(pid);
        let status = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("kill -STOP");
        assert!(status.success());
        stopped
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// A complete HTTP/1.1 answer that closes its connection.
fn answer(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// What a fake peer answers to every request.
#[derive(Clone)]
enum Reply {
    Bytes(Vec<u8>),
    /// `head`, then `len` body bytes, as fast as they are taken.
    Endless {
        head: String,
        len: u64,
    },
}

/// A TCP server that reads each request whole (head and `Content-Length`
/// body), records its head and answers with its [`Reply`]. It stops taking
/// connections when dropped (at most two minutes after it started).
struct FakePeer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakePeer {
    fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (reply, requests) = (reply.clone(), requests.clone());
                            std::thread::spawn(move || serve_one(stream, &reply, &requests));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}/do.ashx", self.port)
    }

    /// The heads of the requests received so far.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(mut stream: TcpStream, reply: &Reply, requests: &Mutex<Vec<String>>) {
    let timeout = Some(Duration::from_secs(10));
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(timeout).is_err()
        || stream.set_write_timeout(timeout).is_err()
    {
        return;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf) {
            Ok(n @ 1..) if got.len() < 64 * 1024 => got.extend_from_slice(&buf[..n]),
            _ => return,
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    if let Ok(mut r) = requests.lock() {
        r.push(head);
    }
    let mut body = got.len() - head_end;
    while body < length {
        match stream.read(&mut buf) {
            Ok(n @ 1..) => body += n,
            _ => return,
        }
    }
    match reply {
        Reply::Bytes(bytes) => {
            let _ = stream.write_all(bytes);
        }
        Reply::Endless { head, len } => {
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0u64;
            while sent < *len && stream.write_all(&chunk).is_ok() {
                sent += chunk.len() as u64;
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
