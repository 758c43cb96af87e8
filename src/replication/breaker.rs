//! The circuit breaker of one peer.
//!
//! Every failure of a copy to the peer sets when it is tried next: after
//! `retry_interval`, doubling per consecutive failure up to
//! `max_retry_interval`. The background replay waits for that. A failure
//! that cost time (the peer hung, timed out on connect, answered 5xx or
//! something that is not this service) also opens the breaker: until then
//! upload copies are journaled at once without trying, so a hung peer does
//! not hold every upload for an idle timeout. A refused connection does not
//! open it: the peer's host answered at once, trying again costs nothing, and
//! the next upload reaches the peer as soon as it is back.
//!
//! When the wait has passed, the next send (from an upload or a replay) goes
//! through as a probe, and the breaker stays open for the others meanwhile,
//! so a hung peer costs one idle timeout per backoff, not one per upload.
//! Copies that were in flight together and fail together count as one
//! failure. Any confirmed copy closes the breaker.
//!
//! It only keeps state; deciding what counts as a failure is the
//! replicator's job. Every method takes the time it happens at, so the
//! rules are tested without waiting.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Breaker {
    base: Duration,
    max: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Failures since the last confirmed copy.
    consecutive: u32,
    /// Every failure counted so far: a send notes it when it starts, and a
    /// change means the peer failed meanwhile.
    total: u64,
    /// When the peer is tried next; `None` while all is well.
    retry_at: Option<Instant>,
    /// Upload copies are not tried until `retry_at`.
    open: bool,
    /// What the last failure was, for the journal.
    cause: String,
}

/// A copy that was not tried because the peer failed just before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Open {
    pub cause: String,
    pub retry_in: Duration,
}

/// What `/healthz` shows of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerStatus {
    /// Upload copies to the peer are journaled without trying.
    pub open: bool,
    pub consecutive_failures: u32,
    /// Seconds until the peer is tried again (0: now, or all is well).
    pub retry_in_secs: u64,
}

impl Breaker {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change is a few plain assignments: the state is consistent
        // even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn backoff(&self, consecutive: u32) -> Duration {
        let doublings = consecutive.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// The failure count a send starts from: pass it to
    /// [`Breaker::failed`] (and to [`Breaker::admit_replay`] for a replay
    /// round).
    pub(crate) fn mark(&self) -> u64 {
        self.state().total
    }

    /// For an upload's copy, without side effects: `Err` while the breaker
    /// is open and its wait has not passed.
    pub(crate) fn check(&self, now: Instant) -> Result<(), Open> {
        let state = self.state();
        match state.retry_at {
            Some(at) if state.open && now < at => Err(state.open_until(at, now)),
            _ => Ok(()),
        }
    }

