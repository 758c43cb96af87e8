//! Progress of the `replay` command run without a terminal (Task
//! Scheduler): a line every few seconds on standard error, while standard
//! output keeps the one JSON report. (`migrate`'s is in s3.rs, beside its
//! Garage.)

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Cluster, jpeg, upload_one};

const QUIET: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n";

/// A peer on `port` that takes every request and, after a second, hangs up
/// without an answer: each copy to it fails, slowly.
fn slow_failing_peer(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the peer's port");
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            let Ok(mut connection) = connection else {
                continue;
            };
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(1);
                let mut buffer = [0u8; 64 * 1024];
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    let _ = connection.set_read_timeout(Some(left.max(Duration::from_millis(1))));
                    if matches!(connection.read(&mut buffer), Ok(0)) {
                        break;
                    }
                }
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_without_a_terminal_prints_progress_lines() {
    const FILES: usize = 40;
    let mut cluster = Cluster::new(&["s1", "slow"], QUIET);
    slow_failing_peer(cluster.nodes[1].port);
    cluster.node(0).start();
    for i in 0..FILES {
        upload_one(&cluster.nodes[0], &jpeg(5_000, i as u64)).await;
    }
    assert_eq!(cluster.nodes[0].journal().len(), FILES, "every copy owed");
    cluster.node(0).terminate();

    let child = Command::new(BIN)
        .args(["replay", "--config"])
        .arg(cluster.nodes[0].config())
        .env("MULTISERVER_UPLOAD_PROGRESS_EVERY_MS", "100")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn replay");
    let output = common::output_within(child, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "replay: {}\n{stderr}",
        output.status
    );
    let lines = common::progress_lines(&stderr, "replay");
    let of_total = format!(" of {FILES} files, ");
    assert!(
        lines.iter().all(|l| l.contains(&of_total)),
        "the total is known from the start:\n{stderr}"
    );
    // Standard output is still one JSON report (its last line).
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("JSON report");
    assert_eq!(report["failed"], FILES, "{report}");
}
