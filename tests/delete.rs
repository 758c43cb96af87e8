//! Delete between real server processes (SPEC §4a, the delete row of §8):
//! a delete reaches every server, a server that was down learns it from the
//! journal, a copy of a deleted name is refused with 410 and dropped, and a
//! deleted name never comes back.

mod common;

use common::{Cluster, Node, jpeg, json, sha256, upload_one};
use serde_json::Value;

/// No fsync (speed), and no background replay to race with the replays a
/// test starts itself.
const QUIET: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n";

async fn delete(node: &Node, path: &str) -> (u16, Value) {
    json(
        reqwest::Client::new()
            .post(node.keyed(&format!("action=delete&format=json&path={path}")))
            .send()
            .await
            .expect("delete"),
    )
    .await
}

async fn uploaderrors(node: &Node) -> Value {
    let (status, body) = json(
        reqwest::Client::new()
            .post(node.keyed("action=uploaderrors&format=json"))
            .send()
            .await
            .expect("uploaderrors"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["resp"].clone()
}

async fn get_status(node: &Node, path: &str) -> u16 {
    reqwest::get(format!("{}/{path}", node.base()))
        .await
        .expect("get")
        .status()
        .as_u16()
}

/// No server holds any file, and every one answers 404 or 410 for `path`.
async fn assert_gone_everywhere(nodes: &[Node], path: &str) {
    for node in nodes {
        assert!(node.stored().is_empty(), "{} holds a file", node.name);
        let status = get_status(node, path).await;
        assert!([404, 410].contains(&status), "{}: {status}", node.name);
    }
}

fn replica<'a>(resp: &'a Value, peer: &str) -> &'a Value {
    resp["replicas"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["peer"] == peer))
        .unwrap_or_else(|| panic!("no outcome for {peer}: {resp}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_reaches_every_server_and_one_that_was_down_learns_it_from_the_journal() {
    let mut cluster = Cluster::new(&["s1", "s2", "s3"], QUIET);
    cluster.start_all();
    let bytes = jpeg(50_000, 1);
    let path = upload_one(&cluster.nodes[0], &bytes).await;
    for node in &cluster.nodes {
        assert_eq!(node.stored().len(), 1, "{}", node.name);
    }
    cluster.node(2).kill();

    let (status, answer) = delete(&cluster.nodes[0], &path).await;
    assert_eq!(status, 200, "{answer}");
    let resp = &answer["resp"];
    assert_eq!(resp["success"], 1, "{answer}");
    assert_eq!(resp["path"], path.as_str());
    assert_eq!(replica(resp, "s2")["ok"], 1, "{answer}");
    assert_eq!(replica(resp, "s3")["ok"], 0, "{answer}");
    assert_eq!(replica(resp, "s3")["journaled"], 1, "{answer}");
    let journal = cluster.nodes[0].journal();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0]["op"], "delete");
    assert_eq!(journal[0]["peer"], "s3");
    assert_eq!(journal[0]["path"], path.as_str());
    for node in &cluster.nodes[..2] {
        assert!(node.stored().is_empty(), "{}", node.name);
        assert!(
            [404, 410].contains(&get_status(node, &path).await),
            "{}",
            node.name
        );
    }

    // s3 comes back still holding the file, and learns from s1's journal.
    cluster.node(2).start();
    assert_eq!(cluster.nodes[2].stored().len(), 1);
    // s1 and s2 never fetch the deleted name back from s3 by read-through.
    for node in &cluster.nodes[..2] {
        assert_eq!(get_status(node, &path).await, 410, "{}", node.name);
        assert!(node.stored().is_empty(), "{} fetched it back", node.name);
    }
    let report = uploaderrors(&cluster.nodes[0]).await;
    assert_eq!(report["replayed"], 1, "{report}");
    assert_eq!(report["remaining"], 0, "{report}");
    assert!(cluster.nodes[0].journal().is_empty());
    assert_gone_everywhere(&cluster.nodes, &path).await;
    // Deleting it again changes nothing and is still a success.
    let (status, again) = delete(&cluster.nodes[1], &path).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(replica(&again["resp"], "s1")["ok"], 1, "{again}");
    assert_eq!(replica(&again["resp"], "s3")["ok"], 1, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_deleted_name_gets_410_and_is_dropped_and_never_restored() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.node(0).start();
    // s1 owes s2 a copy ...
    let bytes = jpeg(40_000, 2);
    let path = upload_one(&cluster.nodes[0], &bytes).await;
    assert_eq!(cluster.nodes[0].journal().len(), 1);
    // ... when the name is deleted on s2 while s1 is down.
    cluster.node(0).kill();
    cluster.node(1).start();
    let (status, answer) = delete(&cluster.nodes[1], &path).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(replica(&answer["resp"], "s1")["journaled"], 1, "{answer}");

    // A sync of the deleted name is refused with 410 and writes nothing.
    let refused = reqwest::Client::new()
        .put(cluster.nodes[1].keyed(&format!("action=sync&format=json&path={path}")))
        .header("X-Content-SHA256", sha256(&bytes))
        .body(bytes.clone())
        .send()
        .await
        .expect("sync");
    assert_eq!(refused.status().as_u16(), 410);
    assert!(cluster.nodes[1].stored().is_empty());

    // s1's replay of its copy gets 410: dropped, not kept, not resent.
    cluster.node(0).start();
    let report = uploaderrors(&cluster.nodes[0]).await;
    assert_eq!(report["dropped"], 1, "{report}");
    assert_eq!(report["replayed"], 0, "{report}");
    assert_eq!(report["remaining"], 0, "{report}");
    assert!(cluster.nodes[0].journal().is_empty());
    assert!(cluster.nodes[1].stored().is_empty());
    // s2's replay of its delete reaches s1.
    let report = uploaderrors(&cluster.nodes[1]).await;
    assert_eq!(report["replayed"], 1, "{report}");
    for node in &cluster.nodes {
        assert!(node.stored().is_empty(), "{}", node.name);
        assert!(
            [404, 410].contains(&get_status(node, &path).await),
            "{}",
            node.name
        );
        assert!(node.stored().is_empty(), "{} fetched it back", node.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_checks_its_path_and_key_and_a_missing_name_is_a_success() {
    let mut cluster = Cluster::new(&["s1", "s2"], QUIET);
    cluster.start_all();
    let bytes = jpeg(30_000, 3);
    let path = upload_one(&cluster.nodes[0], &bytes).await;
    let s1 = &cluster.nodes[0];
    let client = reqwest::Client::new();
    let name = path.rsplit('/').next().expect("name");
    for bad in [
        String::new(),
        "../../app.toml".into(),
        format!("2014/4/15/../{name}"),
        format!("/{path}"),
        "2014/4/15/not-a-uuid.jpg".into(),
        format!("{path}x"),
    ] {
        let (status, body) = delete(s1, &bad).await;
        assert_eq!(status, 400, "`{bad}`: {body}");
    }
    let (status, _) = json(
        client
            .post(s1.keyed("action=delete&format=json"))
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_eq!(status, 400);
    let wrong_key = client
        .post(s1.do_url(&format!("action=delete&path={path}&SecurityKey=wrong")))
        .send()
        .await
        .expect("delete");
    assert_eq!(wrong_key.status().as_u16(), 403);
    let by_get = client
        .get(s1.keyed(&format!("action=delete&path={path}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(by_get.status().as_u16(), 405);
    for node in &cluster.nodes {
        assert_eq!(node.stored().len(), 1, "{} lost the file", node.name);
    }
    let unknown = client
        .post(s1.keyed("action=nope"))
        .send()
        .await
        .expect("unknown");
    assert!(unknown.text().await.expect("body").contains("delete"));

    // A name that was never stored: a success, in the original XML too.
    let missing = "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg";
    let xml = client
        .post(s1.keyed(&format!("action=delete&path={missing}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(xml.status().as_u16(), 200);
    let text = xml.text().await.expect("body");
    assert!(text.contains("<success>1</success>"), "{text}");
    assert!(text.contains(&format!("<path>{missing}</path>")), "{text}");
    for node in &cluster.nodes {
        assert_eq!(node.stored().len(), 1, "{}", node.name);
    }
}
