//! A real Garage cluster on loopback for the S3-backend tests, run by
//! `scripts/garage-cluster.sh` in a temporary folder: start it, SIGKILL and
//! restart its nodes, talk to its S3 API with curl (a client nobody here
//! wrote), and put our servers in S3 mode in front of it. Dropping a
//! [`Garage`] stops every node.
//!
//! Garage itself is built once by `scripts/install-garage.sh`;
//! `scripts/test.sh` exports its path as `MULTISERVER_UPLOAD_GARAGE`, and
//! without it the tests look where that script caches the binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{Cluster, Node};

/// The Garage release the project tests against (as `scripts/install-garage.sh`).
pub const VERSION: &str = "2.5.0";

/// The Garage binary: `MULTISERVER_UPLOAD_GARAGE`, else the cache of
/// `scripts/install-garage.sh` (same path logic). Panics, saying how to get
/// it, when neither exists: these tests mean nothing without a real store.
pub fn garage_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("MULTISERVER_UPLOAD_GARAGE").filter(|v| !v.is_empty()) {
        return bin.into();
    }
    let cache = std::env::var_os("MULTISERVER_UPLOAD_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| Path::new(&d).join("multiserver-upload"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/multiserver-upload"))
        })
        .expect("HOME is set");
    let version = std::env::var("GARAGE_VERSION").unwrap_or_else(|_| VERSION.to_owned());
    let bin = cache.join(format!("garage-{version}")).join("bin/garage");
    assert!(
        bin.is_file(),
        "no Garage at {}: run scripts/install-garage.sh once (scripts/test.sh does), \
         or set MULTISERVER_UPLOAD_GARAGE to a garage {version} binary",
        bin.display()
    );
    bin
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/garage-cluster.sh")
}

/// One object of a bucket listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub size: u64,
    pub etag: String,
    pub last_modified: String,
}

pub struct Garage {
    dir: tempfile::TempDir,
    /// S3 endpoint of each node (`http://127.0.0.1:PORT`), node 1 first.
    pub endpoints: Vec<String>,
    pub key_id: String,
    pub secret: String,
    pub bucket: String,
    pub region: String,
    /// How long `up` took: configs, start, layout, bucket, key, first PUT.
    pub started_in: Duration,
}

impl Garage {
    /// Starts `nodes` Garage nodes (replication factor 3 from three nodes
    /// on, one zone per node) with bucket `images` and a key that owns it,
    /// and returns once a PUT works through every node.
    pub fn start(nodes: usize) -> Self {
        // The script picks free ports and releases them before Garage binds
        // them, so a test starting beside this one may take one meanwhile:
        // then the cluster is started again on other ports (a few tries).
        let mut attempt = 1;
        let mut garage = loop {
            let mut garage = Self {
                dir: tempfile::tempdir().expect("tempdir"),
                endpoints: Vec::new(),
                key_id: String::new(),
                secret: String::new(),
                bucket: String::new(),
                region: String::new(),
                started_in: Duration::ZERO,
            };
            let started = Instant::now();
            let out = garage.script(&["up", &nodes.to_string()]);
            garage.started_in = started.elapsed();
            if out.status.success() {
                break garage;
            }
            let logs = garage.logs();
            assert!(
                attempt < 3 && logs.contains("Address already in use"),
                "garage-cluster.sh up failed: {}{}\n{logs}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            eprintln!("garage: a port was taken meanwhile (try {attempt}); starting again");
            attempt += 1;
        };
        let env = std::fs::read_to_string(garage.dir().join("env")).expect("env file");
        let vars: BTreeMap<&str, &str> = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        garage.endpoints = vars["S3_ENDPOINTS"]
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(garage.endpoints.len(), nodes, "{env}");
        assert_eq!(garage.endpoints[0], vars["S3_ENDPOINT"]);
        garage.key_id = vars["AWS_ACCESS_KEY_ID"].to_owned();
        garage.secret = vars["AWS_SECRET_ACCESS_KEY"].to_owned();
        garage.bucket = vars["S3_BUCKET"].to_owned();
        garage.region = vars["S3_REGION"].to_owned();
        garage
    }

    /// The folder holding the nodes' configs, data, logs and `env`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn nodes(&self) -> usize {
        self.endpoints.len()
    }

    /// S3 endpoint of node `k` (1-based, as the script's `nodeK` files).
    pub fn endpoint(&self, k: usize) -> &str {
        &self.endpoints[k - 1]
    }

