//! `app.toml`: the service's own settings file, every key optional so that
//! web.config `appSettings`, environment and flags can fill or override it.

use std::path::{Path, PathBuf};

use super::ConfigError;
use super::declare::settings_table;

settings_table! {
    /// One layer of settings, as read from app.toml (or built from another
    /// source). `None` means "this layer says nothing".
    pub(crate) struct FileConfig in "" (env: true) {
        /// this server's `Name` in servers.xml.config; every other entry is a peer
        server_name: String = Required, web "ServerName", flag "--server-name";
        /// the shared secret; the shipped placeholder `change-me` is refused on a
        /// non-loopback `listen`, under IIS (`HTTP_PLATFORM_PORT` set) and when
        /// `trusted_proxies` names a non-loopback proxy, and warned about at every
        /// other start
        security_key: String = Required, web "SecurityKey";
        /// base of links, e.g. `http://i-1.xx.com`; empty: from the request (`Host`,
        /// or `X-Forwarded-Proto`/`-Host` from a trusted proxy)
        domain: String = Value(""), web "Domain";
        /// address and port (`HTTP_PLATFORM_PORT`, set by IIS, makes it
        /// `127.0.0.1:{port}`)
        listen: String = Value("127.0.0.1:8080"), flag "--listen";
        /// stored files; `data/.tmp` holds files being received
        data_dir: PathBuf = Value("data"), flag "--data-dir";
        /// several volumes instead of `data_dir`, e.g. `["D:\\img1", "E:\\img2"]`
        data_dirs: Vec<PathBuf> = Described("`data_dir` alone");
        /// `upload-errors.jsonl`, its lock files, daily logs
        /// `multiserver-upload.log.YYYY-MM-DD`
        log_dir: PathBuf = Value("log"), web "Log", flag "--log-dir";
        /// the server list, original format
        servers: PathBuf = Value("servers.xml.config"), web "Servers";
        /// fsync each file, its folder and the journal before answering
        fsync: bool = Value("true");
        /// largest file, in bytes (2 GiB)
        max_file_bytes: u64 = Value("2147483648");
        /// largest request, checked against `Content-Length` first
        max_request_bytes: u64 = Described("`max_file_bytes` + 1 MiB");
        /// files in one upload request
        max_files_per_request: usize = Value("32");
        /// by content, never by name: `jpg`, `png`, `gif`, `webp`, `bmp`
        allowed_types: Vec<String> = Value("jpg,png,gif,webp,bmp");
        /// direct peers whose `X-Forwarded-*` headers are believed
        trusted_proxies: Vec<String> = Value("127.0.0.1,::1");
        /// a body that stalls this long is dropped
        client_idle_timeout_secs: u64 = Value("60");
        /// a body that averages less over a `client_idle_timeout_secs` window is
        /// dropped (0: no minimum)
        client_min_bytes_per_sec: u64 = Value("1024");
        /// request headers must arrive within this
        header_timeout_secs: u64 = Value("30");
        /// in-flight requests may finish within this after Ctrl-C / Ctrl-Break /
        /// SIGTERM
        shutdown_grace_secs: u64 = Value("30");
        /// uploads and replicas received at once; more are answered 503 with
        /// `Retry-After`
        max_uploads_in_flight: usize = Value("256");
        /// open client connections at once; lowered at start to fit the open-file
        /// limit
        max_connections: usize = Value("4096");
        /// per client address; addresses in `trusted_proxies` are exempt
        max_connections_per_client: usize = Value("128");
        /// an answer the client does not read for this long is dropped
        send_timeout_secs: u64 = Value("60");
    }
    tables {
        auth: super::auth::AuthFile,
        replication: ReplicationFile,
        repair: RepairFile,
        images: ImagesFile,
        resumable: ResumableFile,
        downloads: DownloadsFile,
        storage: super::storage::StorageFile,
        cors: super::cors::CorsFile,
    }
}

