//! A request body as a stream of chunks that gives up on a client that sends
//! nothing for the idle timeout, or trickles slower than the minimum rate
//! over a whole idle-timeout window, so a stalled or dripping upload cannot
//! hold a temporary file, a connection and a task forever.

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
