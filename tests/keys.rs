//! Keys by role between real server processes (SPEC §12 first bullet, the
//! key rows of §8): the upload key keeps the original's rights and no
//! more, deleting takes an admin key, `security_keys` adds upload keys,
//! and with `[auth] peer_keys` only peers act as peers, while replication,
//! repair and delete propagation go on. A cluster rotates its peer key one
//! server at a time without losing a copy, and no key of any role shows in
//! a log, check-config, `/healthz` or `/metrics`.

mod common;

use std::time::Duration;

use common::{Cluster, Node, jpeg, json, upload_one};
use serde_json::Value;

/// No fsync (speed); the background replay and repair are left as they
/// are unless a test says otherwise.
const FAST: &str = "fsync = false\n";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// A POST to `do.ashx?{query}&format=json` with `key` in the header.
async fn post(node: &Node, query: &str, key: &str) -> (u16, Value) {
    json(
        client()
            .post(node.do_url(&format!("{query}&format=json")))
            .header("X-Security-Key", key)
            .send()
            .await
            .expect("request"),
    )
    .await
}

/// A GET of `do.ashx?{query}&format=json` with `key` in the header.
async fn get(node: &Node, query: &str, key: &str) -> u16 {
    client()
        .get(node.do_url(&format!("{query}&format=json")))
        .header("X-Security-Key", key)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

fn error(answer: &Value) -> &str {
    answer["resp"]["error"].as_str().unwrap_or_default()
}

async fn status_of(node: &Node, path: &str) -> u16 {
    client()
        .get(format!("{}/{path}", node.base()))
        .send()
        .await
        .expect("get")
        .status()
        .as_u16()
}

async fn until<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_key_cannot_delete_and_an_admin_key_deletes_on_every_server() {
    let settings = format!(
        "{FAST}[auth]\nadmin_keys = [\"admin-{}\"]\n",
        std::process::id()
    );
    let admin = format!("admin-{}", std::process::id());
    let mut cluster = Cluster::new(&["s1", "s2"], &settings);
    cluster.start_all();
    let (s1, s2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let path = upload_one(s1, &jpeg(20_000, 1)).await;
    for action in ["delete", "restore"] {
        let (status, answer) = post(s1, &format!("action={action}&path={path}"), &s1.key).await;
        assert_eq!(status, 403, "{action}: {answer}");
        assert_eq!(
            error(&answer),
            format!("{action} needs an admin key"),
            "{answer}"
        );
    }
    // Nor by posing as a peer passing a delete on: without peer keys the
    // upload key is what peers send for copies, but a passed-on delete
    // leaves a tombstone that spreads, so it is never taken from that key.
    for action in ["delete", "restore"] {
        let (status, answer) = json(
            client()
                .post(s1.do_url(&format!("action={action}&path={path}&format=json")))
                .header("X-Security-Key", &s1.key)
                .header("X-Multiserver-From", "s2")
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_eq!(status, 403, "passed-on {action}: {answer}");
    }
    assert_eq!(s1.stored().len(), 1);
    assert_eq!(s2.stored().len(), 1);

    let (status, answer) = post(s1, &format!("action=delete&path={path}"), &admin).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["resp"]["replicas"][0]["ok"], 1, "{answer}");
    for node in [s1, s2] {
        assert!(
            node.stored().is_empty(),
            "{} still holds the file",
            node.name
        );
        assert!([404, 410].contains(&status_of(node, &path).await));
    }
    // The admin key has the upload key's rights too.
    let (status, answer) = post(s1, "action=uploaderrors", &admin).await;
    assert_eq!(status, 200, "{answer}");
    // Without peer keys, the start says what the upload key then allows.
    assert!(
        s1.output().contains("[auth] peer_keys is not set"),
        "{}",
        s1.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_key_delete_answers_403_naming_the_setting() {
    let cluster = Cluster::single(&format!("{FAST}[auth]\nadmin_keys = []\n"));
    let s1 = &cluster.nodes[0];
    let path = upload_one(s1, &jpeg(20_000, 2)).await;
    let (status, answer) = post(s1, &format!("action=delete&path={path}"), &s1.key).await;
    assert_eq!(status, 403, "{answer}");
    assert!(error(&answer).contains("[auth] admin_keys"), "{answer}");
    assert_eq!(s1.stored().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_security_key_uploads_and_opens_the_page_but_cannot_delete() {
    let cluster = Cluster::single(&format!(
        "{FAST}[auth]\nsecurity_keys = [\"second-key\"]\nadmin_keys = [\"admin-key\"]\n"
    ));
    let s1 = &cluster.nodes[0];
    let (status, answer) = json(
        client()
            .post(s1.do_url("action=upload&format=json"))
            .header("X-Security-Key", "second-key")
            .multipart(common::form(&[("a.jpg", &jpeg(10_000, 3))]))
            .send()
            .await
            .expect("upload"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let path = answer["resp"]["files"][0]["path"].as_str().expect("path");
    let page = client()
        .get(format!("{}/.m/upload?SecurityKey=second-key", s1.base()))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let (status, answer) = post(s1, &format!("action=delete&path={path}"), "second-key").await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(s1.stored().len(), 1);
}

/// Settings of a cluster with peer keys and an admin key, repair quick.
fn peer_settings(peer_keys: &str) -> String {
    format!(
        "{FAST}[replication]\nretry_interval_secs = 1\nmax_retry_interval_secs = 2\n\
         [repair]\ninterval_secs = 1\nsettle_secs = 0\n\
         [auth]\nadmin_keys = [\"admin-{pid}\"]\npeer_keys = {peer_keys}\n",
        pid = std::process::id()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_peer_keys_the_upload_key_is_no_peer_yet_peers_replicate_repair_and_delete() {
    let peer = format!("peer-{}", std::process::id());
    let admin = format!("admin-{}", std::process::id());
    let mut cluster = Cluster::new(&["s1", "s2"], &peer_settings(&format!("[\"{peer}\"]")));
    cluster.start_all();
    let path = upload_one(&cluster.nodes[0], &jpeg(30_000, 4)).await;
    assert_eq!(
        cluster.nodes[1].stored().len(),
        1,
        "replicated with the peer key"
    );
    let s2 = &cluster.nodes[1];

    // The upload key (here s2's, which s1 would have sent it without peer
    // keys) can no longer list names, compare, write replicas, fetch as
    // repair, or pass a delete on.
    let (day, _) = path.rsplit_once('/').expect("day");
    for query in [format!("action=list&day={day}"), "action=digest".to_owned()] {
        assert_eq!(get(s2, &query, &s2.key).await, 403, "{query}");
        assert_eq!(
            get(s2, &query, &peer).await,
            200,
            "{query} with the peer key"
        );
    }
    let sync = json(
        client()
            .put(s2.do_url(&format!("action=sync&format=json&path={path}")))
            .header("X-Security-Key", &s2.key)
            .body(jpeg(30_000, 5))
            .send()
            .await
            .expect("sync"),
    )
    .await;
    assert_eq!(sync.0, 403, "{}", sync.1);
    assert!(error(&sync.1).contains("peer_keys"), "{}", sync.1);
    let repair_get = client()
        .get(format!("{}/{path}", s2.base()))
        .header("X-Multiserver-Repair", "1")
        .header("X-Security-Key", &s2.key)
        .send()
        .await
        .expect("get");
    assert_eq!(repair_get.status(), 403);
    for action in ["delete", "forget"] {
        let (status, answer) = json(
            client()
                .post(s2.do_url(&format!("action={action}&format=json&path={path}")))
                .header("X-Security-Key", &s2.key)
                .header("X-Multiserver-From", "s1")
                .send()
                .await
                .expect("passed on"),
        )
        .await;
        assert_eq!(status, 403, "{action}: {answer}");
    }
    assert_eq!(s2.stored().len(), 1, "nothing was deleted");

    // Repair: a file s2 missed while down, its journal entry lost, comes
    // over all the same.
    cluster.node(1).terminate();
    let missed = upload_one(&cluster.nodes[0], &jpeg(30_000, 6)).await;
    cluster.node(0).terminate();
    std::fs::remove_file(cluster.nodes[0].log_dir().join("upload-errors.jsonl"))
        .expect("remove journal");
    cluster.start_all();
    let s2 = &cluster.nodes[1];
    // Only the stored files are looked at: a GET would fetch it through
    // read-through, not repair.
    assert!(
        until(Duration::from_secs(60), || async { s2.stored().len() == 2 }).await,
        "repair never brought {missed}:\n{}",
        s2.output()
    );

    // A delete by the admin key reaches the peer.
    let (status, answer) = post(
        &cluster.nodes[0],
        &format!("action=delete&path={path}"),
        &admin,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["resp"]["replicas"][0]["ok"], 1, "{answer}");
    assert_eq!(cluster.nodes[1].stored().len(), 1, "the delete reached s2");
    assert!(!cluster.nodes[0].output().contains("peer_keys is not set"));
}

/// Rewrites `node`'s `peer_keys` line.
fn set_peer_keys(node: &Node, keys: &[&str]) {
    let app = std::fs::read_to_string(node.config()).expect("app.toml");
    let list = keys
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let app = app
        .lines()
        .map(|l| {
            if l.starts_with("peer_keys") {
                format!("peer_keys = [{list}]")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(node.config(), app).expect("app.toml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_rotates_its_peer_key_without_a_lost_copy_and_no_key_is_ever_shown() {
    let old = format!("peer-old-{}", std::process::id());
    let new = format!("peer-new-{}", std::process::id());
    let admin = format!("admin-{}", std::process::id());
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], &peer_settings(&format!("[\"{old}\"]")));
    cluster.start_all();
    let mut uploaded = vec![upload_one(&cluster.nodes[0], &jpeg(10_000, 10)).await];
    let mut seed = 11;
    // The order of docs/keys-and-tokens.md: every server accepts the new key, then every
    // server sends it, then every server drops the old one; one server at
    // a time, uploads going on meanwhile (the one restarting misses them
    // and gets them from the journal).
    for keys in [[&old, &new].as_slice(), &[&new, &old], &[&new]] {
        for i in 0..3 {
            cluster.node(i).terminate();
            let other = (i + 1) % 3;
            uploaded.push(upload_one(&cluster.nodes[other], &jpeg(10_000, seed)).await);
            seed += 1;
            let keys: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
            set_peer_keys(&cluster.nodes[i], &keys);
            cluster.node(i).start();
            uploaded.push(upload_one(&cluster.nodes[i], &jpeg(10_000, seed)).await);
            seed += 1;
        }
    }
    // The old key is refused everywhere now; the new one works.
    for node in &cluster.nodes {
        assert_eq!(get(node, "action=digest", &old).await, 403, "{}", node.name);
        assert_eq!(get(node, "action=digest", &new).await, 200, "{}", node.name);
    }
    let all_there = until(Duration::from_secs(90), || async {
        cluster
            .nodes
            .iter()
            .all(|n| n.stored().len() == uploaded.len() && n.journal().is_empty())
    })
    .await;
    assert!(
        all_there,
        "{:?}",
        cluster
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.stored().len(), n.journal()))
            .collect::<Vec<_>>()
    );
    for node in &cluster.nodes {
        for path in &uploaded {
            assert_eq!(status_of(node, path).await, 200, "{} {path}", node.name);
        }
    }

    // No key of any role in what the servers printed and logged, in
    // check-config, /healthz or /metrics — after requests that carried
    // them in headers and in URLs.
    let s1 = &cluster.nodes[0];
    // A key pasted into another parameter, or under a misspelled name, is
    // left out of the request's log line too: the new peer key, and a
    // peer's upload key from servers.xml.config.
    let (status, _) = json(
        client()
            .post(format!(
                "{}&SecurityKey={admin}&pasted={new}&Security+Key={}",
                s1.do_url("action=uploaderrors&format=json"),
                cluster.nodes[1].key
            ))
            .send()
            .await
            .expect("uploaderrors"),
    )
    .await;
    assert_eq!(status, 200);
    let mut secrets: Vec<String> = cluster.nodes.iter().map(|n| n.key.clone()).collect();
    secrets.extend([old.clone(), new.clone(), admin.clone()]);
    let check = std::process::Command::new(common::BIN)
        .args(["check-config", "--config"])
        .arg(s1.config())
        .output()
        .expect("check-config");
    assert!(check.status.success());
    let mut shown = vec![(
        "check-config".to_owned(),
        String::from_utf8_lossy(&check.stdout).into_owned()
            + &String::from_utf8_lossy(&check.stderr),
    )];
    for node in &cluster.nodes {
        shown.push((format!("{} output", node.name), node.output()));
        for page in ["healthz", "metrics"] {
            let text = client()
                .get(format!("{}/{page}", node.base()))
                .send()
                .await
                .expect(page)
                .text()
                .await
                .expect("body");
            shown.push((format!("{} /{page}", node.name), text));
        }
    }
    for (what, text) in &shown {
        for secret in &secrets {
            let line = text.lines().find(|l| l.contains(secret.as_str()));
            assert!(line.is_none(), "{what} shows a key: {line:?}");
        }
    }
}

#[test]
fn a_key_in_two_roles_or_the_placeholder_as_an_extra_key_is_a_config_error() {
    for (auth, names) in [
        (
            "[auth]\nadmin_keys = [\"same\"]\npeer_keys = [\"same\"]\n",
            ["auth.peer_keys", "auth.admin_keys"],
        ),
        (
            "[auth]\nsecurity_keys = [\"u2\"]\nadmin_keys = [\"u2\"]\n",
            ["auth.admin_keys", "auth.security_keys"],
        ),
        (
            "[auth]\npeer_keys = [\"change-me\"]\n",
            ["auth.peer_keys", "placeholder"],
        ),
        (
            "[auth]\nadmin_keys = [\"\"]\n",
            ["auth.admin_keys", "empty"],
        ),
    ] {
        let cluster = Cluster::new(&["s1"], &format!("{FAST}{auth}"));
        let out = std::process::Command::new(common::BIN)
            .args(["check-config", "--config"])
            .arg(cluster.nodes[0].config())
            .output()
            .expect("check-config");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{auth}: {text}");
        for name in names {
            assert!(text.contains(name), "{auth}: {text}");
        }
        assert!(
            !text.contains("\"same\"") && !text.contains("`u2`"),
            "{text}"
        );
    }
}
