//! Streamed copies (SPEC §4's optimisation): the files of a large upload
//! are sent to the peers while they arrive, so that a copy ends moments
//! after its upload instead of taking as long again after it.
//!
//! The wire format is `PUT {peer.Uri}?action=sync&path=…&format=json` with a
//! chunked `multipart/form-data` body: a part `file` with the bytes as they
//! arrive, then a field `sha256` (64 hex) sent only once the file is
//! durable here under its name. The peer publishes nothing before that
//! field came and matched, so a body that ends before it (the upload
//! failed, or this server gave the copy up) leaves nothing there.
//!
//! A streamed copy only saves time; it never decides whether a file
//! reaches a peer. It is tried only while the peer's breaker is closed and
//! more than half of its upload permits are free, and a copy that does not
//! end confirmed (the peer refused or failed, its queue stayed full for the
//! idle timeout, metadata stripping changed the bytes after they were
//! sent) is left to [`super::deliver`], which copies the stored file as
//! before and journals what fails. Memory is a short queue of chunks per
//! peer.
//!
//! What is stored, and how a name is made, is not decided here: the copies
//! go under the [`StoredPath::dated`] name chosen once the file's type is
//! known, and the upload commits the file under that same name.

use std::io;
use std::mem;

use bytes::Bytes;
use reqwest::multipart::{Form, Part};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Progress, ReplicationError, Replicator, judge, sync_url, transport};
use crate::config::Peer;
use crate::storage::{ImageType, StoredFile, StoredPath};

/// Upload requests that declare at least this many bytes stream their
/// files to the peers. Below it a copy after the fact costs little, and is
/// not worth a second connection per peer while the upload arrives.
pub const STREAM_FROM_BYTES: u64 = 8 * 1024 * 1024;
/// Chunks queued per peer. multer passes the socket's reads on as they
/// come (at most a few hundred KiB each), so a queue holds a few MiB.
const QUEUE_CHUNKS: usize = 16;
/// The multipart part that carries the bytes.
pub const FILE_FIELD: &str = "file";
/// The multipart field after it that carries their SHA-256.
pub const HASH_FIELD: &str = "sha256";

/// What goes down a copy's queue.
#[derive(Debug, Clone)]
enum Piece {
    Chunk(Bytes),
    /// The file is complete; its hash follows on its own channel.
    End,
}

/// The streamed copies of one file of an upload.
pub struct Streams {
    /// `None`: this upload does not stream.
    replicator: Option<Replicator>,
    /// Chunks that came before the file's type was known.
    held: Vec<Bytes>,
    /// The name chosen once the type was known.
    path: Option<StoredPath>,
    copies: Vec<Copy>,
}

/// Which peers confirmed a streamed copy of a file.
#[derive(Debug, Default)]
pub struct Streamed {
    confirmed: Vec<String>,
}

impl Streamed {
    pub(super) fn has(&self, peer: &Peer) -> bool {
        self.confirmed.contains(&peer.name)
    }
}

impl Streams {
    /// For one file of an upload whose request declared `declared` bytes:
    /// streams only a large upload, to a server with peers.
    pub fn new(replicator: &Replicator, declared: Option<u64>) -> Self {
        let large = declared.is_some_and(|n| n >= STREAM_FROM_BYTES);
        Self {
            replicator: (large && !replicator.peers().is_empty()).then(|| replicator.clone()),
            held: Vec::new(),
            path: None,
            copies: Vec::new(),
        }
    }

    /// The name the copies are sent under, once chosen: the file must be
    /// committed under it.
    pub fn path(&self) -> Option<&StoredPath> {
        self.path.as_ref()
    }

