//! The security key: from the `X-Security-Key` header (preferred: URLs end up
//! in logs) or the `SecurityKey` query parameter (the original's way),
//! compared in constant time. It is never logged or echoed.

use axum::http::HeaderMap;
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
        Some(given) if bool::from(given.ct_eq(expected.as_bytes())) => Ok(()),
        _ => Err(Error::Forbidden),
    }
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
