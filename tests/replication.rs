//! Replication between real server processes (SPEC §2.2, §2.3, §4, §5 and
//! the sync rows of §8): copies a peer missed are journaled one per file and
//! replayed by `uploaderrors`, by the `replay` command and by the background
//! loop; kills in the middle of a replay lose nothing; a peer that hangs
//! cannot hold an upload's answer; every bad replica is refused without a
//! trace on disk.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{BIN, Cluster, Node, eventually, jpeg, json, png, raw, run_replay, sha256};
use serde_json::Value;

/// No fsync (speed), and no background replay to race with the replays a
/// test starts itself.
const QUIET: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n";

// ---------------------------------------------------------------------------
// 1. A peer down while uploads arrive at the two others.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_was_down_gets_every_missed_file_from_the_journals() {
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], QUIET);
    cluster.node(0).start();
    cluster.node(1).start();
    let client = client();
    // Several requests to each live server, some with several files.
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut owed: [Vec<(String, String, String, u64)>; 2] = [Vec::new(), Vec::new()];
    let batches: [(usize, &[usize]); 6] = [
        (0, &[1]),
        (1, &[2]),
        (0, &[3, 1]),
        (1, &[1, 1, 2]),
        (0, &[2, 2, 1, 3]),
        (1, &[3]),
    ];
    let mut seed = 100;
    for (at, sizes) in batches {
        let files: Vec<(String, Vec<u8>)> = sizes
            .iter()
            .map(|kb| {
                seed += 1;
                let bytes = if seed % 5 == 0 {
                    png()
                } else {
                    jpeg(kb * 70_000 + seed as usize, seed)
                };
                (format!("f{seed}.img"), bytes)
            })
            .collect();
        let node = &cluster.nodes[at];
        let other = &cluster.nodes[1 - at].name;
        for (entry, (_, bytes)) in upload(&client, node, &files).await.iter().zip(&files) {
            let path = entry["path"].as_str().expect("path").to_owned();
            assert!(confirmed(entry, other), "live peer {other}: {entry}");
            assert!(!journaled(entry, "s3").is_empty(), "{entry}");
            owed[at].push((
                "s3".to_owned(),
                path.clone(),
                sha256(bytes),
                bytes.len() as u64,
            ));
            expected.insert(path, bytes.clone());
        }
    }
    // Each journal holds exactly one entry per file that server received,
    // all for s3, and nothing else.
    for (at, owed) in owed.iter_mut().enumerate() {
        let node = &cluster.nodes[at];
        owed.sort();
        let journal = node.journal();
        assert!(
            journal.iter().all(|e| e["from"] == node.name.as_str()
                && e["attempts"] == 1
                && e["last_error"].as_str().is_some_and(|s| !s.is_empty())),
            "{journal:#?}"
        );
        assert_eq!(&journal_summary(&journal), owed, "{}'s journal", node.name);
    }
    assert_eq!(owed[0].len() + owed[1].len(), expected.len());
    // The two live servers already hold everything.
    assert_eq!(contents(&cluster.nodes[0]), expected);
    assert_eq!(contents(&cluster.nodes[1]), expected);

    cluster.node(2).start();
    // Both servers replay to s3 at the same time, one by GET, one by POST.
    let (r1, r2) = tokio::join!(
        uploaderrors(&client, &cluster.nodes[0], reqwest::Method::GET),
        uploaderrors(&client, &cluster.nodes[1], reqwest::Method::POST),
    );
    for (report, owed) in [(r1, &owed[0]), (r2, &owed[1])] {
        assert_eq!(report["replayed"], owed.len(), "{report}");
        assert_eq!(report["failed"], 0, "{report}");
        assert_eq!(report["dropped"], 0, "{report}");
        assert_eq!(report["remaining"], 0, "{report}");
    }
    let all: Vec<_> = cluster.nodes.iter().map(Node::stored).collect();
    assert_eq!(all[0], all[1]);
    assert_eq!(all[0], all[2]);
    assert_eq!(hashes(&all[2]), hashes_of(&expected));
    for node in &cluster.nodes {
        assert!(
            node.journal().is_empty(),
            "{}: {:?}",
            node.name,
            node.journal()
        );
        assert!(node.temp_files().is_empty(), "{}", node.name);
    }
}

