//! The security key: from the `X-Security-Key` header (preferred: URLs end up
//! in logs) or the `SecurityKey` query parameter (the original's way),
//! compared in constant time. It is never logged or echoed.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::Error;
use super::params::Params;

pub const KEY_HEADER: &str = "x-security-key";

/// Whether the request carries `expected`.
pub fn check(expected: &str, params: &Params, headers: &HeaderMap) -> Result<(), Error> {
    let given = headers
        .get(KEY_HEADER)
        .map(|v| v.as_bytes())
        .or_else(|| params.security_key.as_deref().map(str::as_bytes));
    match given {
        Some(given) if same_secret(given, expected.as_bytes()) => Ok(()),
        _ => Err(Error::Forbidden),
    }
}

/// Compares digests, not the keys: a byte-wise comparison, constant-time or
/// not, returns at once when the lengths differ and so tells the key's
/// length; digests are always 32 bytes.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(given)
        .ct_eq(&Sha256::digest(expected))
        .into()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn header_or_query() {
        let mut headers = HeaderMap::new();
        let query = Params {
            security_key: Some("k1".into()),
            ..Params::default()
        };
        assert!(check("k1", &query, &headers).is_ok());
        assert!(check("k2", &query, &headers).is_err());
        assert!(check("k1", &Params::default(), &headers).is_err());
        headers.insert(KEY_HEADER, HeaderValue::from_static("k2"));
        assert!(check("k2", &Params::default(), &headers).is_ok());
        assert!(check("k2x", &Params::default(), &headers).is_err());
        assert!(check("", &Params::default(), &HeaderMap::new()).is_err());
    }
}
