//! `GET /metrics` of a real server after real work: the latency histograms
//! and counters are fed by uploads, replicas, variants and read-throughs;
//! every metric the Grafana dashboard in docs/ queries exists; every family
//! the server exposes is documented in docs/operations.md.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Cluster, upload_one};

/// Repair every second, so that its per-peer families appear.
const SETTINGS: &str = "fsync = false\n[replication]\nretry_interval_secs = 3600\n\
                        [repair]\ninterval_secs = 1\nsettle_secs = 0\n";
const PREFIX: &str = "multiserver_upload_";

/// A decodable 800×600 JPEG, so that a thumbnail is really generated.
fn photo() -> Vec<u8> {
    let image = image::RgbImage::from_fn(800, 600, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .expect("encode");
    out
}

async fn scrape(base: &str) -> String {
    let response = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics");
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.expect("metrics text")
}

/// Family name → type, from the `# TYPE` lines.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

/// The value of the sample `name` whose labels include `labels` (`None`:
/// no such sample).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && rest.contains(labels)
        })
        .map(|(_, value)| value.parse().expect("a number"))
}

/// The family a queried series name belongs to, if the server has it:
/// itself, or a histogram's `_bucket`/`_sum`/`_count`, or a counter's
/// `_total` (OpenMetrics names the family without the suffix).
fn family_of<'a>(name: &str, families: &'a BTreeMap<String, String>) -> Option<&'a str> {
    if let Some((family, _)) = families.get_key_value(name) {
        return Some(family);
    }
    [
        ("_bucket", "histogram"),
        ("_sum", "histogram"),
        ("_count", "histogram"),
        ("_total", "counter"),
    ]
    .into_iter()
    .find_map(|(suffix, kind)| {
        let base = name.strip_suffix(suffix)?;
        let (family, found) = families.get_key_value(base)?;
        (found == kind).then_some(family.as_str())
    })
}

/// Every `multiserver_upload_*` name in the `expr` fields of a Grafana
/// dashboard.
fn queried(dashboard: &serde_json::Value) -> BTreeSet<String> {
    fn walk(value: &serde_json::Value, names: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => {
                            names.extend(metric_names(expr))
                        }
                        _ => walk(value, names),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, names)),
            _ => {}
        }
    }
    let mut names = BTreeSet::new();
    walk(dashboard, &mut names);
    names
}

fn metric_names(expr: &str) -> Vec<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(PREFIX) {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail.find(|c| !is_name(c)).unwrap_or(tail.len());
        if !before.is_some_and(is_name) {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

fn docs(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_time_real_work_and_the_dashboard_and_docs_match_them() {
    let mut cluster = Cluster::new(&["s1", "s2"], SETTINGS);
    cluster.start_all();
    let (s1, s2) = (cluster.nodes[0].base(), cluster.nodes[1].base());

    // An upload (and its replica to s2), a thumbnail, a read-through.
    let path = upload_one(&cluster.nodes[0], &photo()).await;
    let client = reqwest::Client::new();
    let thumbnail = client
        .get(format!("{s1}/{path}-t.jpg"))
        .send()
        .await
        .expect("thumbnail");
    assert_eq!(thumbnail.status().as_u16(), 200);
    assert!(
        thumbnail.headers().get("x-thumbnail").is_none(),
        "a variant was generated, not the original sent"
    );
    // s2 loses its copy from the disk: a GET there brings it from s1.
    std::fs::remove_file(cluster.nodes[1].data_dir().join(&path)).expect("remove");
    let fetched = client
        .get(format!("{s2}/{path}"))
        .send()
        .await
        .expect("read-through");
    assert_eq!(fetched.status().as_u16(), 200);

    let text = scrape(&s1).await;
    for (name, labels) in [
        (
            "multiserver_upload_upload_request_duration_seconds_count",
            "",
        ),
        (
            "multiserver_upload_upload_file_duration_seconds_count",
            "via=\"multipart\"",
        ),
        (
            "multiserver_upload_replica_duration_seconds_count",
            "peer=\"s2\"",
        ),
        (
            "multiserver_upload_variant_generation_duration_seconds_count",
            "",
        ),
        ("multiserver_upload_stored_files_total", ""),
    ] {
        let value = sample(&text, name, labels);
        assert!(
            value.is_some_and(|v| v >= 1.0),
            "{name}{{{labels}}} is {value:?}\n{text}"
        );
    }
    assert!(
        sample(&text, "multiserver_upload_stored_bytes_total", "").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "multiserver_upload_journal_owed_copies",
            "peer=\"s2\""
        ),
        Some(0.0),
        "a peer owed nothing shows 0\n{text}"
    );
    let text2 = scrape(&s2).await;
    for (name, labels) in [
        (
            "multiserver_upload_read_through_duration_seconds_count",
            "outcome=\"fetched\"",
        ),
        (
            "multiserver_upload_repair_fetch_duration_seconds_count",
            "peer=\"s1\"",
        ),
    ] {
        let value = sample(&text2, name, labels);
        assert!(
            value.is_some_and(|v| v >= 1.0),
            "{name}{{{labels}}} is {value:?}\n{text2}"
        );
    }

    // The dashboard queries only what the servers expose (a family with no
    // sample yet, such as repair's before its first pass, is not listed:
    // both servers are scraped until repair has run).
    let dashboard: serde_json::Value =
        serde_json::from_str(&docs("grafana-dashboard.json")).expect("dashboard JSON");
    let names = queried(&dashboard);
    assert!(names.len() >= 8, "the dashboard queries {names:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (exposed, unknown) = loop {
        let mut exposed = families(&scrape(&s1).await);
        exposed.extend(families(&scrape(&s2).await));
        let unknown: Vec<String> = names
            .iter()
            .filter(|n| family_of(n, &exposed).is_none())
            .cloned()
            .collect();
        if unknown.is_empty() || Instant::now() > deadline {
            break (exposed, unknown);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the server does not expose: {unknown:?}\nexposed: {:?}",
        exposed.keys().collect::<Vec<_>>()
    );

    // Every family is documented, by its full name.
    let operations = docs("operations.md");
    let undocumented: Vec<&String> = exposed
        .keys()
        .filter(|name| name.starts_with(PREFIX))
        .filter(|name| !operations.contains(&format!("`{name}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from docs/operations.md: {undocumented:?}"
    );
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let expr = "histogram_quantile(0.99, sum by (le) (rate(multiserver_upload_a_seconds_bucket[5m]))) / x_multiserver_upload_not + multiserver_upload_b";
    assert_eq!(
        metric_names(expr),
        vec![
            "multiserver_upload_a_seconds_bucket",
            "multiserver_upload_b"
        ]
    );
}
