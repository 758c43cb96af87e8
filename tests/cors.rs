//! Cross-origin requests against the real binary (SPEC §12 "CORS", the CORS
//! row of §8): a preflight from a listed origin is answered before any key
//! check, a wildcard entry takes subdomains only, an origin not listed gets
//! no CORS header, answers to a listed origin name it and say `Vary:
//! Origin`, stored files are readable from any origin, an empty list keeps
//! the service as it was, and a bad entry stops the start.

mod common;

use std::process::Command;

use common::{BIN, Cluster, Node, jpeg, json, upload_one};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method};

const LISTED: &str = "https://www.example.com";
const SETTINGS: &str = "fsync = false\n[cors]\nallowed_origins = \
     [\"https://www.example.com\", \"https://*.example.org\", \"http://127.0.0.1:9\"]\n";

async fn preflight(node: &Node, origin: &str) -> (u16, HeaderMap) {
    let response = Client::new()
        .request(Method::OPTIONS, node.do_url("action=upload&format=json"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type, x-security-key",
        )
        .send()
        .await
        .expect("preflight");
    (response.status().as_u16(), response.headers().clone())
}

/// An upload with the key in its header, sent as a page of `origin` would.
async fn upload_from(node: &Node, origin: &str) -> (u16, HeaderMap, serde_json::Value) {
    let response = Client::new()
        .post(node.do_url("action=upload&format=json"))
        .header("Origin", origin)
        .header("X-Security-Key", &node.key)
        .multipart(common::form(&[("a.jpg", &jpeg(2_000, 7))]))
        .send()
        .await
        .expect("upload");
    let headers = response.headers().clone();
    let (status, body) = json(response).await;
    (status, headers, body)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII header"))
        .unwrap_or("")
}

/// Every `Vary` value, split at commas, lower case.
fn vary(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

fn cors_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

/// A comma-separated header value as a lower-case list.
fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    header(headers, name)
        .split(',')
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn a_preflight_from_a_listed_origin_is_answered_without_a_key() {
    let cluster = Cluster::single(SETTINGS);
    let node = &cluster.nodes[0];
    let (status, h) = preflight(node, LISTED).await;
    assert_eq!(status, 204, "{h:?}");
    assert_eq!(header(&h, "access-control-allow-origin"), LISTED);
    let methods = list(&h, "access-control-allow-methods");
    for m in ["get", "head", "post", "put", "patch", "delete", "options"] {
        assert!(methods.contains(&m.to_owned()), "{m} not in {methods:?}");
    }
    let allowed = list(&h, "access-control-allow-headers");
    for name in [
        "x-security-key",
        "x-upload-token",
        "authorization",
        "content-type",
        "tus-resumable",
        "upload-length",
        "upload-offset",
        "upload-metadata",
        "upload-checksum",
        "upload-defer-length",
        "upload-concat",
        "x-http-method-override",
        "x-requested-with",
    ] {
        assert!(
            allowed.contains(&name.to_owned()),
            "{name} not in {allowed:?}"
        );
    }
    assert_eq!(header(&h, "access-control-max-age"), "7200");
    assert!(vary(&h).contains(&"origin".to_owned()), "{h:?}");
    assert!(!h.contains_key("access-control-allow-credentials"), "{h:?}");
    // An exact entry with a port is matched as the browser writes it.
    let (status, h) = preflight(node, "http://127.0.0.1:9").await;
    assert_eq!(status, 204);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        "http://127.0.0.1:9"
    );
}

#[tokio::test]
async fn a_wildcard_entry_takes_subdomains_with_the_same_scheme_and_port() {
    let cluster = Cluster::single(SETTINGS);
    let node = &cluster.nodes[0];
    for origin in ["https://shop.example.org", "https://a.b.example.org"] {
        let (status, h) = preflight(node, origin).await;
        assert_eq!(status, 204, "{origin}: {h:?}");
        assert_eq!(header(&h, "access-control-allow-origin"), origin);
    }
    for origin in [
        "https://example.org",
        "http://shop.example.org",
        "https://shop.example.org:8443",
        "https://shop.example.org.evil.test",
        "https://www.example.com:444",
        "http://127.0.0.1:99",
    ] {
        let (status, h) = preflight(node, origin).await;
        assert_ne!(status, 204, "{origin}");
        assert!(cors_headers(&h).is_empty(), "{origin}: {h:?}");
    }
}

#[tokio::test]
async fn an_origin_not_listed_gets_no_cors_header() {
    let cluster = Cluster::single(SETTINGS);
    let node = &cluster.nodes[0];
    let (status, h) = preflight(node, "https://evil.test").await;
    assert_ne!(status, 204);
    assert!(cors_headers(&h).is_empty(), "{h:?}");
    // The upload itself is a request like any other (the key decides); the
    // browser just keeps its answer from the page.
    let (status, h, body) = upload_from(node, "https://evil.test").await;
    assert_eq!(status, 200, "{body}");
    assert!(cors_headers(&h).is_empty(), "{h:?}");
    assert!(vary(&h).contains(&"origin".to_owned()), "{h:?}");
}

#[tokio::test]
async fn an_answer_to_a_listed_origin_names_it_and_exposes_what_a_page_reads() {
    let cluster = Cluster::single(SETTINGS);
    let node = &cluster.nodes[0];
    let (status, h, body) = upload_from(node, LISTED).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "access-control-allow-origin"), LISTED);
    assert!(!h.contains_key("access-control-allow-credentials"), "{h:?}");
    assert!(vary(&h).contains(&"origin".to_owned()), "{h:?}");
    let exposed = list(&h, "access-control-expose-headers");
    for name in [
        "location",
        "upload-offset",
        "upload-length",
        "tus-version",
        "tus-resumable",
        "tus-max-size",
        "tus-extension",
        "upload-expires",
        "etag",
        "x-upload-link",
        "x-upload-result",
    ] {
        assert!(
            exposed.contains(&name.to_owned()),
            "{name} not in {exposed:?}"
        );
    }
    // A refusal reaches the page too, so that it can show why.
    let response = Client::new()
        .post(node.do_url("action=upload&format=json"))
        .header("Origin", LISTED)
        .header("X-Security-Key", "wrong")
        .multipart(common::form(&[("a.jpg", &jpeg(2_000, 8))]))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        LISTED
    );
}

