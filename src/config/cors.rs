//! The `[cors] allowed_origins` table of app.toml (SPEC §12): which other
//! sites' pages may call this service from a browser.
//!
//! An entry is an exact origin (`https://www.example.com`) or every
//! subdomain of one (`https://*.example.com`: scheme and port exact, the
//! bare `example.com` not included). Entries are checked and normalised at
//! start, the way a browser writes an `Origin` header (lower case, no
//! default port), so that a request is matched by comparing strings. What
//! the service does with a match is `http/cors.rs`'s business.

use std::path::Path;

use super::ConfigError;
use super::declare::settings_table;

settings_table! {
    /// `[cors]` as written; app.toml only (a site's neighbours are a
    /// deployment decision, not a per-run one).
    pub(crate) struct CorsFile in "cors." (env: false) {
        /// other sites whose pages may call this service from a browser:
        /// `https://www.example.com`, or `https://*.example.com` for every
        /// subdomain (scheme and port exact; see "Keys and tokens")
        allowed_origins: Vec<String> = Value("");
    }
}

/// The origins whose pages may upload here; empty: no CORS at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsSettings {
    pub allowed_origins: Vec<AllowedOrigin>,
}

/// One entry of `allowed_origins`, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigin {
    /// `https://www.example.com`, as a browser serialises it.
    Exact(String),
    /// `https://*.example.com:8443`: any host ending in `.example.com`.
    Subdomains {
        /// `https://`
        scheme: String,
        /// `.example.com`
        suffix: String,
        /// `:8443`, or empty for the scheme's default port.
        port: String,
    },
}

impl CorsSettings {
    /// Whether a request's `Origin` header is one of the allowed origins.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        self.allowed_origins.iter().any(|o| o.matches(origin))
    }
}

impl AllowedOrigin {
    fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Exact(exact) => exact.eq_ignore_ascii_case(origin),
            Self::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                let Some(rest) = strip_prefix_ignore_case(origin, scheme) else {
                    return false;
                };
                let (host, given_port) = rest.find(':').map_or((rest, ""), |i| rest.split_at(i));
                if given_port != port.as_str() {
                    return false;
                }
                let Some(sub) = host.len().checked_sub(suffix.len()) else {
                    return false;
                };
                // Only host names: no other character may ride along into
                // the echoed header.
                host.is_char_boundary(sub)
                    && host[sub..].eq_ignore_ascii_case(suffix)
                    && is_host_labels(&host[..sub])
            }
        }
    }
}

/// As an operator would write it back: `https://*.example.com:8443`.
impl std::fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(origin) => f.write_str(origin),
            Self::Subdomains {
                scheme,
                suffix,
                port,
            } => write!(f, "{scheme}*{suffix}{port}"),
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `a` or `a.b-c`: one or more non-empty DNS labels.
fn is_host_labels(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl CorsFile {
    pub(crate) fn into_settings(self, file: &Path) -> Result<CorsSettings, ConfigError> {
        let allowed_origins = self
            .allowed_origins
            .unwrap_or_default()
            .iter()
            .map(|entry| {
                AllowedOrigin::parse(entry.trim()).map_err(|problem| {
                    ConfigError::new(file, "cors.allowed_origins", format!("`{entry}` {problem}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CorsSettings { allowed_origins })
    }
}

impl AllowedOrigin {
    fn parse(entry: &str) -> Result<Self, String> {
        const SHAPE: &str = "like `https://www.example.com` or `https://*.example.com`";
        let Some((scheme, rest)) = entry.split_once("://") else {
            return Err(format!("is not an origin {SHAPE}"));
        };
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let url = reqwest::Url::parse(&format!("{scheme}://{rest}"))
            .map_err(|e| format!("is not an origin {SHAPE}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must start with http:// or https://".into());
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(format!(
                "is a URL, not an origin: write only the scheme, the host and a port, {SHAPE}"
            ));
        }
        let Some(host) = url.host_str() else {
            return Err(format!("has no host; write {SHAPE}"));
        };
        if host.contains('*') {
            return Err(format!(
                "may hold `*` only as the first label (`https://*.example.com`), {SHAPE}"
            ));
        }
        if !wildcard {
            return Ok(Self::Exact(url.origin().ascii_serialization()));
        }
        if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
            return Err("puts `*.` before an IP address; only a domain has subdomains".into());
        }
        Ok(Self::Subdomains {
            scheme: format!("{}://", url.scheme()),
            suffix: format!(".{host}"),
            port: url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(entries: &[&str]) -> Result<CorsSettings, ConfigError> {
        CorsFile {
            allowed_origins: Some(entries.iter().map(|e| (*e).to_owned()).collect()),
        }
        .into_settings(Path::new("app.toml"))
    }

    #[test]
    fn exact_origins_are_normalised_like_a_browser_writes_them() {
        let s = settings(&["HTTPS://WWW.Example.com:443/", "http://127.0.0.1:9000"]).expect("ok");
        assert_eq!(
            s.allowed_origins,
            vec![
                AllowedOrigin::Exact("https://www.example.com".into()),
                AllowedOrigin::Exact("http://127.0.0.1:9000".into()),
            ]
        );
        assert!(s.allows(b"https://www.example.com"));
        assert!(s.allows(b"http://127.0.0.1:9000"));
        assert!(!s.allows(b"http://www.example.com"));
        assert!(!s.allows(b"https://www.example.com:8443"));
        assert!(!s.allows(b"https://example.com"));
        assert!(!s.allows(b"null"));
        assert!(!s.allows(b"https://www.example.com.evil.test"));
    }

    #[test]
    fn a_wildcard_takes_any_subdomain_with_the_same_scheme_and_port() {
        let s = settings(&["https://*.example.com", "http://*.example.org:8080"]).expect("ok");
        assert!(s.allows(b"https://www.example.com"));
        assert!(s.allows(b"https://a.b-c.example.com"));
        assert!(s.allows(b"http://shop.example.org:8080"));
        assert_eq!(
            s.allowed_origins[1].to_string(),
            "http://*.example.org:8080"
        );
        for refused in [
            "https://example.com",
            "https://.example.com",
            "http://www.example.com",
            "https://www.example.com:8443",
            "https://wwwexample.com",
            "https://evil.test/.example.com",
            "https://a..example.com",
            "http://shop.example.org",
            "http://shop.example.org:80800",
            "https://www.example.com.evil.test",
        ] {
            assert!(!s.allows(refused.as_bytes()), "{refused} must not match");
        }
        assert!(!s.allows(&[0xff, b'a']));
    }

    #[test]
    fn what_is_not_an_origin_is_refused_with_the_key_named() {
        for bad in [
            "*",
            "www.example.com",
            "ftp://example.com",
            "https://example.com/upload",
            "https://example.com?x=1",
            "https://a.*.example.com",
            "https://*.127.0.0.1",
            "null",
        ] {
            let err = settings(&[bad]).expect_err(bad).to_string();
            assert!(err.contains("cors.allowed_origins"), "{err}");
            assert!(err.contains(bad), "{err}");
        }
        // Whatever sits before an `@` is a credential and never shown.
        let err = settings(&["https://user:pw@example.com"])
            .expect_err("userinfo")
            .to_string();
        assert!(
            err.contains("not an origin") && !err.contains("pw"),
            "{err}"
        );
        // A user name alone makes it a URL too.
        let err = settings(&["https://user@example.com"])
            .expect_err("user name")
            .to_string();
        assert!(err.contains("not an origin"), "{err}");
        assert_eq!(settings(&[]).expect("empty").allowed_origins, vec![]);
    }
}