    /// Passes on a chunk the upload has taken; `sniffed` tells the file's
    /// type once its first bytes showed it (asked only until then). The
    /// copies start then.
    pub async fn feed(&mut self, chunk: &Bytes, sniffed: impl FnOnce() -> Option<ImageType>) {
        let Some(replicator) = &self.replicator else {
            return;
        };
        if self.path.is_some() {
            self.push(&Piece::Chunk(chunk.clone())).await;
            return;
        }
        self.held.push(chunk.clone());
        let Some(image_type) = sniffed() else {
            return;
        };
        let path = StoredPath::dated(image_type);
        self.copies = (0..replicator.links.len())
            .filter_map(|link| Copy::start(replicator, link, &path))
            .collect();
        self.path = Some(path);
        for chunk in mem::take(&mut self.held) {
            self.push(&Piece::Chunk(chunk)).await;
        }
    }

    async fn push(&mut self, piece: &Piece) {
        for copy in &mut self.copies {
            copy.push(piece.clone()).await;
        }
    }

    /// Ends the copies of `file`, now durable here under [`Streams::path`]:
    /// sends each its hash and waits for the peers' answers, judged as any
    /// copy's. `rewritten`: the stored bytes are not those sent, so the
    /// copies are given up instead.
    pub async fn finish(mut self, file: &StoredFile, rewritten: bool) -> Streamed {
        let copies = mem::take(&mut self.copies);
        if copies.is_empty() {
            return Streamed::default();
        }
        if rewritten {
            tracing::info!(path = %file.path, "metadata was removed after the bytes were streamed; the streamed copies are given up");
            return Streamed::default();
        }
        let results = futures_util::future::join_all(
            copies.into_iter().map(|copy| copy.finish(&file.sha256)),
        )
        .await;
        let mut streamed = Streamed::default();
        for (peer, result) in results {
            match result {
                Ok(()) => streamed.confirmed.push(peer),
                Err(e) => {
                    tracing::info!(%peer, path = %file.path, error = %e, "streamed copy failed; the stored file is copied instead");
                }
            }
        }
        streamed
    }
}

/// One peer's streamed copy: the queue feeding its request, and the task
/// that sends it and judges the answer (and holds the peer's permit).
/// Dropped unfinished, it ends the request before the hash, so the peer
/// keeps nothing.
struct Copy {
    replicator: Replicator,
    link: usize,
    /// The breaker's failure count when the copy began.
    started: u64,
    /// `None` once the request takes no more.
    chunks: Option<mpsc::Sender<Piece>>,
    hash: Option<oneshot::Sender<Bytes>>,
    progress: Progress,
    task: JoinHandle<Result<(), ReplicationError>>,
    /// Why this server gave the copy up, if it did.
    given_up: Option<ReplicationError>,
}

impl Copy {
    /// Starts a copy to the peer of `replicator.links[link]`, if its
    /// breaker is closed and an upload permit is free now (and more than
    /// half of them are).
    fn start(replicator: &Replicator, link: usize, path: &StoredPath) -> Option<Self> {
        let l = &replicator.links[link];
        if l.breaker.status(Instant::now()).open {
            return None;
        }
        // A streamed copy holds its permit while the upload arrives, which
        // a slow client makes long: streamed copies only take permits while
        // more than half are free, so other uploads' copies never wait for
        // them.
        if l.uploads.available_permits() <= replicator.concurrency / 2 {
            return None;
        }
        let permit = l.uploads.clone().try_acquire_owned().ok()?;
        let started = l.breaker.mark();
        let (chunks, queue) = mpsc::channel(QUEUE_CHUNKS);
        let (hash, hash_rx) = oneshot::channel();
        let progress = Progress::new();
        let task = tokio::spawn(send(
            Body {
                replicator: replicator.clone(),
                link,
                path: path.clone(),
                queue,
                hash: hash_rx,
                progress: progress.clone(),
            },
            permit,
            started,
        ));
        Some(Self {
            replicator: replicator.clone(),
            link,
            started,
            chunks: Some(chunks),
            hash: Some(hash),
            progress,
            task,
            given_up: None,
        })
    }

