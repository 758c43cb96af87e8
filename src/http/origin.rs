//! Who is asking, through which proxy: the client address, scheme and host
//! of a request. `X-Forwarded-For`, `X-Forwarded-Proto` and
//! `X-Forwarded-Host` are believed only when the direct peer is one of the
//! configured trusted proxies (loopback by default: IIS, nginx on the same
//! machine), never from a client talking to us directly.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, header};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub client: Option<IpAddr>,
    pub scheme: String,
    pub host: Option<String>,
}

impl Origin {
    pub fn of<B>(request: &Request<B>, trusted: &[IpAddr]) -> Self {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Self::from_parts(peer, request.headers(), trusted)
    }

    pub fn from_parts(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> Self {
        let host = || header_str(headers, header::HOST.as_str()).map(str::to_owned);
        // On a dual-stack listener an IPv4 client arrives as ::ffff:a.b.c.d.
        let peer = peer.map(|p| p.to_canonical());
        let via_proxy = peer.is_some_and(|p| trusted.contains(&p));
        if !via_proxy {
            return Self {
                client: peer,
                scheme: "http".into(),
                host: host(),
            };
        }
        // Each proxy appends the address it saw; the last one is the client
        // as our trusted proxy saw it.
        let client = header_str(headers, "x-forwarded-for")
            .and_then(|v| v.rsplit(',').next())
            .and_then(|a| a.trim().parse().ok())
            .or(peer);
        let scheme = header_str(headers, "x-forwarded-proto")
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_ascii_lowercase())
            .filter(|s| s == "http" || s == "https")
            .unwrap_or_else(|| "http".into());
        let host = header_str(headers, "x-forwarded-host")
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_owned())
            .or_else(host);
        Self {
            client,
            scheme,
            host,
        }
    }

    /// `{scheme}://{host}` for links when no `domain` is configured.
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            self.scheme,
            self.host.as_deref().unwrap_or("localhost")
        )
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.7"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("i-1.xx.com"));
        h
    }

    #[test]
    fn believes_a_trusted_proxy() {
        let proxy: IpAddr = "127.0.0.1".parse().expect("ip");
        let o = Origin::from_parts(Some(proxy), &headers(), &[proxy]);
        assert_eq!(o.client, "198.51.100.7".parse().ok());
        assert_eq!(o.base_url(), "https://i-1.xx.com");
    }

    #[test]
    fn a_proxy_on_a_dual_stack_listener_is_still_the_proxy() {
        let proxy: IpAddr = "127.0.0.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        let o = Origin::from_parts(Some(mapped), &headers(), &[proxy]);
        assert_eq!(o.client, "198.51.100.7".parse().ok());
    }

    #[test]
    fn ignores_headers_from_anyone_else() {
        let proxy: IpAddr = "127.0.0.1".parse().expect("ip");
        let direct: IpAddr = "192.0.2.1".parse().expect("ip");
        let o = Origin::from_parts(Some(direct), &headers(), &[proxy]);
        assert_eq!(o.client, Some(direct));
        assert_eq!(o.base_url(), "http://127.0.0.1:8080");
    }
}
