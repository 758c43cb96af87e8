//! Scrub between real server processes (SPEC §4a): a stored file whose
//! bytes changed on disk is found by the next pass, set aside under
//! `.quarantine` (never deleted) and fetched again byte-exact from a peer;
//! a file the index lists that is missing is fetched too; `/healthz` shows
//! what the last pass did.

mod common;

use std::time::Duration;

use common::{Cluster, eventually, jpeg, upload_one};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_set_aside_and_restored_from_a_peer() {
    let mut cluster = Cluster::new(
        &["s1", "s2"],
        "fsync = false\n[replication]\nretry_interval_secs = 3600\n[repair]\nscrub_interval_secs = 1\n",
    );
    cluster.start_all();
    let mut files = Vec::new();
    for seed in 0..3u64 {
        let bytes = jpeg(40_000, 20 + seed);
        let path = upload_one(&cluster.nodes[0], &bytes).await;
        files.push((path, bytes));
    }
    let s2 = &cluster.nodes[1];
    let expected = cluster.nodes[0].stored();
    assert_eq!(s2.stored(), expected);
    // Rot one file on s2 (same size, a few bytes flipped) and lose another.
    let (rotten, good) = &files[0];
    let mut damaged = good.clone();
    for b in &mut damaged[1000..1010] {
        *b ^= 0xff;
    }
    std::fs::write(s2.data_dir().join(rotten), &damaged).expect("rot");
    std::fs::remove_file(s2.data_dir().join(&files[1].0)).expect("lose");

    assert!(
        eventually(Duration::from_secs(20), || s2.stored() == expected),
        "s2 was not repaired:\n{}",
        s2.output()
    );
    let aside: Vec<Vec<u8>> = std::fs::read_dir(s2.data_dir().join(".quarantine"))
        .expect("quarantine folder")
        .flatten()
        .map(|e| std::fs::read(e.path()).expect("read"))
        .collect();
    assert_eq!(aside, vec![damaged]);
    // The pass that repaired s2 publishes its findings when it ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let health = loop {
        let health: serde_json::Value = reqwest::get(format!("{}/healthz", s2.base()))
            .await
            .expect("healthz")
            .json()
            .await
            .expect("json");
        if health["scrub"]["since_start"]["restored"] == 2 || std::time::Instant::now() > deadline {
            break health;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let scrub = &health["scrub"];
    assert_eq!(scrub["since_start"]["bad"], 1, "{health}");
    assert_eq!(scrub["since_start"]["missing"], 1, "{health}");
    assert_eq!(scrub["since_start"]["restored"], 2, "{health}");
    assert!(scrub["last"]["finished"].is_string(), "{health}");
    assert!(scrub["last"]["checked"].as_u64() >= Some(3), "{health}");
}
