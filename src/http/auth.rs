//! The HTTP side of "who is this request": the key from the
//! `X-Security-Key` header (preferred: URLs end up in logs) or the
//! `SecurityKey` query parameter (the original's way), or an upload token
//! from `Authorization: Bearer …` or `X-Upload-Token`, turned into a
//! [`Credential`] by `crate::auth`. What a credential may do is decided
//! there, never here. A key or token is never logged or echoed.

use axum::http::{HeaderMap, header};

use super::AppState;
use super::error::Error;
use super::params::Params;
use crate::auth::token::Claims;
use crate::auth::{Action, Credential};

pub const KEY_HEADER: &str = "x-security-key";
pub const TOKEN_HEADER: &str = "x-upload-token";

/// Who a request says it is, by what its headers and query carry.
pub enum Caller {
    /// A key of this server.
    Key(Credential),
    /// A genuine upload token, valid now, from this request's origin.
    Token(Claims),
    /// Neither a key nor a token header.
    Anonymous,
}

/// Who the request is: `Forbidden` for a key this server does not know, a
/// 403 naming the reason for a token it refuses. A key wins over a token.
pub fn caller(state: &AppState, params: &Params, headers: &HeaderMap) -> Result<Caller, Error> {
    if let Some(key) = presented_key(params, headers) {
        return state
            .keys
            .credential(key)
            .map(Caller::Key)
            .ok_or(Error::Forbidden);
    }
    match presented_token(headers) {
        Some(token) => state
            .tokens
            .verify(token, origin(headers))
            .map(Caller::Token)
            .map_err(Error::Token),
        None => Ok(Caller::Anonymous),
    }
}

/// The credential the request carries, or the 403 to give (none, or one
/// this server does not accept).
pub fn credential(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
) -> Result<Credential, Error> {
    match caller(state, params, headers)? {
        Caller::Key(credential) => Ok(credential),
        Caller::Token(_) => Ok(Credential::Token),
        Caller::Anonymous => Err(Error::Forbidden),
    }
}

/// The request's `Origin` header, which a token's `origin` must equal.
pub fn origin(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get(header::ORIGIN).map(|v| v.as_bytes())
}

/// The token a request carries in a header: `Authorization: Bearer …`
/// (the scheme in any case) or `X-Upload-Token`.
pub(super) fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    bearer.or_else(|| {
        headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    })
}

/// The key the request presents: the header wins over the query.
pub fn presented_key<'a>(params: &'a Params, headers: &'a HeaderMap) -> Option<&'a [u8]> {
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

    #[test]
    fn a_token_as_bearer_or_in_its_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_token(&headers), None);
        headers.insert(TOKEN_HEADER, HeaderValue::from_static("t1"));
        assert_eq!(presented_token(&headers), Some("t1"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcg=="),
        );
        assert_eq!(presented_token(&headers), Some("t1"), "not a bearer");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  t2"),
        );
        assert_eq!(presented_token(&headers), Some("t2"));
    }
}
