//! The digest tree above the days: a month's digest is the XOR of its
//! days', a year's of its months', the root's of its years' (SPEC §4a).
//! It is computed from [`Index::days`](super::Index::days) when asked, not
//! stored: a server has a few thousand days at most. This file only
//! aggregates; asking a peer and comparing is repair's work.

use std::collections::BTreeMap;
use std::fmt;

use super::Digest;

/// A node of the tree: the whole index, a year or a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Root,
    Year(u32),
    Month(u32, u32),
}

impl Prefix {
    /// `""` (the root), `"2026"` or `"2026/12"`; month without zero padding
    /// like the folders, though `"2026/01"` is taken too.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim_matches('/');
        if text.is_empty() {
            return Some(Self::Root);
        }
        let number = |s: &str| -> Option<u32> {
            (!s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match text.split('/').collect::<Vec<_>>().as_slice() {
            [year] => Some(Self::Year(number(year)?)),
            [year, month] => {
                let month = number(month)?;
                (1..=12)
                    .contains(&month)
                    .then_some(Self::Month(number(year)?, month))
            }
            _ => None,
        }
    }

    /// The prefix of one of this node's children, by its number.
    pub fn child(self, number: u32) -> Option<Self> {
        match self {
            Self::Root => Some(Self::Year(number)),
            Self::Year(year) => Some(Self::Month(year, number)),
            Self::Month(..) => None,
        }
    }

    /// Whether `day` (a day number) lies below this node; if so, the
    /// number of the child it lies in.
    fn child_of(self, day: u32) -> Option<u32> {
        let (year, month, day_of_month) = (day / 10_000, day / 100 % 100, day % 100);
        match self {
            Self::Root => Some(year),
            Self::Year(y) => (y == year).then_some(month),
            Self::Month(y, m) => (y == year && m == month).then_some(day_of_month),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root => Ok(()),
            Self::Year(y) => write!(f, "{y}"),
            Self::Month(y, m) => write!(f, "{y}/{m}"),
        }
    }
}

/// One node of the tree with its children, by number (year, month or day
/// of the month), ascending; a child without entries is not listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Level {
    pub digest: Digest,
    pub children: Vec<(u32, Digest)>,
}

/// The node `prefix` of the tree over `days` (day number, digest).
pub fn level(days: &[(u32, Digest)], prefix: Prefix) -> Level {
    let mut children: BTreeMap<u32, Digest> = BTreeMap::new();
    let mut digest = Digest::default();
    for &(day, day_digest) in days {
        if let Some(child) = prefix.child_of(day) {
            digest.toggle(day_digest);
            children.entry(child).or_default().toggle(day_digest);
        }
    }
    Level {
        digest,
        children: children.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    #[test]
    fn levels_aggregate_by_xor() {
        let days = [
            (20251231, d(1)),
            (20260101, d(2)),
            (20261201, d(4)),
            (20261210, d(8)),
        ];
        let root = level(&days, Prefix::Root);
        assert_eq!(root.digest, d(1 ^ 2 ^ 4 ^ 8));
        assert_eq!(root.children, vec![(2025, d(1)), (2026, d(2 ^ 4 ^ 8))]);
        let year = level(&days, Prefix::Year(2026));
        assert_eq!(year.digest, d(2 ^ 4 ^ 8));
        assert_eq!(year.children, vec![(1, d(2)), (12, d(4 ^ 8))]);
        let month = level(&days, Prefix::Month(2026, 12));
        assert_eq!(month.children, vec![(1, d(4)), (10, d(8))]);
        assert_eq!(level(&days, Prefix::Year(2024)), Level::default());
    }

    #[test]
    fn the_root_has_years_a_year_months_a_month_no_child_prefix() {
        assert_eq!(Prefix::Root.child(2026), Some(Prefix::Year(2026)));
        assert_eq!(Prefix::Year(2026).child(12), Some(Prefix::Month(2026, 12)));
        assert_eq!(Prefix::Month(2026, 12).child(1), None);
    }

    #[test]
    fn prefixes_parse_and_print() {
        assert_eq!(Prefix::parse(""), Some(Prefix::Root));
        assert_eq!(Prefix::parse("2026"), Some(Prefix::Year(2026)));
        assert_eq!(Prefix::parse("2026/01"), Some(Prefix::Month(2026, 1)));
        assert_eq!(Prefix::Month(2026, 1).to_string(), "2026/1");
        assert_eq!(Prefix::Year(2026).to_string(), "2026");
        assert_eq!(Prefix::Root.to_string(), "");
        for bad in ["2026/13", "2026/1/2", "x", "-1", "20261"] {
            assert_eq!(Prefix::parse(bad), None, "{bad}");
        }
    }
}
