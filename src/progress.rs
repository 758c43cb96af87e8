//! Progress of the long commands (`migrate`, `replay`): files and bytes
//! done, rate and time left, shown while they run so that a copy of hours
//! is not silent.
//!
//! The work counts into a [`Tally`]; [`show`] reads it. On a terminal
//! (standard error) that is a bar drawn by `indicatif`; elsewhere (Task
//! Scheduler's log, a pipe) a line every few seconds. Both go to standard
//! error, so what a command prints on standard output (replay's JSON
//! report) stays one parseable answer. Also [`Every`], the clock of the
//! start-up index build's log lines. What the work is, is not known here.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the bar is redrawn on a terminal.
const DRAW_EVERY: Duration = Duration::from_millis(200);

/// The bar until the total is known: a spinner, counts and rate.
const COUNTING: &str =
    "{prefix}: {spinner} {msg}, {bytes} at {binary_bytes_per_sec} (still counting the total)";

/// The bar once the total is known; `msg` holds files and time left, as
/// the lines off a terminal say them.
const KNOWN: &str =
    "{prefix}: [{wide_bar}] {bytes} of {total_bytes} at {binary_bytes_per_sec}, {msg}";

/// What is done, and what there is to do once it is known.
#[derive(Debug, Default)]
pub struct Tally {
    files: AtomicU64,
    bytes: AtomicU64,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    total_known: AtomicBool,
}

