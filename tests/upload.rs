//! The upload API against the real binary on a loopback port (SPEC §2.1,
//! §2.5, §2.6 and the upload rows of §8).

mod common;

use std::time::Duration;

use common::{Cluster, form, jpeg, json, png, raw, sha256, upload};

const FAST: &str = "fsync = false\n";

#[tokio::test]
async fn single_upload_answers_the_original_xml_and_serves_the_same_bytes() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    let image = jpeg(50_000, 1);
    let response = reqwest::Client::new()
        .post(s1.keyed("action=upload"))
        .multipart(form(&[("D:\\photos\\xx.jpg", &image)]))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/xml; charset=utf-8"
    );
    let xml = response.text().await.expect("body");
    assert!(
        xml.starts_with("<resp><success>1</success><link>http://127.0.0.1:"),
        "{xml}"
    );
    let link = xml
        .split("<link>")
        .nth(1)
        .and_then(|s| s.split("</link>").next())
        .expect("link");
    let path = link
        .split_once(&format!("127.0.0.1:{}/", s1.port))
        .expect("own host")
        .1;
    let date = chrono_like_today();
    assert!(path.starts_with(&date), "{path} vs {date}");
    assert!(path.ends_with(".jpg"));
    assert!(xml.contains("<name>xx.jpg</name>"), "{xml}");
    assert!(
        xml.contains(&format!("<sha256>{}</sha256>", sha256(&image))),
        "{xml}"
    );
    let served = reqwest::get(link).await.expect("get");
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    assert_eq!(served.headers()["x-content-type-options"], "nosniff");
    assert!(
        served.headers()["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("immutable")
    );
    assert_eq!(
        served.bytes().await.expect("bytes").as_ref(),
        image.as_slice()
    );
    assert_eq!(s1.stored().len(), 1);
    assert!(s1.temp_files().is_empty());
}

