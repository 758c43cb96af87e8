//! One `Config` from every source, validated at start (SPEC §3).
//!
//! Layers, lowest first: built-in defaults, the original web.config
//! `appSettings` (beside app.toml), app.toml, `MULTISERVER_UPLOAD_*`
//! environment variables, `HTTP_PLATFORM_PORT`, command-line flags. Each key
//! is declared once (`declare::settings_table!`, in the file of its table):
//! every layer and docs/configuration.md follow from that. Paths in a
//! file are relative to that file's folder; paths from the environment or flags
//! are relative to the working directory. Every error names the file (or
//! variable), the key and what is wrong; `main` turns it into exit code 2.

mod auth;
mod cors;
mod declare;
mod env;
mod file;
pub mod servers;
mod storage;
mod webconfig;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::Overrides;
use crate::storage::{BackendSettings, ImageType};
use file::FileConfig;

pub use auth::AuthSettings;
pub use cors::CorsSettings;

/// The key the shipped files carry; the service refuses to listen beyond
/// loopback while it is still in use.
pub const PLACEHOLDER_KEY: &str = "change-me";

/// A configuration problem: where, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: `{key}`: {problem}")]
pub struct ConfigError {
    source_name: String,
    key: String,
    problem: String,
}

impl ConfigError {
    pub(crate) fn new(
        source: impl AsRef<Path>,
        key: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Self {
            source_name: source.as_ref().display().to_string(),
            key: key.into(),
            problem: without_userinfo(&problem.into()).into_owned(),
        }
    }
}

/// `text` with the credentials of every URL in it (`scheme://user:pass@…`)
/// replaced by `***`. A peer's Uri or an endpoint may carry them, and what
/// the service prints (a summary, an error, a log line) is copied into
/// tickets and screenshots. Works on any text, so a URL that does not parse
/// is covered too.
pub fn without_userinfo(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let start = at + 3;
        let end = rest[start..]
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '`' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .map_or(rest.len(), |i| start + i);
        let authority = &rest[start..end];
        out.push_str(&rest[..start]);
        match authority.rfind('@') {
            Some(host) => {
                out.push_str("***");
                out.push_str(&authority[host..]);
                changed = true;
            }
            None => out.push_str(authority),
        }
        rest = &rest[end..];
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Another server of servers.xml.config that receives a copy of every upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// The peer's `do.ashx` URL.
    pub uri: reqwest::Url,
    /// What this server sends it in `X-Security-Key`: the first of
    /// `[auth] peer_keys`, else the peer's SecurityKey in
    /// servers.xml.config (`crate::auth::key_for_peer` decides).
    pub key: String,
    /// What a delete or restore passed on to it carries
    /// (`crate::auth::key_for_notice`).
    pub notice_key: String,
}

