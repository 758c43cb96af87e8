//! Read-through between real server processes (SPEC §4a): a server whose
//! data folder was emptied serves every link at once from its peers, with
//! the same bytes and headers as a local file; concurrent requests for one
//! name make one fetch; a name nobody has is 404, and 503 (not cached) when
//! a peer could not be asked.

mod common;

use std::time::Duration;

use common::{Cluster, Node, eventually, jpeg, upload_one};

const QUIET: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n";

/// Request lines in `node`'s log files for `GET /{path}`.
fn gets_of(node: &Node, path: &str) -> usize {
    let target = format!("target=/{path} ");
    node.log_lines(|l| l.contains("method=GET") && l.contains(&target))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_server_serves_every_link_from_its_peers_with_one_fetch_per_name() {
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], QUIET);
    cluster.start_all();
    let mut files = Vec::new();
    for seed in 0..6u64 {
        let bytes = jpeg(60_000 + seed as usize * 1_000, seed);
        let path = upload_one(&cluster.nodes[0], &bytes).await;
        files.push((path, bytes));
    }
    // s2 loses its disk.
    cluster.node(1).kill();
    std::fs::remove_dir_all(cluster.nodes[1].data_dir()).expect("empty s2");
    cluster.node(1).start();
    assert!(cluster.nodes[1].stored().is_empty());

    let s2 = cluster.nodes[1].base();
    let client = reqwest::Client::new();
    // The first name asked for 20 times at once, the others once each, all
    // at the same time.
    let (hot, hot_bytes) = files[0].clone();
    let mut requests = Vec::new();
    for _ in 0..20 {
        requests.push((hot.clone(), hot_bytes.clone()));
    }
    requests.extend(files[1..].iter().cloned());
    let answers = futures_util::future::join_all(requests.into_iter().map(|(path, bytes)| {
        let client = client.clone();
        let url = format!("{s2}/{path}");
        async move {
            let response = client.get(&url).send().await.expect("get");
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await.expect("body");
            (path, bytes, status, headers, body)
        }
    }))
    .await;
    for (path, bytes, status, headers, body) in &answers {
        assert_eq!(*status, 200, "{path}");
        assert_eq!(&body[..], &bytes[..], "{path}: other bytes");
        assert_eq!(headers["content-type"], "image/jpeg");
        assert!(headers.contains_key("etag"), "{path}");
        assert_eq!(
            headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
    }
    // One fetch of the hot name, from one peer.
    let asked = || gets_of(&cluster.nodes[0], &hot) + gets_of(&cluster.nodes[2], &hot);
    assert!(eventually(Duration::from_secs(5), || asked() > 0));
    assert_eq!(asked(), 1, "peers were asked {} times for {hot}", asked());
    // Kept: s2 holds every file again, and serves them as local files
    // (Range, ETag) even with every peer down.
    let mut stored = cluster.nodes[1].stored();
    let mut expected = files.clone();
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected);
    cluster.node(0).kill();
    cluster.node(2).kill();
    let (path, bytes) = &files[1];
    let ranged = client
        .get(format!("{s2}/{path}"))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .expect("range");
    assert_eq!(ranged.status().as_u16(), 206);
    let etag = ranged.headers()["etag"].clone();
    assert_eq!(&ranged.bytes().await.expect("body")[..], &bytes[10..20]);
    let again = client
        .get(format!("{s2}/{path}"))
        .header("If-None-Match", etag)
        .send()
        .await
        .expect("etag");
    assert_eq!(again.status().as_u16(), 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_no_peer_has_is_404_and_503_when_a_peer_could_not_be_asked() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.start_all();
    let bytes = jpeg(20_000, 9);
    let path = upload_one(&cluster.nodes[0], &bytes).await;
    let nowhere = "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg";
    let client = reqwest::Client::new();
    let s2 = cluster.nodes[1].base();
    let missing = client
        .get(format!("{s2}/{nowhere}"))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status().as_u16(), 404);
    assert!(eventually(Duration::from_secs(5), || gets_of(
        &cluster.nodes[0],
        nowhere
    ) == 1));

    // Asked again at once, it is known: nobody is asked.
    let again = client
        .get(format!("{s2}/{nowhere}"))
        .send()
        .await
        .expect("get");
    assert_eq!(again.status().as_u16(), 404);
    // The only peer down: s2 cannot know, and says so without caching.
    cluster.node(0).kill();
    std::fs::remove_file(cluster.nodes[1].data_dir().join(&path)).expect("remove");
    let unknown = "2014/4/15/6310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg";
    for name in [unknown, path.as_str()] {
        let started = std::time::Instant::now();
        let unavailable = client
            .get(format!("{s2}/{name}"))
            .send()
            .await
            .expect("get");
        assert_eq!(unavailable.status().as_u16(), 503, "{name}");
        assert_eq!(unavailable.headers()["cache-control"], "no-store");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // Back up: the file comes back through the read-through.
    cluster.node(0).start();
    let back = client
        .get(format!("{s2}/{path}"))
        .send()
        .await
        .expect("get");
    assert_eq!(back.status().as_u16(), 200);
    assert_eq!(&back.bytes().await.expect("body")[..], &bytes[..]);
    assert_eq!(gets_of(&cluster.nodes[0], nowhere), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_random_names_ask_the_peers_a_bounded_number_of_times() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.start_all();
    let bytes = jpeg(20_000, 11);
    let path = upload_one(&cluster.nodes[0], &bytes).await;
    std::fs::remove_file(cluster.nodes[1].data_dir().join(&path)).expect("remove");
    let s2 = cluster.nodes[1].base();
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for n in 0..1_000u64 {
        let name = format!("2011/11/11/{n:08x}-1111-4111-8111-{n:012x}.jpg");
        let status = client
            .get(format!("{s2}/{name}"))
            .send()
            .await
            .expect("get")
            .status()
            .as_u16();
        *statuses.entry(status).or_default() += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    // Every answer is 404 (asked, nobody has it) or 503 (not asked).
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [404, 503],
        "{statuses:?}"
    );
    // The bucket: its burst, and its rate over the time the flood took.
    let bound = 50 + (10.0 * secs).ceil() as usize + 5;
    let asked = || {
        cluster.nodes[0]
            .log_lines(|l| l.contains("method=GET") && l.contains("target=/2011/11/11/"))
    };
    std::thread::sleep(Duration::from_secs(1));
    eprintln!(
        "1,000 random names in {secs:.1} s: {statuses:?}, {} peer requests",
        asked()
    );
    assert!(asked() <= bound, "{} peer requests in {secs:.1} s", asked());
    assert_eq!(asked(), statuses[&404], "{statuses:?}");
    // A real file is still fetched once the bucket has refilled a little.
    std::thread::sleep(Duration::from_secs(1));
    let back = client
        .get(format!("{s2}/{path}"))
        .send()
        .await
        .expect("get");
    assert_eq!(back.status().as_u16(), 200);
    assert_eq!(&back.bytes().await.expect("body")[..], &bytes[..]);
}
