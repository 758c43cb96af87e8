//! Upload tokens (SPEC §12) against the real binary: every refusal names
//! its reason and stores nothing, a token's limits hold while the file
//! streams, `max_files` survives a restart, tokens minted offline by the
//! snippets of docs/keys-and-tokens.md upload, a token works on every server sharing the
//! secret and under an older secret, a token may only upload, and
//! `action=token` mints in XML and JSON.
//!
//! Tokens here are signed by [`sign`], written from the SPEC's formula with
//! the `hmac` and `base64` crates, not with the service's own code.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use common::{Cluster, Node, jpeg, png};

const K2: &str = "token-secret-two";
const K1: &str = "token-secret-one";
const ADMIN: &str = "admin-key-of-the-token-tests";
/// k2 is listed first: it mints; k1 is the older secret, still accepted.
const SETTINGS: &str = "fsync = false\n\
    [auth]\n\
    token_secrets = { k2 = \"token-secret-two\", k1 = \"token-secret-one\" }\n\
    admin_keys = [\"admin-key-of-the-token-tests\"]\n\
    max_token_secs = 7200\n";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// `base64url(claims) "." base64url(HMAC-SHA256(secret, base64url(claims)))`.
fn sign(secret: &str, claims: &Value) -> String {
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    format!(
        "{body}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// A token under `kid`/`secret` valid for ten minutes, with `extra` claims.
fn token(kid: &str, secret: &str, extra: Value) -> String {
    let mut claims =
        json!({ "kid": kid, "exp": now() + 600, "jti": uuid::Uuid::new_v4().to_string() });
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    sign(secret, &claims)
}

fn file_part(name: &str, bytes: &[u8]) -> Part {
    Part::bytes(bytes.to_vec())
        .file_name(name.to_owned())
        .mime_str("application/octet-stream")
        .expect("mime")
}

/// Where a request carries its token.
#[derive(Clone, Copy)]
enum Via {
    Bearer,
    Header,
}

async fn upload_with(
    node: &Node,
    token: &str,
    via: Via,
    origin: Option<&str>,
    files: &[(&str, &[u8])],
) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(node.do_url("action=upload&format=json"));
    request = match via {
        Via::Bearer => request.bearer_auth(token),
        Via::Header => request.header("X-Upload-Token", token),
    };
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    let form = files.iter().fold(Form::new(), |f, (name, bytes)| {
        f.part("file", file_part(name, bytes))
    });
    common::json(request.multipart(form).send().await.expect("upload")).await
}

fn assert_refused(answer: &(u16, Value), status: u16, reason: &str) {
    let (code, v) = answer;
    assert_eq!(*code, status, "{v}");
    assert_eq!(v["resp"]["success"], 0, "{v}");
    let error = v["resp"]["error"].as_str().unwrap_or_default();
    assert!(error.contains(reason), "`{reason}` not in `{error}`");
}

/// No secret, and no token signature, in anything the server wrote.
fn assert_logs_keep_secrets(node: &Node, tokens: &[&str]) {
    let logs = node.output();
    assert!(
        logs.contains("action=upload"),
        "the request lines are there"
    );
    for secret in [K1, K2, ADMIN] {
        assert!(!logs.contains(secret), "a token secret or key in the logs");
    }
    for token in tokens {
        let signature = token.rsplit('.').next().expect("signature");
        assert!(!logs.contains(signature), "a token signature in the logs");
    }
}

#[tokio::test]
async fn every_refusal_names_its_reason_and_stores_nothing() {
    let cluster = Cluster::single(SETTINGS);
    let s1 = &cluster.nodes[0];
    let image = jpeg(5000, 1);
    let files: &[(&str, &[u8])] = &[("a.jpg", &image)];
    let bad_signature = token("k1", "not-the-secret", json!({}));
    let unknown_kid = token("k9", K1, json!({}));
    let expired = sign(K1, &json!({ "kid": "k1", "exp": now() - 600, "jti": "e1" }));
    let for_a = token("k1", K1, json!({ "origin": "https://a.example" }));
    let cases = [
        (bad_signature.as_str(), None, "bad signature"),
        (unknown_kid.as_str(), None, "unknown kid"),
        (expired.as_str(), None, "expired"),
        (for_a.as_str(), Some("https://b.example"), "another origin"),
        (for_a.as_str(), None, "another origin"),
        ("not-a-token", None, "malformed"),
    ];
    for (i, (token, origin, reason)) in cases.iter().enumerate() {
        let via = if i % 2 == 0 { Via::Bearer } else { Via::Header };
        let answer = upload_with(s1, token, via, *origin, files).await;
        assert_refused(&answer, 403, reason);
    }
    assert!(s1.stored().is_empty());
    assert!(s1.temp_files().is_empty());

    // Refused on the headers: the answer comes while the body is unsent.
    let head = format!(
        "POST /do.ashx?action=upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {expired}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000000\r\n\r\n"
    );
    let answer = common::raw(s1.port, head.as_bytes(), Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("expired"), "{answer}");

    // The right origin passes.
    let (status, v) = upload_with(s1, &for_a, Via::Bearer, Some("https://a.example"), files).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s1.stored().len(), 1);
    assert_logs_keep_secrets(s1, &[&bad_signature, &unknown_kid, &expired, &for_a]);
}

