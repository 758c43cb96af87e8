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
    /// `action=digest`: the node of the digest tree asked for.
    pub prefix: Option<String>,
    /// `action=list`: the day folder asked for.
    pub day: Option<String>,
    /// `action=digest|list`: the page after this cursor (empty: the first).
    pub after: Option<String>,
    /// `action=stats&day=…`: how many of the day's most read files.
    pub top: Option<String>,
    /// `action=stats&cluster=1`: every server's count too.
    pub cluster: Option<String>,
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
                "prefix" => &mut params.prefix,
                "day" => &mut params.day,
                "after" => &mut params.after,
                "top" => &mut params.top,
                "cluster" => &mut params.cluster,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        params
    }
}

/// The request target with the value of every `SecurityKey` (any case), and
/// every value equal to one of `secrets` whatever its name (a misspelled
/// `Security+Key=`, a key pasted into another field), replaced, for logs.
pub fn redact<'a>(path_and_query: &'a str, secrets: &[&str]) -> Cow<'a, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    let mut changed = false;
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            let (decoded, value) = form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .unwrap_or_default();
            let secret = !value.is_empty() && secrets.contains(&value.as_str());
            if secret || decoded.eq_ignore_ascii_case("securitykey") {
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
    fn reads_every_parameter_and_ignores_others() {
        let p = Params::parse(Some(
            "Prefix=2014%2F4&DAY=2014-04-15&Path=a.jpg&action=digest&format=xml&x=1&AFTER=15%2Fa",
        ));
        assert_eq!(
            p,
            Params {
                action: Some("digest".into()),
                format: Some("xml".into()),
                security_key: None,
                path: Some("a.jpg".into()),
                prefix: Some("2014/4".into()),
                day: Some("2014-04-15".into()),
                after: Some("15/a".into()),
                top: None,
                cluster: None,
            }
        );
        assert_eq!(Params::parse(None), Params::default());
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
            redact("/do.ashx?action=upload&SecurityKey=secret&format=xml", &[]),
            "/do.ashx?action=upload&SecurityKey=***&format=xml"
        );
        assert_eq!(
            redact("/do.ashx?SECURITYKEY=secret", &[]),
            "/do.ashx?SECURITYKEY=***"
        );
        assert_eq!(
            redact("/do.ashx?Security%4Bey=secret", &[]),
            "/do.ashx?Security%4Bey=***"
        );
        assert_eq!(redact("/2014/4/15/a.jpg", &[]), "/2014/4/15/a.jpg");
        assert!(!redact("/x?a=1&securitykey", &[]).contains("secret"));
    }

    #[test]
    fn redacts_a_key_under_any_name() {
        assert_eq!(
            redact("/do.ashx?Security+Key=s%2Fk&key=s/k&x=1", &["s/k"]),
            "/do.ashx?Security+Key=***&key=***&x=1"
        );
        assert_eq!(redact("/do.ashx?x=", &[""]), "/do.ashx?x=");
    }
}
