//! Test harness: real `multiserver-upload` processes on loopback ports, each
//! with its own folder, app.toml and servers.xml.config, started, killed and
//! restarted like an operator would.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod garage;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_multiserver-upload");

/// The program `Node::start` runs: BIN, or, when `MULTISERVER_UPLOAD_TEST_EXE`
/// is set, that program started through `MULTISERVER_UPLOAD_TEST_RUNNER`
/// (default `wine`; empty: run it directly). scripts/windows-test.sh sets it to
/// run the same tests against the Windows .exe under Wine; the harness's Linux
/// paths (`/tmp/...`) reach it through Wine's Z: drive, and `kill` reaches the
/// Windows process (the wine loader execs into it). Commands a test starts
/// itself with `Command::new(BIN)` stay on the Linux binary.
pub fn server_command() -> Command {
    let Some(exe) = std::env::var_os("MULTISERVER_UPLOAD_TEST_EXE") else {
        return Command::new(BIN);
    };
    match std::env::var_os("MULTISERVER_UPLOAD_TEST_RUNNER").unwrap_or_else(|| "wine".into()) {
        runner if runner.is_empty() => Command::new(exe),
        runner => {
            let mut command = Command::new(runner);
            command.arg(exe);
            command
        }
    }
}

/// `command` run by `sh` after `setup`, in the same process (`exec`), so
/// that what `setup` sets (limits, umask) applies to it and its pid stays
/// the one `Child` knows.
fn after_shell_line(command: Command, setup: &str) -> Command {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("{setup}\nexec \"$0\" \"$@\""))
        .arg(command.get_program())
        .args(command.get_args());
    shell
}

/// A free loopback port (bound and released; the race is acceptable here).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct Node {
    pub name: String,
    pub key: String,
    /// The admin key (delete, restore) the harness lists in `[auth]
    /// admin_keys`, unless the test's settings have an `[auth]` table.
    pub admin_key: String,
    pub port: u16,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    /// Extra `serve` flags.
    pub args: Vec<String>,
    /// A shell line run just before the server, in the process that then
    /// becomes the server (e.g. `ulimit -Sn 1024`); unix only.
    pub shell_setup: Option<String>,
    child: Option<Child>,
}

pub struct Cluster {
    _tmp: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Writes the config of one server per name; `settings` are extra
    /// app.toml lines for every server (top-level keys, then tables).
    /// Without an `[auth]` table there, each server gets one listing its
    /// `admin_key`.
    pub fn new(names: &[&str], settings: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let nodes: Vec<Node> = names
            .iter()
            .map(|name| Node {
                name: (*name).to_owned(),
                key: format!("key-{name}-{}", std::process::id()),
                // One admin key for the whole cluster: without peer keys a
                // server passes a delete on with its admin key.
                admin_key: format!("admin-{}", std::process::id()),
                port: free_port(),
                dir: tmp.path().join(name),
                env: Vec::new(),
                args: Vec::new(),
                shell_setup: None,
                child: None,
            })
            .collect();
        let servers: String = nodes
            .iter()
            .map(|n| {
                format!(
                    "  <Server Name=\"{}\" Uri=\"http://127.0.0.1:{}/do.ashx\" SecurityKey=\"{}\" />\n",
                    n.name, n.port, n.key
                )
            })
            .collect();
        for node in &nodes {
            let auth = if settings.lines().any(|l| l.trim() == "[auth]") {
                String::new()
            } else {
                format!("\n[auth]\nadmin_keys = [\"{}\"]\n", node.admin_key)
            };
            std::fs::create_dir_all(&node.dir).expect("node dir");
            std::fs::write(
                node.dir.join("servers.xml.config"),
                format!(
                    "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<Servers>\n{servers}</Servers>\n"
                ),
            )
            .expect("servers");
            std::fs::write(
                node.dir.join("app.toml"),
                format!(
                    "server_name = \"{}\"\nsecurity_key = \"{}\"\nlisten = \"127.0.0.1:{}\"\n\
                     data_dir = \"data\"\nlog_dir = \"log\"\nservers = \"servers.xml.config\"\n{settings}\n{auth}",
                    node.name, node.key, node.port
                ),
            )
            .expect("app.toml");
        }
        Self { _tmp: tmp, nodes }
    }

    /// One server, started.
    pub fn single(settings: &str) -> Self {
        let mut c = Self::new(&["s1"], settings);
        c.nodes[0].start();
        c
    }

    pub fn start_all(&mut self) {
        for n in &mut self.nodes {
            n.start();
        }
    }

    pub fn node(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }
}

