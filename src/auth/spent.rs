//! How many files each upload token has stored on this server: `max_files`
//! counted per `jti` (SPEC §12), so that a token cannot store more than its
//! back end allowed, not even across a restart.
//!
//! Kept in a redb database of its own beside the index (`.spent-tokens.redb`
//! in the data folder), not in a file of our own making, for three reasons:
//! a commit is durable when it returns (redb's `Immediate`), with no torn
//! line to recover after a crash; one write transaction at a time, across
//! threads and across processes (multi-writer mode: during an IIS recycle
//! two processes of the service serve the same folder), makes "check and
//! count" one atomic step, so concurrent uploads with one token never
//! exceed its `max_files`; and it is the engine the index already uses, so
//! no new dependency. It is not the index's database: the index is
//! rebuilt from the files when damaged, these counts could not be.
//!
//! A file is counted when it starts (before its bytes are read), and given
//! back if it is not stored. One writer thread applies every count asked
//! for while its last commit ran in one transaction, so one flush to the
//! disk serves many uploads at once (each commit is a flush). Entries of
//! expired tokens are dropped, so the table holds at most the tokens of the
//! last `max_token_secs`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use redb::{
    ConcurrencyMode, Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use tokio::sync::oneshot;

use super::token::Lifetime;

/// `jti` → (`exp`, files counted).
const SPENT: TableDefinition<&str, (i64, u64)> = TableDefinition::new("spent");
/// How often expired entries are looked for, at most.
const SWEEP_EVERY_SECS: i64 = 3600;
/// Counts applied in one transaction at most.
const BATCH: usize = 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SpentError {
    #[error(
        "the spent-token counts {} cannot be used: {why}; if it is damaged, move it \
         away (tokens then count their files from zero again)", file.display()
    )]
    Open { file: PathBuf, why: String },
    #[error("the spent-token counts: {0}")]
    Db(String),
    #[error("the spent-token writer has stopped")]
    WriterGone,
}

fn db_error(e: impl Into<redb::Error>) -> SpentError {
    SpentError::Db(e.into().to_string())
}

/// What the writer thread is asked to do.
enum Op {
    /// One more file of `jti`, if it has one left of `max_files`.
    Take {
        jti: String,
        exp: i64,
        max_files: u64,
        now: i64,
        done: oneshot::Sender<Result<bool, SpentError>>,
    },
    /// One file of `jti` less.
    GiveBack {
        jti: String,
        done: oneshot::Sender<Result<(), SpentError>>,
    },
}

/// The counts. Cheap to clone; every clone shares one database and writer.
#[derive(Clone)]
pub struct Spent {
    db: std::sync::Arc<Database>,
    writer: mpsc::Sender<Op>,
}

impl std::fmt::Debug for Spent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spent")
    }
}

/// The file the counts live in.
pub fn spent_file(data_dir: &Path) -> PathBuf {
    data_dir.join(".spent-tokens.redb")
}

impl Spent {
    /// Opens (or creates) the counts in `data_dir`, dropping expired ones,
    /// and starts the writer.
    pub fn open(data_dir: &Path, lifetime: Lifetime, now: i64) -> Result<Self, SpentError> {
        let file = spent_file(data_dir);
        let open = || -> Result<Database, redb::Error> {
            std::fs::create_dir_all(data_dir)?;
            // A few thousand small rows: a small cache, not redb's default
            // (which counts against the server's memory budget).
            let db = Database::builder()
                .set_cache_size(4 << 20)
                .set_concurrency_mode(ConcurrencyMode::MultiWriter)
                .create(&file)?;
            let write = db.begin_write()?;
            write.open_table(SPENT)?;
            write.commit()?;
            Ok(db)
        };
        let db = std::sync::Arc::new(open().map_err(|e| SpentError::Open {
            file: file.clone(),
            why: e.to_string(),
        })?);
        let mut sweeper = Sweeper {
            lifetime,
            swept: i64::MIN,
        };
        let write = db.begin_write().map_err(db_error)?;
        sweeper.sweep(&write, now)?;
        write.commit().map_err(db_error)?;
        let (writer, queue) = mpsc::channel();
        {
            let db = db.clone();
            std::thread::Builder::new()
                .name("spent-writer".into())
                .spawn(move || write_loop(&db, sweeper, &queue))
                .map_err(|e| SpentError::Open {
                    file,
                    why: format!("cannot start its writer: {e}"),
                })?;
        }
        Ok(Self { db, writer })
    }