// ---------------------------------------------------------------------------
// 2. SIGKILL in the middle of a replay, on either side.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_either_side_in_the_middle_of_a_replay_loses_nothing() {
    // fsync on: the code that runs when a kill interrupts it is the real one.
    let mut cluster = Cluster::new(&["s1", "s2"], "[replication]\nretry_interval_secs = 3600\n");
    cluster.node(0).start();
    let client = client();
    let started = Instant::now();
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for batch in 0..10u64 {
        let files: Vec<(String, Vec<u8>)> = (0..4u64)
            .map(|i| {
                let seed = 1000 + batch * 4 + i;
                let size = 2_000_000 + (seed as usize * 271_828) % 2_000_000;
                (format!("big{seed}.jpg"), jpeg(size, seed))
            })
            .collect();
        for (entry, (_, bytes)) in upload(&client, &cluster.nodes[0], &files)
            .await
            .iter()
            .zip(files)
        {
            expected.insert(entry["path"].as_str().expect("path").to_owned(), bytes);
        }
    }
    assert_eq!(expected.len(), 40);
    assert_eq!(cluster.nodes[0].journal().len(), 40);
    eprintln!("40 files stored in {:?}", started.elapsed());

    // The receiving peer dies mid-replay.
    cluster.node(1).start();
    let wait_for = 1 + jitter(4);
    let replay = spawn_uploaderrors(&client, &cluster.nodes[0]);
    let seen = wait_for_public_files(&cluster.nodes[1], wait_for).await;
    cluster.node(1).kill();
    let started = Instant::now();
    let report = replay
        .await
        .expect("task")
        .expect("s1 answers although its peer died");
    eprintln!(
        "s2 killed after {seen} files; s1 answered {report} in {:?}",
        started.elapsed()
    );
    assert_nothing_lost(&cluster.nodes[0], &cluster.nodes[1], &expected);
    assert!(
        report["failed"].as_u64().is_some_and(|n| n > 0),
        "the kill came after the replay ended, so it tested nothing: {report}"
    );

    // The replaying server dies mid-replay.
    cluster.node(1).start();
    let before = public_files(&cluster.nodes[1]).len();
    let replay = spawn_uploaderrors(&client, &cluster.nodes[0]);
    let seen = wait_for_public_files(&cluster.nodes[1], before + 1 + jitter(3)).await;
    cluster.node(0).kill();
    let answer = replay.await.expect("task");
    eprintln!("s1 killed when s2 had {seen} files (had {before})");
    assert_nothing_lost(&cluster.nodes[0], &cluster.nodes[1], &expected);
    assert!(
        answer.is_err(),
        "the kill came after the replay answered, so it tested nothing: {answer:?}"
    );

    // Restarted, replays drain everything: resends of what already arrived
    // are duplicates, not errors.
    cluster.node(0).start();
    let rounds = replay_until_drained(&client, &cluster.nodes[0]).await;
    eprintln!("drained in {rounds} more replay(s)");
    assert!(cluster.nodes[0].journal().is_empty());
    for node in &cluster.nodes {
        assert_same_files(node, &expected);
    }
    // The sender never has temporary files; the receiver's, from its kill,
    // are not public and are cleaned at a later start once stale.
    assert!(cluster.nodes[0].temp_files().is_empty());
}

