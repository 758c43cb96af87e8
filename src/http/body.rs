//! A request body as a stream of chunks that gives up on a client that sends
//! nothing for the idle timeout, so a stalled upload cannot hold a temporary
//! file (and a connection) forever.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the client sent nothing for {0} s")]
    Stalled(u64),
    #[error("reading the request body failed: {0}")]
    Read(#[source] axum::Error),
}

pub fn idle_limited(
    body: Body,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static {
    tokio_stream::StreamExt::timeout(body.into_data_stream(), idle).map(move |item| match item {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(BodyError::Read(e)),
        Err(_) => Err(BodyError::Stalled(idle.as_secs())),
    })
}
