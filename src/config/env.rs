//! Environment layer: `MULTISERVER_UPLOAD_<KEY>` for every key declared with
//! an environment name (the key in upper case, `_` for `.`:
//! `MULTISERVER_UPLOAD_IMAGES_MAX_SIDE`; lists comma-separated,
//! `AUTH_TOKEN_SECRETS` as `id=secret,id=secret`), and `HTTP_PLATFORM_PORT`,
//! which IIS HttpPlatformHandler sets.

use super::ConfigError;
use super::file::FileConfig;

pub(crate) fn read() -> Result<FileConfig, ConfigError> {
    let mut layer = FileConfig::default();
    for setting in FileConfig::declared() {
        let Some(name) = setting.env_name() else {
            continue;
        };
        if let Ok(text) = std::env::var(&name) {
            layer.set(setting.key, &text, &format!("environment variable {name}"))?;
        }
    }
    Ok(layer)
}

/// Under HttpPlatformHandler the service listens on the port IIS chose, on
/// loopback only: IIS is the only client.
pub(crate) fn http_platform_port() -> Result<FileConfig, ConfigError> {
    let Ok(port) = std::env::var("HTTP_PLATFORM_PORT") else {
        return Ok(FileConfig::default());
    };
    let port: u16 = port.trim().parse().map_err(|e| {
        ConfigError::new(
            "environment variable HTTP_PLATFORM_PORT",
            "listen",
            format!("`{port}` is not a port number: {e}"),
        )
    })?;
    Ok(FileConfig {
        listen: Some(format!("127.0.0.1:{port}")),
        ..FileConfig::default()
    })
}
