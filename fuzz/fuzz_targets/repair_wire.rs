//! `repair::wire::{read_digest, read_list}`, what a pass believes of a
//! peer's `digest` and `list` answers: never a panic; whatever is accepted
//! is well formed (digests and hashes of the right shape, names possible for
//! the node, paths of the day asked) and free of repeats (names strictly
//! ascending, all after the cursor, `next` not behind any of them and past
//! the cursor), so a pass that follows the pages moves forward and never
//! fetches a name twice; and a well-formed page of distinct names in order
//! is accepted. Memory: an answer is parsed straight into its types from at
//! most the read limit, never through a generic JSON value.

#![no_main]

use arbitrary::Arbitrary;
use chrono::NaiveDate;
use libfuzzer_sys::fuzz_target;
use multiserver_upload::index::Prefix;
use multiserver_upload::repair::wire::{
    DIGEST_LIMIT, LIST_LIMIT, plausible, read_digest, read_list,
};

#[derive(Debug, Arbitrary)]
enum Body {
    Raw(Vec<u8>),
    /// Children by name (often repeated or out of order), digests of
    /// the right shape or not, `next`.
    Digest {
        names: Vec<u16>,
        bad_digest: Option<u8>,
        next: Option<u16>,
    },
    /// Files and tombstones by a small number each (so repeats happen),
    /// `next` as one of those numbers.
    List {
        files: Vec<(u8, bool)>,
        tombstones: Vec<u8>,
        next: Option<u8>,
        other_day: bool,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    level: u8,
    after: Option<u16>,
    body: Body,
}

/// A file name of 2026/3/4 by number: ordered like the numbers.
fn name(n: u8) -> String {
    format!("{n:08x}-0000-4000-8000-000000000000.jpg")
}

fuzz_target!(|input: Input| {
    let day = NaiveDate::from_ymd_opt(2026, 3, 4).expect("date");
    let prefix = match input.level % 3 {
        0 => Prefix::Root,
        1 => Prefix::Year(2026),
        _ => Prefix::Month(2026, 3),
    };
    let after = input.after.map(u32::from);
    // Whether the built digest page is one a server of ours could send.
    let mut well_formed = false;
    let (digest_body, list_body) = match input.body {
        Body::Raw(bytes) => (bytes.clone(), bytes),
        Body::Digest {
            names,
            bad_digest,
            next,
        } => {
            let numbers: Vec<u32> = names.iter().map(|n| u32::from(*n)).collect();
            let last = numbers.last().copied().or(after);
            well_formed = numbers.iter().all(|n| plausible(prefix, *n))
                && numbers.windows(2).all(|w| w[0] < w[1])
                && numbers.first().is_none_or(|f| after.is_none_or(|a| *f > a))
                && bad_digest.is_none_or(|at| usize::from(at) >= names.len())
                && next.map(u32::from).is_none_or(|n| {
                    plausible(prefix, n) && after.is_none_or(|a| n > a) && last.is_none_or(|l| n >= l)
                });
            let children: Vec<String> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let digest = match bad_digest {
                        Some(at) if usize::from(at) == i => "zz".to_owned(),
                        _ => "ab".repeat(32),
                    };
                    format!(r#"{{"name":{n},"digest":"{digest}"}}"#)
                })
                .collect();
            let next = next.map_or_else(String::new, |n| format!(r#","next":{n}"#));
            let body = format!(
                r#"{{"resp":{{"success":1,"prefix":"{prefix}","digest":"{}","children":[{}]{next}}}}}"#,
                "cd".repeat(32),
                children.join(",")
            );
            (body.clone().into_bytes(), body.into_bytes())
        }
        Body::List {
            files,
            tombstones,
            next,
            other_day,
        } => {
            let folder = if other_day { "2026/3/5" } else { "2026/3/4" };
            let files: Vec<String> = files
                .iter()
                .map(|(n, good)| {
                    let sha = if *good { "EF".repeat(32) } else { "x".into() };
                    format!(
                        r#"{{"path":"{folder}/{}","size":{n},"sha256":"{sha}","added":0}}"#,
                        name(*n)
                    )
                })
                .collect();
            let tombstones: Vec<String> = tombstones
                .iter()
                .map(|n| format!(r#""{folder}/{}""#, name(*n)))
                .collect();
            let next = next.map_or_else(String::new, |n| format!(r#","next":"{}""#, name(n)));
            let body = format!(
                r#"{{"resp":{{"success":1,"day":"2026/3/4","files":[{}],"tombstones":[{}]{next}}}}}"#,
                files.join(","),
                tombstones.join(",")
            );
            (body.clone().into_bytes(), body.into_bytes())
        }
    };

    let digest = read_digest(&digest_body, prefix, after);
    assert!(!well_formed || digest.is_ok(), "{digest:?}");
    if digest_body.len() <= DIGEST_LIMIT
        && let Ok(page) = digest
    {
        let mut last = after;
        for (name, _) in &page.children {
            assert!(plausible(prefix, *name), "{name} below {prefix}");
            assert!(last.is_none_or(|l| *name > l), "{name} after {last:?}");
            last = Some(*name);
        }
        if let Some(next) = page.next {
            assert!(after.is_none_or(|a| next > a));
            assert!(last.is_none_or(|l| next >= l));
        }
    }

    let after_name = input.after.map(|a| name(a.to_le_bytes()[0]));
    if list_body.len() <= LIST_LIMIT
        && let Ok(page) = read_list(&list_body, day, after_name.as_deref())
    {
        let names = |paths: Vec<String>| {
            let mut last = after_name.clone();
            for name in paths {
                assert!(last.as_ref().is_none_or(|l| name > *l), "{name} after {last:?}");
                last = Some(name);
            }
            last
        };
        for file in &page.files {
            assert_eq!(file.path.date(), day);
            assert!(file.sha256.len() == 64);
            assert!(file.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
        for path in &page.tombstones {
            assert_eq!(path.date(), day);
        }
        let last_file = names(page.files.iter().map(|f| f.path.file_name()).collect());
        let last_tombstone = names(page.tombstones.iter().map(|p| p.file_name()).collect());
        if let Some(next) = &page.next {
            assert!(after_name.as_ref().is_none_or(|a| next > a));
            assert!(last_file.is_none_or(|l| *next >= l));
            assert!(last_tombstone.is_none_or(|l| *next >= l));
        }
    }
});
