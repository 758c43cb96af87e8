//! Keeping deletes bounded (SPEC §4a): the trash's purge, and dropping
//! the tombstones and restored marks that no server needs any more.
//!
//! A tombstone is dropped only when no server can still bring the name
//! back, as Garage does: it is older here than `[repair]
//! tombstone_min_age_secs` (which covers copies still in flight when the
//! name was deleted), and every peer has it too (its digest of that day is
//! the same as here, or else its list of that day shows it), so that no
//! server holds the file and none would take a copy of it. It is then dropped here and every peer is told to drop its own
//! (`action=forget`); a peer that cannot be told keeps its tombstone, which
//! repair brings back here, and a later round drops both.
//!
//! A restored mark (a name deleted and restored) keeps a peer's stale
//! tombstone from deleting the name again; it is dropped once it is as old
//! and no peer has a tombstone of the name any more.
//!
//! Runs after each round of passes; a round that meets a peer it cannot
//! ask drops nothing more (that peer might hold the name).

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::StreamExt;

use super::pass::{RepairError, blocking};
use super::worker::Repairer;
use crate::config::Peer;
use crate::index::{Digest, Index, Prefix, day_number, level};
use crate::replication::{FROM_HEADER, envelope, error_text, is_success};
use crate::storage::StoredPath;

/// Names looked at per round, at most.
const ROUND: usize = 10_000;
/// Peers told to forget at once.
const TELLING: usize = 8;