/// Today in the server's local time, `{yyyy}/{M}/{d}/`, from `date`.
fn chrono_like_today() -> String {
    let out = std::process::Command::new("date")
        .arg("+%Y/%-m/%-d/")
        .output()
        .expect("date");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn multi_file_upload_in_json() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    let (a, b) = (jpeg(10_000, 2), png());
    let (status, v) = json(
        reqwest::Client::new()
            .post(s1.do_url("action=upload&FORMAT=JSON"))
            .header("X-Security-Key", &s1.key)
            .multipart(form(&[("a.jpg", &a), ("b.png", &b)]))
            .send()
            .await
            .expect("upload"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["resp"]["success"], 1);
    let files = v["resp"]["files"].as_array().expect("files");
    assert_eq!(files.len(), 2);
    assert_eq!(v["resp"]["link"], files[0]["link"]);
    assert!(files[1]["link"].as_str().expect("link").ends_with(".png"));
    assert_eq!(files[1]["type"], "image/png");
    for (file, bytes) in files.iter().zip([&a, &b]) {
        let got = reqwest::get(file["link"].as_str().expect("link"))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(got.as_ref(), bytes.as_slice());
        assert_eq!(file["sha256"], sha256(bytes));
    }
    // The JSON begins exactly like the original's.
    let text = reqwest::Client::new()
        .post(s1.keyed("action=upload&format=json"))
        .multipart(form(&[("c.jpg", &a)]))
        .send()
        .await
        .expect("upload")
        .text()
        .await
        .expect("text");
    assert!(
        text.starts_with("{\"resp\":{\"success\":1,\"link\":\"http://"),
        "{text}"
    );
}

#[test]
fn a_forbidden_request_is_answered_before_its_body_is_read() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    let answer = raw(
        s1.port,
        b"POST /do.ashx?action=upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n\
          Content-Length: 1000000\r\nExpect: 100-continue\r\nX-Security-Key: wrong\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("<success>0</success>"), "{answer}");
}

/// A multipart body built by hand, for shapes a polite client never sends.
fn multipart(parts: &[(&[u8], &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----msu-test-boundary";
    let mut body = Vec::new();
    for (disposition, content) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(b"Content-Disposition: form-data; ");
        body.extend_from_slice(disposition);
        body.extend_from_slice(b"\r\nContent-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_raw(
    node: &common::Node,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    json(
        reqwest::Client::new()
            .post(node.keyed("action=upload&format=json"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("send"),
    )
    .await
}

fn error_of(v: &serde_json::Value) -> String {
    assert_eq!(v["resp"]["success"], 0, "{v}");
    v["resp"]["error"].as_str().expect("error text").to_owned()
}

#[tokio::test]
async fn missing_or_wrong_key_is_403_and_the_key_is_case_insensitive_by_name() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    let client = reqwest::Client::new();
    let image = jpeg(1000, 3);
    for url in [
        s1.do_url("action=upload"),
        s1.do_url("action=upload&SecurityKey=wrong"),
        s1.do_url(&format!("action=upload&SecurityKey={}x", s1.key)),
    ] {
        let r = client
            .post(&url)
            .multipart(form(&[("a.jpg", &image)]))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 403, "{url}");
        let text = r.text().await.expect("text");
        assert!(text.contains("<success>0</success>"), "{text}");
        assert!(!text.contains(&s1.key), "the key is never echoed");
    }
    for name in ["securitykey", "SECURITYKEY", "SecurityKey"] {
        let r = client
            .post(s1.do_url(&format!("action=UPLOAD&{name}={}", s1.key)))
            .multipart(form(&[("a.jpg", &image)]))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{name}");
    }
    assert_eq!(s1.stored().len(), 3);
}

#[tokio::test]
async fn unknown_or_missing_action_is_400_listing_the_valid_ones() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    for query in [
        "format=json",
        "action=remove&format=json",
        "action=&format=json",
    ] {
        let (status, v) = json(
            reqwest::Client::new()
                .get(s1.keyed(query))
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!(status, 400, "{query}");
        let error = error_of(&v);
        for action in ["upload", "uploaderrors", "sync", "delete"] {
            assert!(error.contains(action), "{error}");
        }
    }
}

#[tokio::test]
async fn bodies_that_are_not_well_formed_multipart_are_400() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    let image = jpeg(5000, 4);
    let (ct, body) = multipart(&[(b"name=\"file\"; filename=\"a.jpg\"", &image)]);
    let truncated = body[..body.len() / 2].to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("application/octet-stream", image.clone()),
        ("text/plain", b"hello".to_vec()),
        ("multipart/form-data", body.clone()),
        ("multipart/form-data; boundary=", body.clone()),
        ("multipart/form-data; boundary=not-the-one", body.clone()),
        (ct.as_str(), truncated),
        (ct.as_str(), b"garbage without any boundary".to_vec()),
    ];
    for (content_type, body) in cases {
        let (status, v) = post_raw(s1, content_type, body).await;
        assert_eq!(status, 400, "{content_type}: {v}");
        error_of(&v);
    }
    assert!(s1.stored().is_empty(), "nothing kept of a broken request");
    assert!(common::eventually(Duration::from_secs(5), || s1
        .temp_files()
        .is_empty()));
}

#[tokio::test]
async fn no_file_part_or_an_empty_file_is_400() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    let (ct, body) = multipart(&[(b"name=\"title\"", b"just a field")]);
    let (status, v) = post_raw(s1, &ct, body).await;
    assert_eq!(status, 400);
    assert!(error_of(&v).contains("no file"), "{v}");
    let (ct, body) = multipart(&[(b"name=\"file\"; filename=\"empty.jpg\"", b"")]);
    let (status, v) = post_raw(s1, &ct, body).await;
    assert_eq!(status, 400);
    assert!(error_of(&v).contains("empty"), "{v}");
    assert!(s1.stored().is_empty());
}

#[test]
fn a_declared_length_over_the_limit_is_413_before_the_body_is_read() {
    let cluster =
        Cluster::single("fsync = false\nmax_file_bytes = 100000\nmax_request_bytes = 200000\n");
    let s1 = &cluster.nodes[0];
    let answer = raw(
        s1.port,
        format!(
            "POST /do.ashx?action=upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n\
             Content-Length: 5000000000\r\nExpect: 100-continue\r\nX-Security-Key: {}\r\n\r\n",
            s1.key
        )
        .as_bytes(),
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
}

#[tokio::test]
async fn a_file_over_the_limit_is_413_and_its_partial_file_is_deleted() {
    let cluster = Cluster::single("fsync = false\nmax_file_bytes = 100000\n");
    let s1 = &cluster.nodes[0];
    let small = jpeg(1000, 5);
    let big = jpeg(300_000, 6);
    let (status, v) = upload(s1, &[("small.jpg", &small), ("big.jpg", &big)]).await;
    assert_eq!(status, 413, "{v}");
    assert!(error_of(&v).contains("100000"), "{v}");
    // The file stored before the failing part stays, and is listed.
    let files = v["resp"]["files"].as_array().expect("files listed");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["name"], "small.jpg");
    let stored = s1.stored();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1, small);
    assert!(common::eventually(Duration::from_secs(5), || s1
        .temp_files()
        .is_empty()));
}

