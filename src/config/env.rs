//! Environment layer: `MULTISERVER_UPLOAD_<KEY>` for every app.toml key
//! (`MULTISERVER_UPLOAD_REPLICATION_<KEY>` for the `[replication]` table,
//! `MULTISERVER_UPLOAD_REPAIR_<KEY>` for `[repair]`,
//! `MULTISERVER_UPLOAD_IMAGES_<KEY>` for `[images]`,
//! `MULTISERVER_UPLOAD_RESUMABLE_<KEY>` for `[resumable]`,
//! `MULTISERVER_UPLOAD_AUTH_<KEY>` for `[auth]`, lists comma-separated,
//! `AUTH_TOKEN_SECRETS` as `id=secret,id=secret`), and
//! `HTTP_PLATFORM_PORT`, which IIS HttpPlatformHandler sets.

use std::str::FromStr;

use super::ConfigError;
use super::file::FileConfig;

const PREFIX: &str = "MULTISERVER_UPLOAD_";

fn var(key: &str) -> Option<String> {
    std::env::var(format!("{PREFIX}{key}")).ok()
}

fn parsed<T: FromStr>(key: &str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(key) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|e| {
            ConfigError::new(
                format!("environment variable {PREFIX}{key}"),
                key.to_lowercase(),
                format!("`{v}`: {e}"),
            )
        }),
    }
}

fn list(key: &str) -> Option<Vec<String>> {
    var(key).map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// `id=secret,id=secret` in order (the first mints).
fn secrets(key: &str) -> Result<Option<super::auth::OrderedSecrets>, ConfigError> {
    let Some(pairs) = list(key) else {
        return Ok(None);
    };
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(id, secret)| (id.trim().to_owned(), secret.trim().to_owned()))
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("environment variable {PREFIX}{key}"),
                        "auth.token_secrets",
                        "must be id=secret pairs separated by commas",
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|pairs| Some(super::auth::OrderedSecrets(pairs)))
}

pub(crate) fn read() -> Result<FileConfig, ConfigError> {
    Ok(FileConfig {
        server_name: var("SERVER_NAME"),
        security_key: var("SECURITY_KEY"),
        domain: var("DOMAIN"),
        listen: var("LISTEN"),
        data_dir: var("DATA_DIR").map(Into::into),
        log_dir: var("LOG_DIR").map(Into::into),
        servers: var("SERVERS").map(Into::into),
        fsync: parsed("FSYNC")?,
        max_file_bytes: parsed("MAX_FILE_BYTES")?,
        max_request_bytes: parsed("MAX_REQUEST_BYTES")?,
        max_files_per_request: parsed("MAX_FILES_PER_REQUEST")?,
        allowed_types: list("ALLOWED_TYPES"),
        trusted_proxies: list("TRUSTED_PROXIES"),
        client_idle_timeout_secs: parsed("CLIENT_IDLE_TIMEOUT_SECS")?,
        client_min_bytes_per_sec: parsed("CLIENT_MIN_BYTES_PER_SEC")?,
        header_timeout_secs: parsed("HEADER_TIMEOUT_SECS")?,
        shutdown_grace_secs: parsed("SHUTDOWN_GRACE_SECS")?,
        max_uploads_in_flight: parsed("MAX_UPLOADS_IN_FLIGHT")?,
        max_connections: parsed("MAX_CONNECTIONS")?,
        max_connections_per_client: parsed("MAX_CONNECTIONS_PER_CLIENT")?,
        send_timeout_secs: parsed("SEND_TIMEOUT_SECS")?,
        images: super::file::ImagesFile {
            max_pixels: parsed("IMAGES_MAX_PIXELS")?,
            max_side: parsed("IMAGES_MAX_SIDE")?,
            strip_metadata: parsed("IMAGES_STRIP_METADATA")?,
            thumbnail_size: parsed("IMAGES_THUMBNAIL_SIZE")?,
            widths: list("IMAGES_WIDTHS")
                .map(|l| l.iter().map(|w| w.parse()).collect::<Result<Vec<u32>, _>>())
                .transpose()
                .map_err(|e| {
                    ConfigError::new(
                        format!("environment variable {PREFIX}IMAGES_WIDTHS"),
                        "images.widths",
                        format!("not a list of numbers: {e}"),
                    )
                })?,
            eager_thumbnail: parsed("IMAGES_EAGER_THUMBNAIL")?,
            variants_max_bytes: parsed("IMAGES_VARIANTS_MAX_BYTES")?,
            workers: parsed("IMAGES_WORKERS")?,
            queue: parsed("IMAGES_QUEUE")?,
        },
        repair: super::file::RepairFile {
            interval_secs: parsed("REPAIR_INTERVAL_SECS")?,
            settle_secs: parsed("REPAIR_SETTLE_SECS")?,
            scrub_interval_secs: parsed("REPAIR_SCRUB_INTERVAL_SECS")?,
            max_bytes_per_sec: parsed("REPAIR_MAX_BYTES_PER_SEC")?,
            concurrency: parsed("REPAIR_CONCURRENCY")?,
            trash_days: parsed("REPAIR_TRASH_DAYS")?,
            tombstone_min_age_secs: parsed("REPAIR_TOMBSTONE_MIN_AGE_SECS")?,
        },
        replication: super::file::ReplicationFile {
            connect_timeout_secs: parsed("REPLICATION_CONNECT_TIMEOUT_SECS")?,
            idle_timeout_secs: parsed("REPLICATION_IDLE_TIMEOUT_SECS")?,
            concurrency: parsed("REPLICATION_CONCURRENCY")?,
            retry_interval_secs: parsed("REPLICATION_RETRY_INTERVAL_SECS")?,
            max_retry_interval_secs: parsed("REPLICATION_MAX_RETRY_INTERVAL_SECS")?,
        },
        data_dirs: list("DATA_DIRS").map(|l| l.into_iter().map(Into::into).collect()),
        storage: None,
        resumable: super::file::ResumableFile {
            expire_secs: parsed("RESUMABLE_EXPIRE_SECS")?,
            max_bytes: parsed("RESUMABLE_MAX_BYTES")?,
            max_bytes_per_client: parsed("RESUMABLE_MAX_BYTES_PER_CLIENT")?,
            page_threshold_bytes: parsed("RESUMABLE_PAGE_THRESHOLD_BYTES")?,
        },
        downloads: super::file::DownloadsFile {
            count: parsed("DOWNLOADS_COUNT")?,
            flush_secs: parsed("DOWNLOADS_FLUSH_SECS")?,
            max_pending: parsed("DOWNLOADS_MAX_PENDING")?,
        },
        cors: None,
        auth: super::auth::AuthFile {
            security_keys: list("AUTH_SECURITY_KEYS"),
            admin_keys: list("AUTH_ADMIN_KEYS"),
            peer_keys: list("AUTH_PEER_KEYS"),
            token_secrets: secrets("AUTH_TOKEN_SECRETS")?,
            clock_skew_secs: parsed("AUTH_CLOCK_SKEW_SECS")?,
            max_token_secs: parsed("AUTH_MAX_TOKEN_SECS")?,
        },
    })
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
