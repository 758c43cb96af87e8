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
    fn rejects_duplicates_and_bad_uris() {
        let dup = r#"<Servers><Server Name="a" Uri="http://a/do.ashx" SecurityKey="k"/><Server Name="a" Uri="http://b/do.ashx" SecurityKey="k"/></Servers>"#;
        assert!(parse(Path::new("x"), dup).is_err());
        let bad = r#"<Servers><Server Name="a" Uri="ftp://a/do.ashx" SecurityKey="k"/></Servers>"#;
        assert!(parse(Path::new("x"), bad).is_err());
        let missing = r#"<Servers><Server Name="a" SecurityKey="k"/></Servers>"#;
        assert!(parse(Path::new("x"), missing).is_err());
    }
}
