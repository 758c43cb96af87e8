//! `http::redact`, what makes request targets safe to log: whatever the
//! query holds, the value of every parameter whose name is some spelling of
//! `securitykey` (any ASCII case, percent-encoded or not) is gone from the
//! result, and everything else is left as it was.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use multiserver_upload::http::redact;

#[derive(Debug, Arbitrary)]
struct Input {
    path: String,
    pieces: Vec<Piece>,
    /// Distinguishes the secret of this run from any other text.
    secret: u64,
}

#[derive(Debug, Arbitrary)]
enum Piece {
    /// `securitykey` spelled with this case mask and these bytes encoded.
    Key {
        case: u16,
        encode: u16,
        separator: bool,
    },
    Pair(String, String),
    Raw(String),
}

const NAME: &[u8] = b"securitykey";

fn spell(case: u16, encode: u16) -> String {
    NAME.iter()
        .enumerate()
        .map(|(i, b)| {
            let b = if case >> i & 1 == 1 {
                b.to_ascii_uppercase()
            } else {
                *b
            };
            if encode >> i & 1 == 1 {
                format!("%{b:02X}")
            } else {
                char::from(b).to_string()
            }
        })
        .collect()
}

fn is_key(name: &str) -> bool {
    name.eq_ignore_ascii_case("securitykey")
}

fuzz_target!(|input: Input| {
    let secret = format!("S3CR3T{:016x}", input.secret);
    let path = input.path.replace('?', "");
    let mut pieces = Vec::new();
    // Every other text of the target, raw and decoded, piece by piece.
    let mut elsewhere = vec![path.clone()];
    for p in &input.pieces {
        match p {
            Piece::Key {
                case,
                encode,
                separator,
            } => {
                let sep = if *separator { "=" } else { "" };
                let value = if *separator { secret.as_str() } else { "" };
                pieces.push(format!("{}{sep}{value}", spell(*case, *encode)));
            }
            Piece::Pair(n, v) => pieces.push(format!("{n}={v}")),
            Piece::Raw(r) => pieces.push(r.clone()),
        }
        if !matches!(p, Piece::Key { .. }) {
            let piece = pieces.last().cloned().unwrap_or_default();
            for (n, v) in form_urlencoded::parse(piece.as_bytes()) {
                elsewhere.push(n.into_owned());
                elsewhere.push(v.into_owned());
            }
            elsewhere.push(piece);
        }
    }
    let target = format!("{path}?{}", pieces.join("&"));
    let redacted = redact(&target, &[]);

    let (head, query) = redacted.split_once('?').expect("the query stays");
    assert_eq!(head, path);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if is_key(&name) {
            assert_eq!(value, "***", "{target:?} -> {redacted:?}");
        }
    }
    // Non-key parameters are left alone.
    let others = |q: &str| -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes())
            .filter(|(n, _)| !is_key(n))
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect()
    };
    let original = target.split_once('?').map_or("", |(_, q)| q);
    assert_eq!(others(query), others(original));
    // The secret itself, in any encoding, unless the other text holds it.
    let marker = secret.as_str();
    if !elsewhere.iter().any(|t| t.contains(marker)) {
        assert!(!redacted.contains(marker), "{target:?} -> {redacted:?}");
        for (n, v) in form_urlencoded::parse(query.as_bytes()) {
            assert!(
                !n.contains(marker) && !v.contains(marker),
                "{target:?} -> {redacted:?}"
            );
        }
    }
    // A target without a key is not touched.
    let has_key = form_urlencoded::parse(original.as_bytes()).any(|(n, _)| is_key(&n));
    if !has_key {
        assert_eq!(redacted, target.as_str());
    }
});
