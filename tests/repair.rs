//! Repair between real server processes (SPEC §4a): files a server lacks
//! reach it without the journal — held by one server only, a data folder
//! emptied, a journal lost, a server newly listed — a kill in the middle of
//! a pass loses nothing, and servers in sync exchange one digest each.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Cluster, Node, jpeg, json, sha256};
use serde_json::Value;

/// No fsync (speed), no background replay (repair must do the work on its
/// own), a pass every second, nothing left to settle.
const REPAIR: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n\
                      [repair]\ninterval_secs = 1\nsettle_secs = 0\n";
/// How long a test waits for the cluster to converge.
const CONVERGE: Duration = Duration::from_secs(60);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Polls `check` every 200 ms until it holds or `within` passes.
async fn until(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn healthz(client: &reqwest::Client, node: &Node) -> Value {
    let (status, v) = json(
        client
            .get(format!("{}/healthz", node.base()))
            .send()
            .await
            .expect("healthz"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn metrics(client: &reqwest::Client, node: &Node) -> String {
    let response = client
        .get(format!("{}/metrics", node.base()))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    response.text().await.expect("metrics text")
}

/// The value of one sample line of `/metrics` (`name{labels} value`).
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

/// Uploads `files` to `node` in one request; the stored paths.
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

/// Writes a stored file straight into a (stopped) server's data folder, as
/// a restore from a backup would.
fn plant(node: &Node, day: &str, bytes: &[u8]) -> String {
    let path = format!("{day}/{}.jpg", uuid_like(bytes));
    let file = node.data_dir().join(&path);
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, bytes).expect("plant");
    path
}

/// A UUID made from the content, so planted names are stable and unique.
fn uuid_like(bytes: &[u8]) -> String {
    let h = sha256(bytes);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn contents(node: &Node) -> BTreeMap<String, Vec<u8>> {
    node.stored().into_iter().collect()
}

/// Waits until every node holds exactly `expected`, byte for byte.
async fn converge(nodes: &[&Node], expected: &BTreeMap<String, Vec<u8>>) {
    let ok = until(CONVERGE, async || {
        nodes.iter().all(|n| &contents(n) == expected)
    })
    .await;
    if !ok {
        for n in nodes {
            let held = contents(n);
            let missing: Vec<_> = expected.keys().filter(|k| !held.contains_key(*k)).collect();
            eprintln!(
                "{}: {} of {} files; missing {missing:?}",
                n.name,
                held.len(),
                expected.len()
            );
            eprintln!(
                "{}",
                n.output()
                    .lines()
                    .filter(|l| l.contains("repair"))
                    .take(40)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        panic!("the cluster did not converge within {CONVERGE:?}");
    }
}

// ---------------------------------------------------------------------------
// 1. A file only one server holds, in an old day folder, reaches the others.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_held_by_one_server_only_reaches_every_other() {
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], REPAIR);
    let mut expected = BTreeMap::new();
    for (i, day) in ["2019/3/7", "2019/3/7", "2021/11/30"].iter().enumerate() {
        let bytes = jpeg(50_000 + i * 1000, 10 + i as u64);
        expected.insert(plant(&cluster.nodes[0], day, &bytes), bytes);
    }
    cluster.start_all();
    let [s1, s2, s3] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    converge(&[s1, s2, s3], &expected).await;
    for node in [s2, s3] {
        assert!(node.temp_files().is_empty(), "{}", node.name);
    }
}

// ---------------------------------------------------------------------------
// 2. A server whose data folder is gone holds every file again.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_data_folder_is_refilled_without_an_operator() {
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], REPAIR);
    cluster.start_all();
    let client = client();
    let files: Vec<Vec<u8>> = (0..6)
        .map(|i| jpeg(30_000 + i * 777, 100 + i as u64))
        .collect();
    upload(&client, &cluster.nodes[0], &files[..3]).await;
    upload(&client, &cluster.nodes[1], &files[3..]).await;
    let expected = contents(&cluster.nodes[0]);
    assert_eq!(expected.len(), files.len());
    cluster.node(2).kill();
    std::fs::remove_dir_all(cluster.nodes[2].data_dir()).expect("remove data");
    cluster.node(2).start();
    let [s1, s2, s3] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    converge(&[s1, s2, s3], &expected).await;
}