#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    pub connect_timeout: Duration,
    /// A peer that makes no progress for this long has failed.
    pub idle_timeout: Duration,
    /// Replica transfers in flight at once to one peer for uploads; replays
    /// have as many again of their own.
    pub concurrency: usize,
    /// How often the background replay runs, and a peer's first backoff
    /// after a failure (its breaker); doubles per consecutive failure up to
    /// `max_retry_interval`.
    pub retry_interval: Duration,
    pub max_retry_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The app.toml this came from.
    pub file: PathBuf,
    pub server_name: String,
    pub security_key: String,
    /// Keys by role and upload tokens (`[auth]`).
    pub auth: AuthSettings,
    /// Base of returned links, e.g. `http://i-1.xx.com`, without a trailing slash.
    pub domain: Option<String>,
    pub listen: SocketAddr,
    /// The data folder: the only one, or the first volume (index and
    /// variants live there); with a bucket, where uploads are received.
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Where stored files go (SPEC §11).
    pub storage: BackendSettings,
    pub servers_file: PathBuf,
    pub peers: Vec<Peer>,
    /// Every SecurityKey of servers.xml.config (the peers' upload keys
    /// among them, even when `[auth] peer_keys` is what goes to peers):
    /// secrets for logs and answers to leave out.
    pub servers_keys: Vec<String>,
    pub fsync: bool,
    pub max_file_bytes: u64,
    pub max_request_bytes: u64,
    pub max_files_per_request: usize,
    pub allowed_types: Vec<ImageType>,
    /// Direct peers whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// A client that sends no body bytes for this long is dropped.
    pub client_idle_timeout: Duration,
    /// A client must average this many body bytes per second over each
    /// `client_idle_timeout` window (0: no minimum).
    pub client_min_bytes_per_sec: u64,
    /// A client must finish its request headers within this time.
    pub header_timeout: Duration,
    /// How long in-flight requests may run on after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Uploads and replicas received at once; more are answered 503.
    pub max_uploads_in_flight: usize,
    /// Open client connections at once, over all clients.
    pub max_connections: usize,
    /// Open connections of one client address (trusted proxies are exempt:
    /// behind IIS or nginx every client comes from the proxy).
    pub max_connections_per_client: usize,
    /// A response the client does not read for this long is dropped.
    pub send_timeout: Duration,
    pub replication: ReplicationSettings,
    pub repair: RepairSettings,
    pub images: ImageSettings,
    /// `[storage.s3]`, when app.toml has it.
    pub s3: Option<crate::storage::s3::S3Settings>,
    /// `[resumable]`: tus uploads (SPEC §13).
    pub resumable: ResumableSettings,
    /// Other sites whose pages may call this service (SPEC §12).
    pub cors: CorsSettings,
    /// `[downloads]`: counting served GETs of stored files.
    pub downloads: DownloadSettings,
}

/// How served GETs are counted (`crate::downloads`).
#[derive(Debug, Clone)]
pub struct DownloadSettings {
    /// Count at all (reading old counts works either way).
    pub count: bool,
    /// Counts are added to the index this often: a kill loses at most
    /// this long's counts.
    pub flush_every: Duration,
    /// Names counted but not yet flushed that make a flush start early.
    pub max_pending: usize,
}

/// SPEC §13: how long and how large partial uploads may be.
#[derive(Debug, Clone)]
pub struct ResumableSettings {
    /// A partial upload untouched this long (and a finished one's answer)
    /// is removed.
    pub expire: Duration,
    /// Staged bytes over all partial uploads, counting declared lengths.
    pub max_bytes: u64,
    /// Staged bytes of one client address.
    pub max_bytes_per_client: u64,
    /// The upload page sends larger files through tus.
    pub page_threshold_bytes: u64,
}

/// SPEC §2.7: limits on pictures, metadata privacy, and sized variants.
#[derive(Debug, Clone)]
pub struct ImageSettings {
    /// A picture with more pixels (for animations, the sum over frames
    /// where the format says) is refused at upload.
    pub max_pixels: u64,
    /// A picture wider or taller than this is refused at upload.
    pub max_side: u32,
    /// Remove location and personal metadata before storing.
    pub strip_metadata: bool,
    /// The box a thumbnail (`-t.jpg`) fits in.
    pub thumbnail_size: u32,
    /// The widths of `-w{N}` variants.
    pub widths: Vec<u32>,
    /// Make the thumbnail right after an upload.
    pub eager_thumbnail: bool,
    /// Size cap of the variants folder; oldest removed first.
    pub variants_max_bytes: u64,
    /// Variants generated at once.
    pub workers: usize,
    /// Variant requests waiting for a worker; more are answered 503.
    pub queue: usize,
}

impl ImageSettings {
    /// The largest picture an upload or replica may be.
    pub fn limits(&self) -> crate::images::Limits {
        crate::images::Limits {
            max_pixels: self.max_pixels,
            max_side: self.max_side,
        }
    }
}