    /// SIGKILL node `k` (1-based): a power cut, no goodbye to its peers.
    pub fn kill(&self, k: usize) {
        let out = self.script(&["stop", &k.to_string()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts node `k` (1-based) again with its config and data.
    pub fn restart(&self, k: usize) {
        let out = self.script(&["start", &k.to_string()]);
        assert!(
            out.status.success(),
            "garage-cluster.sh start {k} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for k in 1..=self.nodes().max(3) {
            if let Ok(log) = std::fs::read_to_string(self.dir().join(format!("node{k}.log"))) {
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                text.push_str(&format!("--- garage node{k}.log (last lines)\n"));
                for line in tail.iter().rev() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        text
    }

    fn script(&self, args: &[&str]) -> Output {
        let (command, rest) = args.split_first().expect("command");
        // Each step of the script is bounded; this bounds the whole.
        Command::new("timeout")
            .args(["120", "bash"])
            .arg(script())
            .arg(command)
            .arg(self.dir())
            .args(rest)
            .env("GARAGE_BIN", garage_bin())
            // Stops the nodes should this test process die without dropping.
            .env("GARAGE_CLUSTER_OWNER", std::process::id().to_string())
            .output()
            .expect("run garage-cluster.sh")
    }

    // ------------------------------------------------- our server in front --

    /// The `[storage]` tables of app.toml putting a server in S3 mode on node
    /// `k`'s endpoint; `s3` replaces or adds `[storage.s3]` keys (values as
    /// TOML, e.g. `("part_size_bytes", "8388608")`).
    pub fn storage_toml(&self, k: usize, s3: &[(&str, &str)]) -> String {
        let mut keys: Vec<(String, String)> = [
            ("endpoint", format!("\"{}\"", self.endpoint(k))),
            ("bucket", format!("\"{}\"", self.bucket)),
            ("region", format!("\"{}\"", self.region)),
            ("path_style", "true".to_owned()),
            ("key_prefix", "\"\"".to_owned()),
            ("part_size_bytes", "16777216".to_owned()),
            ("parts_in_flight", "4".to_owned()),
            ("buffer_budget_bytes", "268435456".to_owned()),
            ("connect_timeout_secs", "5".to_owned()),
            ("request_timeout_secs", "60".to_owned()),
            ("retries", "3".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (key, value) in s3 {
            match keys.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = (*value).to_owned(),
                None => keys.push(((*key).to_owned(), (*value).to_owned())),
            }
        }
        let mut toml = String::from("\n[storage]\nbackend = \"s3\"\n\n[storage.s3]\n");
        for (key, value) in keys {
            toml.push_str(&format!("{key} = {value}\n"));
        }
        toml
    }

    /// The credentials, as the server reads them from its environment.
    pub fn credentials(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".to_owned(), self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), self.secret.clone()),
        ]
    }

    /// One started server in S3 mode per name, server `i` talking to Garage
    /// node `i % nodes + 1`; no server is another's peer (the store
    /// replicates). `settings` are top-level app.toml lines for all.
    pub fn front_ends(&self, names: &[&str], settings: &str, s3: &[(&str, &str)]) -> Cluster {
        let mut cluster = Cluster::new(names, settings);
        for (i, node) in cluster.nodes.iter_mut().enumerate() {
            node.use_s3(self, i % self.nodes() + 1, s3);
        }
        cluster.start_all();
        cluster
    }

    // ------------------------------------------------ S3 through curl --

    /// One signed S3 request to node `k` with curl; `path` starts at the
    /// bucket (`/images/2026/1/2/x.jpg`, `/images?list-type=2`). The body
    /// goes to `out` (a file) when given, else to stdout. The status code is
    /// the last line of stdout.
    pub fn curl(&self, k: usize, method: &str, path: &str, args: &[&str]) -> Output {
        Command::new("curl")
            .args(["-sS", "--max-time", "120", "-X", method])
            .arg("--aws-sigv4")
            .arg(format!("aws:amz:{}:s3", self.region))
            .arg("--user")
            .arg(format!("{}:{}", self.key_id, self.secret))
            // Garage requires it; curl before 8.x does not send it unasked.
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .arg(format!("{}{path}", self.endpoint(k)))
            .output()
            .expect("curl")
    }

    /// PUT `bytes` as object `key` through node `k`; the status.
    pub fn put(&self, k: usize, key: &str, bytes: &[u8]) -> u16 {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), bytes).expect("write body");
        let out = self.curl(
            k,
            "PUT",
            &format!("/{}/{key}", self.bucket),
            &["--data-binary", &format!("@{}", file.path().display())],
        );
        status_of(&out)
    }

    /// GET object `key` through node `k`: status and body.
    pub fn get(&self, k: usize, key: &str) -> (u16, Vec<u8>) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let out = self.curl(
            k,
            "GET",
            &format!("/{}/{key}", self.bucket),
            &["-o", &file.path().display().to_string()],
        );
        (
            status_of(&out),
            std::fs::read(file.path()).unwrap_or_default(),
        )
    }

    /// Every object of the bucket (ListObjectsV2, page after page): key → size.
    pub fn list(&self, k: usize) -> BTreeMap<String, u64> {
        self.listing(k)
            .into_iter()
            .map(|(key, object)| (key, object.size))
            .collect()
    }

    /// Every object of the bucket with its size, ETag and LastModified.
    pub fn listing(&self, k: usize) -> BTreeMap<String, Listed> {
        let mut objects = BTreeMap::new();
        let mut token: Option<String> = None;
        // Bounded: 1000 keys a page, far more pages than any test writes.
        for _ in 0..100 {
            // Parameters in sorted order: older curls sign the query as written.
            let query = match &token {
                None => format!("/{}?list-type=2&max-keys=1000", self.bucket),
                Some(t) => format!(
                    "/{}?continuation-token={}&list-type=2&max-keys=1000",
                    self.bucket,
                    percent_encode(t)
                ),
            };
            let out = self.curl(k, "GET", &query, &[]);
            let (status, xml) = split_status(&out);
            assert_eq!(status, 200, "ListObjectsV2: {xml}");
            for contents in xml.split("<Contents>").skip(1) {
                let key = tag(contents, "Key").expect("Key");
                let object = Listed {
                    size: tag(contents, "Size")
                        .and_then(|s| s.parse().ok())
                        .expect("Size"),
                    etag: tag(contents, "ETag").unwrap_or_default(),
                    last_modified: tag(contents, "LastModified").unwrap_or_default(),
                };
                objects.insert(xml_unescape(&key), object);
            }
            if tag(&xml, "IsTruncated").as_deref() != Some("true") {
                return objects;
            }
            token = Some(tag(&xml, "NextContinuationToken").expect("NextContinuationToken"));
        }
        panic!("more than 100 pages of objects");
    }

    /// The keys of the bucket's open multipart uploads (ListMultipartUploads).
    pub fn uploads(&self, k: usize) -> Vec<String> {
        // `uploads=`, not `uploads`: curl signs the query as written, and
        // the canonical form of an empty parameter has the `=`.
        let out = self.curl(k, "GET", &format!("/{}?uploads=", self.bucket), &[]);
        let (status, xml) = split_status(&out);
        assert_eq!(status, 200, "ListMultipartUploads: {xml}");
        xml.split("<Upload>")
            .skip(1)
            .map(|u| xml_unescape(&tag(u, "Key").expect("Key")))
            .collect()
    }

    /// SHA-256 and size of each object of `keys`, read through node `k`
    /// (one curl process per hundred objects).
    pub fn sha256s(&self, k: usize, keys: &[String]) -> BTreeMap<String, (String, u64)> {
        let work = tempfile::tempdir().expect("tempdir");
        let mut out = BTreeMap::new();
        for (batch_no, batch) in keys.chunks(100).enumerate() {
            let mut args: Vec<String> = vec!["-w".into(), "%{http_code}\n".into()];
            for (i, key) in batch.iter().enumerate() {
                args.push("-o".into());
                args.push(
                    work.path()
                        .join(format!("{batch_no}-{i}"))
                        .display()
                        .to_string(),
                );
                args.push(format!("{}/{}/{key}", self.endpoint(k), self.bucket));
            }
            let result = Command::new("curl")
                .args(["-sS", "--max-time", "300"])
                .arg("--aws-sigv4")
                .arg(format!("aws:amz:{}:s3", self.region))
                .arg("--user")
                .arg(format!("{}:{}", self.key_id, self.secret))
                // Garage requires it; curl before 8.x does not send it unasked.
                .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
                .args(&args)
                .output()
                .expect("curl");
            let codes = String::from_utf8_lossy(&result.stdout).into_owned();
            assert_eq!(
                codes.lines().filter(|c| *c == "200").count(),
                batch.len(),
                "GET of a batch of objects: {codes} {}",
                String::from_utf8_lossy(&result.stderr)
            );
            for (i, key) in batch.iter().enumerate() {
                let bytes = std::fs::read(work.path().join(format!("{batch_no}-{i}")))
                    .expect("object body");
                out.insert(key.clone(), (super::sha256(&bytes), bytes.len() as u64));
            }
        }
        out
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.script(&["down"]);
    }
}

impl Node {
    /// Puts this (stopped) server in S3 mode on Garage node `k`: the
    /// `[storage]` tables appended to its app.toml (`s3` overrides keys of
    /// `[storage.s3]`), the credentials in its environment, and a
    /// servers.xml.config that names only itself (no peers to fan out to).
    pub fn use_s3(&mut self, garage: &Garage, k: usize, s3: &[(&str, &str)]) {
        let mut toml = std::fs::read_to_string(self.config()).expect("app.toml");
        toml.push_str(&garage.storage_toml(k, s3));
        std::fs::write(self.config(), toml).expect("app.toml");
        std::fs::write(
            self.dir.join("servers.xml.config"),
            format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<Servers>\n  \
                 <Server Name=\"{}\" Uri=\"http://127.0.0.1:{}/do.ashx\" SecurityKey=\"{}\" />\n\
                 </Servers>\n",
                self.name, self.port, self.key
            ),
        )
        .expect("servers.xml.config");
        self.env.retain(|(k, _)| !k.starts_with("AWS_"));
        self.env.extend(garage.credentials());
    }
}

/// The status code curl printed last (`-w "\n%{http_code}"`).
pub fn status_of(out: &Output) -> u16 {
    split_status(out).0
}

fn split_status(out: &Output) -> (u16, String) {
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or_else(|_| {
        panic!(
            "curl gave no status: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, body.to_owned())
}

/// The text of the first `<name>…</name>` in `xml`.
fn tag(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + end].to_owned())
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
