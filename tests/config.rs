//! Configuration as an operator meets it (SPEC §3): the shipped files run as
//! they are, bad settings stop the start with exit code 2 and a message that
//! names the file and the key, and every source (web.config appSettings,
//! environment, `HTTP_PLATFORM_PORT`, flags) is honoured.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{BIN, Cluster, free_port, jpeg, upload};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn check(config: &Path, envs: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(config)
        .envs(envs.iter().copied())
        .output()
        .expect("run")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_shipped_files_are_valid() {
    let o = check(&repo().join("app.toml"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("peer          s2 http://127.0.0.1:8081/do.ashx"),
        "{text}"
    );
}

#[tokio::test]
async fn the_shipped_files_serve_uploads_out_of_the_box() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["app.toml", "servers.xml.config"] {
        std::fs::copy(repo().join(f), dir.path().join(f)).expect("copy");
    }
    let port = free_port();
    let mut node = common::Node::detached("s1", "change-me", port, dir.path().to_path_buf());
    node.args = vec!["--listen".into(), format!("127.0.0.1:{port}")];
    node.start();
    let (status, v) = upload(&node, &[("a.jpg", &jpeg(1000, 1))]).await;
    assert_eq!(status, 200, "{v}");
    // s2 is not running: the copy is journaled, the upload still succeeds.
    assert_eq!(v["resp"]["files"][0]["replicas"][0]["peer"], "s2");
    assert_eq!(v["resp"]["files"][0]["replicas"][0]["journaled"], 1);
    assert_eq!(node.stored().len(), 1);
    assert_eq!(node.journal().len(), 1);
}

fn write(dir: &Path, app: &str) -> std::path::PathBuf {
    std::fs::write(
        dir.join("servers.xml.config"),
        r#"<Servers><Server Name="s1" Uri="http://127.0.0.1:1/do.ashx" SecurityKey="k1"/><Server Name="s2" Uri="http://127.0.0.1:2/do.ashx" SecurityKey="k2"/></Servers>"#,
    )
    .expect("servers");
    std::fs::write(dir.join("app.toml"), app).expect("app.toml");
    dir.join("app.toml")
}

#[test]
fn bad_settings_exit_2_naming_file_and_key() {
    let cases = [
        (
            "server_name = \"s1\"\nsecurity_key = \"k\"\nfsnyc = true\n",
            "fsnyc",
        ),
        (
            "server_name = \"s1\"\nsecurity_key = \"k\"\nmax_file_bytes = \"big\"\n",
            "max_file_bytes",
        ),
        (
            "server_name = \"s9\"\nsecurity_key = \"k\"\n",
            "Server/@Name",
        ),
        ("server_name = \"s1\"\n", "security_key"),
        (
            "server_name = \"s1\"\nsecurity_key = \"k\"\nlisten = \"nowhere\"\n",
            "listen",
        ),
        (
            "server_name = \"s1\"\nsecurity_key = \"k\"\nallowed_types = [\"svg\"]\n",
            "allowed_types",
        ),
        (
            "server_name = \"s1\"\nsecurity_key = \"k\"\ndomain = \"i-1.xx.com\"\n",
            "domain",
        ),
        (
            "server_name = \"s1\"\nsecurity_key = \"k\"\n[replication]\nconcurrency = 0\n",
            "replication.concurrency",
        ),
        (
            "server_name = \"s1\"\nsecurity_key = \"change-me\"\nlisten = \"0.0.0.0:8080\"\n",
            "security_key",
        ),
        (
            "server_name = \"s1\"\nsecurity_key = \"change-me\"\n\
             trusted_proxies = [\"127.0.0.1\", \"192.0.2.10\"]\n",
            "security_key",
        ),
    ];
    for (app, key) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = check(&write(dir.path(), app), &[]);
        assert_eq!(o.status.code(), Some(2), "{app}");
        let e = stderr(&o);
        assert!(e.contains(&format!("`{key}`")), "{app}: {e}");
        assert!(
            e.contains(".toml") || e.contains("servers.xml.config"),
            "{e}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let o = check(&dir.path().join("missing.toml"), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.toml"));
    let path = write(dir.path(), "server_name = \"s1\"\nsecurity_key = \"k\"\n");
    std::fs::write(
        dir.path().join("servers.xml.config"),
        "<Servers><Server Name=",
    )
    .expect("write");
    let o = check(&path, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("servers.xml.config"), "{}", stderr(&o));
}