// ---------------------------------------------------------------------------
// 3. The `replay` command beside the server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_command_and_uploaderrors_at_once_lose_no_entry() {
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], QUIET);
    cluster.node(0).start();
    let client = client();
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for batch in 0..10u64 {
        let files: Vec<(String, Vec<u8>)> = (0..3u64)
            .map(|i| {
                let seed = 2000 + batch * 3 + i;
                (
                    format!("{seed}.jpg"),
                    jpeg(300_000 + seed as usize * 977 % 400_000, seed),
                )
            })
            .collect();
        for (entry, (_, bytes)) in upload(&client, &cluster.nodes[0], &files)
            .await
            .iter()
            .zip(files)
        {
            expected.insert(entry["path"].as_str().expect("path").to_owned(), bytes);
        }
    }
    assert_eq!(cluster.nodes[0].journal().len(), 60, "30 files × 2 peers");

    // s2 is back, s3 is still down: while both replays run, new uploads
    // append s3 entries that must survive the replays' settling.
    cluster.node(1).start();
    let s1 = &cluster.nodes[0];
    let command = tokio::process::Command::new(BIN)
        .args(["replay", "--config"])
        .arg(s1.config())
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .output();
    let http = async {
        // Sometimes after the command took the lock, sometimes before.
        tokio::time::sleep(Duration::from_millis(jitter(120) as u64)).await;
        let (status, v) = json(
            client
                .post(s1.do_url("action=uploaderrors&format=json"))
                .header("X-Security-Key", &s1.key)
                .send()
                .await
                .expect("uploaderrors"),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        v["resp"].clone()
    };
    let more = async {
        let mut added = Vec::new();
        for seed in 3000..3005u64 {
            let bytes = jpeg(200_000, seed);
            let files = [(format!("{seed}.jpg"), bytes.clone())];
            let entry = upload(&client, s1, &files).await.remove(0);
            assert!(confirmed(&entry, "s2"), "{entry}");
            journaled(&entry, "s3");
            added.push((entry["path"].as_str().expect("path").to_owned(), bytes));
            tokio::time::sleep(Duration::from_millis(jitter(40) as u64)).await;
        }
        added
    };
    let (output, by_http, added) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(60), command),
        http,
        more
    );
    expected.extend(added);
    let output = output.expect("replay command finished").expect("ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let by_command: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report last on stdout:\n{stdout}\n{stderr}"));
    if output.status.success() {
        assert_eq!(by_command["busy"], 0, "{by_command}");
    } else {
        assert_eq!(by_command["busy"], 1, "{by_command}");
        assert!(
            stderr.contains("another replay is running"),
            "{}: {stderr}",
            output.status
        );
    }
    eprintln!("command: {by_command}\nuploaderrors: {by_http}");
    assert!(
        by_command["busy"] == 0 || by_http["busy"] == 0,
        "one of them must have replayed"
    );

    // More rounds until nothing is owed to s2; s3's entries stay, one per
    // file, including those appended while the replays ran.
    let mut rounds = 0;
    while s1.journal().iter().any(|e| e["peer"] == "s2") {
        rounds += 1;
        assert!(rounds <= 10, "s2 entries never drained: {:?}", s1.journal());
        uploaderrors(&client, s1, reqwest::Method::POST).await;
    }
    let journal = s1.journal();
    assert!(journal.iter().all(|e| e["peer"] == "s3"), "{journal:#?}");
    let owed: Vec<String> = journal
        .iter()
        .map(|e| e["path"].as_str().expect("path").to_owned())
        .collect();
    assert_eq!(owed.len(), expected.len(), "{journal:#?}");
    assert_eq!(
        owed.into_iter().collect::<BTreeSet<_>>(),
        expected.keys().cloned().collect::<BTreeSet<_>>()
    );
    assert_same_files(&cluster.nodes[1], &expected);

    cluster.node(2).start();
    replay_until_drained(&client, &cluster.nodes[0]).await;
    for node in &cluster.nodes {
        assert_same_files(node, &expected);
        assert!(node.journal().is_empty(), "{}", node.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_command_with_url_asks_the_server_with_the_key_in_a_header() {
    // What the command sends: a stand-in server records the request.
    let cluster = Cluster::new(&["s1", "s2"], QUIET);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let canned =
        r#"{"resp":{"success":1,"replayed":0,"failed":0,"dropped":0,"remaining":0,"busy":0}}"#;
    let recorder = std::thread::spawn(move || answer_once(&listener, canned));
    let output = run_replay(
        &cluster.nodes[0],
        &format!("http://127.0.0.1:{port}/do.ashx"),
    )
    .await;
    let head = recorder.join().expect("recorder").to_ascii_lowercase();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), canned);
    let request_line = head.lines().next().unwrap_or_default();
    assert!(
        request_line.contains("action=uploaderrors"),
        "{request_line}"
    );
    let key = cluster.nodes[0].key.to_ascii_lowercase();
    assert!(
        !request_line.contains(&key),
        "key in the URL: {request_line}"
    );
    assert!(
        head.contains(&format!("\r\nx-security-key: {key}\r\n")),
        "{head}"
    );

    // Through the real server.
    let mut cluster = cluster;
    cluster.node(0).start();
    let client = client();
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("{i}.jpg"), jpeg(40_000, 4000 + i)))
        .collect();
    let mut expected = BTreeMap::new();
    for (entry, (_, bytes)) in upload(&client, &cluster.nodes[0], &files)
        .await
        .iter()
        .zip(files)
    {
        expected.insert(entry["path"].as_str().expect("path").to_owned(), bytes);
    }
    cluster.node(1).start();
    let url = format!("{}/do.ashx", cluster.nodes[0].base());
    let output = run_replay(&cluster.nodes[0], &url).await;
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer: Value = serde_json::from_str(stdout.trim()).expect("stdout is the JSON answer");
    assert_eq!(answer["resp"]["success"], 1, "{answer}");
    assert_eq!(answer["resp"]["replayed"], 3, "{answer}");
    assert_eq!(answer["resp"]["remaining"], 0, "{answer}");
    assert!(cluster.nodes[0].journal().is_empty());
    assert_same_files(&cluster.nodes[1], &expected);

    // With another server's key the server refuses, and so does the command.
    let output = run_replay(&cluster.nodes[1], &url).await;
    assert!(!output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(r#""success":0"#), "{stdout}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("403"),
        "{output:?}"
    );
}

