//! Upload tokens (SPEC §12): the public format, checking a token a request
//! carries, and minting one for `action=token`.
//!
//! A token is `base64url(claims) "." base64url(HMAC-SHA256(secret,
//! base64url(claims)))`, base64url without padding, the HMAC keyed with the
//! secret's UTF-8 bytes over the ASCII of the first part. The format is
//! public on purpose: any back end mints one with its language's standard
//! library, so it is kept byte for byte. Where the SPEC leaves room, a
//! token is refused rather than guessed at: an `exp` further away than
//! `max_token_secs` (the operator's bound holds for tokens minted
//! elsewhere too), `max_files` without a `jti` to count by, a type name
//! the service does not know.
//!
//! Pure: no clock, no I/O. How many files a token has used is counted by
//! [`super::spent`]; where a token travels in a request is the HTTP side's.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::storage::ImageType;

/// Longest token looked at: real claims take a few hundred bytes, and a
/// token arrives in a header or a form field, read before any file.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest `jti`: it is a key of the spent table.
const MAX_JTI_LEN: usize = 128;

type HmacSha256 = Hmac<Sha256>;

/// The token secrets by id, in the order the configuration lists them: the
/// first one mints (`action=token`), every one verifies, so a new secret is
/// put first and an old one stays listed until its tokens have expired.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TokenSecrets(Vec<(String, String)>);

impl TokenSecrets {
    pub fn new(secrets: Vec<(String, String)>) -> Self {
        Self(secrets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids, for a summary (never the secrets).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(id, _)| id.as_str())
    }

    /// The secrets themselves, for logs to leave out.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(_, secret)| secret.as_str())
    }

    fn get(&self, kid: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(id, _)| id == kid)
            .map(|(_, secret)| secret.as_str())
    }

    fn minting(&self) -> Option<(&str, &str)> {
        self.0
            .first()
            .map(|(id, secret)| (id.as_str(), secret.as_str()))
    }
}

/// Shows the ids only: a `Config` printed for debugging must not carry a
/// secret.
impl fmt::Debug for TokenSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ids()).finish()
    }
}

/// The claims as they travel: a JSON object in any key order; unknown
/// claims are ignored, so back ends may add their own.
#[derive(Debug, Serialize, Deserialize)]
struct WireClaims {
    kid: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_files: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

/// What a valid token allows: uploads, within these limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub kid: String,
    /// Unix seconds.
    pub exp: i64,
    /// Largest file, in bytes.
    pub max_bytes: Option<u64>,
    /// Files this token may store on one server.
    pub max_files: Option<u64>,
    /// The image types it may store (within `allowed_types`).
    pub types: Option<Vec<ImageType>>,
    /// The only `Origin` it is accepted from.
    pub origin: Option<String>,
    pub jti: Option<String>,
}

/// Why a token is refused; the message is the reason the answer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the upload token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the upload token names an unknown kid")]
    UnknownKid,
    #[error("the upload token has a bad signature")]
    BadSignature,
    #[error("the upload token has expired")]
    Expired,
    /// An `exp` further away than `max_token_secs` allows: the operator's
    /// bound holds for tokens minted elsewhere too, and it is what keeps
    /// the spent table small.
    #[error("the upload token lives longer than this server allows (max_token_secs)")]
    TooLong,
    #[error("the upload token is for another origin")]
    WrongOrigin,
    #[error("the upload token is spent (max_files reached)")]
    Spent,
}

/// The server's rules for a token's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Clocks of minting back ends and of this server may disagree by this.
    pub clock_skew_secs: u64,
    /// Longest a token may live.
    pub max_token_secs: u64,
}

impl Lifetime {
    /// Whether a token that expires at `exp` is still usable at `now`
    /// (within the skew after its expiry).
    pub fn expired(&self, exp: i64, now: i64) -> bool {
        now > exp.saturating_add(secs(self.clock_skew_secs))
    }
}