// ---------------------------------------------------------------------------
// 3. Copies whose journal was lost still arrive.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_whose_journal_was_deleted_still_arrive() {
    let mut cluster = Cluster::new(&["s1", "s2"], REPAIR);
    cluster.node(0).start();
    let client = client();
    let files: Vec<Vec<u8>> = (0..5)
        .map(|i| jpeg(40_000 + i * 333, 200 + i as u64))
        .collect();
    upload(&client, &cluster.nodes[0], &files).await;
    assert_eq!(cluster.nodes[0].journal().len(), files.len());
    cluster.node(0).terminate();
    std::fs::remove_file(cluster.nodes[0].log_dir().join("upload-errors.jsonl"))
        .expect("remove journal");
    cluster.start_all();
    let expected = contents(&cluster.nodes[0]);
    assert_eq!(expected.len(), files.len());
    converge(&[&cluster.nodes[0], &cluster.nodes[1]], &expected).await;
    assert!(cluster.nodes[0].journal().is_empty());
}

// ---------------------------------------------------------------------------
// 4. A delete reaches a server that was down through repair alone (its
// journal entry lost), and no later pass brings the file back anywhere.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_reaches_a_server_that_was_down_and_nothing_resurrects_it() {
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], REPAIR);
    cluster.start_all();
    let client = client();
    let files: Vec<Vec<u8>> = (0..3)
        .map(|i| jpeg(20_000 + i * 999, 300 + i as u64))
        .collect();
    let paths = upload(&client, &cluster.nodes[0], &files).await;
    let all = contents(&cluster.nodes[0]);
    converge(
        &[&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]],
        &all,
    )
    .await;

    // s3 is down while s1 deletes one file; the delete owed to s3 is then
    // lost with s1's journal, so only repair can tell s3.
    cluster.node(2).kill();
    let gone = paths[1].clone();
    let (status, answer) = json(
        client
            .post(cluster.nodes[0].admin(&format!("action=delete&format=json&path={gone}")))
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    cluster.node(0).terminate();
    std::fs::remove_file(cluster.nodes[0].log_dir().join("upload-errors.jsonl"))
        .expect("remove journal");
    cluster.node(0).start();
    cluster.node(2).start();

    let mut expected = all.clone();
    expected.remove(&gone);
    let [s1, s2, s3] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    converge(&[s1, s2, s3], &expected).await;
    // Several more passes: s3 held the file longer than anyone, yet nobody
    // fetches it back, and every server answers 404 or 410 for it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for node in [s1, s2, s3] {
        assert_eq!(contents(node), expected, "{}", node.name);
        let status = client
            .get(format!("{}/{gone}", node.base()))
            .send()
            .await
            .expect("get")
            .status()
            .as_u16();
        assert!(status == 404 || status == 410, "{}: {status}", node.name);
    }
}

// ---------------------------------------------------------------------------
// 5. A server newly listed in servers.xml.config receives every file.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_added_to_the_list_receives_every_file() {
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], REPAIR);
    let full =
        std::fs::read_to_string(cluster.nodes[0].dir.join("servers.xml.config")).expect("servers");
    // At first s1 and s2 do not know s3.
    let without_s3: String = full
        .lines()
        .filter(|l| !l.contains("Name=\"s3\""))
        .map(|l| format!("{l}\n"))
        .collect();
    for node in &cluster.nodes[..2] {
        std::fs::write(node.dir.join("servers.xml.config"), &without_s3).expect("write");
    }
    cluster.node(0).start();
    cluster.node(1).start();
    let client = client();
    let files: Vec<Vec<u8>> = (0..4)
        .map(|i| jpeg(20_000 + i * 99, 300 + i as u64))
        .collect();
    upload(&client, &cluster.nodes[0], &files[..2]).await;
    upload(&client, &cluster.nodes[1], &files[2..]).await;
    for node in &cluster.nodes[..2] {
        assert!(node.journal().is_empty(), "{}", node.name);
    }
    let expected = contents(&cluster.nodes[0]);
    assert_eq!(expected.len(), files.len());
    // Every list now names s3; s1 and s2 restart with it.
    for node in &cluster.nodes {
        std::fs::write(node.dir.join("servers.xml.config"), &full).expect("write");
    }
    cluster.node(0).terminate();
    cluster.node(1).terminate();
    cluster.start_all();
    let [s1, s2, s3] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    converge(&[s1, s2, s3], &expected).await;
}

