//! The upload API against the real binary on a loopback port (SPEC §2.1,
//! §2.5, §2.6 and the upload rows of §8).

mod common;

use std::time::Duration;

use common::{Cluster, form, jpeg, json, png, raw, sha256};

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
        format!(
            "POST /do.ashx?action=upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n\
             Content-Length: 1000000\r\nExpect: 100-continue\r\nX-Security-Key: wrong\r\n\r\n"
        )
        .as_bytes(),
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("<success>0</success>"), "{answer}");
}
