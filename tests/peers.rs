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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
            // Generous (an idle machine takes milliseconds): health checks
            // that read the 50,000 owed copies each would hold every upload
            // for far longer, and a loaded test machine stays well under it.
            took < Duration::from_secs(5),
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
                body: Vec::new(),
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
        br#"{"resp":{"success":1,"replayed":0,"failed":0,"dropped":0,"remaining":0,"busy":0}}"#,
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
            // Generous (an idle machine takes milliseconds): health checks
            // that read the 50,000 owed copies each would hold every upload
            // for far longer, and a loaded test machine stays well under it.
            took < Duration::from_secs(5),
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
// 8. Repair and read-through against hostile peers: what a peer answers is
//    read within bounds, checked, and never believed beyond what it declared.

/// Repair every second, nothing left to settle, no replay.
const REPAIR: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n\
                      [repair]\ninterval_secs = 1\nsettle_secs = 0\n";

/// A stored-file name of 2020/1/1 made from `n`.
fn name_of_day(n: u64) -> String {
    format!("2020/1/1/{:08x}-0000-4000-8000-{:012x}.jpg", n, n)
}

/// The query parameter `name` of a request head's target, decoded enough
/// for prefixes and days.
fn param(head: &str, name: &str) -> Option<String> {
    let target = head.split_whitespace().nth(1)?;
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.replace("%2F", "/"))
    })
}

/// A JSON success answer from the fake peer `name`.
fn json_reply(name: &str, body: &str) -> Reply {
    Reply::Bytes(answer(
        "200 OK",
        &[("Content-Type", "application/json"), (SERVER_HEADER, name)],
        body.as_bytes(),
    ))
}

