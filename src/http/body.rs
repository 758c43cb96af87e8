//! A request body as a stream of chunks that gives up on a client that sends
//! nothing for the idle timeout, or trickles slower than the minimum rate
//! over a whole idle-timeout window, so a stalled or dripping upload cannot
//! hold a temporary file, a connection and a task forever.
//!
//! Also the [`HeaderBudget`]: the multipart parser keeps everything it reads
//! while it looks for a boundary or the end of a part's header block, so the
//! bytes it may pull in that state are bounded here, where they arrive.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the client sent nothing for {0} s")]
    Stalled(u64),
    #[error("the client sent less than {0} bytes per second")]
    TooSlow(u64),
    #[error("reading the request body failed: {0}")]
    Read(#[source] axum::Error),
    #[error(
        "malformed multipart body: no boundary or no end of a part's headers \
         within {0} bytes"
    )]
    HeadersTooLong(u64),
}

/// How slow a client may be.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Longest wait for the next chunk; also the window the rate is measured over.
    pub idle: Duration,
    /// Bytes per second a client must average over each window (0: no minimum).
    pub min_rate: u64,
}

pub fn paced(
    body: Body,
    pace: Pace,
) -> impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static {
    let mut window_start = Instant::now();
    let mut window_bytes = 0u64;
    tokio_stream::StreamExt::timeout(body.into_data_stream(), pace.idle).map(move |item| {
        let bytes = match item {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => return Err(BodyError::Read(e)),
            Err(_) => return Err(BodyError::Stalled(pace.idle.as_secs())),
        };
        window_bytes += bytes.len() as u64;
        let elapsed = window_start.elapsed();
        if elapsed >= pace.idle {
            if window_bytes < pace.min_rate.saturating_mul(elapsed.as_secs()) {
                return Err(BodyError::TooSlow(pace.min_rate));
            }
            window_start = Instant::now();
            window_bytes = 0;
        }
        Ok(bytes)
    })
}

/// Bytes that may arrive before the first boundary, and between a boundary
/// and the end of the part's header block (SPEC §8: a few tens of KiB).
pub const HEADER_BYTES: u64 = 32 * 1024;

/// Bytes the multipart parser may still pull before it must have found what
/// it looks for; shared between the body stream and the code driving the
/// parser, which opens it around each search for the next part.
#[derive(Debug, Clone)]
pub struct HeaderBudget {
    left: Arc<AtomicU64>,
    limit: u64,
}

/// No search under way: file data flows freely.
const UNLIMITED: u64 = u64::MAX;

impl HeaderBudget {
    pub fn new(limit: u64) -> Self {
        Self {
            left: Arc::new(AtomicU64::new(UNLIMITED)),
            limit,
        }
    }

    /// The parser starts looking for a boundary and a header block.
    pub fn open(&self) {
        self.left.store(self.limit, Ordering::Relaxed);
    }

    /// It found them; what follows is a part's data.
    pub fn close(&self) {
        self.left.store(UNLIMITED, Ordering::Relaxed);
    }

    /// Counts a chunk. The chunk that crosses the limit still passes (it may
    /// hold the end of the headers and the start of the data); one more
    /// while the search goes on is refused, so the parser's buffer never
    /// grows past the limit and a chunk.
    fn take(&self, len: usize) -> Result<(), BodyError> {
        match self.left.load(Ordering::Relaxed) {
            UNLIMITED => Ok(()),
            0 => Err(BodyError::HeadersTooLong(self.limit)),
            left => {
                let left = left.saturating_sub(len as u64);
                self.left.store(left, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// `stream` with every chunk counted against this budget.
    pub fn guard(
        &self,
        stream: impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static,
    ) -> impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static {
        let budget = self.clone();
        stream.map(move |item| {
            let bytes = item?;
            budget.take(bytes.len())?;
            Ok(bytes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_lets_one_chunk_cross_and_refuses_the_next() {
        let budget = HeaderBudget::new(100);
        assert!(budget.take(1 << 20).is_ok(), "closed: anything passes");
        budget.open();
        assert!(budget.take(60).is_ok());
        assert!(budget.take(1000).is_ok(), "crosses the limit");
        assert!(matches!(
            budget.take(1),
            Err(BodyError::HeadersTooLong(100))
        ));
        budget.close();
        assert!(budget.take(1 << 20).is_ok());
    }
}