    /// For an upload's copy about to be sent: like [`Breaker::check`]; when
    /// the wait has passed, this copy is the probe and the breaker stays
    /// open for the others meanwhile.
    pub(crate) fn admit(&self, now: Instant) -> Result<(), Open> {
        let mut state = self.state();
        match state.retry_at {
            Some(at) if state.open && now < at => Err(state.open_until(at, now)),
            Some(_) if state.open => {
                state.retry_at = Some(now + self.backoff(state.consecutive));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// For a replay round's copy, without side effects: a replay is how a
    /// failing peer is probed, so it goes even while the breaker is open,
    /// unless the peer failed again since the round began at `since`.
    pub(crate) fn check_replay(&self, since: u64, now: Instant) -> Result<(), Open> {
        let state = self.state();
        if state.total == since {
            return Ok(());
        }
        Err(state.open_until(state.retry_at.unwrap_or(now), now))
    }

    /// [`Breaker::check_replay`] for a copy about to be sent; an open
    /// breaker whose wait has passed stays open for uploads meanwhile.
    pub(crate) fn admit_replay(&self, since: u64, now: Instant) -> Result<(), Open> {
        self.check_replay(since, now)?;
        let mut state = self.state();
        if state.open && state.retry_at.is_some_and(|at| at <= now) {
            state.retry_at = Some(now + self.backoff(state.consecutive));
        }
        Ok(())
    }

    /// All is well, or the wait has passed: the background replay may try
    /// the peer now.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.state().retry_at.is_none_or(|at| at <= now)
    }

    /// A send that started at `since` ([`Breaker::mark`]) failed; `costly`:
    /// it cost time, so uploads stop trying for a while.
    pub(crate) fn failed(&self, cause: &str, costly: bool, since: u64, now: Instant) {
        let mut state = self.state();
        if state.total != since {
            // In flight together with a failure already counted.
            state.open |= costly;
            return;
        }
        state.consecutive = state.consecutive.saturating_add(1);
        state.total += 1;
        state.retry_at = Some(now + self.backoff(state.consecutive));
        state.open = costly;
        cause.clone_into(&mut state.cause);
    }

    pub(crate) fn succeeded(&self) {
        let mut state = self.state();
        state.consecutive = 0;
        state.retry_at = None;
        state.open = false;
    }

    pub(crate) fn status(&self, now: Instant) -> BreakerStatus {
        let state = self.state();
        BreakerStatus {
            open: state.open,
            consecutive_failures: state.consecutive,
            retry_in_secs: state
                .retry_at
                .map_or(0, |at| at.saturating_duration_since(now).as_secs()),
        }
    }
}

impl State {
    fn open_until(&self, at: Instant, now: Instant) -> Open {
        Open {
            cause: self.cause.clone(),
            retry_in: at.saturating_duration_since(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    /// One send that fails at `now`.
    fn fail(b: &Breaker, cause: &str, costly: bool, now: Instant) {
        b.failed(cause, costly, b.mark(), now);
    }

    #[test]
    fn opens_doubles_and_closes() {
        let t = Instant::now();
        let b = Breaker::new(SEC * 10, SEC * 30);
        assert!(b.admit(t).is_ok());
        fail(&b, "no progress for 30 s", true, t);
        let open = b.admit(t).expect_err("open");
        assert_eq!(open.cause, "no progress for 30 s");
        assert_eq!(open.retry_in, SEC * 10);
        fail(&b, "again", true, t);
        assert_eq!(b.check(t).expect_err("open").retry_in, SEC * 20);
        fail(&b, "again", true, t);
        fail(&b, "again", true, t);
        assert_eq!(b.check(t).expect_err("open").retry_in, SEC * 30);
        assert_eq!(b.status(t).consecutive_failures, 4);
        b.succeeded();
        assert!(b.admit(t).is_ok());
        assert_eq!(
            b.status(t),
            BreakerStatus {
                open: false,
                consecutive_failures: 0,
                retry_in_secs: 0
            }
        );
    }

    #[test]
    fn copies_that_fail_together_count_once() {
        let t = Instant::now();
        let b = Breaker::new(SEC * 10, SEC * 600);
        let since = b.mark();
        for _ in 0..16 {
            b.failed("no progress", true, since, t);
        }
        assert_eq!(b.status(t).consecutive_failures, 1);
        assert_eq!(b.check(t).expect_err("open").retry_in, SEC * 10);
    }

    #[test]
    fn a_refused_connection_delays_the_replay_but_not_the_uploads() {
        let t = Instant::now();
        let b = Breaker::new(SEC * 10, SEC * 600);
        fail(&b, "Connection refused", false, t);
        assert!(b.admit(t).is_ok());
        assert!(!b.is_due(t + SEC * 9));
        assert!(b.is_due(t + SEC * 10));
        // A hung peer that is then restarting: uploads may try again.
        fail(&b, "no progress", true, t);
        assert!(b.check(t).is_err());
        fail(&b, "Connection refused", false, t);
        assert!(b.check(t).is_ok());
    }

    #[test]
    fn one_probe_when_the_wait_has_passed() {
        let t = Instant::now();
        let b = Breaker::new(SEC * 10, SEC * 600);
        fail(&b, "no progress", true, t);
        assert!(!b.is_due(t + SEC * 9));
        let later = t + SEC * 10;
        assert!(b.is_due(later));
        assert!(b.check(later).is_ok());
        // The first one through is the probe; the others wait for it.
        let probe = b.mark();
        assert!(b.admit(later).is_ok());
        assert_eq!(b.admit(later).expect_err("probing").retry_in, SEC * 10);
        b.failed("no progress", true, probe, later);
        assert_eq!(b.check(later).expect_err("open").retry_in, SEC * 20);
    }

    #[test]
    fn a_replay_round_stops_once_the_peer_failed_during_it() {
        let t = Instant::now();
        let b = Breaker::new(SEC, SEC * 8);
        fail(&b, "before the round", true, t);
        let since = b.mark();
        // Open, but the round is the probe.
        assert!(b.admit_replay(since, t).is_ok());
        assert!(b.admit_replay(since, t).is_ok());
        b.failed("during the round", false, since, t);
        let open = b.admit_replay(since, t).expect_err("failed meanwhile");
        assert_eq!(open.cause, "during the round");
    }
}
