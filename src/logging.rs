//! `tracing` for the server to stdout and to daily-rolling files
//! `{log_dir}/multiserver-upload.log.YYYY-MM-DD` (SPEC §6); for the `replay`
//! command to stderr only, so its stdout carries nothing but the report.
//!
//! Every line passes through [`Redacting`] on its way out: a URL's
//! credentials (`http://user:pass@host`, in a peer's Uri or an endpoint,
//! quoted by a library's error) never reach a console or a log file.

use std::io::{self, IsTerminal, Write};
use std::path::Path;

use anyhow::Context;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
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
            .with_writer(BoxMakeWriter::new(Redacting(std::io::stdout)))
    } else {
        console
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(BoxMakeWriter::new(Redacting(std::io::stderr)))
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
                .with_writer(Redacting(writer));
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

/// A writer (and maker of writers) that removes URL credentials from what
/// passes through. The formatter hands over one whole event per write, so
/// a URL is never split between two writes.
#[derive(Debug, Clone)]
struct Redacting<W>(W);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = Redacting<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Redacting(self.0.make_writer())
    }
}

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf).map(crate::config::without_userinfo) {
            Ok(std::borrow::Cow::Owned(clean)) => {
                self.0.write_all(clean.as_bytes())?;
                Ok(buf.len())
            }
            _ => self.0.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
