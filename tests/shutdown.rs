//! Graceful shutdown on SIGTERM (SPEC §7): stop accepting, let in-flight
//! requests finish within `shutdown_grace_secs`, then drop the rest, leaving
//! no partial file, a journal whose every line parses, and a clean exit.
//! And the ungraceful one: a kill -9 under load loses no answered upload.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Node, eventually, form, jpeg, json, sha256, upload};

/// curl uploading `bytes` of a JPEG-looking sparse file at `rate`.
fn slow_upload(node: &Node, dir: &std::path::Path, bytes: u64, rate: &str) -> Child {
    let file = dir.join("slow.jpg");
    let f = std::fs::File::create(&file).expect("create");
    std::io::Write::write_all(&mut &f, common::JPEG_HEAD).expect("head");
    f.set_len(bytes).expect("size");
    Command::new("curl")
        .args(["-sS", "--limit-rate", rate, "-H"])
        .arg(format!("X-Security-Key: {}", node.key))
        .arg("-F")
        .arg(format!("file=@{}", file.display()))
        .arg(node.do_url("action=upload&format=json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl")
}

#[tokio::test]
async fn sigterm_mid_upload_leaves_no_partial_file_and_a_consistent_journal() {
    // s2 is never started, so every upload journals a copy owed to it.
    let mut cluster = Cluster::new(&["s1", "s2"], "fsync = true\nshutdown_grace_secs = 1\n");
    cluster.node(0).start();
    let s1 = &mut cluster.nodes[0];
    for i in 0..5 {
        let (status, v) = upload(s1, &[("a.jpg", &jpeg(10_000, i))]).await;
        assert_eq!(status, 200, "{v}");
    }
    let work = tempfile::tempdir().expect("tempdir");
    let mut curl = slow_upload(s1, work.path(), 200 << 20, "2M");
    assert!(
        eventually(Duration::from_secs(10), || !s1.temp_files().is_empty()),
        "the slow upload never reached the server"
    );
    let start = Instant::now();
    let status = s1.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    let _ = curl.kill();
    let _ = curl.wait();
    assert!(
        s1.temp_files().is_empty(),
        "partial files left: {:?}",
        s1.temp_files()
    );
    assert_eq!(
        s1.stored().len(),
        5,
        "only the five complete uploads are stored"
    );
    // Every line parses (the harness panics otherwise) and nothing is lost.
    assert_eq!(s1.journal().len(), 5);
    let out = s1.output();
    assert!(out.contains("SIGTERM"), "{out}");
}

#[test]
fn an_upload_in_flight_at_sigterm_finishes_within_the_grace_period() {
    let mut cluster = Cluster::new(&["s1"], "fsync = false\nshutdown_grace_secs = 20\n");
    cluster.node(0).start();
    let s1 = &mut cluster.nodes[0];
    let work = tempfile::tempdir().expect("tempdir");
    let curl = slow_upload(s1, work.path(), 3 << 20, "1M");
    assert!(eventually(Duration::from_secs(10), || !s1
        .temp_files()
        .is_empty()));
    let status = s1.terminate();
    assert!(status.success(), "exit status {status}");
    let out = curl.wait_with_output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"success\":1"),
        "the upload was cut off: {text}"
    );
    assert_eq!(s1.stored().len(), 1);
    assert!(s1.temp_files().is_empty());
}

/// kill -9 while 16 clients upload small pictures as fast as they can
/// (fsync on): after a restart every upload that was answered with a link
/// is stored byte for byte and served, whatever instant the kill hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_under_load_loses_no_answered_upload() {
    let mut cluster = Cluster::single("fsync = true\n");
    let url = cluster.nodes[0].do_url("action=upload&format=json");
    let key = cluster.nodes[0].key.clone();
    let answered = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let clients: Vec<_> = (0..16u64)
        .map(|c| {
            let (client, url, key, answered) =
                (client.clone(), url.clone(), key.clone(), answered.clone());
            tokio::spawn(async move {
                for i in 0..5_000u64 {
                    let seed = c * 10_000 + i;
                    let bytes = jpeg(20_000 + (seed as usize * 997) % 100_000, seed);
                    let sent = client
                        .post(&url)
                        .header("X-Security-Key", &key)
                        .multipart(form(&[("a.jpg", &bytes)]))
                        .send()
                        .await;
                    let Ok(response) = sent else { break };
                    let (status, v) = json(response).await;
                    if status != 200 {
                        break;
                    }
                    if let Some(path) = v["resp"]["files"][0]["path"].as_str() {
                        let mut answered = answered.lock().expect("answers");
                        answered.push((path.to_owned(), sha256(&bytes)));
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.node(0).kill();
    for c in clients {
        c.await.expect("client task");
    }
    let answered = std::mem::take(&mut *answered.lock().expect("answers"));
    assert!(
        !answered.is_empty(),
        "no upload was answered before the kill"
    );
    cluster.node(0).start();
    let node = &cluster.nodes[0];
    let stored: BTreeMap<String, String> = node
        .stored()
        .into_iter()
        .map(|(path, bytes)| (path, sha256(&bytes)))
        .collect();
    let lost: Vec<_> = answered
        .iter()
        .filter(|(path, sha)| stored.get(path) != Some(sha))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered uploads lost or changed by the kill: {lost:?}",
        lost.len(),
        answered.len()
    );
    for (path, sha) in answered.iter().rev().take(8) {
        let got = client
            .get(format!("{}/{path}", node.base()))
            .send()
            .await
            .expect("GET");
        assert_eq!(got.status(), 200, "{path}");
        assert_eq!(&sha256(&got.bytes().await.expect("body")), sha, "{path}");
    }
    eprintln!(
        "{} answered uploads before the kill, all kept",
        answered.len()
    );
}
