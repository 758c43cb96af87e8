//! Volumes (SPEC §11): one server with several data folders. Uploads go to
//! the volume with the fewest files being received (ties: most free space),
//! a volume below its minimum free space is skipped, links never name the
//! volume, and repair and scrub cover every volume.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use common::{Cluster, Node, Tmpfs, eventually, jpeg, stored_in, upload, upload_one};

const VOLUMES: &str = "fsync = false\ndata_dirs = [\"v1\", \"v2\", \"v3\"]\n";

fn volume(node: &Node, n: usize) -> PathBuf {
    node.dir.join(format!("v{n}"))
}

/// Which volume (1-based) holds the stored file `path`.
fn holder(node: &Node, path: &str) -> Option<usize> {
    (1..=3).find(|&n| volume(node, n).join(path).is_file())
}

/// Everything stored on the node's three volumes, sorted.
fn stored_on_all(node: &Node) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = (1..=3).flat_map(|n| stored_in(&volume(node, n))).collect();
    all.sort();
    all
}

/// An upload that sends its headers and the first bytes of its file, then
/// waits: it holds its volume's "being received" count until dropped.
fn slow_upload(node: &Node) -> TcpStream {
    let body_len = 10 << 20;
    let mut s = TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
    let head = format!(
        "POST /do.ashx?action=upload&format=json HTTP/1.1\r\nHost: x\r\nX-Security-Key: {}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {body_len}\r\n\r\n\
         --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n",
        node.key
    );
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(&jpeg(600_000, 7)).expect("first bytes");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_go_to_the_least_busy_volume_and_every_link_is_served() {
    let cluster = Cluster::single(VOLUMES);
    let s1 = &cluster.nodes[0];
    // Two uploads in flight, on two volumes (equal load: the one with most
    // free space wins, and other tests on the same filesystem move that
    // between two looks, so which two is not fixed).
    let a = slow_upload(s1);
    let b = slow_upload(s1);
    let receiving = |n| std::fs::read_dir(volume(s1, n).join(".tmp")).map_or(0, |d| d.count());
    assert!(
        eventually(Duration::from_secs(20), || {
            (1..=3).filter(|&n| receiving(n) == 1).count() == 2
        }),
        "the two slow uploads are being received on two volumes: {:?}\n{}",
        (1..=3).map(receiving).collect::<Vec<_>>(),
        s1.output()
    );
    let idle = (1..=3)
        .find(|&n| receiving(n) == 0)
        .expect("one volume idle");
    let mut paths = Vec::new();
    let third = jpeg(50_000, 1);
    let path = upload_one(s1, &third).await;
    assert_eq!(
        holder(s1, &path),
        Some(idle),
        "with two volumes each receiving a file, an upload goes to the third"
    );
    paths.push((path, third));
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Many at once spread over all three.
    let uploads = (0..12u64).map(|seed| async move {
        let bytes = jpeg(400_000, 100 + seed);
        (upload_one(s1, &bytes).await, bytes)
    });
    paths.extend(futures_util::future::join_all(uploads).await);
    let mut used = [0usize; 3];
    for (path, _) in &paths {
        used[holder(s1, path).expect("stored on a volume") - 1] += 1;
    }
    assert!(
        used.iter().all(|&n| n > 0),
        "every volume takes uploads: {used:?}"
    );

    // The links do not name the volume; each is served whatever holds it.
    let client = reqwest::Client::new();
    for (path, bytes) in &paths {
        let got = client
            .get(format!("{}/{path}", s1.base()))
            .send()
            .await
            .expect("get");
        assert_eq!(got.status(), 200, "{path}");
        assert_eq!(&got.bytes().await.expect("body")[..], &bytes[..], "{path}");
    }
    // Nothing left being received anywhere.
    for n in 1..=3 {
        let tmp = std::fs::read_dir(volume(s1, n).join(".tmp"))
            .expect("tmp")
            .count();
        assert_eq!(tmp, 0, "v{n}/.tmp is empty");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_volume_is_skipped_and_all_full_answers_507_with_nothing_kept() {
    let mut cluster = Cluster::new(
        &["s1"],
        &format!("{VOLUMES}[storage]\nmin_free_bytes = 1048576\n"),
    );
    let v2 = volume(&cluster.nodes[0], 2);
    let _tmpfs = Tmpfs::mount(&v2, "4m")
        .unwrap_or_else(|e| panic!("this test needs root to mount a small tmpfs: {e}"));
    cluster.nodes[0].start();
    let s1 = &cluster.nodes[0];
    // v2 nearly full: under its minimum free space.
    std::fs::write(v2.join(".filler"), vec![0u8; 3 << 20]).expect("fill v2");
    let uploads = (0..9u64).map(|seed| async move {
        let bytes = jpeg(200_000, 200 + seed);
        (upload_one(s1, &bytes).await, bytes)
    });
    let stored = futures_util::future::join_all(uploads).await;
    for (path, _) in &stored {
        let on = holder(s1, path).expect("stored");
        assert_ne!(on, 2, "{path} went to the full volume");
    }
    assert_eq!(stored_in(&v2), Vec::new());

    // Every volume under the minimum: refused before anything is read.
    let mut cluster = Cluster::new(
        &["s1"],
        &format!("{VOLUMES}[storage]\nmin_free_bytes = 1125899906842624\n"),
    );
    cluster.nodes[0].start();
    let s1 = &cluster.nodes[0];
    let (status, answer) = upload(s1, &[("a.jpg", &jpeg(100_000, 3))]).await;
    assert_eq!(status, 507, "{answer}");
    assert_eq!(answer["resp"]["success"], 0, "{answer}");
    assert_eq!(stored_on_all(s1), Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_and_scrub_cover_every_volume() {
    let mut cluster = Cluster::new(
        &["s1", "s2"],
        &format!(
            "{VOLUMES}[replication]\nretry_interval_secs = 3600\n\
             [repair]\ninterval_secs = 1\nsettle_secs = 0\nscrub_interval_secs = 1\n"
        ),
    );
    cluster.start_all();
    let uploads = (0..9u64).map(|seed| {
        let s1 = &cluster.nodes[0];
        async move {
            let bytes = jpeg(300_000, 300 + seed);
            (upload_one(s1, &bytes).await, bytes)
        }
    });
    let files = futures_util::future::join_all(uploads).await;
    let expected = stored_on_all(&cluster.nodes[0]);
    assert_eq!(expected.len(), 9);
    assert_eq!(stored_on_all(&cluster.nodes[1]), expected);

    // Scrub: a rotten file on a volume other than the first is set aside in
    // that volume's quarantine and fetched again.
    let s1 = &cluster.nodes[0];
    let (rotten, good) = files
        .iter()
        .find(|(path, _)| holder(s1, path) != Some(1))
        .expect("a file beyond v1");
    let on = holder(s1, rotten).expect("held");
    let mut damaged = good.clone();
    for b in &mut damaged[1000..1010] {
        *b ^= 0xff;
    }
    std::fs::write(volume(s1, on).join(rotten), &damaged).expect("rot");
    assert!(
        eventually(Duration::from_secs(30), || stored_on_all(s1) == expected),
        "the rotten file was not restored:\n{}",
        s1.output()
    );
    let aside = std::fs::read_dir(volume(s1, on).join(".quarantine"))
        .expect("quarantine of the file's volume")
        .count();
    assert_eq!(aside, 1);

    // Repair: s1's third volume is replaced by an empty disk; s1 refills
    // it from s2 (the index, in v1, still lists what v3 held).
    cluster.nodes[0].terminate();
    let v3 = volume(&cluster.nodes[0], 3);
    let lost = stored_in(&v3).len();
    std::fs::remove_dir_all(&v3).expect("lose v3");
    std::fs::create_dir_all(&v3).expect("new v3");
    cluster.nodes[0].start();
    let s1 = &cluster.nodes[0];
    assert!(
        eventually(Duration::from_secs(60), || stored_on_all(s1) == expected),
        "s1 was not refilled ({lost} files lost):\n{}",
        s1.output()
    );
}

/// A `sync` of `bytes` under `path`, as a peer sends it; the status.
async fn replica(client: &reqwest::Client, node: &Node, path: &str, bytes: &[u8]) -> u16 {
    client
        .put(node.do_url(&format!("action=sync&format=json&path={path}")))
        .header("X-Security-Key", &node.key)
        .header("X-Content-SHA256", common::sha256(bytes))
        .body(bytes.to_vec())
        .send()
        .await
        .expect("sync")
        .status()
        .as_u16()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_one_name_at_once_keep_one_file_on_one_volume() {
    let cluster = Cluster::single(VOLUMES);
    let s1 = &cluster.nodes[0];
    let client = client();
    let mut wrong = Vec::new();
    for i in 0..200u64 {
        let path = format!("2026/1/3/{}.jpg", uuid::Uuid::new_v4());
        let (a, b) = (jpeg(2_000, 2 * i), jpeg(2_000, 2 * i + 1));
        let (sa, sb) = tokio::join!(
            replica(&client, s1, &path, &a),
            replica(&client, s1, &path, &b)
        );
        let holders: Vec<usize> = (1..=3)
            .filter(|&n| volume(s1, n).join(&path).is_file())
            .collect();
        let response = client
            .get(format!("{}/{path}", s1.base()))
            .header("X-Multiserver-Repair", "1")
            .header("X-Security-Key", &s1.key)
            .send()
            .await
            .expect("get");
        let hash = response
            .headers()
            .get("x-content-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let served = response.bytes().await.expect("body").to_vec();
        let winner = match (sa, sb) {
            (200, 409) => &a,
            (409, 200) => &b,
            _ => {
                wrong.push(format!("{path}: answered {sa} and {sb}"));
                continue;
            }
        };
        if holders.len() != 1 || &served != winner {
            wrong.push(format!("{path}: on volumes {holders:?}, served the loser"));
        }
        // The hash a peer is given (the index's) is the served file's.
        let served_sha = common::sha256(&served);
        if hash.as_deref() != Some(served_sha.as_str()) {
            wrong.push(format!("{path}: indexed {hash:?}, served {served_sha}"));
        }
    }
    assert!(wrong.is_empty(), "{} of 200: {wrong:#?}", wrong.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_replica_leaves_nothing_served() {
    let mut cluster = Cluster::new(&["s1", "s2"], VOLUMES);
    cluster.start_all();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    delete_racing_replicas(s1, s2, &(1..=3).map(|n| volume(s1, n)).collect::<Vec<_>>()).await;
}

/// The single-folder backend keeps the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_replica_on_one_folder_leaves_nothing_served() {
    let mut cluster = Cluster::new(&["s1", "s2"], "fsync = false\n");
    cluster.start_all();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    delete_racing_replicas(s1, s2, &[s1.data_dir()]).await;
}

/// Puts 300 names on `s2` only, then sends `s1` a replica of each with a
/// delete of it at once, as when a delete overtakes the copy of a new
/// upload: whoever wins, the name ends deleted on `s1` and on none of its
/// folders. (The name is held by `s2`, so the delete leaves a tombstone: a
/// name no server held would leave none.)
async fn delete_racing_replicas(s1: &Node, s2: &Node, folders: &[PathBuf]) {
    let client = client();
    let mut served = Vec::new();
    for i in 0..300u64 {
        let path = format!("2026/1/4/{}.jpg", uuid::Uuid::new_v4());
        let bytes = jpeg(2_000, 10_000 + i);
        assert_eq!(replica(&client, s2, &path, &bytes).await, 200, "{path}");
        let delete = async {
            client
                .post(s1.admin(&format!("action=delete&format=json&path={path}")))
                .send()
                .await
                .expect("delete")
                .status()
                .as_u16()
        };
        let (synced, deleted) = tokio::join!(replica(&client, s1, &path, &bytes), delete);
        assert_eq!(deleted, 200, "{path}");
        assert!(
            matches!(synced, 200 | 410),
            "{path}: sync answered {synced}"
        );
        let status = client
            .get(format!("{}/{path}", s1.base()))
            .send()
            .await
            .expect("get")
            .status()
            .as_u16();
        let holders: Vec<&PathBuf> = folders.iter().filter(|f| f.join(&path).is_file()).collect();
        if status != 410 || !holders.is_empty() {
            served.push(format!("{path}: GET {status}, in {holders:?}"));
        }
    }
    assert!(served.is_empty(), "{} of 300: {served:#?}", served.len());
}