    /// Whether the token `jti` has no file left of its `max_files`.
    pub async fn is_spent(&self, jti: &str, max_files: u64) -> Result<bool, SpentError> {
        let db = self.db.clone();
        let jti = jti.to_owned();
        tokio::task::spawn_blocking(move || Ok(used(&db, &jti)? >= max_files))
            .await
            .map_err(|e| SpentError::Db(format!("the counting task failed: {e}")))?
    }

    /// Counts one more file of the token `jti` (which expires at `exp`), if
    /// it has one left of `max_files`: `false` if it has none. Durable when
    /// it returns.
    pub async fn take(
        &self,
        jti: &str,
        exp: i64,
        max_files: u64,
        now: i64,
    ) -> Result<bool, SpentError> {
        let (done, outcome) = oneshot::channel();
        self.send(Op::Take {
            jti: jti.to_owned(),
            exp,
            max_files,
            now,
            done,
        })?;
        outcome.await.map_err(|_| SpentError::WriterGone)?
    }

    /// Gives back a file counted by [`Spent::take`] that was not stored.
    pub async fn give_back(&self, jti: &str) -> Result<(), SpentError> {
        let (done, outcome) = oneshot::channel();
        self.send(Op::GiveBack {
            jti: jti.to_owned(),
            done,
        })?;
        outcome.await.map_err(|_| SpentError::WriterGone)?
    }

    fn send(&self, op: Op) -> Result<(), SpentError> {
        self.writer.send(op).map_err(|_| SpentError::WriterGone)
    }

    /// Entries kept, for tests.
    #[cfg(test)]
    fn len(&self) -> u64 {
        use redb::ReadableTableMetadata;
        let read = self.db.begin_read().expect("read");
        read.open_table(SPENT).expect("table").len().expect("len")
    }
}

fn used(db: &Database, jti: &str) -> Result<u64, SpentError> {
    let read = db.begin_read().map_err(db_error)?;
    let table = read.open_table(SPENT).map_err(db_error)?;
    Ok(table.get(jti).map_err(db_error)?.map_or(0, |v| v.value().1))
}