#[tokio::test]
async fn a_token_limits_size_and_type_while_streaming_and_keeps_nothing_over_them() {
    let cluster = Cluster::single(SETTINGS);
    let s1 = &cluster.nodes[0];
    let small = token("k2", K2, json!({ "max_bytes": 20_000 }));
    let big = jpeg(300_000, 2);
    let answer = upload_with(s1, &small, Via::Bearer, None, &[("big.jpg", &big)]).await;
    assert_refused(&answer, 413, "20000");
    assert!(s1.stored().is_empty());
    assert!(s1.temp_files().is_empty());
    let fits = jpeg(10_000, 3);
    let (status, v) = upload_with(s1, &small, Via::Bearer, None, &[("ok.jpg", &fits)]).await;
    assert_eq!(status, 200, "{v}");

    let png_only = token("k2", K2, json!({ "types": ["png"] }));
    let answer = upload_with(s1, &png_only, Via::Header, None, &[("a.jpg", &fits)]).await;
    assert_refused(&answer, 415, "png");
    assert_eq!(s1.stored().len(), 1, "the refused jpg is not kept");
    assert!(s1.temp_files().is_empty());
    let (status, v) = upload_with(s1, &png_only, Via::Header, None, &[("a.png", &png())]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s1.stored().len(), 2);
}

#[tokio::test]
async fn a_token_in_a_form_field_before_the_first_file_uploads() {
    let cluster = Cluster::single(SETTINGS);
    let s1 = &cluster.nodes[0];
    let image = jpeg(5000, 4);
    let send = |form: Form| async {
        common::json(
            reqwest::Client::new()
                .post(s1.do_url("action=upload&format=json"))
                .multipart(form)
                .send()
                .await
                .expect("upload"),
        )
        .await
    };
    let good = token("k1", K1, json!({}));
    let (status, v) = send(
        Form::new()
            .text("token", good.clone())
            .part("file", file_part("a.jpg", &image)),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s1.stored().len(), 1);

    let answer = send(
        Form::new()
            .part("file", file_part("a.jpg", &image))
            .text("token", good.clone()),
    )
    .await;
    assert_refused(&answer, 403, "");
    let answer = send(
        Form::new()
            .text("token", token("k1", "wrong", json!({})))
            .part("file", file_part("a.jpg", &image)),
    )
    .await;
    assert_refused(&answer, 403, "bad signature");
    // No credential at all: 403, whatever the body is.
    let answer = send(Form::new().text("note", "no token here")).await;
    assert_refused(&answer, 403, "");
    let answer = common::json(
        reqwest::Client::new()
            .post(s1.do_url("action=upload&format=json"))
            .body("not a form")
            .send()
            .await
            .expect("upload"),
    )
    .await;
    assert_refused(&answer, 403, "");
    assert_eq!(s1.stored().len(), 1);
    assert!(s1.temp_files().is_empty());
}