/// SPEC §4a: how this server compares itself with its peers and fetches
/// what it lacks.
#[derive(Debug, Clone)]
pub struct RepairSettings {
    /// Time between two passes over every peer.
    pub interval: Duration,
    /// Files younger than this are left to replication.
    pub settle: Duration,
    /// Time between two scrub passes (every stored file rehashed).
    pub scrub_interval: Duration,
    /// Bytes per second repair may fetch (0: no limit).
    pub max_bytes_per_sec: u64,
    /// Files fetched at once.
    pub concurrency: usize,
    /// How long a deleted file waits in the trash before it is purged.
    pub trash: Duration,
    /// A tombstone is dropped no sooner than this after it was written
    /// here, and only once every peer has it too.
    pub tombstone_min_age: Duration,
}

impl Config {
    /// Loads every layer for `config_file` and applies `flags` on top.
    pub fn load(config_file: &Path, flags: &Overrides) -> Result<Self, ConfigError> {
        let folder = config_folder(config_file);
        let defaults = FileConfig::defaults()?.relative_to(&folder);
        let web = webconfig::read(&folder.join("web.config"))?.relative_to(&folder);
        let app = FileConfig::read(config_file)?.relative_to(&folder);
        let env = env::read()?;
        let platform = env::http_platform_port()?;
        let cli = FileConfig {
            listen: flags.listen.map(|a| a.to_string()),
            server_name: flags.server_name.clone(),
            data_dir: flags.data_dir.clone(),
            log_dir: flags.log_dir.clone(),
            ..FileConfig::default()
        };
        let behind_iis = platform.listen.is_some();
        let merged = defaults
            .overlay(web)
            .overlay(app)
            .overlay(env)
            .overlay(platform)
            .overlay(cli);
        Self::validate(config_file, &folder, merged, behind_iis)
    }

