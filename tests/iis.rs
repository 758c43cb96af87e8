//! The shipped `web.config` is a working HttpPlatformHandler 1.2
//! configuration for this binary (SPEC §7), and its `appSettings` carry the
//! original tool's keys, which the service reads.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;

#[derive(Deserialize)]
struct Configuration {
    #[serde(rename = "appSettings")]
    app_settings: AppSettings,
    #[serde(rename = "system.webServer")]
    web_server: WebServer,
}

#[derive(Deserialize)]
struct AppSettings {
    add: Vec<Setting>,
}

#[derive(Deserialize)]
struct Setting {
    #[serde(rename = "@key")]
    key: String,
}

#[derive(Deserialize)]
struct WebServer {
    handlers: Handlers,
    #[serde(rename = "httpPlatform")]
    http_platform: HttpPlatform,
    security: Security,
}

#[derive(Deserialize)]
struct Handlers {
    add: Vec<Handler>,
}

#[derive(Deserialize)]
struct Handler {
    #[serde(rename = "@modules")]
    modules: String,
    #[serde(rename = "@path")]
    path: String,
}

#[derive(Deserialize)]
struct HttpPlatform {
    #[serde(rename = "@processPath")]
    process_path: String,
    #[serde(rename = "@arguments")]
    arguments: String,
    #[serde(rename = "@requestTimeout")]
    request_timeout: String,
    #[serde(rename = "@startupTimeLimit")]
    startup_time_limit: u32,
    #[serde(rename = "@stdoutLogEnabled")]
    stdout_log_enabled: bool,
}

#[derive(Deserialize)]
struct Security {
    #[serde(rename = "requestFiltering")]
    request_filtering: RequestFiltering,
}

#[derive(Deserialize)]
struct RequestFiltering {
    #[serde(rename = "requestLimits")]
    request_limits: RequestLimits,
}

#[derive(Deserialize)]
struct RequestLimits {
    #[serde(rename = "@maxAllowedContentLength")]
    max_allowed_content_length: u64,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn web_config_starts_this_binary_through_http_platform_handler() {
    let text = std::fs::read_to_string(repo().join("web.config")).expect("web.config");
    let c: Configuration = quick_xml::de::from_str(&text).expect("valid web.config");
    let w = &c.web_server;
    assert!(
        w.handlers
            .add
            .iter()
            .any(|h| h.modules == "httpPlatformHandler" && h.path == "*"),
        "every request goes to httpPlatformHandler"
    );
    let p = &w.http_platform;
    assert!(
        p.process_path.ends_with("multiserver-upload.exe"),
        "{}",
        p.process_path
    );
    assert!(
        p.arguments.contains("%HTTP_PLATFORM_PORT%"),
        "{}",
        p.arguments
    );
    assert!(
        p.arguments.contains("127.0.0.1:%HTTP_PLATFORM_PORT%"),
        "loopback only"
    );
    assert!(p.stdout_log_enabled);
    assert!(p.startup_time_limit >= 10);
    let parts: Vec<u64> = p
        .request_timeout
        .split(':')
        .map(|n| n.parse().expect("hh:mm:ss"))
        .collect();
    let secs = parts.iter().fold(0, |acc, n| acc * 60 + n);
    assert!(
        secs >= 20 * 60,
        "requestTimeout {} too short for large uploads",
        p.request_timeout
    );

    // IIS must let through every request the service itself accepts.
    let app: toml::Table = std::fs::read_to_string(repo().join("app.toml"))
        .expect("app.toml")
        .parse()
        .expect("toml");
    let max_file = app["max_file_bytes"].as_integer().expect("max_file_bytes") as u64;
    let max_request = app
        .get("max_request_bytes")
        .and_then(|v| v.as_integer())
        .map_or(max_file + (1 << 20), |v| v as u64);
    let limit = w
        .security
        .request_filtering
        .request_limits
        .max_allowed_content_length;
    assert!(limit > 30_000_000, "IIS's default would answer 404.13");
    assert_eq!(
        limit, max_request,
        "maxAllowedContentLength = max_request_bytes"
    );

    let keys: Vec<&str> = c.app_settings.add.iter().map(|s| s.key.as_str()).collect();
    for key in ["ServerName", "Servers", "SecurityKey", "Log", "Domain"] {
        assert!(keys.contains(&key), "appSettings lacks {key}");
    }
}

#[test]
fn the_service_reads_the_shipped_web_config_app_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["web.config", "servers.xml.config"] {
        std::fs::copy(repo().join(f), dir.path().join(f)).expect("copy");
    }
    // An app.toml that leaves everything to web.config.
    std::fs::write(dir.path().join("app.toml"), "").expect("app.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_multiserver-upload"))
        .args(["check-config", "--config"])
        .arg(dir.path().join("app.toml"))
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("server_name   s1"), "{stdout}");
    assert!(stdout.contains("peer          s2"), "{stdout}");
}
