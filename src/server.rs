//! The accept loop: HTTP/1.1 connections with a header timeout (a client that
//! never finishes its headers is dropped) and a send timeout (a client that
//! stops reading its answer is dropped), the connection caps of `limits`
//! (a connection over a cap is closed as soon as it is accepted), the
//! client's address handed to the router, and graceful shutdown: on the
//! signal, stop accepting, let in-flight requests finish within the grace
//! period, then drop the rest, whose unfinished files are deleted as their
//! uploads are dropped. `fd_limit` fits the connection cap to the process's
//! open-file limit at start.

mod fd_limit;
mod limits;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

pub use fd_limit::fit_connections;
use limits::{Connections, Refusals};

/// What the accept loop takes from the configuration.
pub struct Settings {
    /// A client must finish its request headers within this time.
    pub header_timeout: Duration,
    /// A write to a client that stays pending this long ends the connection.
    /// There is no read timeout: the header timeout and the body pacing of
    /// `http` cover slow senders, and hyper may wait on a read for as long
    /// as a handler works (e.g. replicating).
    pub send_timeout: Duration,
    /// How long in-flight requests may run on after the shutdown signal.
    pub grace: Duration,
    /// Open connections at once, over all clients.
    pub max_connections: usize,
    /// Open connections at once from one address, except `trusted_proxies`.
    pub max_connections_per_client: usize,
    pub trusted_proxies: Vec<IpAddr>,
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(true);
    let connections = Connections::new(
        settings.max_connections,
        settings.max_connections_per_client,
        &settings.trusted_proxies,
    );
    let mut refusals = Refusals::default();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match connections.admit(addr.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                // Closed at once: no task, no buffers for it.
                drop(stream);
                refusals.record(addr, why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(settings.send_timeout));
        let service = router
            .clone()
            .map_request(move |mut request: hyper::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(addr));
                request
            });
        let connection = http.serve_connection(
            TokioIo::new(Box::pin(stream)),
            TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // The place is given back when this task ends or is dropped.
            let _slot = slot;
            if let Err(e) = connection.await {
                tracing::debug!(client = %addr, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("no longer accepting; waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all requests finished"),
        () = tokio::time::sleep(settings.grace) => {
            tracing::warn!(grace_secs = settings.grace.as_secs(), "grace period over; dropping unfinished requests");
        }
    }
}