/// Every flag of an `uploaderrors` answer is `0`/`1`, as `success`,
/// `ok` and `journaled` are (SPEC §2.2: "in XML or JSON like above"):
/// `busy` included, in JSON as in XML, and in the `replay` command's report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaderrors_says_busy_as_0_or_1_in_json_xml_and_the_command() {
    let cluster = Cluster::single(QUIET);
    let s1 = &cluster.nodes[0];
    let client = client();
    let body = |format: &'static str| {
        let request = client
            .post(s1.do_url(&format!("action=uploaderrors&format={format}")))
            .header("X-Security-Key", &s1.key);
        async move {
            let response = request.send().await.expect("uploaderrors");
            assert_eq!(response.status(), 200);
            response.text().await.expect("body")
        }
    };
    let answer = body("json").await;
    assert!(answer.contains(r#""busy":0"#), "{answer}");
    let answer = body("xml").await;
    assert!(answer.contains("<busy>0</busy>"), "{answer}");

    let output = tokio::process::Command::new(BIN)
        .args(["replay", "--config"])
        .arg(s1.config())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("replay command finished")
        .expect("ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains(r#""busy":0"#), "{stdout}");
}

// ---------------------------------------------------------------------------
// 4. `action=sync`: every row of SPEC §8 that concerns it.

const ID: &str = "5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_refuses_every_bad_replica_and_writes_nothing() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.start_all();
    let client = client();
    let s1 = &cluster.nodes[0];
    let root = s1.dir.parent().expect("cluster folder").to_path_buf();
    let image = jpeg(30_000, 5000);
    let hash = sha256(&image);
    let good = format!("2014/4/15/{ID}.jpg");
    let before = files_outside_logs(&root);
    let unchanged = |what: &str| {
        assert_eq!(files_outside_logs(&root), before, "{what} wrote a file");
        assert!(s1.temp_files().is_empty(), "{what} left a temporary file");
    };

    // Missing or wrong key: 403, nothing written, body not asked for. The
    // 403 comes without `Connection: close` although its body is not read
    // (src/http/mod.rs), so these use connections of their own.
    let s2_key = cluster.nodes[1].key.clone();
    for key in [None, Some("wrong"), Some(s2_key.as_str())] {
        let unpooled = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let (status, v) = put(&unpooled, s1, &good, key, Some(&hash), image.clone()).await;
        assert_eq!(status, 403, "{key:?} {v}");
        assert_eq!(v["resp"]["success"], 0, "{v}");
        unchanged("a request with a bad key");
    }
    let answer = raw(
        s1.port,
        format!(
            "PUT /do.ashx?action=sync&path={good} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\
             Expect: 100-continue\r\nX-Security-Key: wrong\r\nX-Content-SHA256: {hash}\r\n\r\n"
        )
        .as_bytes(),
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");

    // Every bad path shape: 400, nothing written (the body is a valid JPEG
    // with the right hash, so only the path is wrong).
    let upper = ID.to_ascii_uppercase();
    let bad_paths = [
        String::new(),
        format!("2014/4/15/../{ID}.jpg"),
        format!("../../{ID}.jpg"),
        format!("2014/4/15/{ID}.jpg/.."),
        format!("/2014/4/15/{ID}.jpg"),
        format!("%2Ftmp%2F{ID}.jpg"),
        format!("2014%5C4%5C15%5C{ID}.jpg"),
        format!("2014/4/15%5C..%5C{ID}.jpg"),
        format!("2014/04/15/{ID}.jpg"),
        format!("2014/4/05/{ID}.jpg"),
        format!("2014/13/15/{ID}.jpg"),
        format!("2014/4/15/{upper}.jpg"),
        format!("2014/4/15/{}.jpg", ID.replace('-', "")),
        format!("2014/4/15/{ID}.svg"),
        format!("2014/4/15/{ID}.aspx"),
        format!("2014/4/15/{ID}.jpeg"),
        format!("2014/4/15/{ID}.jpg.tmp"),
        format!("2014/4/15/{ID}"),
        format!("2014/4/15/{ID}.jpg/x"),
        format!("x/2014/4/15/{ID}.jpg"),
        format!("2014/4/15/x/{ID}.jpg"),
        format!("%2e%2e%2f%2e%2e%2f{ID}.jpg"),
        format!("2014/4/15/%2e%2e/{ID}.jpg"),
        format!("2014/4/15/%252e%252e/{ID}.jpg"),
        format!("2014/4/15/{ID}.jpg%00"),
        format!("2014/4/15/{ID}%00.jpg"),
        "log/upload-errors.jsonl".to_owned(),
        format!(".tmp/{ID}.part"),
    ];
    for path in &bad_paths {
        let (status, v) = put(&client, s1, path, Some(&s1.key), Some(&hash), image.clone()).await;
        assert_eq!(status, 400, "path {path:?}: {v}");
        assert_eq!(v["resp"]["success"], 0, "{v}");
        unchanged(path);
    }
    // Refused before its body is read: the answer says the connection
    // closes, or the connection stays usable.
    for headers in [
        format!("X-Content-SHA256: {hash}\r\n"),
        "X-Content-SHA256: nope\r\n".to_owned(),
    ] {
        let head = format!(
            "PUT /do.ashx?action=sync&path=2014/04/15/{ID}.jpg HTTP/1.1\r\nHost: x\r\n\
             X-Security-Key: {}\r\n{headers}Content-Length: 65536\r\n\r\n",
            s1.key
        );
        let answer = closes_only_when_announced(s1.port, &head, 65536);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        unchanged("a refused body on a raw connection");
    }
    // No `path` at all.
    let response = client
        .put(s1.do_url("action=sync&format=json"))
        .header("X-Security-Key", &s1.key)
        .header("X-Content-SHA256", &hash)
        .body(image.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 400);
    unchanged("a sync without a path");

    // Missing or malformed X-Content-SHA256: 400.
    let upper_hash = hash.to_ascii_uppercase();
    let bad_hashes = [
        None,
        Some(String::new()),
        Some("xyz".to_owned()),
        Some(hash[..63].to_owned()),
        Some("g".repeat(64)),
        Some(format!("{hash}0")),
        Some(format!("sha256={hash}")),
    ];
    for h in bad_hashes {
        let (status, v) = put(
            &client,
            s1,
            &good,
            Some(&s1.key),
            h.as_deref(),
            image.clone(),
        )
        .await;
        assert_eq!(status, 400, "hash {h:?}: {v}");
        unchanged("a bad X-Content-SHA256");
    }

    // A body that does not hash to the header: 400, nothing kept.
    let mut damaged = image.clone();
    damaged[20_000] ^= 1;
    let (status, v) = put(&client, s1, &good, Some(&s1.key), Some(&hash), damaged).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["resp"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("SHA256")),
        "{v}"
    );
    unchanged("a hash mismatch");
    // A body shorter than announced (the sender died): nothing kept.
    let response = client
        .put(s1.do_url(&format!("action=sync&format=json&path={good}")))
        .header("X-Security-Key", &s1.key)
        .header("X-Content-SHA256", &hash)
        .body(image[..10_000].to_vec())
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 400);
    unchanged("a short body");
    // Content of another type than the name says: refused.
    let (status, v) = put(
        &client,
        s1,
        &format!("2014/4/15/{ID}.png"),
        Some(&s1.key),
        Some(&hash),
        image.clone(),
    )
    .await;
    assert_eq!(status, 415, "{v}");
    unchanged("a JPEG under a .png name");

    // The good replica, then the same again: both 200, the second a duplicate.
    for (round, duplicate) in [(1, 0), (2, 1)] {
        let (status, v) = put(
            &client,
            s1,
            &good,
            Some(&s1.key),
            Some(&upper_hash),
            image.clone(),
        )
        .await;
        assert_eq!(status, 200, "round {round}: {v}");
        assert_eq!(v["resp"]["success"], 1, "{v}");
        assert_eq!(v["resp"]["path"], good.as_str(), "{v}");
        assert_eq!(v["resp"]["duplicate"], duplicate, "round {round}: {v}");
        assert_eq!(s1.stored(), vec![(good.clone(), image.clone())]);
        assert!(s1.temp_files().is_empty());
    }
    // A different file under an existing name: 409, the original kept.
    let other = jpeg(30_000, 5001);
    let (status, v) = put(
        &client,
        s1,
        &good,
        Some(&s1.key),
        Some(&sha256(&other)),
        other,
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["resp"]["success"], 0, "{v}");
    assert_eq!(s1.stored(), vec![(good.clone(), image.clone())]);
    assert!(s1.temp_files().is_empty());
    // The replica is served like an upload.
    let served = client
        .get(format!("{}/{good}", s1.base()))
        .send()
        .await
        .expect("get");
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.bytes().await.expect("bytes").as_ref(),
        image.as_slice()
    );

    // A replica is never forwarded: s2 got nothing, s1 owes nothing.
    assert!(cluster.nodes[1].stored().is_empty());
    assert!(s1.journal().is_empty(), "{:?}", s1.journal());
}

