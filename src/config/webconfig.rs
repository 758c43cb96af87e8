//! The original web.config `<appSettings>` keys (those declared with a `web`
//! name: `ServerName`, `Servers`, `SecurityKey`, `Log`, `Domain`), honoured
//! for settings app.toml leaves unset so that a site moves over with its old
//! web.config.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use super::declare::FromText;
use super::file::FileConfig;

/// Reads `<configuration><appSettings><add key=… value=…/>` into a settings
/// layer. A missing web.config is an empty layer.
pub(crate) fn read(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => {
            return Err(ConfigError::new(
                path,
                "-",
                format!("cannot read the file: {e}"),
            ));
        }
    };
    let settings = app_settings(&text)
        .map_err(|e| ConfigError::new(path, "appSettings", format!("not valid XML: {e}")))?;
    let declared = FileConfig::declared();
    let mut layer = FileConfig::default();
    for (name, value) in settings {
        let Some(setting) = declared.iter().find(|s| s.web == Some(name.as_str())) else {
            continue;
        };
        // The original wrote paths as `/servers.xml.config` and `/log`,
        // relative to the IIS site's folder, which is where web.config sits.
        let value = match setting.ty {
            <PathBuf as FromText>::TYPE => value.trim_start_matches(['/', '\\']),
            _ => &value,
        };
        layer.set(setting.key, value, &path.display().to_string())?;
    }
    Ok(layer)
}

#[derive(Deserialize)]
struct Configuration {
    #[serde(rename = "appSettings", default)]
    app_settings: AppSettings,
}

#[derive(Deserialize, Default)]
struct AppSettings {
    #[serde(rename = "add", default)]
    add: Vec<Add>,
}

#[derive(Deserialize)]
struct Add {
    #[serde(rename = "@key")]
    key: String,
    #[serde(rename = "@value")]
    value: String,
}

fn app_settings(text: &str) -> Result<Vec<(String, String)>, quick_xml::DeError> {
    let config: Configuration = quick_xml::de::from_str(text)?;
    Ok(config
        .app_settings
        .add
        .into_iter()
        .map(|a| (a.key, a.value))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = r#"<?xml version="1.0"?>
<configuration>
  <appSettings>
	<!--当前服务器名称 对应 servers.xml.config-->
	<add key="ServerName" value="s1"/>
	<add key="Servers" value="/servers.xml.config"/>
	<add key="SecurityKey" value="asdfdsfsdf"/>
	<add key="Log" value="/log"/>
	<add key="Domain" value="http://i-1.xx.com"/>
  </appSettings>
  <system.web>
	<customErrors mode="Off"/>
  </system.web>
</configuration>"#;

    #[test]
    fn reads_the_original_app_settings() {
        let settings = app_settings(ORIGINAL).expect("parses");
        assert_eq!(settings.len(), 5);
        assert_eq!(settings[0], ("ServerName".into(), "s1".into()));
        assert_eq!(settings[4], ("Domain".into(), "http://i-1.xx.com".into()));
    }
}
