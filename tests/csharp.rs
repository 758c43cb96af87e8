//! The original README's C# client (`WebClient.UploadFile`, which sends
//! `Expect: 100-continue` and an `application/octet-stream` part), compiled
//! with mono's `mcs` and run against the real binary: existing back ends
//! must keep working unchanged.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Cluster, jpeg};

fn compile(out: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/csharp/Upload.cs");
    let status = Command::new("mcs")
        .arg(format!("-out:{}", out.display()))
        .arg(&source)
        .status()
        .expect("mcs not found: run scripts/install-test-tools.sh (Debian's mono-mcs)");
    assert!(status.success(), "mcs failed");
}

fn run(exe: &Path, base: &str, key: &str, format: &str, file: &Path) -> String {
    let out = Command::new("mono")
        .arg(exe)
        .args([base, key, format])
        .arg(file)
        .output()
        .expect("mono not found: run scripts/install-test-tools.sh");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test]
async fn the_original_csharp_client_uploads_and_reads_back_its_link() {
    let cluster = Cluster::single("fsync = false\n");
    let s1 = &cluster.nodes[0];
    let work = tempfile::tempdir().expect("tempdir");
    let exe = work.path().join("upload.exe");
    compile(&exe);
    let image = jpeg(200_000, 42);
    let file = work.path().join("xx.jpg");
    std::fs::write(&file, &image).expect("write");

    let xml = run(&exe, &s1.base(), &s1.key, "xml", &file);
    let prefix = format!("<resp><success>1</success><link>{}/", s1.base());
    assert!(xml.starts_with(&prefix), "{xml}");
    let link = xml
        .split("<link>")
        .nth(1)
        .and_then(|s| s.split("</link>").next())
        .expect("link");
    let served = reqwest::get(link)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(served.as_ref(), image.as_slice());

    let json = run(&exe, &s1.base(), &s1.key, "json", &file);
    let prefix = format!("{{\"resp\":{{\"success\":1,\"link\":\"{}/", s1.base());
    assert!(json.starts_with(&prefix), "{json}");
    assert_eq!(s1.stored().len(), 2);
}
