//! Soak (bounded): 32 concurrent clients upload a few hundred files to two
//! servers while their third peer is killed and restarted every two seconds.
//! At the end, after a replay, every file is on all three servers byte-exact,
//! the journals are empty, and no key appears in any log, output or answer.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, form, jpeg, json};
use futures_util::StreamExt;

const CLIENTS: usize = 32;
const UPLOADS_PER_CLIENT: usize = 12;
/// The uploads are spread over this long, so the peer flaps several times.
const SPREAD: Duration = Duration::from_secs(15);
const SETTINGS: &str = "fsync = false\n[replication]\nidle_timeout_secs = 5\n\
                        retry_interval_secs = 2\nmax_retry_interval_secs = 4\n";

#[test]
fn uploads_survive_a_flapping_peer_and_nothing_is_lost() {
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], SETTINGS);
    cluster.start_all();
    let keys: Vec<String> = cluster.nodes.iter().map(|n| n.key.clone()).collect();
    let targets: Vec<(String, String)> = cluster.nodes[..2]
        .iter()
        .map(|n| (n.keyed("action=upload&format=json"), n.key.clone()))
        .collect();
    let start = Instant::now();

    // The flapping peer, in its own thread: SIGKILL, pause, restart.
    let stop = Arc::new(AtomicBool::new(false));
    let mut s3 = cluster.nodes.pop().expect("s3");
    let flapper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut restarts = 0;
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(1500));
                s3.kill();
                std::thread::sleep(Duration::from_millis(700));
                s3.start();
                restarts += 1;
            }
            (s3, restarts)
        })
    };

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut journaled = 0;
    let uploaded: Vec<(String, Vec<u8>)> = rt.block_on(async {
        let client = reqwest::Client::new();
        let jobs = (0..CLIENTS * UPLOADS_PER_CLIENT).map(|i| {
            let client = client.clone();
            let (url, key) = targets[i % 2].clone();
            async move {
                let due = start + SPREAD * i as u32 / (CLIENTS * UPLOADS_PER_CLIENT) as u32;
                tokio::time::sleep_until(due.into()).await;
                let bytes = jpeg(20_000 + (i % 7) * 9_000, i as u64);
                // Half send the key in the URL as the original did, half in
                // the header: neither may end up in a log.
                let request = if i % 4 < 2 {
                    client.post(&url)
                } else {
                    client
                        .post(url.split("&SecurityKey=").next().unwrap_or(&url))
                        .header("X-Security-Key", key)
                };
                let response = request
                    .multipart(form(&[("soak.jpg", &bytes)]))
                    .send()
                    .await
                    .expect("upload");
                let (status, v) = json(response).await;
                assert_eq!(status, 200, "{v}");
                let path = v["resp"]["files"][0]["path"]
                    .as_str()
                    .expect("path")
                    .to_owned();
                let journaled = v["resp"]["files"][0]["replicas"]
                    .as_array()
                    .map_or(0, |r| r.iter().filter(|r| r["journaled"] == 1).count());
                (path, bytes, v.to_string(), journaled)
            }
        });
        let mut out = Vec::new();
        let mut answers = futures_util::stream::iter(jobs).buffer_unordered(CLIENTS);
        while let Some((path, bytes, answer, failed)) = answers.next().await {
            journaled += failed;
            for key in &keys {
                assert!(!answer.contains(key.as_str()), "a key in an answer");
            }
            out.push((path, bytes));
        }
        out
    });
    let upload_time = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (mut s3, restarts) = flapper.join().expect("flapper");
    if !s3.is_running() {
        s3.start();
    }
    cluster.nodes.push(s3);

    // Replay until nothing is owed (the background loop may be running too).
    let owed_before: usize = cluster.nodes.iter().map(|n| n.journal().len()).sum();
    let settle = Instant::now();
    rt.block_on(async {
        let client = reqwest::Client::new();
        while settle.elapsed() < Duration::from_secs(60) {
            let mut remaining = 0;
            for node in &cluster.nodes[..2] {
                let (_, v) = json(
                    client
                        .get(node.keyed("action=uploaderrors&format=json"))
                        .send()
                        .await
                        .expect("uploaderrors"),
                )
                .await;
                remaining += v["resp"]["remaining"].as_u64().unwrap_or(1);
                if v["resp"]["busy"] == 1 {
                    remaining += 1;
                }
            }
            if remaining == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });

    let expected: BTreeMap<String, Vec<u8>> = uploaded.into_iter().collect();
    assert_eq!(expected.len(), CLIENTS * UPLOADS_PER_CLIENT);
    for node in &cluster.nodes {
        let stored: BTreeMap<String, Vec<u8>> = node.stored().into_iter().collect();
        assert_eq!(
            stored.len(),
            expected.len(),
            "{} holds {} files",
            node.name,
            stored.len()
        );
        assert!(
            stored == expected,
            "{} differs from what was uploaded",
            node.name
        );
        assert!(
            node.journal().is_empty(),
            "{} still owes {:?}",
            node.name,
            node.journal()
        );
    }
    for node in &cluster.nodes {
        let output = node.output();
        for key in &keys {
            assert!(
                !output.contains(key.as_str()),
                "a key in the logs of {}",
                node.name
            );
        }
    }
    println!(
        "soak: {} uploads from {CLIENTS} clients in {upload_time:?}; s3 killed and restarted {restarts} times; \
         {journaled} copies journaled at upload time, {owed_before} copies still owed when the uploads ended; all delivered after {:?} of replay",
        expected.len(),
        settle.elapsed()
    );
}