settings_table! {
    /// `[replication]`: copies to peers.
    pub(crate) struct ReplicationFile in "replication." (env: true) {
        /// a peer that does not accept the connection this soon has failed
        connect_timeout_secs: u64 = Value("5");
        /// a peer that takes no bytes and gives no answer this long has failed
        idle_timeout_secs: u64 = Value("30");
        /// copies in flight at once per peer for uploads, and as many again for
        /// replays
        concurrency: usize = Value("16");
        /// background replay period, and a failing peer's first backoff (its
        /// breaker); doubles per failure, per peer
        retry_interval_secs: u64 = Value("10");
        /// cap of that backoff
        max_retry_interval_secs: u64 = Value("600");
    }
}

settings_table! {
    /// `[repair]`: anti-entropy with peers, scrubbing, the trash.
    pub(crate) struct RepairFile in "repair." (env: true) {
        /// time between two repair passes over every peer
        interval_secs: u64 = Value("300");
        /// files younger than this are left to replication (0: none)
        settle_secs: u64 = Value("120");
        /// time between two scrub passes (every file rehashed against the index)
        scrub_interval_secs: u64 = Value("604800");
        /// repair's fetch rate (0: unlimited)
        max_bytes_per_sec: u64 = Value("0");
        /// files fetched at once by repair
        concurrency: usize = Value("8");
        /// a deleted file waits this long in the trash before it is purged;
        /// fractions allowed (`0.5` is 12 hours; 0: no wait)
        trash_days: f64 = Value("7");
        /// a tombstone every server has is dropped no sooner than this after it
        /// was written (0: as soon as every server has it)
        tombstone_min_age_secs: u64 = Value("86400");
    }
}

settings_table! {
    /// `[images]`: limits on pictures, metadata privacy, sized variants.
    pub(crate) struct ImagesFile in "images." (env: true) {
        /// more pixels (animations: all frames) is refused with 413
        max_pixels: u64 = Value("50000000");
        /// a wider or taller picture is refused with 413
        max_side: u32 = Value("16384");
        /// remove location and personal EXIF/XMP/IPTC before storing
        strip_metadata: bool = Value("true");
        /// `{link}-t.jpg` fits in this box
        thumbnail_size: u32 = Value("320");
        /// `{link}-w{N}.jpg` / `.png` exist for these widths only
        widths: Vec<u32> = Value("160,320,640,1280");
        /// make the thumbnail right after each upload (same bounded queue)
        eager_thumbnail: bool = Value("false");
        /// size cap of `data/.variants/`, oldest removed first (10 GiB)
        variants_max_bytes: u64 = Value("10737418240");
        /// variants generated at once
        workers: usize = Value("2");
        /// variant requests waiting; more get 503 + `Retry-After`
        queue: usize = Value("64");
    }
}

settings_table! {
    /// `[resumable]`: tus uploads (SPEC §13).
    pub(crate) struct ResumableFile in "resumable." (env: true) {
        /// a partial tus upload untouched this long is removed (and a finished
        /// one's answer forgotten)
        expire_secs: u64 = Value("86400");
        /// staged bytes of all partial uploads, counting declared lengths; over it
        /// a new upload gets 507
        max_bytes: u64 = Described("8 × `max_file_bytes` (16 GiB)");
        /// the same for one client address: one file resuming while the next
        /// starts
        max_bytes_per_client: u64 = Described("2 × `max_file_bytes` (4 GiB)");
        /// the upload page sends larger files through tus (8 MiB)
        page_threshold_bytes: u64 = Value("8388608");
    }
}

settings_table! {
    /// `[downloads]`: counts of served GETs (`action=stats`).
    pub(crate) struct DownloadsFile in "downloads." (env: true) {
        /// count served GETs of stored files (`stats` answers the counts kept
        /// either way)
        count: bool = Value("true");
        /// counts go to the index this often: a kill loses at most this long's
        flush_secs: u64 = Value("10");
        /// this many files counted but not yet flushed start a flush early
        max_pending: usize = Value("10000");
    }
}

impl FileConfig {
    /// Sets the declared `key` from `text` (an environment variable, a
    /// web.config value); `source` is what an error names.
    pub(crate) fn set(&mut self, key: &str, text: &str, source: &str) -> Result<(), ConfigError> {
        match self.set_text(key, text, source)? {
            true => Ok(()),
            false => Err(ConfigError::new(source, key, "is not a setting")),
        }
    }

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
