//! `tracing` for the server to stdout and to daily-rolling files
//! `{log_dir}/multiserver-upload.log.YYYY-MM-DD` (SPEC §6); for the `replay`
//! command to stderr only, so its stdout carries nothing but the report.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the subscriber; keep the guard alive so file lines get written.
pub fn init(log_dir: Option<&Path>) -> anyhow::Result<Option<WorkerGuard>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let console = tracing_subscriber::fmt::layer().with_target(false);
    let console = if log_dir.is_some() {
        console
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(BoxMakeWriter::new(std::io::stdout))
    } else {
        console
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(BoxMakeWriter::new(std::io::stderr))
    };
    let (file, guard) = match log_dir {
        Some(dir) => {
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("multiserver-upload.log")
                .build(dir)
                .with_context(|| format!("cannot write logs to {}", dir.display()))?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_target(false)
                .with_writer(writer);
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(file)
        .try_init()
        .context("cannot install the logger")?;
    Ok(guard)
}
