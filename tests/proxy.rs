//! Behind a real reverse proxy (Debian's nginx, started here, TLS on its side,
//! request buffering off as IIS streams bodies): a large upload, a download
//! and `uploaderrors` work through it, links carry the proxy's scheme and
//! host, and forwarded headers are believed only from the trusted proxy.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Cluster, free_port};

/// The proxy connects to the service from this address, the only trusted one.
const PROXY_ADDR: &str = "127.0.0.2";

struct Nginx {
    child: Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

fn start_nginx(dir: &Path, port: u16, upstream: u16) -> Nginx {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl not found: run scripts/install-test-tools.sh");
    assert!(status.success());
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {d}/cert.pem;\n\
             ssl_certificate_key {d}/key.pem;\n    client_max_body_size 0;\n\
             location / {{\n      proxy_pass http://127.0.0.1:{upstream};\n      proxy_bind {PROXY_ADDR};\n\
               proxy_http_version 1.1;\n      proxy_request_buffering off;\n      proxy_buffering off;\n\
               proxy_read_timeout 300s;\n      proxy_send_timeout 300s;\n\
               proxy_set_header Host $http_host;\n\
               proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
               proxy_set_header X-Forwarded-Proto $scheme;\n    }}\n  }}\n}}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("conf");
    let child = Command::new(nginx_binary())
        .args(["-g", "daemon off; master_process off;", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx not found: run scripts/install-test-tools.sh");
    let up = common::eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        up,
        "nginx did not start: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
    Nginx { child }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-k", "--fail-with-body"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn large_upload_download_and_replay_through_nginx() {
    let mut cluster = Cluster::new(
        &["s1", "s2"],
        &format!("fsync = false\ntrusted_proxies = [\"{PROXY_ADDR}\"]\n"),
    );
    cluster.node(0).start();
    let s1 = &cluster.nodes[0];
    let work = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _nginx = start_nginx(work.path(), port, s1.port);
    let proxy = format!("https://127.0.0.1:{port}");
    let key = format!("X-Security-Key: {}", s1.key);

    let file = work.path().join("large.jpg");
    {
        let f = std::fs::File::create(&file).expect("create");
        std::io::Write::write_all(&mut &f, common::JPEG_HEAD).expect("head");
        f.set_len(300 << 20).expect("size");
    }
    let text = curl(&[
        "-H",
        &key,
        "-H",
        "X-Forwarded-For: 203.0.113.66",
        "-F",
        &format!("file=@{}", file.display()),
        &format!("{proxy}/do.ashx?action=upload&format=json"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["resp"]["success"], 1, "{v}");
    let link = v["resp"]["link"].as_str().expect("link");
    assert!(
        link.starts_with(&format!("{proxy}/")),
        "link {link} must carry the proxy's scheme and host"
    );
    assert_eq!(v["resp"]["files"][0]["size"], 300u64 << 20);

    let copy = work.path().join("copy.jpg");
    curl(&["-o", copy.to_str().expect("utf-8"), link]);
    let sums = Command::new("sha256sum")
        .arg(&file)
        .arg(&copy)
        .output()
        .expect("sha256sum");
    let sums = String::from_utf8_lossy(&sums.stdout);
    let hashes: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(hashes.len(), 2);
    assert_eq!(hashes[0], hashes[1], "the download differs from the upload");
    assert_eq!(v["resp"]["files"][0]["sha256"], hashes[0]);

    // s2 is down: the copy was journaled; the Task Scheduler call through the
    // proxy replays it (and it fails again, the entry stays).
    let text = curl(&[
        "-H",
        &key,
        &format!("{proxy}/do.ashx?action=uploaderrors&format=json"),
    ]);
    let r: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(r["resp"]["success"], 1, "{r}");
    assert_eq!(r["resp"]["failed"], 1, "{r}");
    assert_eq!(r["resp"]["remaining"], 1, "{r}");

    // The request line names the client the proxy saw, not what the client claimed.
    let log = s1.output();
    let line = log
        .lines()
        .find(|l| l.contains("action=upload") && l.contains("status=200"))
        .expect("request line");
    assert!(line.contains("client=127.0.0.1"), "{line}");
    assert!(!line.contains("203.0.113.66"), "{line}");
}

#[tokio::test]
async fn forwarded_headers_from_anyone_but_the_proxy_are_ignored() {
    let cluster = Cluster::single(&format!(
        "fsync = false\ntrusted_proxies = [\"{PROXY_ADDR}\"]\n"
    ));
    let s1 = &cluster.nodes[0];
    let text = reqwest::Client::new()
        .post(s1.keyed("action=upload&format=json"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-For", "203.0.113.66")
        .multipart(common::form(&[("a.jpg", &common::jpeg(1000, 1))]))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let link = v["resp"]["link"].as_str().expect("link");
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{}/", s1.port)),
        "{link}"
    );
}