// ---------------------------------------------------------------------------
// 6. A kill in the middle of a pass loses nothing and leaves nothing partial.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_the_middle_of_a_pass_loses_nothing() {
    // About 4 MB at 400 kB/s: a pass of some ten seconds.
    let mut cluster = Cluster::new(
        &["s1", "s2"],
        "fsync = true\n[replication]\nretry_interval_secs = 3600\n\
         [repair]\ninterval_secs = 1\nsettle_secs = 0\nmax_bytes_per_sec = 400000\nconcurrency = 2\n",
    );
    let mut expected = BTreeMap::new();
    for i in 0..40u64 {
        let day = if i % 2 == 0 { "2022/5/1" } else { "2022/5/2" };
        let bytes = jpeg(100_000 + i as usize * 10, 400 + i);
        expected.insert(plant(&cluster.nodes[0], day, &bytes), bytes);
    }
    cluster.start_all();
    let midway = until(Duration::from_secs(30), async || {
        let held = contents(&cluster.nodes[1]).len();
        held >= 5 && held < expected.len()
    })
    .await;
    assert!(midway, "s2 never was in the middle of its pass");
    cluster.node(1).kill();
    // Whatever is under a public name is complete.
    let held = contents(&cluster.nodes[1]);
    assert!(held.len() < expected.len());
    for (path, bytes) in &held {
        assert_eq!(Some(bytes), expected.get(path), "{path} is not complete");
    }
    cluster.node(1).start();
    converge(&[&cluster.nodes[0], &cluster.nodes[1]], &expected).await;
}

