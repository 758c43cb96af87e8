//! `app.toml`: the service's own settings file, every key optional so that
//! web.config `appSettings`, environment and flags can fill or override it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// One layer of settings, as read from app.toml (or built from another
/// source). `None` means "this layer says nothing".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub server_name: Option<String>,
    pub security_key: Option<String>,
    pub domain: Option<String>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// Several volumes instead of one `data_dir`.
    pub data_dirs: Option<Vec<PathBuf>>,
    pub log_dir: Option<PathBuf>,
    pub servers: Option<PathBuf>,
    pub fsync: Option<bool>,
    pub max_file_bytes: Option<u64>,
    pub max_request_bytes: Option<u64>,
    pub max_files_per_request: Option<usize>,
    pub allowed_types: Option<Vec<String>>,
    pub trusted_proxies: Option<Vec<String>>,
    pub client_idle_timeout_secs: Option<u64>,
    pub client_min_bytes_per_sec: Option<u64>,
    pub header_timeout_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
    pub max_uploads_in_flight: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    pub send_timeout_secs: Option<u64>,
    #[serde(default)]
    pub replication: ReplicationFile,
    #[serde(default)]
    pub repair: RepairFile,
    #[serde(default)]
    pub images: ImagesFile,
    pub storage: Option<super::storage::StorageFile>,
    pub cors: Option<super::cors::CorsFile>,
    #[serde(default)]
    pub auth: super::auth::AuthFile,
    #[serde(default)]
    pub resumable: ResumableFile,
    #[serde(default)]
    pub downloads: DownloadsFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DownloadsFile {
    pub count: Option<bool>,
    pub flush_secs: Option<u64>,
    pub max_pending: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResumableFile {
    pub expire_secs: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_bytes_per_client: Option<u64>,
    pub page_threshold_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplicationFile {
    pub connect_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub concurrency: Option<usize>,
    pub retry_interval_secs: Option<u64>,
    pub max_retry_interval_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RepairFile {
    pub interval_secs: Option<u64>,
    pub settle_secs: Option<u64>,
    pub scrub_interval_secs: Option<u64>,
    pub max_bytes_per_sec: Option<u64>,
    pub concurrency: Option<usize>,
    pub trash_days: Option<f64>,
    pub tombstone_min_age_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImagesFile {
    pub max_pixels: Option<u64>,
    pub max_side: Option<u32>,
    pub strip_metadata: Option<bool>,
    pub thumbnail_size: Option<u32>,
    pub widths: Option<Vec<u32>>,
    pub eager_thumbnail: Option<bool>,
    pub variants_max_bytes: Option<u64>,
    pub workers: Option<usize>,
    pub queue: Option<usize>,
}

impl FileConfig {
    pub(crate) fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "-", format!("cannot read the file: {e}")))?;
        toml::from_str(&text).map_err(|e| {
            let key = e
                .span()
                .map(|span| key_at(&text, span.start))
                .unwrap_or_else(|| "-".to_owned());
            ConfigError::new(path, key, e.message().to_owned())
        })
    }
}

/// The key of the `key = value` line holding byte `at` (the value is what
/// toml points at when a type is wrong).
fn key_at(text: &str, at: usize) -> String {
    let start = text
        .get(..at)
        .unwrap_or(text)
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    line.split_once('=')
        .map_or(line, |(key, _)| key)
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.toml");
        std::fs::write(&path, "server_name = \"s1\"\nfsnyc = true\n").expect("write");
        let err = FileConfig::read(&path).expect_err("typo must fail");
        assert!(err.to_string().contains("fsnyc"), "{err}");
        assert!(err.to_string().contains("app.toml"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.toml");
        std::fs::write(&path, "max_file_bytes = \"big\"\n").expect("write");
        let err = FileConfig::read(&path).expect_err("must fail");
        assert!(err.to_string().contains("max_file_bytes"), "{err}");
    }
}