// ---------------------------------------------------------------------------
// 5. A peer that accepts but never answers.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_costs_the_idle_timeout_and_is_journaled() {
    let hang = HangingPeer::start();
    let mut cluster = Cluster::new(
        &["s1", "s2"],
        "fsync = false\n[replication]\nidle_timeout_secs = 2\nretry_interval_secs = 3600\n",
    );
    let servers = cluster.nodes[0].dir.join("servers.xml.config");
    let xml = std::fs::read_to_string(&servers).expect("servers");
    let xml = xml.replace(
        "</Servers>",
        &format!(
            "  <Server Name=\"hang\" Uri=\"http://127.0.0.1:{}/do.ashx\" SecurityKey=\"x\" />\n</Servers>",
            hang.port
        ),
    );
    std::fs::write(&servers, xml).expect("servers");
    cluster.node(1).start();
    cluster.node(0).start();
    let client = client();
    let s1 = &cluster.nodes[0];
    let files: Vec<(String, Vec<u8>)> = (0..2)
        .map(|i| (format!("{i}.jpg"), jpeg(100_000, 6000 + i)))
        .collect();

    let started = Instant::now();
    let entries = upload(&client, s1, &files).await;
    let took = started.elapsed();
    eprintln!("upload answered in {took:?}");
    // Both copies wait on the hanging peer at once, each for the idle timeout.
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < Duration::from_secs(2 + 8), "{took:?}");
    for entry in &entries {
        assert!(confirmed(entry, "s2"), "{entry}");
        let error = journaled(entry, "hang");
        assert!(error.contains("no progress"), "{entry}");
    }
    // The hanging peer did get the requests: the timeout is its doing.
    assert!(
        eventually(Duration::from_secs(5), || {
            hang.received()
                .matches("PUT /do.ashx?action=sync&path=")
                .count()
                == 2
        }),
        "{}",
        hang.received()
    );
    let paths: BTreeSet<String> = entries
        .iter()
        .map(|e| e["path"].as_str().expect("path").to_owned())
        .collect();
    let journal = s1.journal();
    assert!(journal.iter().all(|e| e["peer"] == "hang"), "{journal:#?}");
    assert_eq!(
        journal
            .iter()
            .map(|e| e["path"].as_str().expect("path").to_owned())
            .collect::<BTreeSet<_>>(),
        paths
    );
    assert_eq!(journal.len(), 2);
    assert_eq!(cluster.nodes[1].stored(), s1.stored());

    // A replay to it is bounded the same way and keeps the entries.
    let started = Instant::now();
    let report = uploaderrors(&client, s1, reqwest::Method::POST).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2 + 8), "{took:?}");
    assert_eq!(report["failed"], 2, "{report}");
    assert_eq!(report["remaining"], 2, "{report}");
    let journal = s1.journal();
    assert!(
        journal.iter().all(|e| e["attempts"] == 2
            && e["last_error"]
                .as_str()
                .is_some_and(|s| s.contains("no progress"))),
        "{journal:#?}"
    );
}

