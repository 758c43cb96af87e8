//! One `Config` from every source, validated at start (SPEC §3).
//!
//! Layers, lowest first: built-in defaults, the original web.config
//! `appSettings` (beside app.toml), app.toml, `MULTISERVER_UPLOAD_*`
//! environment variables, `HTTP_PLATFORM_PORT`, command-line flags. Paths in a
//! file are relative to that file's folder; paths from the environment or flags
//! are relative to the working directory. Every error names the file (or
//! variable), the key and what is wrong; `main` turns it into exit code 2.

mod auth;
mod cors;
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
        let merged = web.overlay(app).overlay(env).overlay(platform).overlay(cli);
        Self::validate(config_file, &folder, merged, behind_iis)
    }

    fn validate(
        file: &Path,
        folder: &Path,
        c: FileConfig,
        behind_iis: bool,
    ) -> Result<Self, ConfigError> {
        let err = |key: &str, problem: String| ConfigError::new(file, key, problem);
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
            .as_deref()
            .unwrap_or("127.0.0.1:8080")
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
        let servers_file = c
            .servers
            .unwrap_or_else(|| folder.join("servers.xml.config"));
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
        let allowed_types = match c.allowed_types {
            None => ImageType::ALL.to_vec(),
            Some(names) => names
                .iter()
                .map(|n| {
                    ImageType::from_name(n).ok_or_else(|| {
                        err(
                            "allowed_types",
                            format!("`{n}` is not one of jpg, png, gif, webp, bmp"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if allowed_types.is_empty() {
            return Err(err(
                "allowed_types",
                "is empty: nothing could be uploaded".into(),
            ));
        }
        let trusted_proxies = c
            .trusted_proxies
            .unwrap_or_else(|| vec!["127.0.0.1".into(), "::1".into()])
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
        let positive = |key: &str, v: Option<u64>, default: u64| -> Result<u64, ConfigError> {
            match v.unwrap_or(default) {
                0 => Err(err(key, "must be greater than 0".into())),
                n => Ok(n),
            }
        };
        let secs = |key: &str, v: Option<u64>, default: u64| -> Result<Duration, ConfigError> {
            positive(key, v, default).map(Duration::from_secs)
        };
        let count = |key: &str, v: Option<usize>, default: u64| -> Result<usize, ConfigError> {
            positive(key, v.map(|n| n as u64), default).map(|n| n as usize)
        };
        let max_file_bytes = positive("max_file_bytes", c.max_file_bytes, 2 << 30)?;
        let max_files_per_request = count("max_files_per_request", c.max_files_per_request, 32)?;
        let r = c.replication;
        let replication = ReplicationSettings {
            connect_timeout: secs(
                "replication.connect_timeout_secs",
                r.connect_timeout_secs,
                5,
            )?,
            idle_timeout: secs("replication.idle_timeout_secs", r.idle_timeout_secs, 30)?,
            concurrency: count("replication.concurrency", r.concurrency, 16)?,
            retry_interval: secs("replication.retry_interval_secs", r.retry_interval_secs, 10)?,
            max_retry_interval: secs(
                "replication.max_retry_interval_secs",
                r.max_retry_interval_secs,
                600,
            )?,
        };
        let data_dir = c.data_dir.unwrap_or_else(|| folder.join("data"));
        let staging = c.resumable;
        // Eight full-size files staged at once, two of them from one client
        // (one resuming while the next starts): room for a busy site's
        // large uploads without letting staging fill the data disk.
        let resumable = ResumableSettings {
            expire: secs("resumable.expire_secs", staging.expire_secs, 86_400)?,
            max_bytes: positive(
                "resumable.max_bytes",
                staging.max_bytes,
                max_file_bytes.saturating_mul(8),
            )?,
            max_bytes_per_client: positive(
                "resumable.max_bytes_per_client",
                staging.max_bytes_per_client,
                max_file_bytes.saturating_mul(2),
            )?,
            page_threshold_bytes: positive(
                "resumable.page_threshold_bytes",
                staging.page_threshold_bytes,
                8 << 20,
            )?,
        };
        let storage_file = c.storage.unwrap_or_default();
        let min_free = storage_file.min_free_bytes.unwrap_or(256 << 20);
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
        let cors = c.cors.unwrap_or_default().into_settings(file)?;
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
            log_dir: c.log_dir.unwrap_or_else(|| folder.join("log")),
            servers_file,
            peers,
            servers_keys,
            fsync: c.fsync.unwrap_or(true),
            max_file_bytes,
            // Room for the multipart framing of one full-size file by default.
            max_request_bytes: positive(
                "max_request_bytes",
                c.max_request_bytes,
                max_file_bytes.saturating_add(1 << 20),
            )?,
            max_files_per_request,
            allowed_types,
            trusted_proxies,
            client_idle_timeout: secs("client_idle_timeout_secs", c.client_idle_timeout_secs, 60)?,
            client_min_bytes_per_sec: c.client_min_bytes_per_sec.unwrap_or(1024),
            header_timeout: secs("header_timeout_secs", c.header_timeout_secs, 30)?,
            shutdown_grace: secs("shutdown_grace_secs", c.shutdown_grace_secs, 30)?,
            max_uploads_in_flight: count("max_uploads_in_flight", c.max_uploads_in_flight, 256)?,
            max_connections: count("max_connections", c.max_connections, 4096)?,
            max_connections_per_client: count(
                "max_connections_per_client",
                c.max_connections_per_client,
                128,
            )?,
            send_timeout: secs("send_timeout_secs", c.send_timeout_secs, 60)?,
            replication,
            images: ImageSettings {
                max_pixels: positive("images.max_pixels", c.images.max_pixels, 50_000_000)?,
                max_side: u32::try_from(positive(
                    "images.max_side",
                    c.images.max_side.map(u64::from),
                    16_384,
                )?)
                .unwrap_or(u32::MAX),
                strip_metadata: c.images.strip_metadata.unwrap_or(true),
                thumbnail_size: u32::try_from(positive(
                    "images.thumbnail_size",
                    c.images.thumbnail_size.map(u64::from),
                    320,
                )?)
                .unwrap_or(u32::MAX),
                widths: match c.images.widths {
                    Some(w) if w.contains(&0) => {
                        return Err(err("images.widths", "0 is not a width".into()));
                    }
                    Some(w) => w,
                    None => vec![160, 320, 640, 1280],
                },
                eager_thumbnail: c.images.eager_thumbnail.unwrap_or(false),
                variants_max_bytes: positive(
                    "images.variants_max_bytes",
                    c.images.variants_max_bytes,
                    10 << 30,
                )?,
                workers: count("images.workers", c.images.workers, 2)?,
                queue: count("images.queue", c.images.queue, 64)?,
            },
            downloads: DownloadSettings {
                count: c.downloads.count.unwrap_or(true),
                flush_every: secs("downloads.flush_secs", c.downloads.flush_secs, 10)?,
                max_pending: count("downloads.max_pending", c.downloads.max_pending, 10_000)?,
            },
            repair: RepairSettings {
                interval: secs("repair.interval_secs", c.repair.interval_secs, 300)?,
                settle: Duration::from_secs(c.repair.settle_secs.unwrap_or(120)),
                scrub_interval: secs(
                    "repair.scrub_interval_secs",
                    c.repair.scrub_interval_secs,
                    604_800,
                )?,
                max_bytes_per_sec: c.repair.max_bytes_per_sec.unwrap_or(0),
                concurrency: count("repair.concurrency", c.repair.concurrency, 8)?,
                trash: match c.repair.trash_days.unwrap_or(7.0) {
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
                    c.repair.tombstone_min_age_secs.unwrap_or(86_400),
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

fn config_folder(config_file: &Path) -> PathBuf {
    match config_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl FileConfig {
    /// Every setting of `upper` that is set wins over this layer's.
    fn overlay(self, upper: FileConfig) -> FileConfig {
        let r = self.replication;
        let u = upper.replication;
        FileConfig {
            server_name: upper.server_name.or(self.server_name),
            security_key: upper.security_key.or(self.security_key),
            domain: upper.domain.or(self.domain),
            listen: upper.listen.or(self.listen),
            data_dir: upper.data_dir.or(self.data_dir),
            data_dirs: upper.data_dirs.or(self.data_dirs),
            log_dir: upper.log_dir.or(self.log_dir),
            servers: upper.servers.or(self.servers),
            fsync: upper.fsync.or(self.fsync),
            max_file_bytes: upper.max_file_bytes.or(self.max_file_bytes),
            max_request_bytes: upper.max_request_bytes.or(self.max_request_bytes),
            max_files_per_request: upper.max_files_per_request.or(self.max_files_per_request),
            allowed_types: upper.allowed_types.or(self.allowed_types),
            trusted_proxies: upper.trusted_proxies.or(self.trusted_proxies),
            client_idle_timeout_secs: upper
                .client_idle_timeout_secs
                .or(self.client_idle_timeout_secs),
            client_min_bytes_per_sec: upper
                .client_min_bytes_per_sec
                .or(self.client_min_bytes_per_sec),
            header_timeout_secs: upper.header_timeout_secs.or(self.header_timeout_secs),
            shutdown_grace_secs: upper.shutdown_grace_secs.or(self.shutdown_grace_secs),
            max_uploads_in_flight: upper.max_uploads_in_flight.or(self.max_uploads_in_flight),
            max_connections: upper.max_connections.or(self.max_connections),
            max_connections_per_client: upper
                .max_connections_per_client
                .or(self.max_connections_per_client),
            send_timeout_secs: upper.send_timeout_secs.or(self.send_timeout_secs),
            storage: upper.storage.or(self.storage),
            resumable: file::ResumableFile {
                expire_secs: upper.resumable.expire_secs.or(self.resumable.expire_secs),
                max_bytes: upper.resumable.max_bytes.or(self.resumable.max_bytes),
                max_bytes_per_client: upper
                    .resumable
                    .max_bytes_per_client
                    .or(self.resumable.max_bytes_per_client),
                page_threshold_bytes: upper
                    .resumable
                    .page_threshold_bytes
                    .or(self.resumable.page_threshold_bytes),
            },
            cors: upper.cors.or(self.cors),
            auth: self.auth.overlay(upper.auth),
            downloads: file::DownloadsFile {
                count: upper.downloads.count.or(self.downloads.count),
                flush_secs: upper.downloads.flush_secs.or(self.downloads.flush_secs),
                max_pending: upper.downloads.max_pending.or(self.downloads.max_pending),
            },
            replication: file::ReplicationFile {
                connect_timeout_secs: u.connect_timeout_secs.or(r.connect_timeout_secs),
                idle_timeout_secs: u.idle_timeout_secs.or(r.idle_timeout_secs),
                concurrency: u.concurrency.or(r.concurrency),
                retry_interval_secs: u.retry_interval_secs.or(r.retry_interval_secs),
                max_retry_interval_secs: u.max_retry_interval_secs.or(r.max_retry_interval_secs),
            },
            images: file::ImagesFile {
                max_pixels: upper.images.max_pixels.or(self.images.max_pixels),
                max_side: upper.images.max_side.or(self.images.max_side),
                strip_metadata: upper.images.strip_metadata.or(self.images.strip_metadata),
                thumbnail_size: upper.images.thumbnail_size.or(self.images.thumbnail_size),
                widths: upper.images.widths.or(self.images.widths),
                eager_thumbnail: upper.images.eager_thumbnail.or(self.images.eager_thumbnail),
                variants_max_bytes: upper
                    .images
                    .variants_max_bytes
                    .or(self.images.variants_max_bytes),
                workers: upper.images.workers.or(self.images.workers),
                queue: upper.images.queue.or(self.images.queue),
            },
            repair: file::RepairFile {
                interval_secs: upper.repair.interval_secs.or(self.repair.interval_secs),
                settle_secs: upper.repair.settle_secs.or(self.repair.settle_secs),
                scrub_interval_secs: upper
                    .repair
                    .scrub_interval_secs
                    .or(self.repair.scrub_interval_secs),
                max_bytes_per_sec: upper
                    .repair
                    .max_bytes_per_sec
                    .or(self.repair.max_bytes_per_sec),
                concurrency: upper.repair.concurrency.or(self.repair.concurrency),
                trash_days: upper.repair.trash_days.or(self.repair.trash_days),
                tombstone_min_age_secs: upper
                    .repair
                    .tombstone_min_age_secs
                    .or(self.repair.tombstone_min_age_secs),
            },
        }
    }

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
}
