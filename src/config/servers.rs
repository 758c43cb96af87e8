//! `servers.xml.config`, in the original tool's format, unchanged:
//! `<Servers><Server Name="s1" Uri="http://…/do.ashx" SecurityKey="…"/>…</Servers>`.

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

/// One `<Server>` entry: this server or a peer.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ServerEntry {
    #[serde(rename = "@Name")]
    pub name: String,
    #[serde(rename = "@Uri")]
    pub uri: String,
    #[serde(rename = "@SecurityKey")]
    pub security_key: String,
}

#[derive(Debug, Deserialize)]
struct Servers {
    #[serde(rename = "Server", default)]
    server: Vec<ServerEntry>,
}

/// Parses the text of a servers.xml.config; `path` only names the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<Vec<ServerEntry>, ConfigError> {
    let servers: Servers = quick_xml::de::from_str(text)
        .map_err(|e| ConfigError::new(path, "Servers", format!("not a valid servers file: {e}")))?;
    let mut seen = std::collections::HashSet::new();
    for entry in &servers.server {
        if entry.name.trim().is_empty() {
            return Err(ConfigError::new(path, "Server/@Name", "is empty"));
        }
        if !seen.insert(entry.name.as_str()) {
            return Err(ConfigError::new(
                path,
                "Server/@Name",
                format!("`{}` appears twice", entry.name),
            ));
        }
        let uri = reqwest::Url::parse(&entry.uri).map_err(|e| {
            ConfigError::new(
                path,
                "Server/@Uri",
                format!("`{}` of {} is not a URL: {e}", entry.uri, entry.name),
            )
        })?;
        if !matches!(uri.scheme(), "http" | "https") {
            return Err(ConfigError::new(
                path,
                "Server/@Uri",
                format!("`{}` of {} must be http or https", entry.uri, entry.name),
            ));
        }
    }
    Ok(servers.server)
}

/// Refuses a peer whose Uri is this server's own (`own` is this server's
/// Name), and two entries with the same Uri: either way copies meant for a
/// peer would land on a server that already has them. Uris are compared as
/// parsed URLs (scheme and host case, default port, dot segments
/// normalised; the fragment ignored). Another spelling of the same server
/// (`localhost` for `127.0.0.1`) cannot be seen here; the sender catches it
/// by the name in the answer.
pub(crate) fn check_uris(
    path: &Path,
    entries: &[ServerEntry],
    own: &str,
) -> Result<(), ConfigError> {
    let mut seen: Vec<(String, &ServerEntry)> = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut url = reqwest::Url::parse(&entry.uri).map_err(|e| {
            ConfigError::new(
                path,
                "Server/@Uri",
                format!("`{}` of {} is not a URL: {e}", entry.uri, entry.name),
            )
        })?;
        url.set_fragment(None);
        let normal = url.to_string();
        if let Some((_, first)) = seen.iter().find(|(u, _)| *u == normal) {
            let problem = match [first, entry].into_iter().find(|e| e.name == own) {
                Some(this) => {
                    let peer = if this.name == first.name {
                        entry
                    } else {
                        first
                    };
                    format!(
                        "`{}` of peer {} is the Uri of this server ({}): its copies would come \
                         back here and never reach {}",
                        peer.uri, peer.name, this.name, peer.name
                    )
                }
                None => format!(
                    "`{}` is the Uri of both {} and {}: one server cannot be two peers",
                    entry.uri, first.name, entry.name
                ),
            };
            return Err(ConfigError::new(path, "Server/@Uri", problem));
        }
        seen.push((normal, entry));
    }
    Ok(())
}

pub(crate) fn read(path: &Path) -> Result<Vec<ServerEntry>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, "-", format!("cannot read the file: {e}")))?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = r#"<?xml version="1.0" encoding="utf-8" ?>

<Servers>
  <!--备份服务器1-->
  <Server Name="s1" Uri="http://s1.i-1.upload.xx.com/do.ashx" SecurityKey="asdfdsfsdf" />

  <!--备份服务器2-->
  <Server Name="s2" Uri="http://s2.i-1.upload.xx.com/do.ashx" SecurityKey="asdfdsfsdf" />
</Servers>
"#;

    #[test]
    fn reads_the_original_file() {
        let servers = parse(Path::new("servers.xml.config"), ORIGINAL).expect("parses");
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].name, "s2");
        assert_eq!(servers[1].uri, "http://s2.i-1.upload.xx.com/do.ashx");
        assert_eq!(servers[1].security_key, "asdfdsfsdf");
    }

    #[test]
    fn one_uri_per_server() {
        let entries = |uris: [&str; 3]| -> Vec<ServerEntry> {
            ["s1", "s2", "s3"]
                .iter()
                .zip(uris)
                .map(|(name, uri)| ServerEntry {
                    name: (*name).into(),
                    uri: uri.into(),
                    security_key: "k".into(),
                })
                .collect()
        };
        let path = Path::new("servers.xml.config");
        let fine = entries([
            "http://a/do.ashx",
            "http://b/do.ashx",
            "http://a:81/do.ashx",
        ]);
        assert!(check_uris(path, &fine, "s1").is_ok());
        let own = entries([
            "http://a/do.ashx",
            "HTTP://A:80/x/../do.ashx#f",
            "http://c/do.ashx",
        ]);
        let e = check_uris(path, &own, "s1")
            .expect_err("own Uri")
            .to_string();
        assert!(
            e.contains("Server/@Uri") && e.contains("this server (s1)"),
            "{e}"
        );
        let own_later = check_uris(path, &own, "s2")
            .expect_err("own Uri")
            .to_string();
        assert!(
            own_later.contains(
                "`http://a/do.ashx` of peer s1 is the Uri of this server (s2): its copies \
                 would come back here and never reach s1"
            ),
            "{own_later}"
        );
        let twice = entries(["http://a/do.ashx", "http://b/do.ashx", "http://b/do.ashx"]);
        let e = check_uris(path, &twice, "s1")
            .expect_err("twice")
            .to_string();
        assert!(e.contains("both s2 and s3"), "{e}");
    }

    #[test]
    fn reads_the_file_and_names_it_when_it_cannot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("servers.xml.config");
        std::fs::write(&path, ORIGINAL).expect("write");
        let names: Vec<_> = read(&path)
            .expect("reads")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["s1", "s2"]);
        let missing = dir.path().join("absent.config");
        let e = read(&missing).expect_err("missing").to_string();
        assert!(
            e.contains("absent.config") && e.contains("cannot read"),
            "{e}"
        );
    }

    #[test]
    fn rejects_duplicates_and_bad_uris() {
        let dup = r#"<Servers><Server Name="a" Uri="http://a/do.ashx" SecurityKey="k"/><Server Name="a" Uri="http://b/do.ashx" SecurityKey="k"/></Servers>"#;
        assert!(parse(Path::new("x"), dup).is_err());
        let bad = r#"<Servers><Server Name="a" Uri="ftp://a/do.ashx" SecurityKey="k"/></Servers>"#;
        assert!(parse(Path::new("x"), bad).is_err());
        let missing = r#"<Servers><Server Name="a" SecurityKey="k"/></Servers>"#;
        assert!(parse(Path::new("x"), missing).is_err());
    }
}
