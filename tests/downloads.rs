//! Download counts between real server processes and real clients: served
//! GETs of a stored file counted (variants for their original; HEAD, 304
//! and peers' fetches not), read back by `action=stats` for one path, a
//! day's most read files, and a cluster's counts per server and summed;
//! counts survive a graceful restart, and a kill loses at most the batch
//! not yet flushed; only admin and upload keys (and peers) may read them.

mod common;

use std::io::Cursor;
use std::process::Command;
use std::time::Duration;

use common::{Cluster, Node, json, upload, upload_one};
use image::{DynamicImage, ImageFormat, RgbImage};
use serde_json::Value;

/// Counts flushed every second, so a test waits seconds, not minutes.
const SETTINGS: &str = "fsync = false\n\
    [replication]\nretry_interval_secs = 3600\n\
    [downloads]\nflush_secs = 1\n";

/// A small picture a thumbnail can be made of.
fn picture(seed: u8) -> Vec<u8> {
    let image = RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x as u8).wrapping_add(seed), y as u8, seed])
    });
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
        .expect("encode");
    out
}

/// `curl` GETs `url` (with `extra` options) and returns the status.
fn curl(url: &str, extra: &[&str]) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "30",
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a status")
}

fn get_times(node: &Node, path: &str, times: usize) {
    for _ in 0..times {
        assert_eq!(curl(&format!("{}/{path}", node.base()), &[]), 200, "{path}");
    }
}

/// `action=stats&{query}` with the upload key, in JSON.
async fn stats(node: &Node, query: &str) -> (u16, Value) {
    stats_with(node, query, Some(&node.key)).await
}

async fn stats_with(node: &Node, query: &str, key: Option<&str>) -> (u16, Value) {
    let mut request =
        reqwest::Client::new().get(node.do_url(&format!("action=stats&format=json&{query}")));
    if let Some(key) = key {
        request = request.header("X-Security-Key", key);
    }
    json(request.send().await.expect("stats")).await
}

async fn downloads(node: &Node, path: &str) -> u64 {
    let (status, v) = stats(node, &format!("path={path}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resp"]["success"], 1, "{v}");
    v["resp"]["downloads"].as_u64().expect("downloads")
}

