//! `tracing` for the server to stdout and to daily-rolling files
//! `{log_dir}/multiserver-upload.log.YYYY-MM-DD` (SPEC §6); for the `replay`
//! command to stderr only, so its stdout carries nothing but the report.
//!
//! Every line passes through [`Redacting`] on its way out: a URL's
//! credentials (`http://user:pass@host`, in a peer's Uri or an endpoint,
//! quoted by a library's error) and every key this server knows never
//! reach a console or a log file.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the subscriber; keep the guard alive so file lines get written.
/// `secrets` are replaced by `***` wherever a line carries one.
pub fn init(log_dir: Option<&Path>, secrets: &[&str]) -> anyhow::Result<Option<WorkerGuard>> {
    let secrets: Arc<[String]> = secrets.iter().map(|s| (*s).to_owned()).collect();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let console = tracing_subscriber::fmt::layer().with_target(false);
    let console = if log_dir.is_some() {
        console
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(BoxMakeWriter::new(Redacting(
                std::io::stdout,
                secrets.clone(),
            )))
    } else {
        console
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(BoxMakeWriter::new(Redacting(
                std::io::stderr,
                secrets.clone(),
            )))
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
                .with_writer(Redacting(writer, secrets));
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

/// A writer (and maker of writers) that removes URL credentials and the
/// given secrets from what passes through. The formatter hands over one
/// whole event per write, so a URL or a key is never split between two
/// writes.
#[derive(Debug, Clone)]
struct Redacting<W>(W, Arc<[String]>);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = Redacting<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Redacting(self.0.make_writer(), self.1.clone())
    }
}

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Ok(text) = std::str::from_utf8(buf) else {
            return self.0.write(buf);
        };
        let clean = without_secrets(crate::config::without_userinfo(text), &self.1);
        match clean {
            Cow::Owned(clean) => {
                self.0.write_all(clean.as_bytes())?;
                Ok(buf.len())
            }
            Cow::Borrowed(_) => self.0.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `text` with every standalone occurrence of a secret replaced by `***`.
/// Standalone: not inside a longer word, so that a short key (tests and
/// trials use `k`) does not blank out the letters of every line.
fn without_secrets<'a>(text: Cow<'a, str>, secrets: &[String]) -> Cow<'a, str> {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let mut text = text;
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let mut from = 0;
        while let Some(at) = text[from..].find(secret.as_str()).map(|i| from + i) {
            let end = at + secret.len();
            if word(text[..at].chars().next_back()) || word(text[end..].chars().next()) {
                from = end;
                continue;
            }
            text.to_mut().replace_range(at..end, "***");
            from = at + 3;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_left_out() {
        let secrets = ["k".to_owned(), "s3cret-key".to_owned()];
        let line = "kept key=s3cret-key and \"k\" k";
        assert_eq!(
            without_secrets(Cow::Borrowed(line), &secrets),
            "kept key=*** and \"***\" ***"
        );
        assert!(matches!(
            without_secrets(Cow::Borrowed("nothing here"), &secrets),
            Cow::Borrowed(_)
        ));
    }
}