fn secs(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Checks `token` against `secrets` at `now` (Unix seconds), for a request
/// from `origin` (its `Origin` header, if any).
pub fn verify(
    token: &str,
    secrets: &TokenSecrets,
    lifetime: Lifetime,
    now: i64,
    origin: Option<&[u8]>,
) -> Result<Claims, Refusal> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Refusal::Malformed("longer than 4096 bytes"));
    }
    let (body, signature) = token
        .split_once('.')
        .filter(|(_, signature)| !signature.contains('.'))
        .ok_or(Refusal::Malformed("not two parts joined by a dot"))?;
    let json = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| Refusal::Malformed("the claims are not base64url without padding"))?;
    let wire: WireClaims = serde_json::from_slice(&json).map_err(|_| {
        Refusal::Malformed("the claims are not a JSON object with a string kid and an integer exp")
    })?;
    let secret = secrets.get(&wire.kid).ok_or(Refusal::UnknownKid)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Refusal::BadSignature)?;
    let mut mac = mac(secret).ok_or(Refusal::BadSignature)?;
    mac.update(body.as_bytes());
    // `verify_slice` compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| Refusal::BadSignature)?;
    // Everything below reads claims the signature vouches for.
    if lifetime.expired(wire.exp, now) {
        return Err(Refusal::Expired);
    }
    let longest = now
        .saturating_add(secs(lifetime.max_token_secs))
        .saturating_add(secs(lifetime.clock_skew_secs));
    if wire.exp > longest {
        return Err(Refusal::TooLong);
    }
    if let Some(expected) = &wire.origin
        && origin != Some(expected.as_bytes())
    {
        return Err(Refusal::WrongOrigin);
    }
    claims(wire)
}

/// The checked claims of a genuine token.
fn claims(wire: WireClaims) -> Result<Claims, Refusal> {
    let types = match wire.types {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|n| ImageType::from_name(n))
                .collect::<Option<Vec<_>>>()
                .ok_or(Refusal::Malformed(
                    "types names a type other than jpg, png, gif, webp, bmp",
                ))?,
        ),
    };
    match &wire.jti {
        Some(jti) if jti.is_empty() || jti.len() > MAX_JTI_LEN => {
            return Err(Refusal::Malformed("jti is empty or longer than 128 bytes"));
        }
        None if wire.max_files.is_some() => {
            return Err(Refusal::Malformed("max_files needs a jti to count by"));
        }
        _ => {}
    }
    Ok(Claims {
        kid: wire.kid,
        exp: wire.exp,
        max_bytes: wire.max_bytes,
        max_files: wire.max_files,
        types,
        origin: wire.origin,
        jti: wire.jti,
    })
}

/// What `action=token` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Seconds from now; capped by `max_token_secs`.
    pub ttl_secs: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_files: Option<u64>,
    pub types: Option<Vec<ImageType>>,
    pub origin: Option<String>,
}

/// A minted token and its expiry (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    pub token: String,
    pub exp: i64,
}

/// A TTL when the request names none: long enough for a page to pick and
/// send its files, short enough that a leaked token is soon worthless.
pub const DEFAULT_TTL_SECS: u64 = 3600;

