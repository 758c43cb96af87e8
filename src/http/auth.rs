//! The HTTP side of "who is this request": the key from the
//! `X-Security-Key` header (preferred: URLs end up in logs) or the
//! `SecurityKey` query parameter (the original's way), turned into a
//! [`Credential`] by `crate::auth`. What a credential may do is decided
//! there, never here. A key is never logged or echoed.

use axum::http::HeaderMap;

use super::AppState;
use super::error::Error;
use super::params::Params;
use crate::auth::{Action, Credential};

pub const KEY_HEADER: &str = "x-security-key";

/// The credential the request carries, or `Forbidden` (no key, or a key
/// this server does not know).
pub fn credential(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
) -> Result<Credential, Error> {
    presented_key(params, headers)
        .and_then(|key| state.keys.credential(key))
        .ok_or(Error::Forbidden)
}

/// The key the request presents: the header wins over the query.
fn presented_key<'a>(params: &'a Params, headers: &'a HeaderMap) -> Option<&'a [u8]> {
    headers
        .get(KEY_HEADER)
        .map(|v| v.as_bytes())
        .or_else(|| params.security_key.as_deref().map(str::as_bytes))
}

/// The request's credential if it may do `action`; else the 403 to give.
pub fn permit(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
    action: Action,
) -> Result<Credential, Error> {
    let credential = credential(state, params, headers)?;
    credential.may(action, state.keys.admin_configured())?;
    Ok(credential)
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
        assert_eq!(presented_key(&query, &headers), Some(&b"k1"[..]));
        assert_eq!(presented_key(&Params::default(), &headers), None);
        headers.insert(KEY_HEADER, HeaderValue::from_static("k2"));
        assert_eq!(presented_key(&query, &headers), Some(&b"k2"[..]));
    }
}