    /// Queues `piece`. A queue that stays full for the idle timeout means
    /// the peer takes nothing: the copy is given up, and that counts
    /// against the peer as any stalled copy.
    async fn push(&mut self, piece: Piece) {
        let Some(chunks) = &self.chunks else {
            return;
        };
        let idle = self.replicator.idle_timeout;
        match tokio::time::timeout(idle, chunks.send(piece)).await {
            Ok(Ok(())) => {}
            // The request ended early; its task knows why.
            Ok(Err(_)) => self.chunks = None,
            Err(_) => {
                // Before the queue goes: the task must not see its body fail
                // and count that against the peer a second time.
                self.task.abort();
                self.chunks = None;
                self.hash = None;
                let e = ReplicationError::Stalled(idle.as_secs());
                self.replicator.links[self.link].record(self.started, &Err(e));
                self.given_up = Some(ReplicationError::Stalled(idle.as_secs()));
            }
        }
    }

    /// Ends the body with `sha256` and waits for the answer; returns the
    /// peer's name and how the copy went.
    async fn finish(mut self, sha256: &str) -> (String, Result<(), ReplicationError>) {
        let peer = self.replicator.links[self.link].peer.name.clone();
        self.push(Piece::End).await;
        if let Some(e) = self.given_up.take() {
            return (peer, Err(e));
        }
        if let Some(hash) = self.hash.take() {
            self.progress.touch();
            // A task that ended already has its answer below.
            let _ = hash.send(Bytes::copy_from_slice(sha256.as_bytes()));
        }
        let idle = self.replicator.idle_timeout;
        let result = tokio::select! {
            joined = &mut self.task => {
                joined.unwrap_or_else(|e| Err(ReplicationError::Transport(e.to_string())))
            }
            () = self.progress.stalled(idle) => {
                self.task.abort();
                let e = ReplicationError::Stalled(idle.as_secs());
                self.replicator.links[self.link].record(self.started, &Err(e));
                Err(ReplicationError::Stalled(idle.as_secs()))
            }
        };
        (peer, result)
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        // Runs before the fields go (see `push`).
        self.task.abort();
    }
}

/// What a streamed copy's request is made of.
struct Body {
    replicator: Replicator,
    link: usize,
    path: StoredPath,
    queue: mpsc::Receiver<Piece>,
    hash: oneshot::Receiver<Bytes>,
    progress: Progress,
}

/// Sends one streamed copy and judges the answer; tells the peer's breaker
/// what the answer says, unless the task is aborted first.
async fn send(
    body: Body,
    _permit: OwnedSemaphorePermit,
    started: u64,
) -> Result<(), ReplicationError> {
    let Body {
        replicator,
        link,
        path,
        queue,
        hash,
        progress,
    } = body;
    let link = &replicator.links[link];
    let peer = &link.peer;
    let file = {
        let progress = progress.clone();
        futures_util::stream::unfold(queue, move |mut queue| {
            let progress = progress.clone();
            async move {
                let item = match queue.recv().await {
                    Some(Piece::Chunk(chunk)) => Ok(chunk),
                    Some(Piece::End) => return None,
                    // Given up: the body must fail, not end.
                    None => Err(io::Error::other("the streamed copy was given up")),
                };
                progress.touch();
                Some((item, queue))
            }
        })
    };
    let hash = futures_util::stream::once(async move {
        hash.await
            .map_err(|_| io::Error::other("the streamed copy was given up"))
    });
    // reqwest's own multipart writer (its `multipart` feature adds no
    // crate to the build): each part is a stream, so the hash field can
    // follow a file whose hash is not known when the request starts.
    let form = Form::new()
        .part(FILE_FIELD, Part::stream(reqwest::Body::wrap_stream(file)))
        .part(HASH_FIELD, Part::stream(reqwest::Body::wrap_stream(hash)));
    let request = replicator
        .client
        .put(sync_url(peer, &path))
        .header("X-Security-Key", &peer.key)
        .multipart(form);
    // A request that fails before any answer tells the breaker nothing: a
    // peer that refuses a file at its first bytes closes the connection
    // while the body is still being written, which looks like a broken
    // pipe here. The copy after the fact tries again and the breaker hears
    // about that one.
    let response = request.send().await.map_err(transport)?;
    progress.touch();
    let result = judge(peer, &path, response, &progress).await;
    link.record(started, &result);
    result
}