// ---------------------------------------------------------------------------
// 6. The background replay.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_replay_delivers_once_the_peer_is_back() {
    let mut cluster = Cluster::new(
        &["s1", "s2"],
        "fsync = false\n[replication]\nretry_interval_secs = 1\nmax_retry_interval_secs = 4\n",
    );
    cluster.node(0).start();
    let client = client();
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("{i}.jpg"), jpeg(50_000, 7000 + i)))
        .collect();
    upload(&client, &cluster.nodes[0], &files).await;
    assert_eq!(cluster.nodes[0].journal().len(), 3);
    // The loop retries on its own while s2 is down, and counts the attempts.
    let s1 = &cluster.nodes[0];
    assert!(
        eventually(Duration::from_secs(6), || {
            let j = s1.journal();
            j.len() == 3 && j.iter().all(|e| e["attempts"].as_u64() >= Some(2))
        }),
        "{:#?}",
        s1.journal()
    );
    cluster.node(1).start();
    let started = Instant::now();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    assert!(
        eventually(Duration::from_secs(15), || s1.journal().is_empty()),
        "{:#?}\n{}",
        s1.journal(),
        s1.output()
    );
    eprintln!("delivered {:?} after s2 came back", started.elapsed());
    assert_eq!(s2.stored(), s1.stored());
    assert_eq!(s2.stored().len(), 3);
}

// ---------------------------------------------------------------------------
// 7. A damaged file here is not the peer's failure.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_file_cut_short_here_does_not_count_against_the_peer() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.node(0).start();
    let client = client();
    let files = [("a.jpg".to_owned(), jpeg(300_000, 71))];
    let entry = upload(&client, &cluster.nodes[0], &files).await[0].clone();
    journaled(&entry, "s2");
    // The copy owed is cut short on this server's disk before the replay
    // (a damaged disk; scrub's to find): sending it fails, but that says
    // nothing about the peer.
    let path = entry["path"].as_str().expect("path");
    let stored = cluster.nodes[0].data_dir().join(path);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&stored)
        .and_then(|f| f.set_len(1000))
        .expect("cut the stored file short");
    cluster.node(1).start();
    uploaderrors(&client, &cluster.nodes[0], reqwest::Method::POST).await;
    let journal = cluster.nodes[0].journal();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert!(
        journal[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("recorded")),
        "{journal:?}"
    );
    // The peer's breaker stayed closed: the next upload is copied at once.
    let files = [("b.jpg".to_owned(), jpeg(80_000, 72))];
    let entry = upload(&client, &cluster.nodes[0], &files).await[0].clone();
    assert!(confirmed(&entry, "s2"), "{entry}");
}

// ---------------------------------------------------------------------------
// 8. Clients that leave while their file is being stored.

/// Clients send a whole upload and close the connection without reading
/// the answer, some at once, some a few milliseconds later: the server
/// drops such a request while it finishes and publishes the file (with
/// fsync on, milliseconds of disk work). Whatever the moment, a file it
/// published reaches the peer (or the journal): none stays on one server
/// alone, unrecorded.
#[test]
fn clients_that_leave_while_their_file_is_stored_leave_none_on_one_server_alone() {
    let mut cluster = Cluster::new(
        &["s1", "s2"],
        "fsync = true\n[replication]\nretry_interval_secs = 3600\n",
    );
    cluster.start_all();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    const CLIENTS: u64 = 4;
    const EACH: u64 = 50;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (port, key) = (s1.port, s1.key.clone());
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let seed = c * EACH + i;
                    let request = upload_request(&key, &jpeg(30_000 + seed as usize, seed));
                    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                    stream.write_all(&request).expect("send the upload");
                    std::thread::sleep(Duration::from_millis(seed % 7));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    let alone = || {
        let on_s2: BTreeSet<String> = s2.stored().into_iter().map(|(p, _)| p).collect();
        let owed: BTreeSet<String> = s1
            .journal()
            .iter()
            .filter_map(|e| e["path"].as_str().map(str::to_owned))
            .collect();
        s1.stored()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| !on_s2.contains(p) && !owed.contains(p))
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(20), || alone().is_empty()),
        "stored on s1 only, and owed nowhere: {:?}\n{}",
        alone(),
        s1.output()
    );
    let stored = s1.stored().len();
    assert!(
        stored > 0,
        "no upload of {} was stored: the test saw no client leave during a commit",
        CLIENTS * EACH
    );
    eprintln!(
        "{stored} of {} uploads stored before or after their client left",
        CLIENTS * EACH
    );
}