impl Repairer {
    /// Purges the trash, then drops what no server needs any more.
    pub(super) async fn tidy(&self) {
        match self.storage.purge_trash(self.config.repair.trash).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(target: "repair", purged, "trash purged"),
            Err(e) => tracing::warn!(target: "repair", error = %e, "the trash could not be purged"),
        }
        if self.storage.index().is_none() {
            return;
        }
        match self.drop_tombstones().await {
            Ok(0) => {}
            Ok(dropped) => {
                tracing::info!(target: "repair", dropped, "tombstones every server had dropped")
            }
            Err(e) => tracing::warn!(target: "repair", error = %e, "tombstones kept this round"),
        }
        match self.drop_restored_marks().await {
            Ok(0) => {}
            Ok(dropped) => tracing::info!(target: "repair", dropped, "restored marks dropped"),
            Err(e) => {
                tracing::warn!(target: "repair", error = %e, "restored marks kept this round")
            }
        }
    }

    async fn drop_tombstones(&self) -> Result<usize, RepairError> {
        let old = self.old_marks(true).await?;
        let mut everywhere: BTreeMap<u32, HashSet<StoredPath>> = old
            .into_iter()
            .map(|(day, names)| (day, names.into_iter().collect()))
            .collect();
        for peer in &self.config.peers {
            let days: Vec<u32> = everywhere.keys().copied().collect();
            for (day, theirs) in self.tombstones_on(peer, &days).await? {
                if let (Some(names), Some(theirs)) = (everywhere.get_mut(&day), theirs) {
                    names.retain(|p| theirs.contains(p));
                }
            }
        }
        let confirmed: Vec<StoredPath> = everywhere.into_values().flatten().collect();
        if confirmed.is_empty() {
            return Ok(0);
        }
        self.storage
            .forget(confirmed.clone())
            .await
            .map_err(|e| RepairError::BadAnswer(e.to_string()))?;
        let mut tells = Vec::new();
        for path in &confirmed {
            for peer in &self.config.peers {
                tells.push((peer.clone(), path.clone()));
            }
        }
        let mut told = futures_util::stream::iter(tells)
            .map(|(peer, path)| async move {
                let result = self.tell_forget(&peer, &path).await;
                (peer, path, result)
            })
            .buffer_unordered(TELLING);
        while let Some((peer, path, result)) = told.next().await {
            if let Err(e) = result {
                tracing::warn!(target: "repair", peer = %peer.name, %path, error = %e, "the peer keeps its tombstone until a later round");
            }
        }
        Ok(confirmed.len())
    }

    async fn drop_restored_marks(&self) -> Result<usize, RepairError> {
        let old = self.old_marks(false).await?;
        let mut stale: BTreeMap<u32, HashSet<StoredPath>> = old
            .into_iter()
            .map(|(day, names)| (day, names.into_iter().collect()))
            .collect();
        for peer in &self.config.peers {
            let days: Vec<u32> = stale.keys().copied().collect();
            for (day, theirs) in self.tombstones_on(peer, &days).await? {
                if let (Some(names), Some(theirs)) = (stale.get_mut(&day), theirs) {
                    names.retain(|p| !theirs.contains(p));
                }
            }
        }
        let unneeded: Vec<StoredPath> = stale.into_values().flatten().collect();
        let dropped = unneeded.len();
        if let Some(index) = self.storage.index().filter(|_| dropped > 0) {
            index.forget(Vec::new(), unneeded).await?;
        }
        Ok(dropped)
    }

    /// This server's tombstones (`tombstones`) or restored marks older
    /// than the minimum age, by day.
    async fn old_marks(
        &self,
        tombstones: bool,
    ) -> Result<BTreeMap<u32, Vec<StoredPath>>, RepairError> {
        let before = chrono::Utc::now().timestamp()
            - i64::try_from(self.config.repair.tombstone_min_age.as_secs()).unwrap_or(i64::MAX);
        let names = blocking(self.storage.index(), move |i: &Index| {
            i.marks_before(tombstones, before, ROUND)
        })
        .await?;
        let mut by_day: BTreeMap<u32, Vec<StoredPath>> = BTreeMap::new();
        for name in names {
            by_day
                .entry(day_number(name.date()))
                .or_default()
                .push(name);
        }
        Ok(by_day)
    }

    /// The tombstones `peer` has on each of `days`: `None` for a day whose
    /// digest is the same as here (the peer holds exactly this server's
    /// entries there), so that only differing days are listed (a day's
    /// list can be long).
    async fn tombstones_on(
        &self,
        peer: &Peer,
        days: &[u32],
    ) -> Result<Vec<(u32, Option<HashSet<StoredPath>>)>, RepairError> {
        let ours = blocking(self.storage.index(), Index::days).await?;
        let mut months: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
        for &day in days {
            months
                .entry((day / 10_000, day / 100 % 100))
                .or_default()
                .push(day);
        }
        let mut out = Vec::with_capacity(days.len());
        let mut asked = 0;
        for ((year, month), days) in months {
            let prefix = Prefix::Month(year, month);
            let theirs = self.children_of(peer, prefix, &mut asked).await?;
            let mine: HashMap<u32, Digest> = level(&ours, prefix).children.into_iter().collect();
            for day in days {
                let same = theirs
                    .get(&(day % 100))
                    .is_some_and(|d| mine.get(&(day % 100)) == Some(d));
                let listed = if same {
                    None
                } else {
                    Some(self.tombstones_of(peer, day, &mut asked).await?)
                };
                out.push((day, listed));
            }
        }
        Ok(out)
    }

    /// The children of `prefix` at `peer` with their digests, read a page
    /// at a time as a pass reads them.
    async fn children_of(
        &self,
        peer: &Peer,
        prefix: Prefix,
        asked: &mut u64,
    ) -> Result<HashMap<u32, Digest>, RepairError> {
        let mut children = HashMap::new();
        let mut after = None;
        loop {
            let page = self.digest_page(peer, prefix, after, asked).await?;
            children.extend(page.children);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(children),
            }
        }
    }

    /// The names `peer` has tombstones of on `day`.
    async fn tombstones_of(
        &self,
        peer: &Peer,
        day: u32,
        asked: &mut u64,
    ) -> Result<HashSet<StoredPath>, RepairError> {
        let Some(date) = crate::index::day_date(day) else {
            return Ok(HashSet::new());
        };
        let mut tombstones = HashSet::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_page(peer, date, after.as_deref(), asked).await?;
            tombstones.extend(page.tombstones);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(tombstones),
            }
        }
    }

    /// Tells `peer` to drop its tombstone of `path`.
    async fn tell_forget(&self, peer: &Peer, path: &StoredPath) -> Result<(), RepairError> {
        let mut url = peer.uri.clone();
        url.query_pairs_mut()
            .append_pair("action", "forget")
            .append_pair("path", &path.to_string())
            .append_pair("format", "json");
        let request = self
            .fetcher
            .client()
            .post(url)
            .header(FROM_HEADER, &self.config.server_name);
        let within = self.config.replication.idle_timeout;
        let body = self.exchange(peer, request, 4096, within).await?;
        envelope(&body).filter(is_success).map(|_| ()).ok_or_else(|| {
            tracing::warn!(target: "repair", peer = %peer.name, answer = %error_text(&body, 512), "the peer did not confirm a forget");
            RepairError::BadAnswer("no success envelope to a forget".into())
        })
    }
}