#[test]
fn environment_overrides_files_and_names_bad_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "server_name = \"s1\"\nsecurity_key = \"k\"\n");
    let o = check(&path, &[("MULTISERVER_UPLOAD_SERVER_NAME", "s2")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("peer          s1"));
    let o = check(&path, &[("MULTISERVER_UPLOAD_FSYNC", "maybe")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("MULTISERVER_UPLOAD_FSYNC"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_original_web_config_app_settings_fill_what_app_toml_leaves_unset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "listen = \"127.0.0.1:9\"\n");
    std::fs::write(
        dir.path().join("web.config"),
        r#"<?xml version="1.0"?>
<configuration>
  <appSettings>
    <add key="ServerName" value="s2"/>
    <add key="Servers" value="/servers.xml.config"/>
    <add key="SecurityKey" value="asdfdsfsdf"/>
    <add key="Log" value="/oldlog"/>
    <add key="Domain" value="http://i-1.xx.com"/>
  </appSettings>
</configuration>"#,
    )
    .expect("web.config");
    let o = check(&path, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("server_name   s2"), "{out}");
    assert!(out.contains("oldlog"), "{out}");
}

#[test]
fn the_placeholder_key_is_refused_under_iis_and_warned_about_on_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "server_name = \"s1\"\nsecurity_key = \"change-me\"\n",
    );
    let port = free_port().to_string();
    let o = check(&path, &[("HTTP_PLATFORM_PORT", &port)]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("`security_key`") && e.contains("IIS"), "{e}");

    let mut cluster = Cluster::new(&["s1"], "fsync = false\n");
    let node = cluster.node(0);
    let app = std::fs::read_to_string(node.config()).expect("app.toml");
    std::fs::write(
        node.config(),
        app.replace(&format!("\"{}\"", node.key), "\"change-me\""),
    )
    .expect("app.toml");
    node.start();
    assert!(
        node.output().contains("shipped placeholder"),
        "{}",
        node.output()
    );
}

#[test]
fn a_data_folder_marked_for_another_server_is_refused() {
    let mut cluster = Cluster::new(&["s1"], "fsync = false\n");
    let marker = cluster.nodes[0]
        .data_dir()
        .join(".multiserver-upload-server");
    std::fs::create_dir_all(cluster.nodes[0].data_dir()).expect("data dir");
    std::fs::write(&marker, "s9\n").expect("marker");
    let o = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(cluster.nodes[0].config())
        .output()
        .expect("run");
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("belongs to server `s9`"), "{e}");
    // Without a marker (a new disk) it starts, and marks the folder as its own.
    std::fs::remove_file(&marker).expect("rm");
    cluster.node(0).start();
    let owner = std::fs::read_to_string(&marker).expect("marker");
    assert_eq!(owner.trim(), "s1");
}

