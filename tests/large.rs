//! A 1 GiB upload through curl: the file is streamed to disk, never held in
//! memory, so the service's peak resident memory stays far below the file's
//! size (target: under 64 MiB whatever the size, SPEC §9).

mod common;

use std::process::Command;

use common::{Cluster, peak_rss_kib};

const GIB: u64 = 1 << 30;

#[test]
fn a_1_gib_upload_through_curl_keeps_memory_flat() {
    let cluster = Cluster::single("fsync = false\n");
    let s1 = &cluster.nodes[0];
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("big.jpg");
    {
        // A JPEG signature, then a sparse GiB: quick to make, real to send.
        let f = std::fs::File::create(&file).expect("create");
        std::io::Write::write_all(&mut &f, common::JPEG_HEAD).expect("head");
        f.set_len(GIB).expect("size");
    }
    let before = peak_rss_kib(s1.pid().expect("pid"));
    let v = common::curl_upload(s1, &file);
    assert_eq!(v["resp"]["files"][0]["size"], GIB);
    let expected = Command::new("sha256sum")
        .arg(&file)
        .output()
        .expect("sha256sum");
    let expected = String::from_utf8_lossy(&expected.stdout);
    assert_eq!(
        v["resp"]["files"][0]["sha256"].as_str(),
        expected.split_whitespace().next()
    );
    let stored = s1
        .data_dir()
        .join(v["resp"]["files"][0]["path"].as_str().expect("path"));
    assert_eq!(std::fs::metadata(&stored).expect("stored").len(), GIB);
    let peak = peak_rss_kib(s1.pid().expect("pid"));
    println!("peak RSS: {before} KiB before, {peak} KiB after a 1 GiB upload");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB is not flat");
}
