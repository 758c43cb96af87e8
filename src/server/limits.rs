//! Connection caps (SPEC §8): how many client connections are open, in all
//! and per client address, and whether one more may be taken. A taken
//! connection holds a [`Slot`] that gives its place back when dropped, however
//! the connection ends. Refusals are counted for a summary warning.
//!
//! This module decides and counts; closing a refused socket is the accept
//! loop's job.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The open connections and the caps they are held to.
#[derive(Clone)]
pub(crate) struct Connections {
    shared: Arc<Shared>,
}

struct Shared {
    max: usize,
    max_per_client: usize,
    /// Addresses exempt from the per-client cap: trusted proxies, which
    /// carry every client behind them.
    exempt: Vec<IpAddr>,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    /// Only addresses with at least one connection: an entry goes when its
    /// last connection does, so the map stays as small as the open set.
    per_client: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_client` are open from this address.
    PerClient,
}

/// One admitted connection's place; dropping it gives the place back.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    /// `None` for an exempt address, which is counted in the total only.
    client: Option<IpAddr>,
}

impl Connections {
    pub(crate) fn new(max: usize, max_per_client: usize, exempt: &[IpAddr]) -> Self {
        Self {
            shared: Arc::new(Shared {
                max,
                max_per_client,
                exempt: exempt.iter().map(IpAddr::to_canonical).collect(),
                open: Mutex::new(Open::default()),
            }),
        }
    }

    /// Takes a place for a connection from `client`, or says which cap is full.
    pub(crate) fn admit(&self, client: IpAddr) -> Result<Slot, Refused> {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let client = client.to_canonical();
        let counted = (!self.shared.exempt.contains(&client)).then_some(client);
        let mut open = self.shared.lock();
        if open.total >= self.shared.max {
            return Err(Refused::Total);
        }
        if let Some(ip) = counted {
            let n = open.per_client.entry(ip).or_insert(0);
            if *n >= self.shared.max_per_client {
                return Err(Refused::PerClient);
            }
            *n += 1;
        }
        open.total += 1;
        Ok(Slot {
            shared: self.shared.clone(),
            client: counted,
        })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // Nothing panics while holding the lock; a poisoned one is still right.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.shared.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(ip) = self.client
            && let Some(n) = open.per_client.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&ip);
            }
        }
    }
}

/// How often at most a flood of refusals is reported at warn level.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Logs refused connections: each at debug, and a summary warning at most
/// every [`REPORT_EVERY`], so a flood cannot flood the log too.
#[derive(Default)]
pub(crate) struct Refusals {
    last_report: Option<Instant>,
    total: u64,
    per_client: u64,
}

impl Refusals {
    pub(crate) fn record(&mut self, client: SocketAddr, why: Refused) {
        tracing::debug!(%client, ?why, "connection refused");
        match why {
            Refused::Total => self.total += 1,
            Refused::PerClient => self.per_client += 1,
        }
        let now = Instant::now();
        if self
            .last_report
            .is_none_or(|last| now.duration_since(last) >= REPORT_EVERY)
        {
            tracing::warn!(
                over_max_connections = self.total,
                over_max_connections_per_client = self.per_client,
                "connections refused since the last such line (one at most every {} s)",
                REPORT_EVERY.as_secs()
            );
            self.last_report = Some(now);
            self.total = 0;
            self.per_client = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_total_cap_counts_every_address() {
        let c = Connections::new(3, 2, &[]);
        let a = c.admit(ip("10.0.0.1")).expect("1st");
        let _b = c.admit(ip("10.0.0.1")).expect("2nd");
        let _c = c.admit(ip("10.0.0.2")).expect("3rd");
        assert_eq!(c.admit(ip("10.0.0.3")).err(), Some(Refused::Total));
        drop(a);
        assert!(c.admit(ip("10.0.0.3")).is_ok());
    }

    #[test]
    fn the_per_client_cap_is_per_address_and_given_back_on_drop() {
        let c = Connections::new(100, 2, &[]);
        let first = c.admit(ip("10.0.0.1")).expect("1st");
        let _second = c.admit(ip("10.0.0.1")).expect("2nd");
        assert_eq!(c.admit(ip("10.0.0.1")).err(), Some(Refused::PerClient));
        assert!(c.admit(ip("10.0.0.2")).is_ok());
        drop(first);
        let _again = c.admit(ip("10.0.0.1")).expect("place given back");
        assert_eq!(c.admit(ip("10.0.0.1")).err(), Some(Refused::PerClient));
    }

    #[test]
    fn a_refusal_takes_no_place() {
        let c = Connections::new(2, 1, &[]);
        let _a = c.admit(ip("10.0.0.1")).expect("1st");
        for _ in 0..5 {
            assert!(c.admit(ip("10.0.0.1")).is_err());
        }
        let _b = c.admit(ip("10.0.0.2")).expect("the total still has room");
    }

    #[test]
    fn trusted_proxies_are_held_to_the_total_only() {
        let c = Connections::new(4, 1, &[ip("127.0.0.1")]);
        let held: Vec<Slot> = (0..4)
            .map(|_| c.admit(ip("127.0.0.1")).expect("exempt"))
            .collect();
        assert_eq!(c.admit(ip("127.0.0.1")).err(), Some(Refused::Total));
        drop(held);
        assert!(c.shared.lock().per_client.is_empty());
        assert_eq!(c.shared.lock().total, 0);
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_the_ipv4_address() {
        let c = Connections::new(10, 1, &[ip("192.0.2.9")]);
        let _a = c.admit(ip("::ffff:10.0.0.1")).expect("1st");
        assert_eq!(c.admit(ip("10.0.0.1")).err(), Some(Refused::PerClient));
        let _p = c.admit(ip("::ffff:192.0.2.9")).expect("exempt");
        let _q = c.admit(ip("::ffff:192.0.2.9")).expect("exempt");
    }

    #[test]
    fn no_entry_is_left_for_an_address_whose_connections_ended() {
        let c = Connections::new(10, 5, &[]);
        let slots: Vec<Slot> = (1..=5)
            .map(|i| c.admit(ip(&format!("10.0.0.{i}"))).expect("admit"))
            .collect();
        assert_eq!(c.shared.lock().per_client.len(), 5);
        drop(slots);
        assert!(c.shared.lock().per_client.is_empty());
    }
}