#[tokio::test]
async fn stored_files_are_readable_from_any_origin() {
    for settings in ["fsync = false\n", SETTINGS] {
        let cluster = Cluster::single(settings);
        let node = &cluster.nodes[0];
        let path = upload_one(node, &jpeg(4_000, 9)).await;
        let client = Client::new();
        for (method, url) in [
            (Method::GET, format!("{}/{path}", node.base())),
            (Method::HEAD, format!("{}/{path}", node.base())),
            (Method::GET, format!("{}/{path}-t.jpg", node.base())),
            (Method::HEAD, format!("{}/{path}-w160.jpg", node.base())),
        ] {
            for origin in [None, Some(LISTED), Some("https://evil.test")] {
                let mut request = client.request(method.clone(), &url);
                if let Some(origin) = origin {
                    request = request.header("Origin", origin);
                }
                let response = request.send().await.expect("get");
                let h = response.headers();
                assert_eq!(response.status().as_u16(), 200, "{method} {url}");
                assert_eq!(
                    header(h, "access-control-allow-origin"),
                    "*",
                    "{settings}: {method} {url} from {origin:?}"
                );
                assert!(
                    !vary(h).contains(&"origin".to_owned()),
                    "{method} {url}: a stored file does not vary by origin (CDN caches): {h:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn without_a_list_there_is_no_cors() {
    let cluster = Cluster::single("fsync = false\n[cors]\nallowed_origins = []\n");
    let node = &cluster.nodes[0];
    let (status, h) = preflight(node, LISTED).await;
    assert_eq!(status, 403, "a preflight carries no key: {h:?}");
    assert!(cors_headers(&h).is_empty(), "{h:?}");
    let (status, h, body) = upload_from(node, LISTED).await;
    assert_eq!(status, 200, "{body}");
    assert!(cors_headers(&h).is_empty(), "{h:?}");
    assert!(vary(&h).is_empty(), "{h:?}");
}

#[test]
fn an_entry_that_is_not_an_origin_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::new(&["s1"], "");
    let config = cluster.nodes[0].config();
    let base = std::fs::read_to_string(&config).expect("app.toml");
    for (entry, problem) in [
        ("https://www.example.com/upload", "not an origin"),
        ("*", "not an origin"),
        ("https://a.*.example.com", "first label"),
        ("ftp://example.com", "http:// or https://"),
    ] {
        std::fs::write(
            &config,
            format!("{base}[cors]\nallowed_origins = [\"{entry}\"]\n"),
        )
        .expect("write");
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{entry}: {stderr}");
        for part in ["app.toml", "cors.allowed_origins", entry, problem] {
            assert!(stderr.contains(part), "{entry}: `{part}` not in {stderr}");
        }
    }
    std::fs::write(
        &config,
        format!("{base}[cors]\nallowed_origins = [\"https://*.example.com\", \"http://127.0.0.1:8000\"]\n"),
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