/// A digest answer whose digests match nothing real.
fn digest_json(prefix: &str, children: &[u32]) -> String {
    let children: Vec<String> = children
        .iter()
        .map(|c| format!(r#"{{"name":{c},"digest":"{}"}}"#, "e".repeat(64)))
        .collect();
    format!(
        r#"{{"resp":{{"success":1,"prefix":"{prefix}","digest":"{}","children":[{}]}}}}"#,
        "f".repeat(64),
        children.join(",")
    )
}

/// A fake peer `name` whose tree leads to 2020/1/1, whose list of that day
/// is `list`, and whose stored files are `file` (`None`: 404).
fn tree_to_one_day(name: &'static str, list: Arc<Vec<u8>>, file: Option<Reply>) -> Reply {
    Reply::Route(Arc::new(move |head: &str| {
        if head.starts_with("GET /2020/") {
            return file
                .clone()
                .unwrap_or_else(|| Reply::Bytes(answer("404 Not Found", &[], b"")));
        }
        match param(head, "action").as_deref() {
            Some("digest") => {
                let prefix = param(head, "prefix").unwrap_or_default();
                let children: &[u32] = match prefix.as_str() {
                    "" => &[2020],
                    "2020" | "2020/1" => &[1],
                    _ => &[],
                };
                json_reply(name, &digest_json(&prefix, children))
            }
            Some("list") => Reply::Bytes(answer(
                "200 OK",
                &[("Content-Type", "application/json"), (SERVER_HEADER, name)],
                &list,
            )),
            _ => Reply::Bytes(answer("400 Bad Request", &[], b"")),
        }
    }))
}

/// Writes `node`'s servers.xml.config: `(Name, Uri, SecurityKey)`, in order.
fn write_servers_with_keys(node: &Node, entries: &[(&str, String, &str)]) {
    let servers: String = entries
        .iter()
        .map(|(name, uri, key)| {
            format!("  <Server Name=\"{name}\" Uri=\"{uri}\" SecurityKey=\"{key}\" />\n")
        })
        .collect();
    std::fs::write(
        node.dir.join("servers.xml.config"),
        format!("<Servers>\n{servers}</Servers>\n"),
    )
    .expect("servers.xml.config");
}

/// The last repair pass `node` recorded against `peer`, once there is one.
fn last_pass(node: &Node, peer: &str, within: Duration) -> Value {
    let mut pass = Value::Null;
    eventually(within, || {
        pass = health(node).1["repair"]["peers"][peer]["last_pass"].clone();
        !pass.is_null()
    });
    pass
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_list_of_64_mib_leaves_memory_bounded_and_the_pass_says_why() {
    // Entries the old reader skipped without fetching (the hash is not
    // hex): only the parsing is measured.
    let mut list = String::from(r#"{"resp":{"success":1,"day":"2020/1/1","files":["#);
    let mut n = 0;
    while list.len() < 64 << 20 {
        if n > 0 {
            list.push(',');
        }
        list.push_str(&format!(
            r#"{{"path":"{}","size":1000,"sha256":"zz","added":0}}"#,
            name_of_day(n)
        ));
        n += 1;
    }
    list.push_str(r#"],"tombstones":[]}}"#);
    let fake = FakePeer::start(tree_to_one_day(
        "biglist",
        Arc::new(list.into_bytes()),
        None,
    ));
    let mut cluster = Cluster::new(&["s1"], REPAIR);
    let own = cluster.nodes[0].do_url("").replace('?', "");
    let key = cluster.nodes[0].key.clone();
    write_servers_with_keys(
        &cluster.nodes[0],
        &[("s1", own, &key), ("biglist", fake.uri(), "k")],
    );
    cluster.node(0).start();
    let pass = last_pass(&cluster.nodes[0], "biglist", Duration::from_secs(60));
    let peak_mib = cluster.nodes[0].peak_rss_kib() / 1024;
    eprintln!("peak RSS after a pass against a 64 MiB list: {peak_mib} MiB");
    assert!(peak_mib < 200, "peak RSS {peak_mib} MiB");
    assert_eq!(pass["complete"], false, "{pass}");
    let error = pass["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("longer than"), "{pass}");
    let lists: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.contains("action=list"))
        .collect();
    assert!(
        !lists.is_empty() && lists.iter().all(|r| r.contains("after=")),
        "{lists:?}"
    );
    assert!(
        cluster.nodes[0]
            .log_lines(|l| l.contains("repair pass stopped") && l.contains("longer than"))
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_children_end_the_pass_and_repair_with_the_next_peer_goes_on() {
    // 300 copies of child 5 on every level: a tree of 27 million days to a
    // reader that believes it.
    let duplicates = Reply::Route(Arc::new(|head: &str| {
        match param(head, "action").as_deref() {
            Some("digest") => json_reply(
                "dup",
                &digest_json(&param(head, "prefix").unwrap_or_default(), &[5; 300]),
            ),
            Some("list") => json_reply(
                "dup",
                &format!(
                    r#"{{"resp":{{"success":1,"day":"{}","files":[],"tombstones":[]}}}}"#,
                    param(head, "day").unwrap_or_default()
                ),
            ),
            _ => Reply::Bytes(answer("404 Not Found", &[], b"")),
        }
    }));
    let fake = FakePeer::start(duplicates);
    let mut cluster = Cluster::new(&["s1", "s2"], REPAIR);
    let restored = jpeg(12_000, 31);
    let path = "2019/3/3/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg";
    let file = cluster.nodes[1].data_dir().join(path);
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, &restored).expect("plant");
    let entries: Vec<(String, String, String)> = cluster
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.do_url("").replace('?', ""), n.key.clone()))
        .collect();
    write_servers_with_keys(
        &cluster.nodes[0],
        &[
            ("dup", fake.uri(), "k"),
            (&entries[0].0, entries[0].1.clone(), &entries[0].2),
            (&entries[1].0, entries[1].1.clone(), &entries[1].2),
        ],
    );
    cluster.start_all();
    let arrived = eventually(Duration::from_secs(60), || {
        cluster.nodes[0]
            .stored()
            .iter()
            .any(|(p, b)| p == path && b == &restored)
    });
    assert!(arrived, "the file held by s2 never reached s1");
    let pass = last_pass(&cluster.nodes[0], "dup", Duration::from_secs(10));
    assert_eq!(pass["complete"], false, "{pass}");
    assert!(
        pass["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("ascending")),
        "{pass}"
    );
    // One root digest per pass, nothing below it.
    let requests = fake.requests();
    assert!(
        requests.iter().all(|r| r.contains("prefix=&")),
        "{:?}",
        &requests[..requests.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_listed_at_10_bytes_is_not_read_past_them_and_nothing_is_kept() {
    let path = name_of_day(7);
    let sha = "ab".repeat(32);
    let list = format!(
        r#"{{"resp":{{"success":1,"day":"2020/1/1","files":[{{"path":"{path}","size":10,"sha256":"{sha}","added":0}}],"tombstones":[]}}}}"#
    );
    // 300 MB behind a JPEG head, with no Content-Length: only the list's
    // size says where it should end.
    let body = Reply::Endless {
        head: format!(
            "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Content-SHA256: {sha}\r\n\
             Connection: close\r\n\r\n"
        ),
        body: jpeg(20_000, 8),
        len: 300_000_000,
    };
    let fake = FakePeer::start(tree_to_one_day(
        "liar",
        Arc::new(list.into_bytes()),
        Some(body),
    ));
    let mut cluster = Cluster::new(&["s1"], REPAIR);
    let own = cluster.nodes[0].do_url("").replace('?', "");
    let key = cluster.nodes[0].key.clone();
    write_servers_with_keys(
        &cluster.nodes[0],
        &[("s1", own, &key), ("liar", fake.uri(), "k")],
    );
    cluster.node(0).start();
    let pass = last_pass(&cluster.nodes[0], "liar", Duration::from_secs(60));
    let sent = fake.sent.load(Ordering::Relaxed);
    assert!(sent < 32 << 20, "the fetch read {sent} bytes: {pass}");
    assert!(
        pass["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("more than the 10 bytes")),
        "{pass}"
    );
    assert!(cluster.nodes[0].stored().is_empty());
    assert!(eventually(Duration::from_secs(5), || cluster.nodes[0]
        .temp_files()
        .is_empty()));
}

/// One server whose only peer is the fake `peer`, with `settings`.
fn beside_fake(peer: &FakePeer, settings: &str) -> Cluster {
    let mut cluster = Cluster::new(&["s1"], settings);
    let own = cluster.nodes[0].do_url("").replace('?', "");
    let key = cluster.nodes[0].key.clone();
    write_servers_with_keys(
        &cluster.nodes[0],
        &[("s1", own, &key), ("fake", peer.uri(), "k")],
    );
    cluster.node(0).start();
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_peer_holds_a_reading_client_only_within_the_bound() {
    // 100 KB declared, the first 4 KB at once, then a byte every 200 ms:
    // never idle long enough for an idle timeout.
    let fake = FakePeer::start(Reply::Trickle {
        head: format!(
            "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\
             X-Content-SHA256: {}\r\nConnection: close\r\n\r\n",
            "ab".repeat(32)
        ),
        body: jpeg(4_000, 9),
        every: Duration::from_millis(200),
        len: 100_000,
    });
    let cluster = beside_fake(&fake, QUIET);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .expect("client");
    let started = Instant::now();
    let answer = client
        .get(format!("{}/{}", cluster.nodes[0].base(), name_of_day(3)))
        .send()
        .await
        .map(|r| r.status().as_u16());
    let took = started.elapsed();
    assert_eq!(answer.ok(), Some(503), "after {took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(cluster.nodes[0].stored().is_empty());
    assert!(eventually(Duration::from_secs(5), || cluster.nodes[0]
        .temp_files()
        .is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_through_body_without_a_declared_size_is_not_written() {
    // A JPEG head and then 300 MB, to the end of the connection, with a
    // hash it cannot match.
    let fake = FakePeer::start(Reply::Endless {
        head: format!(
            "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Content-SHA256: {}\r\n\
             Connection: close\r\n\r\n",
            "ab".repeat(32)
        ),
        body: jpeg(20_000, 10),
        len: 300_000_000,
    });
    let cluster = beside_fake(&fake, QUIET);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let mut largest_temp = 0;
    let request = client
        .get(format!("{}/{}", cluster.nodes[0].base(), name_of_day(4)))
        .send();
    tokio::pin!(request);
    let status = loop {
        tokio::select! {
            answer = &mut request => break answer.map(|r| r.status().as_u16()),
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                let temp: u64 = cluster.nodes[0]
                    .temp_files()
                    .iter()
                    .filter_map(|f| std::fs::metadata(f).ok())
                    .map(|m| m.len())
                    .sum();
                largest_temp = largest_temp.max(temp);
            }
        }
    };
    assert_eq!(status.ok(), Some(503));
    let sent = fake.sent.load(Ordering::Relaxed);
    assert!(sent < 32 << 20, "read {sent} bytes");
    assert!(
        largest_temp < 1 << 20,
        "{largest_temp} bytes of temporary file"
    );
    assert!(cluster.nodes[0].stored().is_empty());
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
    /// `head`, then `body`, then `x` up to `len` body bytes, as fast as
    /// they are taken.
    Endless {
        head: String,
        body: Vec<u8>,
        len: u64,
    },
    /// `head` and `body`, then one `x` every `every`, `len` of them.
    Trickle {
        head: String,
        body: Vec<u8>,
        every: Duration,
        len: u64,
    },
    /// The reply to a request, by its head.
    Route(Arc<dyn Fn(&str) -> Reply + Send + Sync>),
}

/// A TCP server that reads each request whole (head and `Content-Length`
/// body), records its head and answers with its [`Reply`]. It stops taking
/// connections when dropped (at most two minutes after it started).
struct FakePeer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    /// Body bytes written so far (of `Endless` and `Trickle` replies).
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakePeer {
    fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, sent, stop) = (requests.clone(), sent.clone(), stop.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (reply, requests, sent, stop) =
                                (reply.clone(), requests.clone(), sent.clone(), stop.clone());
                            std::thread::spawn(move || {
                                serve_one(stream, &reply, &requests, &sent, &stop);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            port,
            requests,
            sent,
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

fn serve_one(
    mut stream: TcpStream,
    reply: &Reply,
    requests: &Mutex<Vec<String>>,
    sent: &AtomicU64,
    stop: &AtomicBool,
) {
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
        r.push(head.clone());
    }
    let mut body = got.len() - head_end;
    while body < length {
        match stream.read(&mut buf) {
            Ok(n @ 1..) => body += n,
            _ => return,
        }
    }
    let routed;
    let reply = match reply {
        Reply::Route(route) => {
            routed = route(&head);
            &routed
        }
        other => other,
    };
    match reply {
        Reply::Bytes(bytes) => {
            let _ = stream.write_all(bytes);
        }
        Reply::Endless { head, body, len } => {
            if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body).is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut written = body.len() as u64;
            while written < *len
                && !stop.load(Ordering::Relaxed)
                && stream.write_all(&chunk).is_ok()
            {
                written += chunk.len() as u64;
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
        Reply::Trickle {
            head,
            body,
            every,
            len,
        } => {
            if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body).is_err() {
                return;
            }
            for _ in 0..*len {
                if stop.load(Ordering::Relaxed) || stream.write_all(b"x").is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(*every);
            }
        }
        Reply::Route(_) => {}
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