    fn validate(
        file: &Path,
        folder: &Path,
        c: FileConfig,
        behind_iis: bool,
    ) -> Result<Self, ConfigError> {
        let err = |key: &str, problem: String| ConfigError::new(file, key, problem);
        // Every key read this way has a built-in default (`Unset::Value`),
        // the lowest layer: only a declaration without one leaves it unset.
        let unset = |key: &str| ConfigError::new(file, key, "is not set and has no default");
        let server_name = c
            .server_name
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| err("server_name", "is not set".into()))?;
        let security_key = c
            .security_key
            .filter(|s| !s.is_empty())
            .ok_or_else(|| err("security_key", "is not set".into()))?;
        let auth = c.auth.settings(file, &security_key)?;
        let listen: SocketAddr = c
            .listen
            .ok_or_else(|| unset("listen"))?
            .parse()
            .map_err(|e| err("listen", format!("not an address like 127.0.0.1:8080: {e}")))?;
        let domain = match c.domain.filter(|d| !d.trim().is_empty()) {
            None => None,
            Some(d) => {
                let url = reqwest::Url::parse(d.trim())
                    .map_err(|e| err("domain", format!("`{d}` is not a URL: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(err(
                        "domain",
                        format!("`{d}` must start with http:// or https://"),
                    ));
                }
                Some(d.trim().trim_end_matches('/').to_owned())
            }
        };
        let servers_file = c.servers.ok_or_else(|| unset("servers"))?;
        let entries = servers::read(&servers_file)?;
        if let Some(bad) = entries
            .iter()
            .find(|s| s.name.chars().any(char::is_control))
        {
            return Err(ConfigError::new(
                &servers_file,
                "Server/@Name",
                format!(
                    "`{}` has a control character; a name travels in an HTTP header",
                    bad.name.escape_debug()
                ),
            ));
        }
        servers::check_uris(&servers_file, &entries, &server_name)?;
        if !entries.iter().any(|s| s.name == server_name) {
            return Err(ConfigError::new(
                &servers_file,
                "Server/@Name",
                format!("no <Server Name=\"{server_name}\"> for this server (server_name)"),
            ));
        }
        let servers_keys = entries.iter().map(|s| s.security_key.clone()).collect();
        let peers = entries
            .into_iter()
            .filter(|s| s.name != server_name)
            .map(|s| {
                let uri = reqwest::Url::parse(&s.uri)
                    .map_err(|e| ConfigError::new(&servers_file, "Server/@Uri", e.to_string()))?;
                Ok(Peer {
                    key: crate::auth::key_for_peer(&auth, &s.security_key).to_owned(),
                    notice_key: crate::auth::key_for_notice(&auth, &s.security_key).to_owned(),
                    name: s.name,
                    uri,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let allowed_types = c
            .allowed_types
            .ok_or_else(|| unset("allowed_types"))?
            .iter()
            .map(|n| {
                ImageType::from_name(n).ok_or_else(|| {
                    err(
                        "allowed_types",
                        format!("`{n}` is not one of jpg, png, gif, webp, bmp"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if allowed_types.is_empty() {
            return Err(err(
                "allowed_types",
                "is empty: nothing could be uploaded".into(),
            ));
        }
        let trusted_proxies = c
            .trusted_proxies
            .ok_or_else(|| unset("trusted_proxies"))?
            .iter()
            .map(|p| {
                p.parse::<IpAddr>().map_err(|e| {
                    err(
                        "trusted_proxies",
                        format!("`{p}` is not an IP address: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Under IIS or behind a proxy on another machine the service listens
        // on loopback, yet the whole network reaches it through the proxy.
        let exposed_through = if !listen.ip().is_loopback() {
            Some(format!("listening on {listen}"))
        } else if behind_iis {
            Some("running under IIS (HTTP_PLATFORM_PORT is set)".to_owned())
        } else {
            trusted_proxies
                .iter()
                .find(|p| !p.is_loopback())
                .map(|p| format!("trusting the proxy {p}"))
        };
        if let (PLACEHOLDER_KEY, Some(exposure)) = (security_key.as_str(), exposed_through) {
            return Err(err(
                "security_key",
                format!(
                    "is still the shipped placeholder `{PLACEHOLDER_KEY}`; \
                     set a secret key before {exposure}"
                ),
            ));
        }
        let positive = |key: &str, v: Option<u64>| -> Result<u64, ConfigError> {
            match v.ok_or_else(|| unset(key))? {
                0 => Err(err(key, "must be greater than 0".into())),
                n => Ok(n),
            }
        };
        let secs = |key: &str, v: Option<u64>| -> Result<Duration, ConfigError> {
            positive(key, v).map(Duration::from_secs)
        };
        let count = |key: &str, v: Option<usize>| -> Result<usize, ConfigError> {
            positive(key, v.map(|n| n as u64)).map(|n| n as usize)
        };
        let max_file_bytes = positive("max_file_bytes", c.max_file_bytes)?;
        let max_files_per_request = count("max_files_per_request", c.max_files_per_request)?;
        let r = c.replication;
        let replication = ReplicationSettings {
            connect_timeout: secs("replication.connect_timeout_secs", r.connect_timeout_secs)?,
            idle_timeout: secs("replication.idle_timeout_secs", r.idle_timeout_secs)?,
            concurrency: count("replication.concurrency", r.concurrency)?,
            retry_interval: secs("replication.retry_interval_secs", r.retry_interval_secs)?,
            max_retry_interval: secs(
                "replication.max_retry_interval_secs",
                r.max_retry_interval_secs,
            )?,
        };
        let data_dir = c.data_dir.ok_or_else(|| unset("data_dir"))?;
        let staging = c.resumable;
        // Eight full-size files staged at once, two of them from one client
        // (one resuming while the next starts): room for a busy site's
        // large uploads without letting staging fill the data disk.
        let resumable = ResumableSettings {
            expire: secs("resumable.expire_secs", staging.expire_secs)?,
            max_bytes: positive(
                "resumable.max_bytes",
                staging.max_bytes.or(Some(max_file_bytes.saturating_mul(8))),
            )?,
            max_bytes_per_client: positive(
                "resumable.max_bytes_per_client",
                staging
                    .max_bytes_per_client
                    .or(Some(max_file_bytes.saturating_mul(2))),
            )?,
            page_threshold_bytes: positive(
                "resumable.page_threshold_bytes",
                staging.page_threshold_bytes,
            )?,
        };
        let storage_file = c.storage;
        let min_free = storage_file
            .min_free_bytes
            .ok_or_else(|| unset("storage.min_free_bytes"))?;
        let (s3, use_s3) = storage_file.s3_settings(file, folder)?;
        let storage = match (&s3, use_s3) {
            (Some(s3), true) => BackendSettings::S3(s3.clone()),
            _ => BackendSettings::Disk {
                data_dirs: match c.data_dirs {
                    Some(dirs) if dirs.is_empty() => {
                        return Err(err("data_dirs", "lists no folder".into()));
                    }
                    Some(dirs) => dirs,
                    None => vec![data_dir.clone()],
                },
                min_free,
            },
        };
        let cors = c.cors.into_settings(file)?;
        let (data_dir, peers) = match &storage {
            BackendSettings::Disk { data_dirs, .. } => {
                (data_dirs.first().cloned().unwrap_or(data_dir), peers)
            }
            // The store keeps the copies: no fan-out, no repair.
            BackendSettings::S3(_) => (data_dir, Vec::new()),
        };
        Ok(Self {
            file: file.to_path_buf(),
            storage,
            s3,
            resumable,
            cors,
            server_name,
            security_key,
            auth,
            domain,
            listen,
            data_dir,
            log_dir: c.log_dir.ok_or_else(|| unset("log_dir"))?,
            servers_file,
            peers,
            servers_keys,
            fsync: c.fsync.ok_or_else(|| unset("fsync"))?,
            max_file_bytes,
            // Room for the multipart framing of one full-size file by default.
            max_request_bytes: positive(
                "max_request_bytes",
                c.max_request_bytes
                    .or(Some(max_file_bytes.saturating_add(1 << 20))),
            )?,
            max_files_per_request,
            allowed_types,
            trusted_proxies,
            client_idle_timeout: secs("client_idle_timeout_secs", c.client_idle_timeout_secs)?,
            client_min_bytes_per_sec: c
                .client_min_bytes_per_sec
                .ok_or_else(|| unset("client_min_bytes_per_sec"))?,
            header_timeout: secs("header_timeout_secs", c.header_timeout_secs)?,
            shutdown_grace: secs("shutdown_grace_secs", c.shutdown_grace_secs)?,
            max_uploads_in_flight: count("max_uploads_in_flight", c.max_uploads_in_flight)?,
            max_connections: count("max_connections", c.max_connections)?,
            max_connections_per_client: count(
                "max_connections_per_client",
                c.max_connections_per_client,
            )?,
            send_timeout: secs("send_timeout_secs", c.send_timeout_secs)?,
            replication,
            images: ImageSettings {
                max_pixels: positive("images.max_pixels", c.images.max_pixels)?,
                max_side: u32::try_from(positive(
                    "images.max_side",
                    c.images.max_side.map(u64::from),
                )?)
                .unwrap_or(u32::MAX),
                strip_metadata: c
                    .images
                    .strip_metadata
                    .ok_or_else(|| unset("images.strip_metadata"))?,
                thumbnail_size: u32::try_from(positive(
                    "images.thumbnail_size",
                    c.images.thumbnail_size.map(u64::from),
                )?)
                .unwrap_or(u32::MAX),
                widths: match c.images.widths.ok_or_else(|| unset("images.widths"))? {
                    w if w.contains(&0) => {
                        return Err(err("images.widths", "0 is not a width".into()));
                    }
                    w => w,
                },
                eager_thumbnail: c
                    .images
                    .eager_thumbnail
                    .ok_or_else(|| unset("images.eager_thumbnail"))?,
                variants_max_bytes: positive(
                    "images.variants_max_bytes",
                    c.images.variants_max_bytes,
                )?,
                workers: count("images.workers", c.images.workers)?,
                queue: count("images.queue", c.images.queue)?,
            },
            downloads: DownloadSettings {
                count: c.downloads.count.ok_or_else(|| unset("downloads.count"))?,
                flush_every: secs("downloads.flush_secs", c.downloads.flush_secs)?,
                max_pending: count("downloads.max_pending", c.downloads.max_pending)?,
            },
            repair: RepairSettings {
                interval: secs("repair.interval_secs", c.repair.interval_secs)?,
                settle: Duration::from_secs(
                    c.repair
                        .settle_secs
                        .ok_or_else(|| unset("repair.settle_secs"))?,
                ),
                scrub_interval: secs("repair.scrub_interval_secs", c.repair.scrub_interval_secs)?,
                max_bytes_per_sec: c
                    .repair
                    .max_bytes_per_sec
                    .ok_or_else(|| unset("repair.max_bytes_per_sec"))?,
                concurrency: count("repair.concurrency", c.repair.concurrency)?,
                trash: match c
                    .repair
                    .trash_days
                    .ok_or_else(|| unset("repair.trash_days"))?
                {
                    days if days.is_finite() && (0.0..=36_500.0).contains(&days) => {
                        Duration::from_secs_f64(days * 86_400.0)
                    }
                    _ => {
                        return Err(err(
                            "repair.trash_days",
                            "must be a number of days from 0 to 36500 (fractions allowed)".into(),
                        ));
                    }
                },
                tombstone_min_age: Duration::from_secs(
                    c.repair
                        .tombstone_min_age_secs
                        .ok_or_else(|| unset("repair.tombstone_min_age_secs"))?,
                ),
            },
        })
    }
}

impl Config {
    /// Every key of every role this server knows, its peers' included, and
    /// the token secrets: what no log line, answer or summary may show.
    pub fn secrets(&self) -> Vec<&str> {
        let auth = &self.auth;
        std::iter::once(&self.security_key)
            .chain(&auth.security_keys)
            .chain(&auth.admin_keys)
            .chain(&auth.peer_keys)
            .chain(&self.servers_keys)
            .map(String::as_str)
            .chain(auth.token_secrets.values())
            .filter(|k| !k.is_empty())
            .collect()
    }
}

/// The settings tables of docs/configuration.md, from the declarations.
pub fn reference() -> String {
    declare::reference(&FileConfig::declared())
}

fn config_folder(config_file: &Path) -> PathBuf {
    match config_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl FileConfig {
    /// Makes this file's relative paths relative to `folder`.
    fn relative_to(mut self, folder: &Path) -> FileConfig {
        for path in [&mut self.data_dir, &mut self.log_dir, &mut self.servers]
            .into_iter()
            .flatten()
            .chain(self.data_dirs.iter_mut().flatten())
        {
            if path.is_relative() {
                *path = folder.join(&*path);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_never_shown() {
        assert_eq!(
            without_userinfo("peer http://u:s3cret@h:8/do.ashx and `https://tok@x` end"),
            "peer http://***@h:8/do.ashx and `https://***@x` end"
        );
        assert_eq!(without_userinfo("ftp://u:p@h"), "ftp://***@h");
        assert_eq!(
            without_userinfo("http://h/a@b?c=d@e"),
            "http://h/a@b?c=d@e",
            "an @ after the host is no credential"
        );
        assert!(matches!(without_userinfo("no url here"), Cow::Borrowed(_)));
    }

    /// The settings tables of docs/configuration.md: every line between
    /// the markers.
    fn documented() -> String {
        let page = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
        )
        .expect("docs/configuration.md");
        let start = page.find(REFERENCE_START).expect("start marker") + REFERENCE_START.len();
        let end = page.find(REFERENCE_END).expect("end marker");
        page[start..end].to_owned()
    }

    const REFERENCE_START: &str = "<!-- settings: start -->\n";
    const REFERENCE_END: &str = "<!-- settings: end -->";

    /// The first column of every row: the keys a table documents.
    fn keys(tables: &str) -> Vec<String> {
        tables
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split_once('`'))
            .map(|(key, _)| key.to_owned())
            .collect()
    }

    #[test]
    fn every_accepted_key_is_documented_and_every_documented_key_is_accepted() {
        let accepted: Vec<String> = FileConfig::declared()
            .iter()
            .map(|s| s.key.to_owned())
            .collect();
        let in_docs = keys(&documented());
        let undocumented: Vec<_> = accepted.iter().filter(|k| !in_docs.contains(k)).collect();
        let unknown: Vec<_> = in_docs.iter().filter(|k| !accepted.contains(k)).collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "docs/configuration.md lacks {undocumented:?} and documents keys the service \
             does not accept: {unknown:?}; refresh its tables with \
             `multiserver-upload config-reference`"
        );
        assert!(
            documented() == reference(),
            "docs/configuration.md's tables differ from the declarations (a default, a \
             name or a meaning); refresh them with `multiserver-upload config-reference`"
        );
    }

    /// Every key of an app.toml table is one the service reads: a key
    /// that serde accepts but the declarations do not list could not be.
    #[test]
    fn every_declared_key_is_read_from_app_toml() {
        for setting in FileConfig::declared() {
            let (table, key) = setting.key.rsplit_once('.').unwrap_or(("", setting.key));
            let header = match table {
                "" => String::new(),
                t => format!("[{t}]\n"),
            };
            let text = format!("{header}{key} = 0\n");
            if let Err(e) = toml::from_str::<FileConfig>(&text) {
                assert!(!e.to_string().contains("unknown field"), "{text}: {e}");
            }
        }
    }

    #[test]
    fn the_flags_are_the_declared_ones() {
        use clap::CommandFactory;
        let cli = crate::cli::Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve");
        let mut flags: Vec<String> = serve
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| *l != "config")
            .map(|l| format!("--{l}"))
            .collect();
        let mut declared: Vec<String> = FileConfig::declared()
            .iter()
            .filter_map(|s| s.flag.map(str::to_owned))
            .collect();
        flags.sort();
        declared.sort();
        assert_eq!(flags, declared);
    }

    /// Every key validation reads has its built-in default, and the
    /// declared `[storage.s3]` defaults are the store's own
    /// (`S3Settings::new`).
    #[test]
    fn the_built_in_defaults_and_the_required_keys_make_a_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path();
        std::fs::write(
            folder.join("servers.xml.config"),
            r#"<Servers><Server Name="s1" Uri="http://127.0.0.1:1/do.ashx" SecurityKey="k1"/></Servers>"#,
        )
        .expect("servers");
        let mut layer = FileConfig::defaults()
            .expect("defaults")
            .relative_to(folder);
        for (key, text) in [
            ("server_name", "s1"),
            ("security_key", "k"),
            ("storage.s3.bucket", "b"),
        ] {
            layer.set(key, text, "test").expect(key);
        }
        let c = Config::validate(&folder.join("app.toml"), folder, layer, false).expect("valid");
        assert_eq!(c.s3, Some(crate::storage::s3::S3Settings::new("b")));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, folder.join("data"));
        assert_eq!(c.max_request_bytes, (2 << 30) + (1 << 20));
        assert_eq!(c.images.widths, [160, 320, 640, 1280]);
        assert_eq!(c.repair.trash, Duration::from_secs(7 * 86_400));
        assert_eq!(c.auth.max_token_secs, 86_400);
    }
}
