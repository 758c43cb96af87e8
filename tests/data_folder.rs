//! A data folder's stored files are regular files, and nothing else under a
//! stored-file name is followed or opened (issue 19): a symbolic link to a
//! file outside would be indexed, served as `image/jpeg` and replicated; a
//! FIFO would block the index rebuild at start for ever. Such entries are
//! skipped and logged; their names answer 404.

#![cfg(unix)]

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use common::{Cluster, upload_one};

const QUIET: &str = "fsync = false\n";
const SECRET: &[u8] = b"a text file outside the data folder, not an image";

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

async fn get(url: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(url).await.expect("get");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_and_a_fifo_in_a_day_folder_are_skipped_at_start_and_answer_404() {
    let mut cluster = Cluster::new(&["s1"], QUIET);
    let node = &cluster.nodes[0];
    let outside = node.dir.join("notes.txt");
    std::fs::write(&outside, SECRET).expect("write");
    let day = node.data_dir().join("2024/5/6");
    std::fs::create_dir_all(&day).expect("day folder");
    let link = "2024/5/6/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg";
    let fifo = "2024/5/6/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c2.png";
    let real = "2024/5/6/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c3.jpg";
    symlink(&outside, node.data_dir().join(link)).expect("symlink");
    mkfifo(&node.data_dir().join(fifo));
    let jpeg = common::jpeg(3000, 7);
    std::fs::write(node.data_dir().join(real), &jpeg).expect("write");

    // Before the fix the start never finished: the index rebuild opened the
    // FIFO to hash it (the harness gives up after 20 s).
    cluster.start_all();
    let node = &cluster.nodes[0];
    for path in [link, fifo] {
        let (status, body) = get(&format!("{}/{path}", node.base())).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.windows(SECRET.len()).any(|w| w == SECRET), "{path}");
    }
    let (status, body) = get(&format!("{}/{real}", node.base())).await;
    assert_eq!(status, 200);
    assert!(body == jpeg, "the regular file is served as it is");
    assert!(
        node.log_lines(|l| l.contains("not a regular file")) >= 2,
        "the skipped entries are logged:\n{}",
        node.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_file_replaced_by_a_link_is_not_served() {
    let cluster = Cluster::single(QUIET);
    let node = &cluster.nodes[0];
    let path = upload_one(node, &common::jpeg(3000, 8)).await;
    let outside = node.dir.join("notes.txt");
    std::fs::write(&outside, SECRET).expect("write");
    let file = node.data_dir().join(&path);
    std::fs::remove_file(&file).expect("remove");
    symlink(&outside, &file).expect("symlink");

    let (status, body) = get(&format!("{}/{path}", node.base())).await;
    assert_eq!(status, 404, "a link is served as a stored file");
    assert!(!body.windows(SECRET.len()).any(|w| w == SECRET));
    let variant = format!("{}/{path}-t.jpg", node.base());
    let (status, body) = get(&variant).await;
    assert_eq!(status, 404, "a variant is made of what a link points at");
    assert!(!body.windows(SECRET.len()).any(|w| w == SECRET));
}
