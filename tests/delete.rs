//! Delete between real server processes (SPEC §4a, the delete row of §8):
//! a delete reaches every server, a server that was down learns it from the
//! journal, a copy of a deleted name is refused with 410 and dropped, and a
//! deleted name never comes back. Deletes stay bounded: a name no server
//! held leaves nothing, a tombstone every server has is dropped after its
//! minimum age. A deleted file waits in the trash, can be restored on every
//! server (one that was down learns it later) and is purged after
//! `trash_days`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Cluster, Node, jpeg, json, sha256, upload_one};
use futures_util::StreamExt;
use serde_json::Value;

/// No fsync (speed), and no background replay to race with the replays a
/// test starts itself.
const QUIET: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n";

async fn delete(node: &Node, path: &str) -> (u16, Value) {
    json(
        reqwest::Client::new()
            .post(node.admin(&format!("action=delete&format=json&path={path}")))
            .send()
            .await
            .expect("delete"),
    )
    .await
}

async fn uploaderrors(node: &Node) -> Value {
    let (status, body) = json(
        reqwest::Client::new()
            .post(node.keyed("action=uploaderrors&format=json"))
            .send()
            .await
            .expect("uploaderrors"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["resp"].clone()
}

async fn get_status(node: &Node, path: &str) -> u16 {
    reqwest::get(format!("{}/{path}", node.base()))
        .await
        .expect("get")
        .status()
        .as_u16()
}

/// No server holds any file, and every one answers 404 or 410 for `path`.
async fn assert_gone_everywhere(nodes: &[Node], path: &str) {
    for node in nodes {
        assert!(node.stored().is_empty(), "{} holds a file", node.name);
        let status = get_status(node, path).await;
        assert!([404, 410].contains(&status), "{}: {status}", node.name);
    }
}

fn replica<'a>(resp: &'a Value, peer: &str) -> &'a Value {
    resp["replicas"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["peer"] == peer))
        .unwrap_or_else(|| panic!("no outcome for {peer}: {resp}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_reaches_every_server_and_one_that_was_down_learns_it_from_the_journal() {
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], QUIET);
    cluster.start_all();
    let bytes = jpeg(50_000, 1);
    let path = upload_one(&cluster.nodes[0], &bytes).await;
    for node in &cluster.nodes {
        assert_eq!(node.stored().len(), 1, "{}", node.name);
    }
    cluster.node(2).kill();

    let (status, answer) = delete(&cluster.nodes[0], &path).await;
    assert_eq!(status, 200, "{answer}");
    let resp = &answer["resp"];
    assert_eq!(resp["success"], 1, "{answer}");
    assert_eq!(resp["path"], path.as_str());
    assert_eq!(replica(resp, "s2")["ok"], 1, "{answer}");
    assert_eq!(replica(resp, "s3")["ok"], 0, "{answer}");
    assert_eq!(replica(resp, "s3")["journaled"], 1, "{answer}");
    let journal = cluster.nodes[0].journal();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0]["op"], "delete");
    assert_eq!(journal[0]["peer"], "s3");
    assert_eq!(journal[0]["path"], path.as_str());
    for node in &cluster.nodes[..2] {
        assert!(node.stored().is_empty(), "{}", node.name);
        assert!(
            [404, 410].contains(&get_status(node, &path).await),
            "{}",
            node.name
        );
    }

    // s3 comes back still holding the file, and learns from s1's journal.
    cluster.node(2).start();
    assert_eq!(cluster.nodes[2].stored().len(), 1);
    // s1 and s2 never fetch the deleted name back from s3 by read-through.
    for node in &cluster.nodes[..2] {
        assert_eq!(get_status(node, &path).await, 410, "{}", node.name);
        assert!(node.stored().is_empty(), "{} fetched it back", node.name);
    }
    let report = uploaderrors(&cluster.nodes[0]).await;
    assert_eq!(report["replayed"], 1, "{report}");
    assert_eq!(report["remaining"], 0, "{report}");
    assert!(cluster.nodes[0].journal().is_empty());
    assert_gone_everywhere(&cluster.nodes, &path).await;
    // Deleting it again changes nothing and is still a success.
    let (status, again) = delete(&cluster.nodes[1], &path).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(replica(&again["resp"], "s1")["ok"], 1, "{again}");
    assert_eq!(replica(&again["resp"], "s3")["ok"], 1, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_deleted_name_gets_410_and_is_dropped_and_never_restored() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.node(0).start();
    // s1 owes s2 a copy ...
    let bytes = jpeg(40_000, 2);
    let path = upload_one(&cluster.nodes[0], &bytes).await;
    assert_eq!(cluster.nodes[0].journal().len(), 1);
    // ... when the name is deleted on s2 while s1 is down.
    cluster.node(0).kill();
    cluster.node(1).start();
    let (status, answer) = delete(&cluster.nodes[1], &path).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(replica(&answer["resp"], "s1")["journaled"], 1, "{answer}");

    // A sync of the deleted name is refused with 410 and writes nothing.
    let refused = reqwest::Client::new()
        .put(cluster.nodes[1].keyed(&format!("action=sync&format=json&path={path}")))
        .header("X-Content-SHA256", sha256(&bytes))
        .body(bytes.clone())
        .send()
        .await
        .expect("sync");
    assert_eq!(refused.status().as_u16(), 410);
    assert!(cluster.nodes[1].stored().is_empty());

    // s1's replay of its copy gets 410: dropped, not kept, not resent.
    cluster.node(0).start();
    let report = uploaderrors(&cluster.nodes[0]).await;
    assert_eq!(report["dropped"], 1, "{report}");
    assert_eq!(report["replayed"], 0, "{report}");
    assert_eq!(report["remaining"], 0, "{report}");
    assert!(cluster.nodes[0].journal().is_empty());
    assert!(cluster.nodes[1].stored().is_empty());
    // s2's replay of its delete reaches s1.
    let report = uploaderrors(&cluster.nodes[1]).await;
    assert_eq!(report["replayed"], 1, "{report}");
    for node in &cluster.nodes {
        assert!(node.stored().is_empty(), "{}", node.name);
        assert!(
            [404, 410].contains(&get_status(node, &path).await),
            "{}",
            node.name
        );
        assert!(node.stored().is_empty(), "{} fetched it back", node.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_checks_its_path_and_key_and_a_missing_name_is_a_success() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.start_all();
    let bytes = jpeg(30_000, 3);
    let path = upload_one(&cluster.nodes[0], &bytes).await;
    let s1 = &cluster.nodes[0];
    let client = reqwest::Client::new();
    let name = path.rsplit('/').next().expect("name");
    for bad in [
        String::new(),
        "../../app.toml".into(),
        format!("2014/4/15/../{name}"),
        format!("/{path}"),
        "2014/4/15/not-a-uuid.jpg".into(),
        format!("{path}x"),
    ] {
        let (status, body) = delete(s1, &bad).await;
        assert_eq!(status, 400, "`{bad}`: {body}");
    }
    let (status, _) = json(
        client
            .post(s1.admin("action=delete&format=json"))
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_eq!(status, 400);
    let wrong_key = client
        .post(s1.do_url(&format!("action=delete&path={path}&SecurityKey=wrong")))
        .send()
        .await
        .expect("delete");
    assert_eq!(wrong_key.status().as_u16(), 403);
    let by_get = client
        .get(s1.admin(&format!("action=delete&path={path}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(by_get.status().as_u16(), 405);
    for node in &cluster.nodes {
        assert_eq!(node.stored().len(), 1, "{} lost the file", node.name);
    }
    let unknown = client
        .post(s1.keyed("action=nope"))
        .send()
        .await
        .expect("unknown");
    assert!(unknown.text().await.expect("body").contains("delete"));

    // A name that was never stored: a success, in the original XML too.
    let missing = "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg";
    let xml = client
        .post(s1.admin(&format!("action=delete&path={missing}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(xml.status().as_u16(), 200);
    let text = xml.text().await.expect("body");
    assert!(text.contains("<success>1</success>"), "{text}");
    assert!(text.contains(&format!("<path>{missing}</path>")), "{text}");
    for node in &cluster.nodes {
        assert_eq!(node.stored().len(), 1, "{}", node.name);
    }
}

async fn restore(node: &Node, path: &str) -> (u16, Value) {
    json(
        reqwest::Client::new()
            .post(node.admin(&format!("action=restore&format=json&path={path}")))
            .send()
            .await
            .expect("restore"),
    )
    .await
}

async fn get_bytes(node: &Node, path: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(format!("{}/{path}", node.base()))
        .await
        .expect("get");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

/// `node` serves `path` with exactly `bytes`.
async fn assert_served(node: &Node, path: &str, bytes: &[u8]) {
    let (status, got) = get_bytes(node, path).await;
    assert_eq!(status, 200, "{}", node.name);
    assert!(got == bytes, "{}: other bytes", node.name);
}

/// One gauge of `/metrics`.
async fn gauge(node: &Node, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", node.base()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let start = format!("multiserver_upload_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(start.as_str())?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The number of repair passes `node` finished against `peer`, and
/// whether the last one was complete.
async fn passes(node: &Node, peer: &str) -> (u64, bool, Value) {
    let (_, health) = json(
        reqwest::get(format!("{}/healthz", node.base()))
            .await
            .expect("healthz"),
    )
    .await;
    let status = &health["repair"]["peers"][peer];
    (
        status["totals"]["passes"].as_u64().unwrap_or(0),
        status["last_pass"]["complete"].as_bool().unwrap_or(false),
        status.clone(),
    )
}

/// Polls an async condition until it holds or `within` passes.
async fn until<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Files in the trash below a data folder.
fn trashed(data_dir: &Path) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
    }
    count(&data_dir.join(".trash"))
}

/// Quick repair rounds, so that tests see passes, purges and dropped
/// tombstones within seconds.
const QUICK_REPAIR: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n\
[repair]\ninterval_secs = 1\nsettle_secs = 0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_deletes_of_names_never_stored_leaves_nothing_and_repair_keeps_passing() {
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], QUICK_REPAIR);
    cluster.start_all();
    let kept = upload_one(&cluster.nodes[0], &jpeg(20_000, 7)).await;
    let today = chrono::Local::now().date_naive();
    let oldest = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("date");
    let span = u64::try_from((today - oldest).num_days()).expect("days");
    // Names never stored, on as many days as possible, and dates that
    // cannot hold a file (before 2000, after tomorrow).
    let mut requests = Vec::new();
    for i in 0..2000u64 {
        let date = oldest + chrono::Days::new(i.wrapping_mul(7919) % (span + 1));
        requests.push((date.format("%Y/%-m/%-d").to_string(), 200));
    }
    for i in 0..200u32 {
        let year = if i % 2 == 0 {
            1000 + i * 4
        } else {
            2100 + i * 39
        };
        requests.push((format!("{year}/{}/{}", i % 12 + 1, i % 28 + 1), 400));
    }
    requests.push((
        (today + chrono::Days::new(2))
            .format("%Y/%-m/%-d")
            .to_string(),
        400,
    ));
    let started = Instant::now();
    let client = reqwest::Client::new();
    let nodes = &cluster.nodes;
    let answers: Vec<(u16, u16)> = futures_util::stream::iter(requests.into_iter().enumerate())
        .map(|(i, (day, expected))| {
            let client = client.clone();
            async move {
                let node = &nodes[i % nodes.len()];
                let path = format!("{day}/{}.jpg", uuid::Uuid::new_v4());
                let response = client
                    .post(node.admin(&format!("action=delete&format=json&path={path}")))
                    .send()
                    .await
                    .expect("delete");
                (response.status().as_u16(), expected)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "the flood hung"
    );
    for (status, expected) in &answers {
        assert_eq!(status, expected);
    }
    for node in &cluster.nodes {
        assert_eq!(gauge(node, "index_tombstones").await, 0, "{}", node.name);
        assert_eq!(gauge(node, "index_files").await, 1, "{}", node.name);
        // Only the day of the one stored file.
        assert_eq!(gauge(node, "index_days").await, 1, "{}", node.name);
        assert!(node.journal().is_empty(), "{}", node.name);
    }
    // Repair passes still complete, everywhere, against every peer.
    for node in &cluster.nodes {
        for peer in ["s1", "s2", "s3"].into_iter().filter(|p| *p != node.name) {
            let before = passes(node, peer).await.0;
            let passed = until(Duration::from_secs(60), || async {
                let (count, complete, _) = passes(node, peer).await;
                count > before && complete
            })
            .await;
            assert!(
                passed,
                "{} → {peer}: {}",
                node.name,
                passes(node, peer).await.2
            );
        }
        assert_eq!(get_status(node, &kept).await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_every_server_has_is_dropped_after_its_minimum_age_and_the_file_never_comes_back()
 {
    let settings = format!("{QUICK_REPAIR}tombstone_min_age_secs = 3\n");
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], &settings);
    cluster.start_all();
    let bytes = jpeg(30_000, 8);
    let path = upload_one(&cluster.nodes[0], &bytes).await;
    for node in &cluster.nodes {
        assert_eq!(node.stored().len(), 1, "{}", node.name);
    }
    cluster.node(2).kill();
    let (status, answer) = delete(&cluster.nodes[0], &path).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(replica(&answer["resp"], "s3")["journaled"], 1, "{answer}");

    // s3, down, may still hold the name: s1 and s2 keep their tombstones
    // well past the minimum age.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for node in &cluster.nodes[..2] {
        assert_eq!(gauge(node, "index_tombstones").await, 1, "{}", node.name);
    }

    // s3 comes back with the file and learns the delete (repair brings
    // the tombstone, or the journal does); then every tombstone goes.
    cluster.node(2).start();
    assert_eq!(cluster.nodes[2].stored().len(), 1);
    let nodes = &cluster.nodes;
    let dropped = until(Duration::from_secs(90), || async {
        let mut total = 0;
        for node in nodes {
            total += gauge(node, "index_tombstones").await;
        }
        total == 0 && nodes.iter().all(|n| n.stored().is_empty())
    })
    .await;
    assert!(dropped, "tombstones kept or the file still held");
    // Whatever s1's journal still owes s3 (the delete) is harmless now.
    uploaderrors(&cluster.nodes[0]).await;
    // Several more rounds: nothing brings the file back.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for node in &cluster.nodes {
        assert!(
            node.stored().is_empty(),
            "{} holds the file again",
            node.name
        );
        assert!(
            [404, 410].contains(&get_status(node, &path).await),
            "{}",
            node.name
        );
        assert_eq!(gauge(node, "index_files").await, 0, "{}", node.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_waits_in_the_trash_and_a_restore_brings_it_back_on_every_server() {
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], QUICK_REPAIR);
    cluster.start_all();
    let bytes = jpeg(40_000, 9);
    let path = upload_one(&cluster.nodes[0], &bytes).await;
    let (status, answer) = delete(&cluster.nodes[1], &path).await;
    assert_eq!(status, 200, "{answer}");
    for node in &cluster.nodes {
        assert!(node.stored().is_empty(), "{}", node.name);
        assert!(
            [404, 410].contains(&get_status(node, &path).await),
            "{}",
            node.name
        );
        assert_eq!(trashed(&node.data_dir()), 1, "{}", node.name);
        // Nor is it reachable as a variant.
        let thumbnail = get_status(node, &format!("{path}-t.jpg")).await;
        assert!(
            [404, 410].contains(&thumbnail),
            "{}: {thumbnail}",
            node.name
        );
    }

    // s3 is down while s1 restores.
    cluster.node(2).kill();
    let (status, answer) = restore(&cluster.nodes[0], &path).await;
    assert_eq!(status, 200, "{answer}");
    let resp = &answer["resp"];
    assert_eq!(resp["success"], 1, "{answer}");
    assert_eq!(resp["path"], path.as_str());
    assert_eq!(replica(resp, "s2")["ok"], 1, "{answer}");
    assert_eq!(replica(resp, "s3")["journaled"], 1, "{answer}");
    for node in &cluster.nodes[..2] {
        assert_served(node, &path, &bytes).await;
        assert_eq!(trashed(&node.data_dir()), 0, "{}", node.name);
    }

    // s3 comes back with its stale tombstone. Repair rounds run before it
    // learns the restore: they must not delete the name again on s1, s2.
    cluster.node(2).start();
    for node in &cluster.nodes[..2] {
        let before = passes(node, "s3").await.0;
        let passed = until(Duration::from_secs(60), || async {
            let (count, complete, _) = passes(node, "s3").await;
            count > before + 1 && complete
        })
        .await;
        assert!(passed, "{}: {}", node.name, passes(node, "s3").await.2);
        assert_served(node, &path, &bytes).await;
    }
    let report = uploaderrors(&cluster.nodes[0]).await;
    assert_eq!(report["replayed"], 1, "{report}");
    for node in &cluster.nodes {
        assert_served(node, &path, &bytes).await;
        assert_eq!(node.stored().len(), 1, "{}", node.name);
        assert_eq!(trashed(&node.data_dir()), 0, "{}", node.name);
        assert_eq!(gauge(node, "index_tombstones").await, 0, "{}", node.name);
    }

    // Not in the trash (any more, or ever): 404, nothing changed.
    let (status, answer) = restore(&cluster.nodes[0], &path).await;
    assert_eq!(status, 404, "{answer}");
    let never = "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg";
    let (status, answer) = restore(&cluster.nodes[0], never).await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = restore(&cluster.nodes[0], "../app.toml").await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trash_is_purged_after_trash_days() {
    // 0.00005 days: 4.32 seconds.
    let settings = format!("{QUICK_REPAIR}trash_days = 0.00005\n");
    let mut cluster = Cluster::new(&["s1", "s2"], &settings);
    cluster.start_all();
    let path = upload_one(&cluster.nodes[0], &jpeg(30_000, 10)).await;
    let (status, answer) = delete(&cluster.nodes[0], &path).await;
    assert_eq!(status, 200, "{answer}");
    for node in &cluster.nodes {
        assert_eq!(trashed(&node.data_dir()), 1, "{}", node.name);
    }
    let nodes = &cluster.nodes;
    let purged = until(Duration::from_secs(60), || async {
        nodes.iter().all(|n| trashed(&n.data_dir()) == 0)
    })
    .await;
    assert!(purged, "the trash was not purged");
    let (status, answer) = restore(&cluster.nodes[1], &path).await;
    assert_eq!(status, 404, "{answer}");
    for node in &cluster.nodes {
        assert!(node.stored().is_empty(), "{}", node.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_volumes_a_deleted_file_waits_in_the_trash_of_its_own_volume() {
    let cluster = Cluster::single("fsync = false\ndata_dirs = [\"v1\", \"v2\"]\n");
    let node = &cluster.nodes[0];
    let bytes = jpeg(30_000, 11);
    let path = upload_one(node, &bytes).await;
    let volume = |n: usize| node.dir.join(format!("v{n}"));
    // Whichever volume took it, the file now lives on v2.
    if volume(1).join(&path).is_file() {
        std::fs::create_dir_all(volume(2).join(&path).parent().expect("folder")).expect("mkdir");
        std::fs::rename(volume(1).join(&path), volume(2).join(&path)).expect("move");
    }
    assert_served(node, &path, &bytes).await;
    let (status, answer) = delete(node, &path).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(trashed(&volume(1)), 0);
    assert_eq!(trashed(&volume(2)), 1);
    assert!(!volume(2).join(&path).exists());
    assert!([404, 410].contains(&get_status(node, &path).await));
    let (status, answer) = restore(node, &path).await;
    assert_eq!(status, 200, "{answer}");
    assert!(volume(2).join(&path).is_file());
    assert_eq!(trashed(&volume(2)), 0);
    assert_served(node, &path, &bytes).await;
}