#[tokio::test]
async fn downloads_served_gets_are_counted_and_variants_count_for_their_original() {
    let mut cluster = Cluster::single(SETTINGS);
    let s1 = cluster.node(0);
    let path = upload_one(s1, &picture(1)).await;
    let url = format!("{}/{path}", s1.base());
    get_times(s1, &path, 3);
    // Not counted: a HEAD sends no bytes, nor does a 304 (the client
    // already has them).
    assert_eq!(curl(&url, &["-I"]), 200);
    let etag = reqwest::get(&url).await.expect("get").headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    assert_eq!(curl(&url, &["-H", &format!("If-None-Match: {etag}")]), 304);
    // A range is a read of the file: counted.
    assert_eq!(curl(&url, &["-r", "0-9"]), 206);
    // The thumbnail counts for its original, made or already there.
    assert_eq!(curl(&format!("{url}-t.jpg"), &[]), 200);
    assert_eq!(curl(&format!("{url}-t.jpg"), &[]), 200);
    // 3 + the GET for the ETag + the range + 2 thumbnails.
    assert_eq!(downloads(s1, &path).await, 7);
    let (status, v) = stats(s1, &format!("path={path}-t.jpg")).await;
    assert_eq!(
        (status, &v["resp"]["downloads"]),
        (200, &Value::from(7)),
        "{v}"
    );
    // XML by default, like every do.ashx answer.
    let xml = reqwest::Client::new()
        .get(s1.do_url(&format!("action=stats&path={path}")))
        .header("X-Security-Key", &s1.key)
        .send()
        .await
        .expect("xml")
        .text()
        .await
        .expect("body");
    assert!(xml.contains("<downloads>7</downloads>"), "{xml}");
    // A name never served: 0; one that is not a stored name: 400.
    let other = upload_one(s1, &picture(2)).await;
    assert_eq!(downloads(s1, &other).await, 0);
    let (status, v) = stats(s1, "path=../etc/passwd").await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn downloads_survive_a_graceful_restart() {
    // No flush on the clock before the stop, nor a read: only the stop's
    // flush keeps the counts.
    let settings = SETTINGS.replace("flush_secs = 1", "flush_secs = 3600");
    let mut cluster = Cluster::single(&settings);
    let path = upload_one(cluster.node(0), &picture(3)).await;
    get_times(cluster.node(0), &path, 4);
    assert!(cluster.node(0).terminate().success());
    cluster.node(0).start();
    assert_eq!(downloads(cluster.node(0), &path).await, 4);
}

#[tokio::test]
async fn downloads_a_kill_loses_at_most_the_last_batch() {
    let settings = SETTINGS.replace("flush_secs = 1", "flush_secs = 1\nmax_pending = 100000");
    let mut cluster = Cluster::single(&settings);
    let path = upload_one(cluster.node(0), &picture(4)).await;
    get_times(cluster.node(0), &path, 10);
    // Five flush intervals: the first ten are in the index by now.
    std::thread::sleep(Duration::from_secs(5));
    get_times(cluster.node(0), &path, 5);
    cluster.node(0).kill();
    cluster.node(0).start();
    let counted = downloads(cluster.node(0), &path).await;
    assert!((10..=15).contains(&counted), "{counted}");
}

#[tokio::test]
async fn downloads_top_of_a_day_most_read_first() {
    let mut cluster = Cluster::single(SETTINGS);
    let s1 = cluster.node(0);
    let (status, v) = upload(
        s1,
        &[
            ("a.jpg", &picture(5)),
            ("b.jpg", &picture(6)),
            ("c.jpg", &picture(7)),
        ],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let paths: Vec<String> = v["resp"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_owned())
        .collect();
    get_times(s1, &paths[0], 1);
    get_times(s1, &paths[1], 3);
    get_times(s1, &paths[2], 2);
    let day = paths[0]
        .rsplit_once('/')
        .expect("a day folder")
        .0
        .to_owned();
    let (status, v) = stats(s1, &format!("day={day}&top=2")).await;
    assert_eq!(status, 200, "{v}");
    let files = v["resp"]["files"].as_array().expect("files");
    let got: Vec<(&str, u64)> = files
        .iter()
        .map(|f| {
            (
                f["path"].as_str().expect("path"),
                f["downloads"].as_u64().expect("downloads"),
            )
        })
        .collect();
    assert_eq!(got, [(paths[1].as_str(), 3), (paths[2].as_str(), 2)], "{v}");
    let (status, v) = stats(s1, "day=2014/4/15&top=5").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resp"]["files"].as_array().map(Vec::len), Some(0), "{v}");
    let (status, v) = stats(s1, "day=yesterday&top=5").await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn downloads_cluster_counts_per_server_and_summed_a_silent_peer_unreachable() {
    let pid = std::process::id();
    let settings =
        format!("{SETTINGS}[auth]\nadmin_keys = [\"admin-{pid}\"]\npeer_keys = [\"peer-{pid}\"]\n");
    let mut cluster = Cluster::new(&["s1", "s2"], &settings);
    cluster.start_all();
    let path = upload_one(cluster.node(0), &picture(8)).await;
    assert!(
        common::eventually(Duration::from_secs(20), || cluster.nodes[1]
            .stored()
            .iter()
            .any(|(p, _)| *p == path)),
        "replicated"
    );
    get_times(cluster.node(0), &path, 2);
    get_times(cluster.node(1), &path, 3);
    // A peer fetching for repair is no download.
    let peer_fetch = reqwest::Client::new()
        .get(format!("{}/{path}", cluster.nodes[1].base()))
        .header("X-Multiserver-Repair", "1")
        .header("X-Security-Key", format!("peer-{pid}"))
        .send()
        .await
        .expect("peer get");
    assert_eq!(peer_fetch.status(), 200);
    let s1 = cluster.node(0);
    let (status, v) = stats(s1, &format!("path={path}&cluster=1")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resp"]["downloads"], 2, "{v}");
    assert_eq!(v["resp"]["total"], 5, "{v}");
    let servers = v["resp"]["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 2, "{v}");
    assert_eq!(
        (&servers[0]["name"], &servers[0]["downloads"]),
        (&"s1".into(), &2.into()),
        "{v}"
    );
    assert_eq!(
        (&servers[1]["name"], &servers[1]["downloads"]),
        (&"s2".into(), &3.into()),
        "{v}"
    );
    cluster.node(1).kill();
    let (status, v) = stats(cluster.node(0), &format!("path={path}&cluster=1")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resp"]["total"], 2, "{v}");
    let servers = v["resp"]["servers"].as_array().expect("servers");
    assert_eq!(servers[1]["name"], "s2", "{v}");
    assert_eq!(servers[1]["error"], "unreachable", "{v}");
    assert!(servers[1].get("downloads").is_none(), "{v}");
}

#[tokio::test]
async fn downloads_stats_take_an_admin_or_upload_key_not_a_token() {
    let pid = std::process::id();
    let settings = format!(
        "{SETTINGS}[auth]\nadmin_keys = [\"admin-{pid}\"]\n\
         token_secrets = {{ k1 = \"token-secret-{pid}\" }}\n"
    );
    let mut cluster = Cluster::single(&settings);
    let s1 = cluster.node(0);
    let path = upload_one(s1, &picture(9)).await;
    get_times(s1, &path, 1);
    let query = format!("path={path}");
    let (status, v) = stats_with(s1, &query, None).await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = stats_with(s1, &query, Some("wrong")).await;
    assert_eq!(status, 403, "{v}");
    let (status, minted) = json(
        reqwest::Client::new()
            .post(s1.do_url("action=token&format=json"))
            .header("X-Security-Key", &s1.key)
            .send()
            .await
            .expect("mint"),
    )
    .await;
    assert_eq!(status, 200, "{minted}");
    let token = minted["resp"]["token"].as_str().expect("token");
    let (status, v) = json(
        reqwest::Client::new()
            .get(s1.do_url(&format!("action=stats&format=json&{query}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("stats"),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    for key in [s1.key.clone(), s1.admin_key.clone()] {
        let (status, v) = stats_with(s1, &query, Some(&key)).await;
        assert_eq!(
            (status, &v["resp"]["downloads"]),
            (200, &Value::from(1)),
            "{v}"
        );
    }
    let (status, v) = json(
        reqwest::Client::new()
            .post(s1.do_url(&format!("action=stats&format=json&{query}")))
            .header("X-Security-Key", &s1.key)
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 405, "{v}");
}