/// Takes what is queued (what came while the last commit ran, up to
/// [`BATCH`]), applies it in order in one transaction, commits, and only
/// then answers each: a count is never reported before it is on disk.
fn write_loop(db: &Database, mut sweeper: Sweeper, queue: &mpsc::Receiver<Op>) {
    while let Ok(first) = queue.recv() {
        let mut ops = vec![first];
        while ops.len() < BATCH {
            match queue.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        match apply(db, &mut sweeper, &ops) {
            Ok(taken) => {
                for (op, taken) in ops.into_iter().zip(taken) {
                    match op {
                        Op::Take { done, .. } => {
                            let _ = done.send(Ok(taken));
                        }
                        Op::GiveBack { done, .. } => {
                            let _ = done.send(Ok(()));
                        }
                    }
                }
            }
            Err(e) => {
                for op in ops {
                    match op {
                        Op::Take { done, .. } => {
                            let _ = done.send(Err(e.clone()));
                        }
                        Op::GiveBack { done, .. } => {
                            let _ = done.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }
}

/// Applies `ops` in one committed transaction; for each, whether a file
/// was taken. One write transaction at a time, in this process and any
/// other: a count read here cannot change before this commit.
fn apply(db: &Database, sweeper: &mut Sweeper, ops: &[Op]) -> Result<Vec<bool>, SpentError> {
    let write = db.begin_write().map_err(db_error)?;
    let mut taken = Vec::with_capacity(ops.len());
    let mut latest = i64::MIN;
    {
        let mut table = write.open_table(SPENT).map_err(db_error)?;
        for op in ops {
            let (jti, entry) = match op {
                Op::Take { jti, .. } | Op::GiveBack { jti, .. } => (
                    jti,
                    table
                        .get(jti.as_str())
                        .map_err(db_error)?
                        .map(|v| v.value()),
                ),
            };
            let used = entry.map_or(0, |(_, used)| used);
            match op {
                Op::Take {
                    exp,
                    max_files,
                    now,
                    ..
                } => {
                    latest = latest.max(*now);
                    let room = used < *max_files;
                    if room {
                        table
                            .insert(jti.as_str(), (*exp, used + 1))
                            .map_err(db_error)?;
                    }
                    taken.push(room);
                }
                Op::GiveBack { .. } => {
                    if let Some((exp, used)) = entry {
                        table
                            .insert(jti.as_str(), (exp, used.saturating_sub(1)))
                            .map_err(db_error)?;
                    }
                    taken.push(false);
                }
            }
        }
    }
    sweeper.sweep(&write, latest)?;
    write.commit().map_err(db_error)?;
    Ok(taken)
}

/// Drops the entries of tokens that can no longer be used, at most once
/// an hour (it scans the table).
struct Sweeper {
    lifetime: Lifetime,
    /// When it last did (Unix seconds).
    swept: i64,
}

impl Sweeper {
    fn sweep(&mut self, write: &WriteTransaction, now: i64) -> Result<(), SpentError> {
        if now.saturating_sub(self.swept) < SWEEP_EVERY_SECS {
            return Ok(());
        }
        self.swept = now;
        let mut table = write.open_table(SPENT).map_err(db_error)?;
        let lifetime = self.lifetime;
        table
            .retain(|_, (exp, _)| !lifetime.expired(exp, now))
            .map_err(db_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;
    const LIFETIME: Lifetime = Lifetime {
        clock_skew_secs: 60,
        max_token_secs: 86_400,
    };

    #[tokio::test]
    async fn a_token_stores_at_most_max_files_even_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spent = Spent::open(dir.path(), LIFETIME, NOW).expect("open");
        assert!(!spent.is_spent("a", 2).await.expect("read"));
        assert!(spent.take("a", NOW + 600, 2, NOW).await.expect("take"));
        assert!(spent.take("a", NOW + 600, 2, NOW).await.expect("take"));
        assert!(!spent.take("a", NOW + 600, 2, NOW).await.expect("take"));
        assert!(spent.is_spent("a", 2).await.expect("read"));
        assert!(spent.take("b", NOW + 600, 1, NOW).await.expect("other jti"));
        drop(spent);
        let spent = Spent::open(dir.path(), LIFETIME, NOW + 1).expect("reopen");
        assert!(spent.is_spent("a", 2).await.expect("read"));
        assert!(!spent.take("a", NOW + 600, 2, NOW + 1).await.expect("take"));
        assert!(spent.is_spent("b", 1).await.expect("read"));
    }

    #[tokio::test]
    async fn a_file_not_stored_is_given_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spent = Spent::open(dir.path(), LIFETIME, NOW).expect("open");
        assert!(spent.take("a", NOW + 600, 1, NOW).await.expect("take"));
        spent.give_back("a").await.expect("give back");
        assert!(!spent.is_spent("a", 1).await.expect("read"));
        spent
            .give_back("unknown")
            .await
            .expect("nothing to give back");
        assert!(!spent.is_spent("unknown", 1).await.expect("read"));
    }

    #[tokio::test]
    async fn expired_tokens_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spent = Spent::open(dir.path(), LIFETIME, NOW).expect("open");
        assert!(spent.take("old", NOW + 100, 1, NOW).await.expect("take"));
        assert!(spent.take("new", NOW + 90_000, 1, NOW).await.expect("take"));
        assert_eq!(spent.len(), 2);
        // Within the skew after expiry the old token still counts.
        drop(spent);
        let spent = Spent::open(dir.path(), LIFETIME, NOW + 150).expect("reopen");
        assert_eq!(spent.len(), 2);
        drop(spent);
        let spent = Spent::open(dir.path(), LIFETIME, NOW + 200).expect("reopen");
        assert_eq!(spent.len(), 1);
        assert!(spent.is_spent("new", 1).await.expect("read"));
        // A running server drops them too, at most once an hour.
        let later = NOW + 90_000 + 61;
        assert!(spent.take("x", later + 600, 1, later).await.expect("take"));
        assert_eq!(spent.len(), 1, "only x is left");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_files_of_one_token_never_exceed_max_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spent = Spent::open(dir.path(), LIFETIME, NOW).expect("open");
        let tasks: Vec<_> = (0..24)
            .map(|_| {
                let spent = spent.clone();
                tokio::spawn(async move { spent.take("a", NOW + 600, 5, NOW).await })
            })
            .collect();
        let mut taken = 0;
        for task in tasks {
            if task.await.expect("task").expect("take") {
                taken += 1;
            }
        }
        assert_eq!(taken, 5);
    }
}