/// A whole HTTP/1.1 upload request of one JPEG, the key in its header.
fn upload_request(key: &str, jpeg: &[u8]) -> Vec<u8> {
    let boundary = "----leaving";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
         filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(jpeg);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /do.ashx?action=upload HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         X-Security-Key: {key}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body].concat()
}

// ---------------------------------------------------------------------------
// Helpers.

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Uploads `files` in one request (JSON answer, key in the header) and
/// returns the answer's per-file entries.
async fn upload(client: &reqwest::Client, node: &Node, files: &[(String, Vec<u8>)]) -> Vec<Value> {
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    common::upload_all(client, node, &parts).await
}

/// An upload entry's replica outcome for `peer`.
fn replica<'a>(entry: &'a Value, peer: &str) -> &'a Value {
    entry["replicas"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["peer"] == peer))
        .unwrap_or_else(|| panic!("no outcome for {peer}: {entry}"))
}

/// The peer confirmed the copy.
fn confirmed(entry: &Value, peer: &str) -> bool {
    let r = replica(entry, peer);
    r["ok"] == 1 && r.get("error").is_none()
}

/// The copy failed and is journaled; its error.
fn journaled(entry: &Value, peer: &str) -> String {
    let r = replica(entry, peer);
    assert_eq!(r["ok"], 0, "{peer}: {entry}");
    assert_eq!(r["journaled"], 1, "{peer}: {entry}");
    r["error"].as_str().expect("error").to_owned()
}

/// `uploaderrors` until it is not `busy` (bounded); the `resp` object.
async fn uploaderrors(client: &reqwest::Client, node: &Node, method: reqwest::Method) -> Value {
    for _ in 0..100 {
        let (status, v) = json(
            client
                .request(
                    method.clone(),
                    node.do_url("action=uploaderrors&format=json"),
                )
                .header("X-Security-Key", &node.key)
                .send()
                .await
                .expect("uploaderrors"),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["resp"]["success"], 1, "{v}");
        if v["resp"]["busy"] == 0 {
            return v["resp"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{}: uploaderrors still busy after 100 tries", node.name);
}

/// One `uploaderrors` call in a task: its `resp`, or the transport error
/// (the server was killed before answering).
fn spawn_uploaderrors(
    client: &reqwest::Client,
    node: &Node,
) -> tokio::task::JoinHandle<Result<Value, reqwest::Error>> {
    let request = client
        .post(node.do_url("action=uploaderrors&format=json"))
        .header("X-Security-Key", &node.key);
    tokio::spawn(async move {
        let response = request.send().await?;
        assert_eq!(response.status(), 200);
        let v: Value = response.json().await?;
        assert_eq!(v["resp"]["busy"], 0, "{v}");
        Ok(v["resp"].clone())
    })
}

/// Replays until the journal is empty (bounded); how many rounds it took.
async fn replay_until_drained(client: &reqwest::Client, node: &Node) -> usize {
    for round in 1..=10 {
        let report = uploaderrors(client, node, reqwest::Method::POST).await;
        assert_eq!(report["dropped"], 0, "{report}");
        if report["remaining"] == 0 {
            return round;
        }
    }
    panic!("{}: journal not drained: {:?}", node.name, node.journal());
}

/// Waits (bounded, polling often) until `node` has at least `n` public files.
async fn wait_for_public_files(node: &Node, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = public_files(node).len();
        if seen >= n {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} never reached {n} files",
            node.name
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A small number in `0..n` that differs from run to run.
fn jitter(n: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos / 1000) as usize % n
}

/// The journal as sorted `(peer, path, sha256, size)`.
fn journal_summary(journal: &[Value]) -> Vec<(String, String, String, u64)> {
    let mut out: Vec<_> = journal
        .iter()
        .map(|e| {
            (
                e["peer"].as_str().expect("peer").to_owned(),
                e["path"].as_str().expect("path").to_owned(),
                e["sha256"].as_str().expect("sha256").to_owned(),
                e["size"].as_u64().expect("size"),
            )
        })
        .collect();
    out.sort();
    out
}

fn contents(node: &Node) -> BTreeMap<String, Vec<u8>> {
    node.stored().into_iter().collect()
}

fn hashes(stored: &[(String, Vec<u8>)]) -> BTreeMap<String, String> {
    stored.iter().map(|(p, b)| (p.clone(), sha256(b))).collect()
}

fn hashes_of(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    files.iter().map(|(p, b)| (p.clone(), sha256(b))).collect()
}

/// `node` holds exactly `expected`, byte for byte.
fn assert_same_files(node: &Node, expected: &BTreeMap<String, Vec<u8>>) {
    let stored = contents(node);
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{}",
        node.name
    );
    for (path, bytes) in &stored {
        assert!(
            bytes == &expected[path],
            "{}: {path} is {} bytes, sha256 {}, expected {} bytes, sha256 {}",
            node.name,
            bytes.len(),
            sha256(bytes),
            expected[path].len(),
            sha256(&expected[path])
        );
    }
}

/// After a kill: every public file on `peer` is whole, and every file of
/// `origin` is on `peer` or owed to it in `origin`'s journal.
fn assert_nothing_lost(origin: &Node, peer: &Node, expected: &BTreeMap<String, Vec<u8>>) {
    let on_peer = contents(peer);
    for (path, bytes) in &on_peer {
        assert!(
            expected.get(path) == Some(bytes),
            "{}: public file {path} ({} bytes) is not the origin's",
            peer.name,
            bytes.len()
        );
    }
    let owed: BTreeSet<String> = origin
        .journal()
        .iter()
        .filter(|e| e["peer"] == peer.name.as_str())
        .map(|e| e["path"].as_str().expect("path").to_owned())
        .collect();
    for path in expected.keys() {
        assert!(
            on_peer.contains_key(path) || owed.contains(path),
            "{path} is neither on {} nor in {}'s journal",
            peer.name,
            origin.name
        );
    }
    assert_same_files(origin, expected);
}

/// Relative paths of `node`'s public files, without reading them.
fn public_files(node: &Node) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = node.data_dir();
    walk(&root, &mut |p| {
        // `.tmp`, the index and the marker are not public files.
        let hidden = p
            .strip_prefix(&root)
            .expect("below data_dir")
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
        if !hidden {
            out.push(p.to_path_buf());
        }
    });
    out
}

/// Every file below `root` except logs and journals (`*/log/*`, stdout.log).
fn files_outside_logs(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    walk(root, &mut |p| {
        let rel = p.strip_prefix(root).expect("below root");
        let in_log = rel
            .components()
            .nth(1)
            .is_some_and(|c| c.as_os_str() == "log");
        if !in_log && rel.file_name().is_some_and(|n| n != "stdout.log") {
            out.insert(rel.to_path_buf());
        }
    });
    out
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            walk(&path, f);
        } else {
            f(&path);
        }
    }
}

