//! `POST /do.ashx?action=token` (SPEC §12): an upload or admin key asks for
//! an upload token and gets `token` and `exp` in the usual envelope. What
//! the token may do comes from the query or a JSON body (`ttl_secs`,
//! `max_bytes`, `max_files`, `types`, `origin`); minting is
//! `crate::auth::token`'s, this file only reads and checks the request.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Map;

use super::AppState;
use super::error::Error;
use super::respond::{Format, answer};
use crate::auth::token::{self, Request};
use crate::storage::ImageType;

/// Largest JSON body read: the five fields take a few hundred bytes.
const BODY_LIMIT: usize = 16 * 1024;

/// What the request asks for, as written (query or JSON body).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Asked {
    ttl_secs: Option<u64>,
    max_bytes: Option<u64>,
    max_files: Option<u64>,
    types: Option<Vec<String>>,
    origin: Option<String>,
}

pub async fn handle(
    state: Arc<AppState>,
    format: Format,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    match mint(&state, query, headers, body).await {
        Ok(minted) => {
            let mut resp = Map::new();
            resp.insert("success".into(), 1.into());
            resp.insert("token".into(), minted.token.into());
            resp.insert("exp".into(), minted.exp.into());
            answer(format, StatusCode::OK, resp)
        }
        Err(e) => e.answer(format, Map::new()),
    }
}

async fn mint(
    state: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<token::Minted, Error> {
    if !state.tokens.enabled() {
        return Err(Error::BadRequest(
            "upload tokens are not configured on this server ([auth] token_secrets)".into(),
        ));
    }
    let mut asked = from_query(query)?;
    if is_json(headers) {
        let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
            Error::TooLarge(format!(
                "a token request body is at most {BODY_LIMIT} bytes"
            ))
        })?;
        if !bytes.is_empty() {
            let from_body: Asked = serde_json::from_slice(&bytes).map_err(|e| {
                Error::BadRequest(format!("the JSON body is not a token request: {e}"))
            })?;
            asked = Asked {
                ttl_secs: from_body.ttl_secs.or(asked.ttl_secs),
                max_bytes: from_body.max_bytes.or(asked.max_bytes),
                max_files: from_body.max_files.or(asked.max_files),
                types: from_body.types.or(asked.types),
                origin: from_body.origin.or(asked.origin),
            };
        }
    }
    let request = checked(asked, &state.config.allowed_types)?;
    state
        .tokens
        .mint(&request)
        .ok_or_else(|| Error::internal("no token secret to mint with"))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The fields of the query; names are case-insensitive like every
/// `do.ashx` parameter, `types` is a comma-separated list.
fn from_query(query: Option<&str>) -> Result<Asked, Error> {
    let mut asked = Asked::default();
    let number = |name: &str, value: &str| {
        value.trim().parse::<u64>().map_err(|_| {
            Error::BadRequest(format!("`{name}` must be a whole number, not `{value}`"))
        })
    };
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "ttl_secs" => asked.ttl_secs = Some(number(&name, &value)?),
            "max_bytes" => asked.max_bytes = Some(number(&name, &value)?),
            "max_files" => asked.max_files = Some(number(&name, &value)?),
            "types" => {
                asked.types = Some(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            "origin" => asked.origin = Some(value.into_owned()),
            _ => {}
        }
    }
    Ok(asked)
}

/// The request, checked: a token this server would refuse every file of
/// is refused now, with the reason, rather than minted.
fn checked(asked: Asked, allowed: &[ImageType]) -> Result<Request, Error> {
    for (name, value) in [
        ("ttl_secs", asked.ttl_secs),
        ("max_bytes", asked.max_bytes),
        ("max_files", asked.max_files),
    ] {
        if value == Some(0) {
            return Err(Error::BadRequest(format!(
                "`{name}` must be greater than 0"
            )));
        }
    }
    let types = match asked.types {
        None => None,
        Some(names) if names.is_empty() => {
            return Err(Error::BadRequest("`types` lists no type".into()));
        }
        Some(names) => Some(
            names
                .iter()
                .map(|n| {
                    ImageType::from_name(n)
                        .filter(|t| allowed.contains(t))
                        .ok_or_else(|| {
                            Error::BadRequest(format!(
                                "`types`: `{n}` is not one of this server's allowed_types ({})",
                                allowed
                                    .iter()
                                    .map(|t| t.extension())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let origin = match asked.origin {
        None => None,
        Some(origin) if is_origin(&origin) => Some(origin),
        Some(origin) => {
            return Err(Error::BadRequest(format!(
                "`origin` must be an origin as browsers send it (scheme://host[:port], \
                 no path), not `{origin}`"
            )));
        }
    };
    Ok(Request {
        ttl_secs: asked.ttl_secs,
        max_bytes: asked.max_bytes,
        max_files: asked.max_files,
        types,
        origin,
    })
}

/// Whether `text` is written exactly as a browser's `Origin` header would
/// be: a token's origin is compared byte for byte.
fn is_origin(text: &str) -> bool {
    reqwest::Url::parse(text)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .is_some_and(|url| url.origin().ascii_serialization() == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_as_browsers_send_them() {
        for good in [
            "https://www.example.com",
            "http://127.0.0.1:8080",
            "https://a.example:8443",
        ] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "https://www.example.com/",
            "https://www.example.com/page",
            "https://WWW.example.com",
            "https://a.example:443",
            "www.example.com",
            "ftp://a.example",
            "null",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }

    #[test]
    fn the_query_names_every_field_in_any_case() {
        let asked = from_query(Some(
            "action=token&TTL_SECS=600&max_bytes=5000&Max_Files=3&types=jpg,%20png&origin=https%3A%2F%2Fa.example",
        ))
        .expect("valid");
        let request = checked(asked, &ImageType::ALL).expect("valid");
        assert_eq!(
            request,
            Request {
                ttl_secs: Some(600),
                max_bytes: Some(5000),
                max_files: Some(3),
                types: Some(vec![ImageType::Jpg, ImageType::Png]),
                origin: Some("https://a.example".into()),
            }
        );
        assert!(from_query(Some("ttl_secs=ten")).is_err());
    }

    #[test]
    fn a_token_that_could_store_nothing_is_not_minted() {
        let refused = |asked: Asked| checked(asked, &[ImageType::Jpg]).is_err();
        assert!(refused(Asked {
            max_files: Some(0),
            ..Asked::default()
        }));
        assert!(refused(Asked {
            types: Some(vec!["png".into()]),
            ..Asked::default()
        }));
        assert!(refused(Asked {
            types: Some(Vec::new()),
            ..Asked::default()
        }));
        assert!(!refused(Asked {
            types: Some(vec!["JPEG".into()]),
            ..Asked::default()
        }));
    }
}