#[test]
fn check_config_names_the_minting_secret_and_shows_no_secret() {
    let cluster = Cluster::new(&["s1"], SETTINGS);
    let out = Command::new(common::BIN)
        .args(["check-config", "--config"])
        .arg(cluster.nodes[0].config())
        .output()
        .expect("check-config");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("minted with `k2`, `k1` accepted"), "{text}");
    for secret in [K1, K2, ADMIN] {
        assert!(!text.contains(secret), "{text}");
    }
    // The environment lists them in order too, and wins over app.toml.
    let out = Command::new(common::BIN)
        .args(["check-config", "--config"])
        .arg(cluster.nodes[0].config())
        .env(
            "MULTISERVER_UPLOAD_AUTH_TOKEN_SECRETS",
            "k3=a-third-token-secret, k2=token-secret-two",
        )
        .output()
        .expect("check-config");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("minted with `k3`, `k2` accepted;"), "{text}");
    assert!(!text.contains("a-third-token-secret"), "{text}");
}

#[tokio::test]
async fn max_files_counts_every_file_and_holds_across_a_restart() {
    let mut cluster = Cluster::single(SETTINGS);
    let two = token("k2", K2, json!({ "max_files": 2 }));
    let (a, b, c) = (jpeg(3000, 5), jpeg(3000, 6), jpeg(3000, 7));
    let s1 = &cluster.nodes[0];
    // Three files, two allowed: the first two are stored and listed.
    let answer = upload_with(
        s1,
        &two,
        Via::Bearer,
        None,
        &[("a.jpg", &a), ("b.jpg", &b), ("c.jpg", &c)],
    )
    .await;
    assert_refused(&answer, 403, "spent");
    assert_eq!(answer.1["resp"]["files"].as_array().map(Vec::len), Some(2));
    assert_eq!(s1.stored().len(), 2);

    let one = token("k1", K1, json!({ "max_files": 1 }));
    let (status, v) = upload_with(s1, &one, Via::Header, None, &[("a.jpg", &c)]).await;
    assert_eq!(status, 200, "{v}");

    let s1 = cluster.node(0);
    s1.kill();
    s1.start();
    let s1 = &cluster.nodes[0];
    for spent in [&two, &one] {
        let answer = upload_with(s1, spent, Via::Bearer, None, &[("d.jpg", &a)]).await;
        assert_refused(&answer, 403, "spent");
    }
    assert_eq!(s1.stored().len(), 3);
    // A refused file gives its place back: a token for one png, first
    // sent a jpg, still stores its png.
    let png_once = token("k1", K1, json!({ "max_files": 1, "types": ["png"] }));
    let answer = upload_with(s1, &png_once, Via::Bearer, None, &[("a.jpg", &a)]).await;
    assert_refused(&answer, 415, "png");
    let (status, v) = upload_with(s1, &png_once, Via::Bearer, None, &[("a.png", &png())]).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn concurrent_uploads_with_one_token_store_at_most_max_files() {
    let cluster = Cluster::single(SETTINGS);
    let s1 = &cluster.nodes[0];
    let three = token("k1", K1, json!({ "max_files": 3 }));
    let uploads = (0..8u64).map(|i| {
        let three = three.clone();
        async move {
            let image = jpeg(50_000, 60 + i);
            upload_with(s1, &three, Via::Bearer, None, &[("a.jpg", &image)]).await
        }
    });
    let answers = futures_util::future::join_all(uploads).await;
    let stored = answers.iter().filter(|(status, _)| *status == 200).count();
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(stored, 3, "{statuses:?}");
    for answer in answers.iter().filter(|(status, _)| *status != 200) {
        assert_refused(answer, 403, "spent");
    }
    assert_eq!(s1.stored().len(), 3);
}

/// Runs a snippet's minting with `args` (kid secret ttl max_files
/// max_bytes) and returns the token it printed.
fn minted_by(command: &mut Command) -> String {
    let out = command.output().expect("the snippet ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/tokens")
        .join(name)
}

#[tokio::test]
async fn tokens_minted_by_the_documented_snippets_upload() {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/keys-and-tokens.md"),
    )
    .expect("docs/keys-and-tokens.md");
    for snippet in [
        "UploadToken.cs",
        "mint_upload_token.py",
        "mint-upload-token.js",
        "mint_upload_token.php",
    ] {
        let text = std::fs::read_to_string(example(snippet)).expect("snippet");
        assert!(
            page.contains(text.trim_end()),
            "docs/keys-and-tokens.md does not show {snippet} as it is"
        );
    }

    let cluster = Cluster::single(SETTINGS);
    let s1 = &cluster.nodes[0];
    let work = tempfile::tempdir().expect("tempdir");
    let exe = work.path().join("mint.exe");
    let status = Command::new("mcs")
        .arg(format!("-out:{}", exe.display()))
        .arg(example("UploadToken.cs"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/csharp/MintToken.cs"))
        .status()
        .expect("mcs not found: run scripts/install-test-tools.sh (Debian's mono-mcs)");
    assert!(status.success(), "mcs failed");
    let origin = "https://shop.example";
    let args = ["k1", K1, "600", "1", "100000", origin];
    let csharp = minted_by(Command::new("mono").arg(&exe).args(args));
    let python = minted_by(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import sys; sys.path.insert(0, sys.argv[1]); \
                 from mint_upload_token import mint_upload_token as m; \
                 a = sys.argv[2:]; print(m(a[0], a[1], int(a[2]), int(a[3]), int(a[4]), a[5]))",
            )
            .arg(example(""))
            .args(args),
    );
    let node = minted_by(
        Command::new("node")
            .arg("-e")
            .arg(
                "const { mintUploadToken } = require(process.argv[1]); const a = process.argv.slice(2); \
                 console.log(mintUploadToken(a[0], a[1], +a[2], +a[3], +a[4], a[5]));",
            )
            .arg(example("mint-upload-token.js"))
            .args(args),
    );
    for (i, (language, token)) in [("C#", &csharp), ("Python", &python), ("Node", &node)]
        .into_iter()
        .enumerate()
    {
        let image = jpeg(5000, 10 + i as u64);
        let (status, v) =
            upload_with(s1, token, Via::Bearer, Some(origin), &[("a.jpg", &image)]).await;
        assert_eq!(status, 200, "{language}: {v}");
        // Its claims hold: one file, this origin.
        let again = upload_with(s1, token, Via::Bearer, Some(origin), &[("b.jpg", &image)]).await;
        assert_refused(&again, 403, "spent");
        let elsewhere = upload_with(s1, token, Via::Bearer, None, &[("b.jpg", &image)]).await;
        assert_refused(&elsewhere, 403, "another origin");
    }
    assert_eq!(s1.stored().len(), 3);
}

#[tokio::test]
async fn a_token_works_on_every_server_sharing_the_secret_and_under_the_older_one() {
    let mut cluster = Cluster::new(&["s1", "s2"], SETTINGS);
    cluster.start_all();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let older = token("k1", K1, json!({ "max_files": 5 }));
    for (i, node) in [s1, s2].into_iter().enumerate() {
        let image = jpeg(4000, 20 + i as u64);
        let (status, v) = upload_with(node, &older, Via::Bearer, None, &[("a.jpg", &image)]).await;
        assert_eq!(status, 200, "{}: {v}", node.name);
    }
    // Minted by s1 (under k2, the first secret), used on s2.
    let (status, v) = common::json(
        reqwest::Client::new()
            .post(s1.do_url("action=token&format=json&max_files=1"))
            .header("X-Security-Key", &s1.key)
            .send()
            .await
            .expect("mint"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let minted = v["resp"]["token"].as_str().expect("token");
    let claims = URL_SAFE_NO_PAD
        .decode(minted.split('.').next().expect("claims"))
        .expect("base64url");
    let claims: Value = serde_json::from_slice(&claims).expect("json");
    assert_eq!(claims["kid"], "k2");
    let image = jpeg(4000, 30);
    let (status, v) = upload_with(s2, minted, Via::Header, None, &[("a.jpg", &image)]).await;
    assert_eq!(status, 200, "{v}");
    // Every upload was copied to the other server.
    assert!(common::eventually(Duration::from_secs(20), || {
        s1.stored().len() == 3 && s2.stored().len() == 3
    }));
}

#[tokio::test]
async fn a_token_may_only_upload() {
    let cluster = Cluster::single(SETTINGS);
    let s1 = &cluster.nodes[0];
    let image = jpeg(4000, 40);
    let path = common::upload_one(s1, &image).await;
    let token = token("k2", K2, json!({}));
    // The token is a valid one: it uploads.
    let (status, v) =
        upload_with(s1, &token, Via::Bearer, None, &[("b.jpg", &jpeg(4000, 41))]).await;
    assert_eq!(status, 200, "{v}");
    let client = reqwest::Client::new();
    for (method, query) in [
        ("POST", format!("action=delete&path={path}")),
        ("POST", format!("action=restore&path={path}")),
        ("POST", "action=uploaderrors".to_owned()),
        ("POST", "action=token".to_owned()),
        ("GET", "action=list&day=2014-04-15".to_owned()),
        ("GET", "action=digest&prefix=".to_owned()),
        ("PUT", format!("action=sync&path={path}")),
        ("POST", format!("action=forget&path={path}")),
    ] {
        for bearer in [true, false] {
            let request = client.request(
                method.parse().expect("method"),
                s1.do_url(&format!("{query}&format=json")),
            );
            let request = if bearer {
                request.bearer_auth(&token)
            } else {
                request.header("X-Upload-Token", &token)
            };
            let response = request.body(image.clone()).send().await.expect("send");
            assert_eq!(response.status(), 403, "{method} {query}");
        }
    }
    // A repair fetch with a token is not a peer's.
    let response = client
        .get(format!("{}/{path}", s1.base()))
        .header("X-Multiserver-Repair", "1")
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 403, "a repair fetch");
    assert_eq!(s1.stored().len(), 2, "nothing deleted");
}

#[tokio::test]
async fn action_token_answers_in_xml_and_json_and_caps_the_ttl() {
    let cluster = Cluster::single(SETTINGS);
    let s1 = &cluster.nodes[0];
    let client = reqwest::Client::new();
    let before = now();
    let xml = client
        .post(s1.do_url("action=token&ttl_secs=999999&types=png"))
        .header("X-Security-Key", &s1.key)
        .send()
        .await
        .expect("mint");
    assert_eq!(xml.status(), 200);
    assert!(
        xml.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/xml")
    );
    let xml = xml.text().await.expect("body");
    let field = |name: &str| {
        xml.split(&format!("<{name}>"))
            .nth(1)
            .and_then(|s| s.split(&format!("</{name}>")).next())
            .unwrap_or_else(|| panic!("no {name} in {xml}"))
            .to_owned()
    };
    assert!(
        xml.starts_with("<resp><success>1</success><token>"),
        "{xml}"
    );
    let exp: i64 = field("exp").parse().expect("exp");
    assert!(
        (before + 7200..=now() + 7200).contains(&exp),
        "ttl capped by max_token_secs"
    );
    let png_only = field("token");
    let answer = upload_with(
        s1,
        &png_only,
        Via::Bearer,
        None,
        &[("a.jpg", &jpeg(3000, 50))],
    )
    .await;
    assert_refused(&answer, 415, "png");

    // JSON body, admin key, JSON answer.
    let (status, v) = common::json(
        client
            .post(s1.do_url("action=token&format=json"))
            .header("X-Security-Key", ADMIN)
            .json(&json!({ "ttl_secs": 60, "max_files": 1, "max_bytes": 100000, "origin": "https://shop.example" }))
            .send()
            .await
            .expect("mint"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let exp = v["resp"]["exp"].as_i64().expect("exp");
    assert!((before + 60..=now() + 60).contains(&exp), "{v}");
    let one = v["resp"]["token"].as_str().expect("token").to_owned();
    let image = jpeg(3000, 51);
    let (status, answer) = upload_with(
        s1,
        &one,
        Via::Bearer,
        Some("https://shop.example"),
        &[("a.jpg", &image)],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let again = upload_with(
        s1,
        &one,
        Via::Bearer,
        Some("https://shop.example"),
        &[("a.jpg", &image)],
    )
    .await;
    assert_refused(&again, 403, "spent");

    // No key, a wrong key, or a request that could store nothing.
    let no_key = client
        .post(s1.do_url("action=token&format=json"))
        .send()
        .await
        .expect("mint");
    assert_eq!(no_key.status(), 403);
    for bad in [
        "max_files=0",
        "types=svg",
        "origin=https%3A%2F%2Fshop.example%2F",
        "ttl_secs=soon",
    ] {
        let response = client
            .post(s1.do_url(&format!("action=token&format=json&{bad}")))
            .header("X-Security-Key", &s1.key)
            .send()
            .await
            .expect("mint");
        assert_eq!(response.status(), 400, "{bad}");
    }
    assert_logs_keep_secrets(s1, &[&png_only, &one]);
}
