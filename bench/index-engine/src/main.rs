//! What one durable index commit costs, batched as the service's index
//! writer batches them, in redb (the engine the service uses, in its
//! multi-process mode) and in an append-only file per day with `fdatasync`
//! (the alternative), plus listing one day as repair does.
//!
//! `cargo run --release -- FOLDER` (FOLDER on the disk to measure; files
//! named `idx-*.redb` and `day-*.log` are replaced there).

use std::io::Write;
use std::time::Instant;

use redb::{ConcurrencyMode, Database, ReadableDatabase, ReadableTable, TableDefinition};
use sha2::Digest;

const FILES: TableDefinition<&str, (u64, [u8; 32], i64)> = TableDefinition::new("files");
const DAYS: TableDefinition<u32, ([u8; 32], u64, u64)> = TableDefinition::new("days");
const RECORDS: usize = 20_000;
const SINGLE: usize = 2_000;
const DAY: u32 = 20261201;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: index-engine FOLDER")?;
    for batch in [1usize, 16, 256] {
        let total = if batch == 1 { SINGLE } else { RECORDS };
        let path = format!("{dir}/idx-{batch}.redb");
        let _ = std::fs::remove_file(&path);
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .create(&path)?;
        let started = Instant::now();
        let mut i = 0;
        while i < total {
            let write = db.begin_write()?;
            {
                let mut files = write.open_table(FILES)?;
                let mut days = write.open_table(DAYS)?;
                for _ in 0..batch {
                    let key = format!("{DAY}/{i:032x}.jpg");
                    let hash: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
                    files.insert(key.as_str(), (140_000u64, hash, 0i64))?;
                    let (mut digest, count, tombstones) = days
                        .get(DAY)?
                        .map(|v| v.value())
                        .unwrap_or(([0; 32], 0, 0));
                    for (a, b) in digest.iter_mut().zip(hash) {
                        *a ^= b;
                    }
                    days.insert(DAY, (digest, count + 1, tombstones))?;
                    i += 1;
                }
            }
            write.commit()?;
        }
        let took = started.elapsed();
        println!(
            "redb, {batch:>3} per commit: {total} records in {took:.2?} = {:.0} records/s, {:.0} commits/s",
            total as f64 / took.as_secs_f64(),
            (total / batch) as f64 / took.as_secs_f64()
        );
        let started = Instant::now();
        let read = db.begin_read()?;
        let files = read.open_table(FILES)?;
        let mut listed = 0;
        for row in files.range(format!("{DAY}/").as_str()..format!("{DAY}:").as_str())? {
            row?;
            listed += 1;
        }
        println!("  listing one day of {listed} entries: {:.2?}", started.elapsed());
    }
    for batch in [1usize, 16, 256] {
        let total = if batch == 1 { SINGLE } else { RECORDS };
        let path = format!("{dir}/day-{batch}.log");
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let started = Instant::now();
        let mut i = 0;
        while i < total {
            let mut lines = String::new();
            for _ in 0..batch {
                lines.push_str(&format!("+ {i:032x}.jpg 140000 {}\n", "ab".repeat(32)));
                i += 1;
            }
            file.write_all(lines.as_bytes())?;
            file.sync_data()?;
        }
        let took = started.elapsed();
        println!(
            "append-only file, {batch:>3} per fdatasync: {total} records in {took:.2?} = {:.0} records/s",
            total as f64 / took.as_secs_f64()
        );
    }
    Ok(())
}
