//! Streamed copies (SPEC §4's optimisation): a large upload's bytes reach
//! the peer while the upload still arrives, the peer publishes the file only
//! once its hash came and matched, and a failed upload leaves nothing on any
//! peer. A streamed copy that cannot finish falls back to the copy after the
//! fact and its journal, so §4's invariant holds either way.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, Node, curl_upload_command, eventually, jpeg, json, sha256};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

const MIB: u64 = 1 << 20;
/// No fsync (speed), and no background replay to race with the test's own.
const QUIET: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n";

/// A JPEG signature, then a sparse file of `size` bytes: quick to make,
/// real to send.
fn big_jpeg(dir: &Path, size: u64) -> PathBuf {
    let file = dir.join("big.jpg");
    let f = std::fs::File::create(&file).expect("create");
    std::io::Write::write_all(&mut &f, common::JPEG_HEAD).expect("head");
    f.set_len(size).expect("size");
    file
}

/// Starts uploading `file` to `node` with curl at most `rate` bytes per
/// second; its stdout is the answer.
fn slow_upload(node: &Node, file: &Path, rate: &str) -> Child {
    curl_upload_command(node, file)
        .args(["--max-time", "120", "--limit-rate", rate])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl")
}

fn answer(curl: Child) -> Value {
    let out = curl.wait_with_output().expect("curl ran");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Bytes of the largest file in `node`'s temporary folder (0: none).
fn receiving(node: &Node) -> u64 {
    node.temp_files()
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

/// Waits until the peer is writing a temporary file while the sender
/// still has less than `before` bytes of the upload.
fn peer_receives_while_upload_arrives(sender: &Node, peer: &Node, before: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let at_sender = receiving(sender);
        if receiving(peer) > 0 && at_sender > 0 && at_sender < before {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn sha256_file(file: &Path) -> String {
    sha256(&std::fs::read(file).expect("read"))
}

#[test]
fn a_large_upload_reaches_the_peer_while_it_still_arrives() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.start_all();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let work = tempfile::tempdir().expect("tempdir");
    let size = 48 * MIB;
    let file = big_jpeg(work.path(), size);
    let curl = slow_upload(s1, &file, "8M");
    let streamed = peer_receives_while_upload_arrives(s1, s2, size / 2);
    let v = answer(curl);
    assert!(
        streamed,
        "the peer received nothing while the upload arrived: {v}"
    );
    let entry = &v["resp"]["files"][0];
    assert_eq!(entry["size"], size, "{v}");
    assert_eq!(entry["replicas"][0]["peer"], "s2", "{v}");
    assert_eq!(entry["replicas"][0]["ok"], 1, "{v}");
    let path = entry["path"].as_str().expect("path");
    let expected = sha256_file(&file);
    assert_eq!(entry["sha256"].as_str(), Some(expected.as_str()));
    assert_eq!(sha256_file(&s2.data_dir().join(path)), expected);
    assert_eq!(
        s2.log_lines(|l| l.contains("replica received") && l.contains("streamed=true")),
        1,
        "{}",
        s2.output()
    );
    assert_eq!(
        s1.log_lines(|l| l.contains("replicated") && l.contains("streamed=true")),
        1,
        "{}",
        s1.output()
    );
    assert!(s1.journal().is_empty(), "{:?}", s1.journal());
    assert!(s1.temp_files().is_empty() && s2.temp_files().is_empty());
}

#[test]
fn a_client_that_leaves_mid_upload_leaves_nothing_on_any_server() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.start_all();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let work = tempfile::tempdir().expect("tempdir");
    let size = 64 * MIB;
    let file = big_jpeg(work.path(), size);
    let mut curl = slow_upload(s1, &file, "8M");
    assert!(
        peer_receives_while_upload_arrives(s1, s2, size / 2),
        "the copy was not streamed"
    );
    curl.kill().expect("kill curl");
    let _ = curl.wait();
    let clean = |node: &Node| node.temp_files().is_empty() && node.stored().is_empty();
    assert!(
        eventually(Duration::from_secs(20), || clean(s1) && clean(s2)),
        "s1: {:?} {:?}; s2: {:?} {:?}",
        s1.temp_files(),
        s1.stored().len(),
        s2.temp_files(),
        s2.stored().len()
    );
    assert_eq!(s2.log_lines(|l| l.contains("replica received")), 0);
    assert!(s1.journal().is_empty(), "{:?}", s1.journal());
}

#[test]
fn a_peer_that_refuses_the_streamed_copy_gets_it_journaled() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    // s2 takes only PNG: it refuses the JPEG as soon as its first bytes come.
    let config = cluster.nodes[1].config();
    let text = std::fs::read_to_string(&config).expect("app.toml");
    std::fs::write(&config, format!("allowed_types = [\"png\"]\n{text}")).expect("app.toml");
    cluster.start_all();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let work = tempfile::tempdir().expect("tempdir");
    let file = big_jpeg(work.path(), 24 * MIB);
    let v = answer(slow_upload(s1, &file, "16M"));
    assert_eq!(v["resp"]["success"], 1, "{v}");
    let entry = &v["resp"]["files"][0];
    let replica = &entry["replicas"][0];
    assert_eq!(replica["ok"], 0, "{v}");
    assert_eq!(replica["journaled"], 1, "{v}");
    let journal = s1.journal();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0]["peer"], "s2");
    assert_eq!(journal[0]["path"], entry["path"]);
    // The peer answers 415 and closes while the copy's body is still being
    // sent: the sender reads that answer (a refusal, kept for an operator)
    // or, if the connection's reset wins the race, fails to send (kept and
    // retried). Either way the copy is owed, and nothing is on the peer.
    assert!(
        journal[0]["needs_operator"] == true || journal[0]["last_error"].is_string(),
        "{journal:?}"
    );
    assert!(s2.stored().is_empty());
    assert!(eventually(Duration::from_secs(10), || s2
        .temp_files()
        .is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_mid_stream_gets_its_copy_from_the_journal() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.start_all();
    let work = tempfile::tempdir().expect("tempdir");
    let size = 48 * MIB;
    let file = big_jpeg(work.path(), size);
    let curl = slow_upload(&cluster.nodes[0], &file, "8M");
    assert!(
        peer_receives_while_upload_arrives(&cluster.nodes[0], &cluster.nodes[1], size / 2),
        "the copy was not streamed"
    );
    cluster.node(1).kill();
    let v = answer(curl);
    // §4's invariant: a link, and the copy the peer missed is journaled.
    assert_eq!(v["resp"]["success"], 1, "{v}");
    let entry = &v["resp"]["files"][0];
    let path = entry["path"].as_str().expect("path").to_owned();
    assert_eq!(entry["replicas"][0]["ok"], 0, "{v}");
    assert_eq!(entry["replicas"][0]["journaled"], 1, "{v}");
    let journal = cluster.nodes[0].journal();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0]["path"], path.as_str());
    assert_ne!(journal[0]["needs_operator"], true, "{journal:?}");
    // The killed peer published no part of it (its temporary file stays
    // until it is stale, as after any kill); back, it gets the whole file.
    cluster.node(1).start();
    assert!(cluster.nodes[1].stored().is_empty());
    let (status, report) = json(
        reqwest::Client::new()
            .get(cluster.nodes[0].keyed("action=uploaderrors&format=json"))
            .send()
            .await
            .expect("uploaderrors"),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["resp"]["replayed"], 1, "{report}");
    assert_eq!(
        sha256_file(&cluster.nodes[1].data_dir().join(&path)),
        sha256_file(&file)
    );
}