#[test]
fn http_platform_port_alone_makes_it_listen_on_loopback_there() {
    let mut cluster = Cluster::new(&["s1"], "fsync = false\n");
    let node = cluster.node(0);
    let port = free_port();
    node.port = port;
    node.env = vec![("HTTP_PLATFORM_PORT".into(), port.to_string())];
    node.start();
    let answer = common::raw(
        port,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        std::time::Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Everything a run printed: stdout, stderr and the log files.
fn printed(o: &Output, dir: &Path) -> String {
    let mut text = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(o));
    for entry in std::fs::read_dir(dir.join("log"))
        .into_iter()
        .flatten()
        .flatten()
    {
        text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    text
}

#[test]
fn credentials_in_a_peer_or_endpoint_url_are_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = |peer_uri: &str| {
        std::fs::write(
            dir.path().join("servers.xml.config"),
            format!(
                r#"<Servers><Server Name="s1" Uri="http://127.0.0.1:1/do.ashx" SecurityKey="k1"/><Server Name="s2" Uri="{peer_uri}" SecurityKey="k2"/></Servers>"#
            ),
        )
        .expect("servers");
    };
    let app = |extra: &str| {
        std::fs::write(
            dir.path().join("app.toml"),
            format!(
                "server_name = \"s1\"\nsecurity_key = \"k1\"\nlisten = \"127.0.0.1:{}\"\n\
                 data_dir = \"data\"\nlog_dir = \"log\"\n{extra}",
                free_port()
            ),
        )
        .expect("app.toml");
        dir.path().join("app.toml")
    };
    let endpoint = format!(
        "[storage.s3]\nbucket = \"b\"\nendpoint = \"http://ak:EndpointSecret2@127.0.0.1:{}\"\n\
         connect_timeout_secs = 1\nrequest_timeout_secs = 2\nretries = 0\n",
        free_port()
    );

    // The summary of check-config.
    servers("http://user:PeerSecret1@127.0.0.1:2/do.ashx");
    let o = check(&app(&endpoint), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = printed(&o, dir.path());
    assert!(text.contains("s2 http://***@127.0.0.1:2/do.ashx"), "{text}");
    assert!(text.contains("http://***@127.0.0.1:"), "{text}");

    // A configuration error quoting the URL.
    servers("ftp://user:PeerSecret1@127.0.0.1:2/do.ashx");
    let o = check(&app(""), &[]);
    assert_eq!(o.status.code(), Some(2));
    let bad_uri = printed(&o, dir.path());
    assert!(bad_uri.contains("Server/@Uri"), "{bad_uri}");

    // A start that fails reaching the store.
    servers("http://user:PeerSecret1@127.0.0.1:2/do.ashx");
    let o = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(app(&format!("[storage]\nbackend = \"s3\"\n{endpoint}")))
        .env("AWS_ACCESS_KEY_ID", "ak")
        .env("AWS_SECRET_ACCESS_KEY", "sk")
        .output()
        .expect("run");
    assert!(!o.status.success());
    let failed_start = printed(&o, dir.path());
    assert!(
        failed_start.contains("object store is unavailable") && failed_start.contains("***@"),
        "{failed_start}"
    );
    for shown in [text, bad_uri, failed_start] {
        assert!(
            !shown.contains("PeerSecret1") && !shown.contains("EndpointSecret2"),
            "{shown}"
        );
    }
}

/// The rows of the settings tables in docs/configuration.md, cell by cell.
fn documented_settings() -> Vec<Vec<String>> {
    let page = std::fs::read_to_string(repo().join("docs/configuration.md")).expect("docs");
    page.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn every_documented_variable_is_read_and_its_errors_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "server_name = \"s1\"\nsecurity_key = \"k\"\n");
    let mut tried = 0;
    for row in documented_settings() {
        let (key, ty, variable) = (&row[0], &row[1], &row[3]);
        // `x` is no number, no boolean and no list of numbers.
        if variable == "—"
            || !["integer", "number", "boolean", "list of integers"].contains(&ty.as_str())
        {
            continue;
        }
        let o = check(&path, &[(variable.as_str(), "x")]);
        assert_eq!(o.status.code(), Some(2), "{variable}");
        let e = stderr(&o);
        assert!(
            e.contains(&format!("environment variable {variable}: `{key}`: `x`")),
            "{e}"
        );
        tried += 1;
    }
    assert!(tried > 30, "{tried}");
}

#[test]
fn the_configuration_reference_is_what_the_binary_prints() {
    let o = Command::new(BIN)
        .arg("config-reference")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = String::from_utf8_lossy(&o.stdout);
    let page = std::fs::read_to_string(repo().join("docs/configuration.md")).expect("docs");
    assert!(
        page.contains(&format!(
            "<!-- settings: start -->\n{printed}<!-- settings: end -->"
        )),
        "docs/configuration.md: paste `multiserver-upload config-reference` between the markers"
    );
}
