//! The one source of "stop now": Ctrl-C, Ctrl-Break (what IIS sends a
//! console process it recycles) and SIGTERM. `server` waits on it to stop
//! accepting and drain in-flight requests.

/// Resolves when the process is asked to stop.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        () = platform() => {}
    }
}

#[cfg(unix)]
async fn platform() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
            tracing::info!("SIGTERM: shutting down");
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(windows)]
async fn platform() {
    match tokio::signal::windows::ctrl_break() {
        Ok(mut brk) => {
            brk.recv().await;
            tracing::info!("Ctrl-Break: shutting down");
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for Ctrl-Break");
            std::future::pending::<()>().await;
        }
    }
}