// ---------------------------------------------------------------------------
// 8. Servers in sync transfer nothing: one digest request per peer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_in_sync_transfers_nothing_in_a_pass() {
    // Files settle for a minute: a pass that met a copy still on its way
    // could not fetch it either.
    let mut cluster = Cluster::new(
        &["s1", "s2", "s3"],
        "fsync = false\n[replication]\nretry_interval_secs = 3600\n\
         [repair]\ninterval_secs = 1\nsettle_secs = 60\n",
    );
    cluster.start_all();
    let client = client();
    let files: Vec<Vec<u8>> = (0..3).map(|i| jpeg(10_000 + i, 500 + i as u64)).collect();
    upload(&client, &cluster.nodes[0], &files).await;
    let quiet = until(CONVERGE, async || {
        for node in &cluster.nodes {
            let health = healthz(&client, node).await;
            let peers = &health["repair"]["peers"];
            for peer in cluster.nodes.iter().filter(|p| p.name != node.name) {
                let last = &peers[&peer.name]["last_pass"];
                let agreed = last["complete"] == true
                    && last["roots_agreed"] == true
                    && last["digest_requests"] == 1
                    && last["days_compared"] == 0
                    && last["files_fetched"] == 0;
                if !agreed {
                    return false;
                }
            }
        }
        true
    })
    .await;
    assert!(quiet, "{:#}", healthz(&client, &cluster.nodes[0]).await);
    for node in &cluster.nodes {
        let text = metrics(&client, node).await;
        for peer in cluster.nodes.iter().filter(|p| p.name != node.name) {
            let label = format!("{{peer=\"{}\"}}", peer.name);
            let get = |name: &str| sample(&text, &format!("multiserver_upload_{name}{label} "));
            assert_eq!(get("repair_fetched_files_total"), Some(0.0), "{text}");
            assert_eq!(get("repair_last_digest_requests"), Some(1.0), "{text}");
            assert_eq!(get("repair_last_roots_agreed"), Some(1.0), "{text}");
            assert!(
                get("repair_passes_total").is_some_and(|n| n >= 1.0),
                "{text}"
            );
        }
        assert_eq!(
            sample(&text, "multiserver_upload_index_files "),
            Some(files.len() as f64),
            "{text}"
        );
        assert!(
            sample(
                &text,
                "multiserver_upload_http_requests_total{class=\"2xx\"} "
            )
            .is_some_and(|n| n >= 1.0),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------
// The actions peers ask: the key is required, the answers are JSON.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_and_list_answer_with_the_key_only_and_in_json() {
    let mut cluster = Cluster::new(&["s1"], REPAIR);
    let mut planted = BTreeMap::new();
    for (i, day) in ["2020/2/3", "2020/2/3", "2020/12/1"].iter().enumerate() {
        let bytes = jpeg(5_000 + i, 600 + i as u64);
        planted.insert(plant(&cluster.nodes[0], day, &bytes), bytes);
    }
    cluster.start_all();
    let node = &cluster.nodes[0];
    let client = client();
    let ask = async |query: &str, key: Option<&str>| {
        let mut request = client.get(node.do_url(query));
        if let Some(key) = key {
            request = request.header("X-Security-Key", key);
        }
        json(request.send().await.expect("ask")).await
    };
    let key = Some(node.key.as_str());
    assert_eq!(ask("action=digest&format=json", None).await.0, 403);
    assert_eq!(
        ask("action=list&day=2020/2/3&format=json", Some("wrong"))
            .await
            .0,
        403
    );

    let xor = |hexes: Vec<&str>| {
        let mut out = [0u8; 32];
        for h in hexes {
            for (o, b) in out.iter_mut().zip(hex::decode(h).expect("hex")) {
                *o ^= b;
            }
        }
        hex::encode(out)
    };
    let (status, root) = ask("action=digest", key).await;
    assert_eq!(status, 200, "{root}");
    let root = &root["resp"];
    assert_eq!(
        root["children"].as_array().expect("years").len(),
        1,
        "{root}"
    );
    assert_eq!(root["children"][0]["name"], 2020);
    assert_eq!(root["digest"], root["children"][0]["digest"]);
    let (_, year) = ask("action=digest&prefix=2020", key).await;
    let months = year["resp"]["children"].as_array().expect("months");
    assert_eq!(
        months.iter().map(|m| m["name"].clone()).collect::<Vec<_>>(),
        [2, 12]
    );
    assert_eq!(
        year["resp"]["digest"].as_str(),
        Some(
            xor(months
                .iter()
                .map(|m| m["digest"].as_str().expect("digest"))
                .collect())
            .as_str()
        )
    );
    let (_, month) = ask("action=digest&prefix=2020/2", key).await;
    assert_eq!(month["resp"]["children"][0]["name"], 3, "{month}");
    assert_eq!(month["resp"]["digest"], months[0]["digest"]);

    let (status, list) = ask("action=list&day=2020/2/3", key).await;
    assert_eq!(status, 200, "{list}");
    let files = list["resp"]["files"].as_array().expect("files");
    let listed: BTreeMap<String, (u64, String)> = files
        .iter()
        .map(|f| {
            (
                f["path"].as_str().expect("path").to_owned(),
                (
                    f["size"].as_u64().expect("size"),
                    f["sha256"].as_str().expect("sha").to_owned(),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<String, (u64, String)> = planted
        .iter()
        .filter(|(p, _)| p.starts_with("2020/2/3/"))
        .map(|(p, b)| (p.clone(), (b.len() as u64, sha256(b))))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(list["resp"]["tombstones"], serde_json::json!([]));

    for bad in [
        "action=digest&prefix=2020/13",
        "action=list&day=2020/2",
        "action=list",
    ] {
        let (status, v) = ask(bad, key).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["resp"]["success"], 0, "{bad}");
    }
    let (status, _) = json(
        client
            .post(node.do_url("action=digest"))
            .header("X-Security-Key", &node.key)
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_eq!(status, 405);
}

// ---------------------------------------------------------------------------
// A peer that comes back is compared with at once, not at the next interval.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_comes_back_is_repaired_from_at_once() {
    // Passes five minutes apart: only the peer's return can start one soon.
    let mut cluster = Cluster::new(
        &["s1", "s2"],
        "fsync = false\n[replication]\nretry_interval_secs = 1\nmax_retry_interval_secs = 1\n\
         [repair]\ninterval_secs = 300\nsettle_secs = 0\n",
    );
    let restored = jpeg(12_345, 700);
    let path = plant(&cluster.nodes[1], "2018/6/6", &restored);
    cluster.node(0).start();
    let client = client();
    upload(&client, &cluster.nodes[0], &[jpeg(23_456, 701)]).await;
    // s1's first pass has met s2 down.
    let first = until(Duration::from_secs(20), async || {
        healthz(&client, &cluster.nodes[0]).await["repair"]["peers"]["s2"]["last_pass"]["complete"]
            == false
    })
    .await;
    assert!(first, "{:#}", healthz(&client, &cluster.nodes[0]).await);
    cluster.node(1).start();
    let back = until(Duration::from_secs(30), async || {
        contents(&cluster.nodes[0]).get(&path) == Some(&restored)
    })
    .await;
    assert!(back, "{}", cluster.nodes[0].output());
}

/// A peer that answers every request 500 with a body quoting a link:
/// serves for `within`, on its own thread.
fn hostile_peer(port: u16, body: &'static str, within: Duration) -> std::thread::JoinHandle<()> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let _ = write!(
                stream,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_shows_a_peers_state_never_its_answer() {
    const ANSWER: &str = "{\"resp\":{\"success\":0,\"error\":\"see http://user:pw@leak.example/2026/1/1/0b1e5ec7-5e55-4a11-8b1e-5ec75e554a11.jpg\"}}";
    let mut c = Cluster::new(&["s1", "evil"], REPAIR);
    let evil = hostile_peer(c.nodes[1].port, ANSWER, Duration::from_secs(20));
    c.node(0).start();
    let client = client();
    let s1 = &c.nodes[0];
    let mut seen = Value::Null;
    let passed = until(Duration::from_secs(15), async || {
        seen = healthz(&client, s1).await;
        seen["repair"]["peers"]["evil"]["last_pass"]["errors"]
            .as_u64()
            .is_some_and(|n| n > 0)
    })
    .await;
    assert!(passed, "a pass against the peer failed: {seen}");
    let text = seen.to_string();
    assert!(
        !text.contains("leak.example") && !text.contains("0b1e5ec7") && !text.contains("pw@"),
        "{text}"
    );
    assert_eq!(
        seen["repair"]["peers"]["evil"]["last_pass"]["complete"],
        false
    );
    evil.join().expect("peer");
}

// ---------------------------------------------------------------------------
// Trees and days too large for one answer are read a page at a time.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_a_thousand_years_and_a_day_of_thousands_are_repaired_page_by_page() {
    let mut cluster = Cluster::new(&["s1", "s2"], REPAIR);
    // 1,100 years held by both: a root of 1,100 children, one agreeing
    // page after another (in one answer it was about 100 KB).
    for year in 1000..2100u64 {
        let bytes = jpeg(300, year);
        let day = format!("{year}/1/1");
        plant(&cluster.nodes[0], &day, &bytes);
        plant(&cluster.nodes[1], &day, &bytes);
    }
    // 1,050 files of one day held by s1 only: two pages of its list.
    let mut expected = contents(&cluster.nodes[1]);
    for i in 0..1_050u64 {
        let bytes = jpeg(300, 10_000 + i);
        expected.insert(plant(&cluster.nodes[0], "2100/6/6", &bytes), bytes);
    }
    cluster.start_all();
    let client = client();
    let [s1, s2] = [&cluster.nodes[0], &cluster.nodes[1]];

    converge(&[s2], &expected).await;
    let done = until(CONVERGE, async || {
        healthz(&client, s2).await["repair"]["peers"]["s1"]["last_pass"]["complete"] == true
    })
    .await;
    assert!(
        done,
        "{:#}",
        healthz(&client, s2).await["repair"]["peers"]["s1"]
    );

    // The answers themselves: bounded pages that chain with `next`.
    let ask = async |query: &str| {
        let (status, v) = json(
            client
                .get(s1.do_url(query))
                .header("X-Security-Key", &s1.key)
                .send()
                .await
                .expect("ask"),
        )
        .await;
        assert_eq!(status, 200, "{query}: {v}");
        v["resp"].clone()
    };
    let mut after = String::new();
    let mut years = Vec::new();
    loop {
        let page = ask(&format!("action=digest&after={after}")).await;
        let children = page["children"].as_array().expect("children");
        assert!(children.len() <= 256, "{} children", children.len());
        years.extend(children.iter().map(|c| c["name"].as_u64().expect("name")));
        match page["next"].as_u64() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    assert_eq!(years, (1000..=2100).collect::<Vec<_>>());
    let first = ask("action=list&day=2100/6/6&after=").await;
    assert_eq!(first["files"].as_array().expect("files").len(), 1_000);
    let next = first["next"].as_str().expect("next").to_owned();
    let second = ask(&format!("action=list&day=2100/6/6&after={next}")).await;
    assert_eq!(second["files"].as_array().expect("files").len(), 50);
    assert!(second["next"].is_null(), "{second}");
}

// ---------------------------------------------------------------------------
// The header that makes a server answer from its disk only needs the key.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repair_header_needs_the_key() {
    let mut cluster = Cluster::new(&["s1"], REPAIR);
    let bytes = jpeg(5_000, 77);
    let path = plant(&cluster.nodes[0], "2020/2/3", &bytes);
    cluster.start_all();
    let node = &cluster.nodes[0];
    let client = client();
    let url = format!("{}/{path}", node.base());
    let without = client
        .get(&url)
        .header("X-Multiserver-Repair", "1")
        .send()
        .await
        .expect("get");
    assert_eq!(without.status(), 403);
    assert!(!without.headers().contains_key("x-content-sha256"));
    let wrong = client
        .get(&url)
        .header("X-Multiserver-Repair", "1")
        .header("X-Security-Key", "wrong")
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.status(), 403);
    let keyed = client
        .get(&url)
        .header("X-Multiserver-Repair", "1")
        .header("X-Security-Key", &node.key)
        .send()
        .await
        .expect("get");
    assert_eq!(keyed.status(), 200);
    assert_eq!(keyed.headers()["x-content-sha256"], sha256(&bytes).as_str());
    assert_eq!(&keyed.bytes().await.expect("body")[..], &bytes[..]);
    let plain = client.get(&url).send().await.expect("get");
    assert_eq!(plain.status(), 200);
    assert!(!plain.headers().contains_key("x-content-sha256"));
}
