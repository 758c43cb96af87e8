//! Query parameters of `do.ashx`. Names are case-insensitive, as ASP.NET's
//! were (`SecurityKey`, `securitykey`, `SECURITYKEY`); the first occurrence
//! of a name wins.

use std::borrow::Cow;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params {
    pub action: Option<String>,
    pub format: Option<String>,
    pub security_key: Option<String>,
    pub path: Option<String>,
}

impl Params {
    pub fn parse(query: Option<&str>) -> Self {
        let mut params = Self::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match name.to_ascii_lowercase().as_str() {
                "action" => &mut params.action,
                "format" => &mut params.format,
                "securitykey" => &mut params.security_key,
                "path" => &mut params.path,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        params
    }
}

/// The request target with the value of every `SecurityKey` (any case)
/// replaced, for logs.
pub fn redact(path_and_query: &str) -> Cow<'_, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    let mut changed = false;
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            let decoded: String = form_urlencoded::parse(name.as_bytes())
                .next()
                .map(|(n, _)| n.into_owned())
                .unwrap_or_default();
            if decoded.eq_ignore_ascii_case("securitykey") {
                changed = true;
                Cow::Owned(format!("{name}=***"))
            } else {
                Cow::Borrowed(pair)
            }
        })
        .collect();
    if changed {
        Cow::Owned(format!("{path}?{}", pairs.join("&")))
    } else {
        Cow::Borrowed(path_and_query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive() {
        for q in [
            "action=upload&SecurityKey=k&format=json",
            "ACTION=upload&securitykey=k&Format=json",
            "Action=upload&SECURITYKEY=k&FORMAT=json&securitykey=other",
        ] {
            let p = Params::parse(Some(q));
            assert_eq!(p.action.as_deref(), Some("upload"), "{q}");
            assert_eq!(p.security_key.as_deref(), Some("k"), "{q}");
            assert_eq!(p.format.as_deref(), Some("json"), "{q}");
        }
    }

    #[test]
    fn decodes_values() {
        let p = Params::parse(Some(
            "action=sync&path=2014%2F4%2F15%2Fa.jpg&securitykey=a%2Bb+c",
        ));
        assert_eq!(p.path.as_deref(), Some("2014/4/15/a.jpg"));
        assert_eq!(p.security_key.as_deref(), Some("a+b c"));
    }

    #[test]
    fn redacts_every_spelling_of_the_key() {
        assert_eq!(
            redact("/do.ashx?action=upload&SecurityKey=secret&format=xml"),
            "/do.ashx?action=upload&SecurityKey=***&format=xml"
        );
        assert_eq!(
            redact("/do.ashx?SECURITYKEY=secret"),
            "/do.ashx?SECURITYKEY=***"
        );
        assert_eq!(
            redact("/do.ashx?Security%4Bey=secret"),
            "/do.ashx?Security%4Bey=***"
        );
        assert_eq!(redact("/2014/4/15/a.jpg"), "/2014/4/15/a.jpg");
        assert!(!redact("/x?a=1&securitykey").contains("secret"));
    }
}