/// `PUT action=sync` with the given key and hash headers; the JSON answer.
async fn put(
    client: &reqwest::Client,
    node: &Node,
    path: &str,
    key: Option<&str>,
    hash: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = client
        .put(node.do_url(&format!("action=sync&format=json&path={path}")))
        .body(body);
    if let Some(key) = key {
        request = request.header("X-Security-Key", key);
    }
    if let Some(hash) = hash {
        request = request.header("X-Content-SHA256", hash);
    }
    json(request.send().await.expect("put")).await
}

/// Accepts one connection (bounded wait), records its request head and
/// answers `body` as JSON.
fn answer_once(listener: &TcpListener, body: &str) -> String {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return format!("no request: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends `head` and a body of `len` bytes on one connection and reads the
/// answer; if the answer does not say `Connection: close`, the connection
/// must still take a second request. Returns the first answer.
fn closes_only_when_announced(port: u16, head: &str, len: usize) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut request = head.as_bytes().to_vec();
    request.extend(std::iter::repeat_n(b'x', len));
    // The server may answer and close before taking the whole body.
    let _ = s.write_all(&request);
    let answer = read_answer(&mut s);
    let announced = answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
        .contains("\r\nconnection: close");
    if !announced {
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let second = read_answer(&mut s);
        assert!(
            second.starts_with("HTTP/1.1 200"),
            "the connection was closed without `Connection: close` after:\n{answer}\nsecond answer: {second:?}"
        );
    }
    answer
}

/// One HTTP/1.1 answer with a `Content-Length` body, read from `s`.
fn read_answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return text,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A peer that accepts connections and reads everything sent to it, but
/// never answers. It keeps its connections open until dropped (at most a
/// minute).
struct HangingPeer {
    port: u16,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl HangingPeer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut open: Vec<TcpStream> = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Ok((s, _)) = listener.accept()
                        && s.set_nonblocking(true).is_ok()
                    {
                        open.push(s);
                    }
                    for s in &mut open {
                        while let Ok(n @ 1..) = s.read(&mut buf) {
                            if let Ok(mut r) = received.lock() {
                                r.extend_from_slice(&buf[..n]);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Self {
            port,
            stop,
            received,
            thread: Some(thread),
        }
    }

    /// What was sent to it, as text (bodies are lossy).
    fn received(&self) -> String {
        self.received
            .lock()
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for HangingPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