impl Tally {
    /// `files` more, of `bytes`, are done (copied, skipped or failed).
    pub fn add(&self, files: u64, bytes: u64) {
        self.files.fetch_add(files, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The whole work is `files` of `bytes`: from now on a time left is shown.
    pub fn set_total(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
        self.total_known.store(true, Ordering::Release);
    }

    fn read(&self) -> Figures {
        let total = self.total_known.load(Ordering::Acquire).then(|| {
            (
                self.total_files.load(Ordering::Relaxed),
                self.total_bytes.load(Ordering::Relaxed),
            )
        });
        Figures {
            files: self.files.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            total,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    files: u64,
    bytes: u64,
    total: Option<(u64, u64)>,
}

impl Figures {
    /// The line written every few seconds off a terminal, e.g.
    /// `migrate: 120 of 480 files, 1.20 GiB of 4.80 GiB, 35.00 MiB/s, 1 minute left`.
    fn line(&self, what: &str, elapsed: Duration) -> String {
        let rate = rate(self.bytes, elapsed);
        match self.total {
            Some((files, bytes)) => format!(
                "{what}: {} of {files} files, {} of {}, {}/s, {}",
                self.files,
                HumanBytes(self.bytes),
                HumanBytes(bytes),
                HumanBytes(rate),
                self.left_text(elapsed),
            ),
            None => format!(
                "{what}: {} files, {}, {}/s (still counting the total)",
                self.files,
                HumanBytes(self.bytes),
                HumanBytes(rate)
            ),
        }
    }

    /// `3 minutes left`, or that it is not known before anything is done.
    fn left_text(&self, elapsed: Duration) -> String {
        self.left(elapsed).map_or_else(
            || "time left not known yet".to_owned(),
            |d| format!("{} left", HumanDuration(d)),
        )
    }

    /// The time left at the rate so far: by bytes where there are bytes to
    /// copy, by files otherwise (a replay of deletes moves no bytes).
    fn left(&self, elapsed: Duration) -> Option<Duration> {
        let (total_files, total_bytes) = self.total?;
        let (done, total) = if total_bytes > 0 {
            (self.bytes, total_bytes)
        } else {
            (self.files, total_files)
        };
        if done == 0 {
            return None;
        }
        let left = total.saturating_sub(done) as f64 / done as f64;
        Some(elapsed.mul_f64(left))
    }
}

fn rate(bytes: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (bytes as f64 / secs) as u64
    } else {
        0
    }
}

/// Shows a tally until [`Shown::finish`].
pub struct Shown {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Shown {
    /// Stops showing; on a terminal the bar is left as it ended.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Shows `tally` of the command `what` while it runs: a bar on a terminal,
/// a line every `every` otherwise.
pub fn show(what: &'static str, tally: Arc<Tally>, every: Duration) -> Shown {
    let (stop, stopped) = watch::channel(false);
    let task = if std::io::stderr().is_terminal() {
        tokio::spawn(draw(what, tally, stopped))
    } else {
        tokio::spawn(lines(what, tally, every, stopped))
    };
    Shown { stop, task }
}

async fn lines(
    what: &'static str,
    tally: Arc<Tally>,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = tick.tick() => eprintln!("{}", tally.read().line(what, started.elapsed())),
            _ = stopped.changed() => return,
        }
    }
}

async fn draw(what: &'static str, tally: Arc<Tally>, mut stopped: watch::Receiver<bool>) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_prefix(what);
    if let Ok(style) = ProgressStyle::with_template(COUNTING) {
        bar.set_style(style);
    }
    let started = Instant::now();
    let mut styled = false;
    let mut tick = tokio::time::interval(DRAW_EVERY);
    loop {
        let figures = tally.read();
        match figures.total {
            Some((files, bytes)) => {
                if !styled {
                    if let Ok(style) = ProgressStyle::with_template(KNOWN) {
                        bar.set_style(style);
                    }
                    styled = true;
                }
                bar.set_length(bytes);
                let left = figures.left_text(started.elapsed());
                bar.set_message(format!("{} of {files} files, {left}", figures.files));
            }
            None => bar.set_message(format!("{} files", figures.files)),
        }
        bar.set_position(figures.bytes);
        if *stopped.borrow() {
            // Left on the screen as it ended, its last figures drawn.
            bar.abandon();
            return;
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => {}
        }
    }
}

/// A clock for log lines of work that may be long: due first after
/// `first` (quick work says nothing), then every `then`.
#[derive(Debug)]
pub struct Every {
    next: Instant,
    then: Duration,
}

impl Every {
    pub fn new(first: Duration, then: Duration) -> Self {
        Self::from(Instant::now(), first, then)
    }

    fn from(start: Instant, first: Duration, then: Duration) -> Self {
        Self {
            next: start + first,
            then,
        }
    }

    /// Whether a line is due now; if so the next is `then` later.
    pub fn due(&mut self) -> bool {
        self.due_at(Instant::now())
    }

    fn due_at(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.then;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_counts_rate_and_time_left_once_the_total_is_known() {
        let tally = Tally::default();
        tally.add(120, 120 << 20);
        let counting = tally.read().line("migrate", Duration::from_secs(4));
        assert_eq!(
            counting,
            "migrate: 120 files, 120.00 MiB, 30.00 MiB/s (still counting the total)"
        );
        tally.set_total(480, 480 << 20);
        let known = tally.read().line("migrate", Duration::from_secs(4));
        assert_eq!(
            known,
            "migrate: 120 of 480 files, 120.00 MiB of 480.00 MiB, 30.00 MiB/s, 12 seconds left"
        );
    }

    #[test]
    fn the_bar_templates_parse() {
        for template in [COUNTING, KNOWN] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn time_left_goes_by_files_when_nothing_has_bytes() {
        let tally = Tally::default();
        tally.set_total(10, 0);
        assert_eq!(tally.read().left(Duration::from_secs(1)), None);
        tally.add(5, 0);
        assert_eq!(
            tally.read().left(Duration::from_secs(2)),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn every_is_silent_for_quick_work_then_due_at_each_period() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut every = Every::from(start, Duration::from_secs(1), Duration::from_secs(5));
        assert!(!every.due_at(at(999)), "quick work says nothing");
        assert!(every.due_at(at(1000)));
        assert!(!every.due_at(at(5999)));
        assert!(every.due_at(at(6000)));
        assert!(!every.due_at(at(6001)));
    }
}