#[tokio::test]
async fn too_many_files_is_413() {
    let cluster = Cluster::single("fsync = false\nmax_files_per_request = 2\n");
    let s1 = &cluster.nodes[0];
    let image = jpeg(2000, 7);
    let (status, v) = upload(
        s1,
        &[("1.jpg", &image), ("2.jpg", &image), ("3.jpg", &image)],
    )
    .await;
    assert_eq!(status, 413, "{v}");
    assert!(error_of(&v).contains("more than 2 files"), "{v}");
    assert_eq!(v["resp"]["files"].as_array().map(Vec::len), Some(2));
    assert_eq!(s1.stored().len(), 2);
}

#[tokio::test]
async fn content_that_is_not_an_allowed_image_is_415_whatever_its_name() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    let cases: [(&str, &[u8]); 7] = [
        (
            "shell.aspx",
            b"<%@ Page Language=\"C#\" %><% Response.Write(1); %>",
        ),
        ("shell.php", b"<?php system($_GET['c']); ?>"),
        (
            "x.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
        ),
        (
            "page.jpg",
            b"<!DOCTYPE html><html><script>alert(1)</script></html>",
        ),
        ("doc.png", b"%PDF-1.7\n1 0 obj\n<< >>\nendobj\n"),
        ("x.jpg", b"\xFF\xD8"),
        ("tiny.gif", b"GIF8"),
    ];
    for (name, bytes) in cases {
        let (status, v) = upload(s1, &[(name, bytes)]).await;
        assert_eq!(status, 415, "{name}: {v}");
        assert!(error_of(&v).contains("jpg, png, gif, webp, bmp"), "{v}");
    }
    assert!(s1.stored().is_empty());
    assert!(common::eventually(Duration::from_secs(5), || s1
        .temp_files()
        .is_empty()));
}

#[tokio::test]
async fn a_gif_polyglot_is_stored_as_gif_and_served_so_no_browser_runs_it() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    let polyglot =
        b"GIF89a/*\x01\x00\x01\x00*/=1;alert(document.domain)//<html><script>alert(1)</script>";
    let (status, v) = upload(s1, &[("evil.html", polyglot)]).await;
    assert_eq!(status, 200, "{v}");
    let link = v["resp"]["link"].as_str().expect("link");
    assert!(link.ends_with(".gif"), "{link}");
    let r = reqwest::get(link).await.expect("get");
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn hostile_client_filenames_never_reach_a_path() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    let image = jpeg(3000, 8);
    let long = format!("name=\"file\"; filename=\"{}.jpg\"", "a".repeat(5000));
    let dispositions: Vec<(&[u8], &str)> = vec![
        (
            b"name=\"file\"; filename=\"../../../../etc/passwd\"",
            "passwd",
        ),
        (
            b"name=\"file\"; filename=\"..\\\\..\\\\web.config\"",
            "web.config",
        ),
        (b"name=\"file\"; filename=\"/etc/cron.d/x.jpg\"", "x.jpg"),
        (
            b"name=\"file\"; filename=\"C:\\\\Windows\\\\x.jpg\"",
            "x.jpg",
        ),
        (b"name=\"file\"; filename=\"a%00b.jpg\"", "a%00b.jpg"),
        (b"name=\"file\"; filename*=UTF-8''%E7%85%A7.jpg", ".jpg"),
        (b"name=\"file\"; filename=\"\xD5\xD5\xC6\xAC.jpg\"", ".jpg"),
        (
            b"name=\"file\"; filename=\"\xE7\x85\xA7\xE7\x89\x87.jpg\"",
            "\u{7167}\u{7247}.jpg",
        ),
        (long.as_bytes(), ""),
    ];
    for (disposition, expect_name_ending) in dispositions {
        let (ct, body) = multipart(&[(disposition, &image)]);
        let (status, v) = post_raw(s1, &ct, body).await;
        assert_eq!(status, 200, "{}: {v}", String::from_utf8_lossy(disposition));
        let file = &v["resp"]["files"][0];
        let name = file["name"].as_str().expect("name");
        assert!(name.ends_with(expect_name_ending), "{name:?}");
        assert!(name.chars().count() <= 255);
        assert!(!name.contains('/') && !name.contains('\\') && !name.contains('\u{1}'));
        let path = file["path"].as_str().expect("path");
        let generated = path.rsplit('/').next().expect("file name");
        assert_eq!(generated.len(), 36 + 4, "{path}");
    }
    let stored = s1.stored();
    assert_eq!(stored.len(), 9);
    assert!(stored.iter().all(|(_, bytes)| *bytes == image));
    assert!(!s1.dir.join("etc").exists() && !s1.dir.join("web.config").exists());
}

