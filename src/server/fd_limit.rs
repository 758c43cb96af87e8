//! The process's open-file limit, which every client connection counts
//! against on unix: raised at start from the soft to the hard limit (many
//! systems start services with a soft limit of 1024), and the connection cap
//! lowered to fit what is left after a reserve for everything else.
//!
//! Windows has no such limit on sockets; the cap stays as configured there.

/// Descriptors kept back from the connection cap for files being stored or
/// served, the journal, logs, the listener and connections to peers.
const RESERVE: u64 = 256;

/// Raises the open-file limit as far as allowed, logs it, and returns how
/// many connections fit in it: `max_connections`, or fewer with a warning.
pub fn fit_connections(max_connections: usize) -> usize {
    let Some(limit) = raise() else {
        return max_connections;
    };
    let cap = cap_for(limit, max_connections);
    if cap < max_connections {
        tracing::warn!(
            limit,
            max_connections,
            cap,
            "the open-file limit leaves room for {cap} connections only: \
             max_connections lowered; raise the hard limit (e.g. LimitNOFILE) to allow more"
        );
    }
    cap
}

/// The connections that fit in `limit` open files besides the reserve; when
/// the limit is smaller than the reserve itself, half of it.
fn cap_for(limit: u64, max_connections: usize) -> usize {
    let room = limit.saturating_sub(RESERVE).max(limit / 2).max(1);
    usize::try_from(room).map_or(max_connections, |room| room.min(max_connections))
}

/// The soft limit after raising it to the hard one; `None` if unknown.
#[cfg(unix)]
fn raise() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(limit, "open-file limit");
            Some(limit)
        }
        Err(e) => match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok((soft, _)) => {
                tracing::warn!(error = %e, limit = soft, "cannot raise the open-file limit");
                Some(soft)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the open-file limit");
                None
            }
        },
    }
}

#[cfg(not(unix))]
fn raise() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_limit_keeps_max_connections() {
        assert_eq!(cap_for(1 << 20, 4096), 4096);
        assert_eq!(cap_for(4096 + RESERVE, 4096), 4096);
        assert_eq!(cap_for(u64::MAX, 4096), 4096);
    }

    #[test]
    fn a_small_limit_keeps_the_reserve_free() {
        assert_eq!(cap_for(1024, 4096), 1024 - RESERVE as usize);
        assert_eq!(cap_for(4096, 4096), 4096 - RESERVE as usize);
    }

    #[test]
    fn a_tiny_limit_still_takes_some_connections() {
        assert_eq!(cap_for(256, 4096), 128);
        assert_eq!(cap_for(1, 4096), 1);
        assert_eq!(cap_for(0, 4096), 1);
    }
}