/// A streamed replica as the sync endpoint takes it, sent by hand.
async fn sync_form(node: &Node, path: &str, form: Form) -> (u16, Value) {
    json(
        reqwest::Client::new()
            .put(node.do_url(&format!("action=sync&path={path}&format=json")))
            .header("X-Security-Key", &node.key)
            .multipart(form)
            .send()
            .await
            .expect("sync"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_form_publishes_only_a_replica_whose_hash_came_and_matched() {
    let cluster = Cluster::single("fsync = false\n");
    let s1 = &cluster.nodes[0];
    let bytes = jpeg(300_000, 7);
    let file = || Part::bytes(bytes.clone()).file_name("x");
    let name = |n: u8| format!("2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c{n}.jpg");

    let (status, v) = sync_form(s1, &name(1), Form::new().part("file", file())).await;
    assert_eq!(status, 400, "no sha256 field: {v}");
    let wrong = Form::new()
        .part("file", file())
        .text("sha256", sha256(b"other"));
    let (status, v) = sync_form(s1, &name(2), wrong).await;
    assert_eq!(status, 400, "a hash that does not match: {v}");
    let reversed = Form::new()
        .text("sha256", sha256(&bytes))
        .part("file", file());
    let (status, v) = sync_form(s1, &name(3), reversed).await;
    assert_eq!(status, 400, "the hash before the file: {v}");
    assert!(s1.stored().is_empty());
    assert!(s1.temp_files().is_empty());

    let good = Form::new()
        .part("file", file())
        .text("sha256", sha256(&bytes));
    let (status, v) = sync_form(s1, &name(4), good).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resp"]["path"], name(4).as_str());
    assert_eq!(s1.stored(), vec![(name(4), bytes.clone())]);
}

#[test]
fn a_file_whose_metadata_is_removed_is_copied_as_stored_not_as_streamed() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.start_all();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let work = tempfile::tempdir().expect("tempdir");
    // A comment segment after APP0: stripping removes it, so the stored
    // bytes differ from those streamed while they arrived.
    let (app0, frame) = common::JPEG_HEAD.split_at(20);
    let mut head = app0.to_vec();
    head.extend_from_slice(b"\xFF\xFE\x00\x07hello");
    head.extend_from_slice(frame);
    let file = work.path().join("commented.jpg");
    let f = std::fs::File::create(&file).expect("create");
    std::io::Write::write_all(&mut &f, &head).expect("head");
    f.set_len(24 * MIB).expect("size");
    let v = common::curl_upload(s1, &file);
    let entry = &v["resp"]["files"][0];
    assert_eq!(entry["size"], 24 * MIB - 9, "{v}");
    assert_eq!(entry["replicas"][0]["ok"], 1, "{v}");
    let path = entry["path"].as_str().expect("path");
    assert_eq!(
        Some(sha256_file(&s2.data_dir().join(path)).as_str()),
        entry["sha256"].as_str()
    );
    assert_eq!(
        s1.log_lines(|l| l.contains("the streamed copies are given up")),
        1,
        "{}",
        s1.output()
    );
    assert_eq!(
        s2.log_lines(|l| l.contains("replica received") && l.contains("streamed=false")),
        1,
        "{}",
        s2.output()
    );
    assert!(s1.journal().is_empty(), "{:?}", s1.journal());
    assert!(eventually(Duration::from_secs(10), || s2
        .temp_files()
        .is_empty()));
}