#[tokio::test]
async fn raw_control_characters_in_part_headers_are_refused_clearly() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    let image = jpeg(3000, 13);
    for disposition in [
        &b"name=\"file\"; filename=\"a\x00b.jpg\""[..],
        b"name=\"file\"; filename=\"a\x01b.jpg\"",
    ] {
        let (ct, body) = multipart(&[(disposition, &image)]);
        let (status, v) = post_raw(s1, &ct, body).await;
        assert_eq!(status, 400, "{v}");
        assert!(error_of(&v).contains("headers"), "{v}");
    }
    assert!(s1.stored().is_empty());
}

#[test]
fn a_client_that_stalls_mid_body_is_dropped_and_its_partial_file_deleted() {
    let cluster = Cluster::single("fsync = false\nclient_idle_timeout_secs = 1\n");
    let s1 = &cluster.nodes[0];
    let image = jpeg(100_000, 9);
    let (ct, body) = multipart(&[(b"name=\"file\"; filename=\"a.jpg\"", &image)]);
    let mut request = format!(
        "POST /do.ashx?action=upload HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\n\
         Content-Length: {}\r\nX-Security-Key: {}\r\n\r\n",
        body.len(),
        s1.key
    )
    .into_bytes();
    request.extend_from_slice(&body[..body.len() / 2]);
    let start = std::time::Instant::now();
    let answer = raw(s1.port, &request, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(start.elapsed() < Duration::from_secs(8));
    assert!(s1.stored().is_empty());
    assert!(common::eventually(Duration::from_secs(5), || s1
        .temp_files()
        .is_empty()));
}

#[tokio::test]
async fn stored_files_support_head_range_and_etag() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    let image = jpeg(20_000, 10);
    let (_, v) = upload(s1, &[("a.jpg", &image)]).await;
    let link = v["resp"]["link"].as_str().expect("link").to_owned();
    let client = reqwest::Client::new();
    let head = client.head(&link).send().await.expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        image.len().to_string().as_str()
    );
    assert!(head.headers().contains_key("last-modified"));
    let etag = head.headers()["etag"].clone();
    let range = client
        .get(&link)
        .header("range", "bytes=100-199")
        .send()
        .await
        .expect("range");
    assert_eq!(range.status(), 206);
    assert_eq!(range.headers()["content-type"], "image/jpeg");
    assert_eq!(
        range.bytes().await.expect("bytes").as_ref(),
        &image[100..200]
    );
    let cached = client
        .get(&link)
        .header("if-none-match", etag.clone())
        .send()
        .await
        .expect("conditional");
    assert_eq!(cached.status(), 304);
    assert_eq!(cached.headers()["etag"], etag);
    let other = client
        .get(&link)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .expect("conditional");
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn only_the_stored_file_pattern_is_served() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    std::fs::create_dir_all(s1.data_dir().join("2014/4/15")).expect("dir");
    std::fs::write(s1.data_dir().join("2014/4/15/secret.txt"), "x").expect("write");
    std::fs::write(
        s1.data_dir()
            .join(".tmp/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.part"),
        "x",
    )
    .expect("write");
    for path in [
        "/app.toml",
        "/servers.xml.config",
        "/log/upload-errors.jsonl",
        "/data/2014/4/15/secret.txt",
        "/2014/4/15/secret.txt",
        "/2014/04/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
        "/.tmp/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.part",
        "/2014/4/15/..%2f..%2fapp.toml",
        "/2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg",
    ] {
        let r = reqwest::get(format!("{}{path}", s1.base()))
            .await
            .expect("get");
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn healthz_reports_the_backlog_without_a_key() {
    let cluster = Cluster::single(FAST);
    let s1 = &cluster.nodes[0];
    let r = reqwest::get(format!("{}/healthz", s1.base()))
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["journal_backlog"], 0);
}

#[test]
fn disk_full_while_writing_is_507_and_the_service_keeps_running() {
    let mut cluster = Cluster::new(&["s1"], "fsync = false\n");
    let data = cluster.nodes[0].data_dir();
    let _tmpfs = common::Tmpfs::mount(&data, "2m")
        .unwrap_or_else(|e| panic!("this test needs root to mount a small tmpfs: {e}"));
    cluster.nodes[0].start();
    let s1 = &cluster.nodes[0];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let upload = |bytes: Vec<u8>| rt.block_on(async { upload(s1, &[("a.jpg", &bytes)]).await });
    let (status, v) = upload(jpeg(3 << 20, 11));
    assert_eq!(status, 507, "{v}");
    assert!(error_of(&v).contains("disk is full"), "{v}");
    assert!(common::eventually(Duration::from_secs(5), || s1
        .temp_files()
        .is_empty()));
    assert!(s1.stored().is_empty());
    // Space is back (the big one is gone): the service goes on storing.
    let (status, v) = upload(jpeg(100_000, 12));
    assert_eq!(status, 200, "{v}");
    assert_eq!(s1.stored().len(), 1);
}