/// Mints a token with the first secret of `secrets` (`None` if there is
/// none), its TTL capped by `max_token_secs`, a random `jti`.
pub fn mint(
    secrets: &TokenSecrets,
    max_token_secs: u64,
    request: &Request,
    now: i64,
) -> Option<Minted> {
    let (kid, secret) = secrets.minting()?;
    let ttl = request
        .ttl_secs
        .unwrap_or(DEFAULT_TTL_SECS)
        .min(max_token_secs);
    let exp = now.saturating_add(secs(ttl));
    let wire = WireClaims {
        kid: kid.to_owned(),
        exp,
        max_bytes: request.max_bytes,
        max_files: request.max_files,
        types: request
            .types
            .as_ref()
            .map(|t| t.iter().map(|t| t.extension().to_owned()).collect()),
        origin: request.origin.clone(),
        jti: Some(uuid::Uuid::new_v4().simple().to_string()),
    };
    // Serializing this struct of strings and integers cannot fail.
    let json = serde_json::to_vec(&wire).ok()?;
    let body = URL_SAFE_NO_PAD.encode(json);
    let mut mac = mac(secret)?;
    mac.update(body.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Some(Minted {
        token: format!("{body}.{signature}"),
        exp,
    })
}

/// HMAC takes a key of any length: `None` never happens.
fn mac(secret: &str) -> Option<HmacSha256> {
    <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fixture below was made with Python's `hmac`, `hashlib`,
    /// `base64` and `json` modules, not with this code:
    /// `b = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")`,
    /// `s = base64.urlsafe_b64encode(hmac.new(secret.encode(), b,
    /// hashlib.sha256).digest()).rstrip(b"=")`, token `b + b"." + s`.
    const NOW: i64 = 1_700_000_000;
    const LIFETIME: Lifetime = Lifetime {
        clock_skew_secs: 60,
        max_token_secs: 86_400,
    };

    /// `{"kid": "k1", "exp": 1700003600, "max_bytes": 1000000,
    /// "max_files": 3, "types": ["jpg", "png"], "origin":
    /// "https://app.example.com", "jti": "6f1c0d2e9b7a4c3d8e5f1a2b3c4d5e6f"}`
    /// under k1 = `s3cret-k1`.
    const FULL: &str = "eyJraWQiOiAiazEiLCAiZXhwIjogMTcwMDAwMzYwMCwgIm1heF9ieXRlcyI6IDEwMDAwMDAsICJtYXhfZmlsZXMiOiAzLCAidHlwZXMiOiBbImpwZyIsICJwbmciXSwgIm9yaWdpbiI6ICJodHRwczovL2FwcC5leGFtcGxlLmNvbSIsICJqdGkiOiAiNmYxYzBkMmU5YjdhNGMzZDhlNWYxYTJiM2M0ZDVlNmYifQ.ant8EOu5HdDdgvKMIKQksVcXSYrE2lL95aHsLEYpm44";
    /// `{"exp": 1700000300, "note": "unknown claims are ignored", "kid":
    /// "k0"}` under k0 = `older secret, ünïcode`.
    const MINIMAL_K0: &str = "eyJleHAiOiAxNzAwMDAwMzAwLCAibm90ZSI6ICJ1bmtub3duIGNsYWltcyBhcmUgaWdub3JlZCIsICJraWQiOiAiazAifQ.y9wMWuagKPqkmv-Oa2Xa3Vu9UTuSxIiIPdTgyt2VeCM";
    /// `{"kid": "k9", "exp": 1700000300}` under `whatever`.
    const UNKNOWN_KID: &str =
        "eyJraWQiOiAiazkiLCAiZXhwIjogMTcwMDAwMDMwMH0.XZL_qqXuPwetLjFtQYSqA0PtXWj5-dHssX_RSioc4Gg";
    /// `{"kid": "k1", "exp": 1699999950}` under k1 (50 s ago).
    const EXPIRED_50S_AGO: &str =
        "eyJraWQiOiAiazEiLCAiZXhwIjogMTY5OTk5OTk1MH0.S41GWsGCRo2rZuOhw2I0mZj-dKkXk3pl8Tqq9ga8fas";
    /// `{"kid": "k1", "exp": 1700090000}` under k1 (25 h ahead).
    const TOO_LONG: &str =
        "eyJraWQiOiAiazEiLCAiZXhwIjogMTcwMDA5MDAwMH0.H2nrh7TLVnykqa8dDffkjiTYoGb7c0JX2QQdQJw0LIw";
    /// `{"kid": "k1", "exp": 1700000300, "max_files": 2}` under k1.
    const MAX_FILES_NO_JTI: &str = "eyJraWQiOiAiazEiLCAiZXhwIjogMTcwMDAwMDMwMCwgIm1heF9maWxlcyI6IDJ9.npkqyVoTB_6tVGIUIJ5Tt2QmyfiZIub96tVn4dqzmVs";
    /// `{"kid": "k1", "exp": 1700000300, "types": ["svg"]}` under k1.
    const SVG_TYPE: &str = "eyJraWQiOiAiazEiLCAiZXhwIjogMTcwMDAwMDMwMCwgInR5cGVzIjogWyJzdmciXX0.Y9lcyaLybfiimn_UZAx4cAlOoKT5gfX3AxnTI2li2n4";
    /// `{"kid": "k1", "exp": 1700000300.5}` under k1.
    const FRACTIONAL_EXP: &str = "eyJraWQiOiAiazEiLCAiZXhwIjogMTcwMDAwMDMwMC41fQ.d67EPrSchnc3EVhlM6afEAcy-mpwELsHKazH9ibc_Hk";

    /// `{"kid": "k1", "exp": 1700086460}` under k1: 24 h and the 60 s of
    /// skew ahead, the latest `exp` taken.
    const LONGEST: &str =
        "eyJraWQiOiAiazEiLCAiZXhwIjogMTcwMDA4NjQ2MH0.MahJ1YX6w3b3QCX9UoKXX89YVSRP4EKtKSac4cSRl-E";
    /// `{"kid": "k1", "exp": 1700000300, "jti": ""}` under k1.
    const EMPTY_JTI: &str = "eyJraWQiOiAiazEiLCAiZXhwIjogMTcwMDAwMDMwMCwgImp0aSI6ICIifQ.Is7XrhHsmkP9vJQltqPhfNfa4zQDD2kT7nJv_Tb5hSs";
    /// `{"kid": "k1", "exp": 1700000300, "jti": "jjj…"}` (128 `j`) under k1.
    const JTI_128: &str = "eyJraWQiOiAiazEiLCAiZXhwIjogMTcwMDAwMDMwMCwgImp0aSI6ICJqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqaiJ9.6bl6bfVEQrIJvoyNoMjJ9-likwQb3UO0uiW3YNko3zI";
    /// The same with 129 `j`.
    const JTI_129: &str = "eyJraWQiOiAiazEiLCAiZXhwIjogMTcwMDAwMDMwMCwgImp0aSI6ICJqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqampqamoifQ.nhogG2jUUynBvXANX3lOLVxxKm13DRb-mJwO808Wj88";
    /// The signatures under k1 of `base64url(padded(2996))` and
    /// `base64url(padded(2997))`: tokens of 4096 and 4098 bytes.
    const PADDED_2996_SIGNATURE: &str = "r-xtRE59w037Jg_5p3rjXlUbpFmaGMQN0_dch3PFYLw";
    const PADDED_2997_SIGNATURE: &str = "GUHFlRVqnAjclYaGtsd6nwopUMVsmdeu9bcOHcvRNEU";

    /// `{"kid": "k1", "exp": 1700000300, "pad": "aaa…"}` with `n` `a`, as
    /// Python's `json.dumps` writes it.
    fn padded(n: usize) -> String {
        let json = format!(
            r#"{{"kid": "k1", "exp": 1700000300, "pad": "{}"}}"#,
            "a".repeat(n)
        );
        URL_SAFE_NO_PAD.encode(json)
    }

    fn secrets() -> TokenSecrets {
        TokenSecrets::new(vec![
            ("k1".into(), "s3cret-k1".into()),
            ("k0".into(), "older secret, ünïcode".into()),
        ])
    }

    fn check(token: &str, origin: Option<&str>) -> Result<Claims, Refusal> {
        verify(token, &secrets(), LIFETIME, NOW, origin.map(str::as_bytes))
    }

    #[test]
    fn a_token_minted_elsewhere_is_read_claim_by_claim() {
        let claims = check(FULL, Some("https://app.example.com")).expect("valid");
        assert_eq!(
            claims,
            Claims {
                kid: "k1".into(),
                exp: 1_700_003_600,
                max_bytes: Some(1_000_000),
                max_files: Some(3),
                types: Some(vec![ImageType::Jpg, ImageType::Png]),
                origin: Some("https://app.example.com".into()),
                jti: Some("6f1c0d2e9b7a4c3d8e5f1a2b3c4d5e6f".into()),
            }
        );
    }

    #[test]
    fn any_listed_secret_verifies_and_unknown_claims_are_ignored() {
        let claims = check(MINIMAL_K0, None).expect("valid under the older secret");
        assert_eq!(claims.kid, "k0");
        assert_eq!(claims.exp, 1_700_000_300);
        assert_eq!(
            (claims.max_bytes, claims.max_files, claims.types, claims.jti),
            (None, None, None, None)
        );
    }

    #[test]
    fn each_refusal_has_its_reason() {
        assert_eq!(check(UNKNOWN_KID, None), Err(Refusal::UnknownKid));
        assert_eq!(
            check(EXPIRED_50S_AGO, None).map(|c| c.exp),
            Ok(1_699_999_950)
        );
        let later = verify(EXPIRED_50S_AGO, &secrets(), LIFETIME, NOW + 11, None);
        assert_eq!(later, Err(Refusal::Expired), "60 s of skew, then expired");
        assert_eq!(check(TOO_LONG, None), Err(Refusal::TooLong));
        assert_eq!(check(FULL, None), Err(Refusal::WrongOrigin));
        assert_eq!(
            check(FULL, Some("https://app.example.com/")),
            Err(Refusal::WrongOrigin),
            "compared exactly"
        );
        assert_eq!(
            check(FULL, Some("https://evil.example.com")),
            Err(Refusal::WrongOrigin)
        );
        assert!(matches!(
            check(MAX_FILES_NO_JTI, None),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(check(SVG_TYPE, None), Err(Refusal::Malformed(_))));
        assert!(matches!(
            check(FRACTIONAL_EXP, None),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn a_changed_byte_breaks_the_signature() {
        let (body, signature) = FULL.split_once('.').expect("two parts");
        // Another secret for the same kid.
        let other = TokenSecrets::new(vec![("k1".into(), "s3cret-k2".into())]);
        let at = |secrets: &TokenSecrets, token: &str| {
            verify(
                token,
                secrets,
                LIFETIME,
                NOW,
                Some(b"https://app.example.com"),
            )
        };
        assert_eq!(at(&other, FULL), Err(Refusal::BadSignature));
        let mut flipped = signature.to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = format!("{body}.{}", String::from_utf8_lossy(&flipped));
        assert_eq!(at(&secrets(), &flipped), Err(Refusal::BadSignature));
        assert_eq!(
            at(&secrets(), &format!("{body}.")),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            at(&secrets(), &format!("{body}.{signature}=")),
            Err(Refusal::BadSignature),
            "no padding"
        );
        // The k0 token's claims under k1's name: the kid is signed too.
        let (k0_body, k0_signature) = MINIMAL_K0.split_once('.').expect("two parts");
        let renamed = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(k0_body).expect("base64"))
                .expect("utf-8")
                .replace("\"k0\"", "\"k1\""),
        );
        assert_eq!(
            check(&format!("{renamed}.{k0_signature}"), None),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens() {
        for token in [
            "",
            "no-dot",
            "a.b.c",
            ".sig",
            // Padded, and standard base64 instead of base64url.
            "eyJraWQiOiAiazkiLCAiZXhwIjogMTcwMDAwMDMwMH0=.x",
            "eyJraWQiOiAiazkiLCAiZXhwIjogMTcwMDAwMDMwMH0+.x",
            // `[]` and `{"exp": 1}` (no kid).
            "W10.x",
            "eyJleHAiOiAxfQ.x",
        ] {
            assert!(
                matches!(check(token, None), Err(Refusal::Malformed(_))),
                "{token:?}: {:?}",
                check(token, None)
            );
        }
        let long = format!("{}.x", "e".repeat(MAX_TOKEN_LEN));
        assert!(matches!(check(&long, None), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn minting_caps_the_ttl_and_signs_with_the_first_secret() {
        let request = Request {
            ttl_secs: Some(10 * 86_400),
            max_bytes: Some(5000),
            max_files: Some(2),
            types: Some(vec![ImageType::Webp]),
            origin: Some("https://a.example".into()),
        };
        let minted = mint(&secrets(), 86_400, &request, NOW).expect("a secret");
        assert_eq!(minted.exp, NOW + 86_400);
        let claims = verify(
            &minted.token,
            &secrets(),
            LIFETIME,
            NOW,
            Some(b"https://a.example"),
        )
        .expect("verifies");
        assert_eq!(claims.kid, "k1");
        assert_eq!(claims.max_bytes, Some(5000));
        assert_eq!(claims.max_files, Some(2));
        assert_eq!(claims.types, Some(vec![ImageType::Webp]));
        assert_eq!(claims.jti.as_deref().map(str::len), Some(32));
        let again = mint(&secrets(), 86_400, &request, NOW).expect("a secret");
        assert_ne!(again.jti(), minted.jti(), "a fresh jti each time");
        let default = mint(&secrets(), 86_400, &Request::default(), NOW).expect("a secret");
        assert_eq!(default.exp, NOW + DEFAULT_TTL_SECS as i64);
        assert_eq!(mint(&TokenSecrets::default(), 86_400, &request, NOW), None);
    }

    #[test]
    fn the_limits_hold_to_the_second_and_to_the_byte() {
        let at = |token: &str, now: i64| verify(token, &secrets(), LIFETIME, now, None);
        // Expired 50 s ago: accepted up to the end of the 60 s of skew.
        assert!(at(EXPIRED_50S_AGO, NOW + 10).is_ok(), "the last second");
        assert_eq!(at(EXPIRED_50S_AGO, NOW + 11), Err(Refusal::Expired));
        // `max_token_secs` plus the skew ahead is the latest exp taken.
        assert_eq!(at(LONGEST, NOW).map(|c| c.exp), Ok(1_700_086_460));
        assert_eq!(at(LONGEST, NOW - 1), Err(Refusal::TooLong));
        // A genuine token of 4096 bytes is read; one longer is not.
        let longest = format!("{}.{PADDED_2996_SIGNATURE}", padded(2996));
        assert_eq!(longest.len(), MAX_TOKEN_LEN);
        assert_eq!(at(&longest, NOW).map(|c| c.kid), Ok("k1".into()));
        let longer = format!("{}.{PADDED_2997_SIGNATURE}", padded(2997));
        assert_eq!(longer.len(), MAX_TOKEN_LEN + 2);
        assert_eq!(
            at(&longer, NOW),
            Err(Refusal::Malformed("longer than 4096 bytes"))
        );
    }

    #[test]
    fn a_jti_has_1_to_128_bytes() {
        let refused = Err(Refusal::Malformed("jti is empty or longer than 128 bytes"));
        assert_eq!(check(EMPTY_JTI, None), refused);
        assert_eq!(
            check(JTI_128, None).map(|c| c.jti),
            Ok(Some("j".repeat(128)))
        );
        assert_eq!(check(JTI_129, None), refused);
    }

    #[test]
    fn the_secrets_are_listed_in_order() {
        let secrets = secrets();
        assert!(!secrets.is_empty());
        assert!(TokenSecrets::default().is_empty());
        assert_eq!(secrets.ids().collect::<Vec<_>>(), ["k1", "k0"]);
        assert_eq!(
            secrets.values().collect::<Vec<_>>(),
            ["s3cret-k1", "older secret, ünïcode"]
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!("{:?}", secrets());
        assert_eq!(shown, r#"["k1", "k0"]"#);
    }

    impl Minted {
        fn jti(&self) -> Option<String> {
            let body = self.token.split('.').next()?;
            let wire: WireClaims =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
            wire.jti
        }
    }
}
