//! The upload page in real headless Chromium (Debian's, driven by
//! playwright-core from `tests/browser/*.mjs`), against real servers: pick
//! images, watch them upload, find their links on the page and the files on
//! both servers; a refused file shows its error; no key makes the page ask
//! for one, a wrong key gives the 403 page. Pages of other origins upload
//! through CORS, and the page shows thumbnails from a configured `domain`
//! (`origins.mjs`). Files over `[resumable] page_threshold_bytes` go
//! through tus and survive a cut connection and a reload (`resumable.mjs`).
//! Screenshots land in `target/browser-screenshots/`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cluster, free_port};

#[test]
fn the_upload_page_works_in_chromium() {
    let mut cluster = Cluster::new(&["s1", "s2"], "fsync = false\n");
    cluster.start_all();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().expect("tempdir");
    let bad = work.path().join("bad.jpg");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><html><script>alert(1)</script></html>",
    )
    .expect("bad");
    let shots = root.join("target/browser-screenshots");
    let out = Command::new("node")
        .arg(root.join("tests/browser/e2e.mjs"))
        .args([
            "--base",
            &s1.base(),
            "--key",
            &s1.key,
            "--peer-base",
            &s2.base(),
        ])
        .arg("--images")
        .arg(root.join("tests/browser/fixtures"))
        .arg("--bad")
        .arg(&bad)
        .arg("--shots")
        .arg(&shots)
        .output()
        .expect("node not found: run scripts/install-test-tools.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    // Every stored file is on both servers, byte for byte.
    let (a, b) = (s1.stored(), s2.stored());
    assert!(a.len() >= 3, "{} files on s1", a.len());
    assert_eq!(a, b);
    assert!(shots.join("02-desktop.png").exists());
}

/// The secret the servers share with a site's back end (here, the test),
/// which mints upload tokens with it.
const TOKEN_KID: &str = "k1";
const TOKEN_SECRET: &str = "site-back-end-secret-4f2a";

/// Runs `tests/browser/origins.mjs` with `args`; panics with its output if
/// a check failed.
fn origins_script(args: &[String]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("tests/browser/origins.mjs"))
        .args(args)
        .arg("--images")
        .arg(root.join("tests/browser/fixtures"))
        .arg("--shots")
        .arg(root.join("target/browser-screenshots"))
        .output()
        .expect("node not found: run scripts/install-test-tools.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
}

/// One server whose links point at `http://localhost:{port}` (itself,
/// under another origin than the page's `127.0.0.1`, as a CDN `domain`
/// would be) and whose `[cors]` lists the site page's origin.
fn domain_and_cors_server(site_port: u16) -> Cluster {
    let mut cluster = Cluster::new(
        &["s1"],
        &format!(
            "fsync = false\n[cors]\nallowed_origins = [\"http://127.0.0.1:{site_port}\"]\n\
             [auth]\ntoken_secrets = {{ {TOKEN_KID} = \"{TOKEN_SECRET}\" }}\n"
        ),
    );
    let node = cluster.node(0);
    let config = std::fs::read_to_string(node.config()).expect("app.toml");
    std::fs::write(
        node.config(),
        format!("domain = \"http://localhost:{}\"\n{config}", node.port),
    )
    .expect("app.toml");
    node.start();
    cluster
}

#[test]
fn pages_of_other_origins_upload_and_show_their_thumbnails() {
    let site_port = free_port();
    let cluster = domain_and_cors_server(site_port);
    let s1 = &cluster.nodes[0];
    origins_script(&[
        "--base".into(),
        s1.base(),
        "--domain".into(),
        format!("http://localhost:{}", s1.port),
        "--key".into(),
        s1.key.clone(),
        "--site-port".into(),
        site_port.to_string(),
        "--kid".into(),
        TOKEN_KID.into(),
        "--secret".into(),
        TOKEN_SECRET.into(),
    ]);
    // The site page's uploads were preflighted (an Authorization header
    // makes a request not simple) and answered before any credential check.
    assert!(
        s1.log_lines(|l| l.contains("method=OPTIONS") && l.contains("status=204")) >= 1,
        "no preflight answered:\n{}",
        s1.output()
    );
}

#[test]
fn large_files_resume_through_tus_in_chromium() {
    // Under the page's built-in 8 MiB, so that the script's 7.5 MiB files
    // go through tus only if the page took the server's threshold.
    let threshold = 3_000_000;
    let mut cluster = Cluster::new(
        &["s1", "s2"],
        &format!(
            "fsync = false\n[resumable]\npage_threshold_bytes = {threshold}\n\
             [auth]\ntoken_secrets = {{ {TOKEN_KID} = \"{TOKEN_SECRET}\" }}\n"
        ),
    );
    cluster.start_all();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().expect("tempdir");
    let out = Command::new("node")
        .arg(root.join("tests/browser/resumable.mjs"))
        .args([
            "--base",
            &s1.base(),
            "--key",
            &s1.key,
            "--peer-base",
            &s2.base(),
        ])
        .args(["--threshold", &threshold.to_string()])
        .arg("--work")
        .arg(work.path())
        .arg("--shots")
        .arg(root.join("target/browser-screenshots"))
        .output()
        .expect("node not found: run scripts/install-test-tools.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}\n{}",
        s1.output()
    );
    // The small file and the three large ones, on both servers.
    let (a, b) = (s1.stored(), s2.stored());
    assert_eq!(a.len(), 4, "{} files on s1", a.len());
    assert_eq!(a, b);
}