impl Node {
    /// A server whose folder (with app.toml) the caller prepared.
    pub fn detached(name: &str, key: &str, port: u16, dir: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            key: key.to_owned(),
            admin_key: String::new(),
            port,
            dir,
            env: Vec::new(),
            args: Vec::new(),
            shell_setup: None,
            child: None,
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("app.toml")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// `do.ashx` with the given query, without the key.
    pub fn do_url(&self, query: &str) -> String {
        format!("{}/do.ashx?{query}", self.base())
    }
    /// `do.ashx` with the given query and the key in the URL, as the original.
    pub fn keyed(&self, query: &str) -> String {
        format!("{}/do.ashx?{query}&SecurityKey={}", self.base(), self.key)
    }
    /// `do.ashx` with the given query and the admin key in the URL.
    pub fn admin(&self, query: &str) -> String {
        format!(
            "{}/do.ashx?{query}&SecurityKey={}",
            self.base(),
            self.admin_key
        )
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stdout.log"))
            .expect("stdout log");
        let err = out.try_clone().expect("clone");
        let mut command = server_command();
        if let Some(setup) = &self.shell_setup {
            command = after_shell_line(command, setup);
        }
        let child = command
            .args(["serve", "--config"])
            .arg(self.config())
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "{} exited at start ({status}):\n{}",
                    self.name,
                    self.output()
                );
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .is_ok()
                {
                    let mut buf = String::new();
                    let _ = s.read_to_string(&mut buf);
                    if buf.starts_with("HTTP/1.1 200") {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not become ready:\n{}", self.name, self.output());
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: no chance to clean up, as a power cut.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.wait_port_closed();
        }
    }

    /// Waits (bounded) until nothing listens on this node's port. On Linux
    /// a killed process's socket is gone at once; under Wine the
    /// wineserver holds a Windows process's sockets and closes them only
    /// once it notices the death, and a restart in between binds beside
    /// the dead listener, whose connections are never answered.
    fn wait_port_closed(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline
            && TcpStream::connect_timeout(
                &([127, 0, 0, 1], self.port).into(),
                Duration::from_millis(200),
            )
            .is_ok()
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM and wait (bounded) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not exit after SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process printed, plus its log files.
    pub fn output(&self) -> String {
        let mut text = std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default();
        if let Ok(entries) = std::fs::read_dir(self.log_dir()) {
            for e in entries.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with("multiserver-upload.log")
                {
                    text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        text
    }

    /// How many lines of the daily log files satisfy `matches`.
    pub fn log_lines(&self, matches: impl Fn(&str) -> bool) -> usize {
        std::fs::read_dir(self.log_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("multiserver-upload.log")
            })
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .map(|text| text.lines().filter(|l| matches(l)).count())
            .sum()
    }

    /// Stored files (relative path with `/`, content), temporary files excluded.
    pub fn stored(&self) -> Vec<(String, Vec<u8>)> {
        stored_in(&self.data_dir())
    }

    /// Files under `data/.tmp`: must be empty whenever nothing is in flight.
    pub fn temp_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.data_dir().join(".tmp"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Adds a `<Server>` entry to this server's servers.xml.config (takes
    /// effect at the next start).
    pub fn add_server(&self, name: &str, uri: &str, key: &str) {
        let path = self.dir.join("servers.xml.config");
        let xml = std::fs::read_to_string(&path).expect("servers.xml.config");
        let entry =
            format!("  <Server Name=\"{name}\" Uri=\"{uri}\" SecurityKey=\"{key}\" />\n</Servers>");
        std::fs::write(&path, xml.replace("</Servers>", &entry)).expect("servers.xml.config");
    }

    /// The process's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.pid().expect("running");
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("proc status")
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// Entries of `log/upload-errors.jsonl`.
    pub fn journal(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.log_dir().join("upload-errors.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stored files below the data folder `root` (relative path with `/`,
/// content), sorted; temporary files, index, variants and marker excluded.
pub fn stored_in(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    collect(root, root, &mut out);
    out.sort();
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        // `.tmp`, the index and the server marker are not stored files.
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let rel = path
                .strip_prefix(root)
                .expect("below root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, std::fs::read(&path).expect("read stored")));
        }
    }
}

/// The start of a baseline JPEG as cameras write it: SOI, APP0 "JFIF" 1.1,
/// and a frame header (SOF0, 640×480, three components), which is where the
/// service reads the dimensions.
pub const JPEG_HEAD: &[u8] =
    b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\
\xFF\xC0\x00\x11\x08\x01\xE0\x02\x80\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01";

/// A JPEG-looking file: [`JPEG_HEAD`], then `size` pseudo-random bytes.
pub fn jpeg(size: usize, seed: u64) -> Vec<u8> {
    let mut out = JPEG_HEAD.to_vec();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size.max(JPEG_HEAD.len()));
    out.extend_from_slice(b"\xFF\xD9");
    out
}

pub fn png() -> Vec<u8> {
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde".to_vec()
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A multipart form with one file part per `(filename, bytes)`.
pub fn form(files: &[(&str, &[u8])]) -> reqwest::multipart::Form {
    files
        .iter()
        .fold(reqwest::multipart::Form::new(), |f, (name, bytes)| {
            f.part(
                "file",
                reqwest::multipart::Part::bytes(bytes.to_vec())
                    .file_name((*name).to_owned())
                    .mime_str("application/octet-stream")
                    .expect("mime"),
            )
        })
}

/// Uploads `files` in one request (key in the URL, as the original) and
/// returns the status and the JSON answer.
pub async fn upload(node: &Node, files: &[(&str, &[u8])]) -> (u16, serde_json::Value) {
    json(
        reqwest::Client::new()
            .post(node.keyed("action=upload&format=json"))
            .multipart(form(files))
            .send()
            .await
            .expect("upload"),
    )
    .await
}

/// Uploads `files` in one request through `client` (JSON answer, key in the
/// header), asserts every one was stored, and returns the answer's entries.
pub async fn upload_all(
    client: &reqwest::Client,
    node: &Node,
    files: &[(&str, &[u8])],
) -> Vec<serde_json::Value> {
    let (status, v) = json(
        client
            .post(node.do_url("action=upload&format=json"))
            .header("X-Security-Key", &node.key)
            .multipart(form(files))
            .send()
            .await
            .expect("upload"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resp"]["success"], 1, "{v}");
    let entries = v["resp"]["files"].as_array().expect("files").clone();
    assert_eq!(entries.len(), files.len(), "{v}");
    entries
}

/// Uploads one file, asserts it was stored, and returns its stored path.
pub async fn upload_one(node: &Node, bytes: &[u8]) -> String {
    let (status, answer) = upload(node, &[("a.jpg", bytes)]).await;
    assert_eq!(status, 200, "{answer}");
    answer["resp"]["files"][0]["path"]
        .as_str()
        .expect("path")
        .to_owned()
}

/// curl uploading the file at `file` to `node` (`-F file=@…`, key in the
/// header, JSON answer on stdout); callers add their own options.
pub fn curl_upload_command(node: &Node, file: &Path) -> Command {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-H"])
        .arg(format!("X-Security-Key: {}", node.key))
        .arg("-F")
        .arg(format!(
            "file=@{};type=application/octet-stream",
            file.display()
        ))
        .arg(node.do_url("action=upload&format=json"));
    curl
}

/// Uploads the file at `file` with curl (at most 10 minutes), asserts it
/// was stored, and returns the JSON answer.
pub fn curl_upload(node: &Node, file: &Path) -> serde_json::Value {
    let out = curl_upload_command(node, file)
        .args(["--max-time", "600", "--fail-with-body"])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["resp"]["success"], 1, "{v}");
    v
}

/// Sends raw bytes and returns what came back until close or `wait`.
pub fn raw(port: u16, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(wait)).expect("timeout");
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The JSON answer of an upload or action.
pub async fn json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// Peak resident memory of a process so far, in KiB (Linux).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// A small tmpfs mounted on `dir` (created if missing) for as long as this
/// lives, for disk-full tests; `Err` if mounting is not permitted (not root).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(Self(dir.to_path_buf()))
        } else {
            Err(format!("mount exited with {status}"))
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Runs `replay --config {node} --url {url}` (bounded).
pub async fn run_replay(node: &Node, url: &str) -> std::process::Output {
    let command = tokio::process::Command::new(BIN)
        .args(["replay", "--config"])
        .arg(node.config())
        .args(["--url", url])
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), command)
        .await
        .expect("replay command finished")
        .expect("ran")
}

/// Waits for `child` (its output piped) to end, killing it after `within`;
/// its output, read as it comes so that a full pipe cannot stall it.
/// The progress lines of `command` (`replay`, `migrate`) in its standard
/// error, printed; at least two, or the test fails showing all of it.
pub fn progress_lines<'a>(stderr: &'a str, command: &str) -> Vec<&'a str> {
    let prefix = format!("{command}: ");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
    println!("{}", lines.join("\n"));
    assert!(lines.len() >= 2, "periodic progress lines:\n{stderr}");
    lines
}

pub fn output_within(child: Child, within: Duration) -> std::process::Output {
    let pid = child.id();
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match wait.recv_timeout(within) {
        Ok(output) => output.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("the command did not end within {within:?}");
        }
    }
}

/// Polls `f` until it is true or `within` passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
