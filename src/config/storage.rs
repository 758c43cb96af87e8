//! The `[storage]` table of app.toml: which backend holds stored files and,
//! for `backend = "s3"`, the `[storage.s3]` settings (SPEC §11).
//!
//! Only app.toml carries these (no environment or flag layer): a bucket is
//! a deployment decision, not a per-run one. Credentials are not read here;
//! the store reads them when it connects, so they never sit in `Config`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;
use super::declare::settings_table;
use crate::storage::s3::{MAX_PART_SIZE, MIN_PART_SIZE, S3Settings, normalize_prefix};

settings_table! {
    /// `[storage]` as written; app.toml only.
    pub(crate) struct StorageFile in "storage." (env: false) {
        /// `disk` (`data_dir` or `data_dirs`) or `s3` (a bucket; needs
        /// `[storage.s3]`)
        backend: String = Value("disk");
        /// with `data_dirs`: a volume with less free space takes no new upload
        /// (256 MiB)
        min_free_bytes: u64 = Value("268435456");
    }
    optional {
        s3: S3File,
    }
}

impl StorageFile {
    /// The `[storage.s3]` settings, if any, and whether they are the
    /// backend. They are read whatever the backend: `migrate` copies into
    /// the bucket while the site still runs on disks.
    pub(crate) fn s3_settings(
        self,
        file: &Path,
        folder: &Path,
    ) -> Result<(Option<S3Settings>, bool), ConfigError> {
        let err = |problem: &str| ConfigError::new(file, "storage.backend", problem);
        let s3 = self
            .s3
            .map(|s3| S3File::defaults()?.overlay(s3).into_settings(file, folder))
            .transpose()?;
        match (self.backend.as_deref().map(str::trim), &s3) {
            (None | Some("disk"), _) => Ok((s3, false)),
            (Some("s3"), Some(_)) => Ok((s3, true)),
            (Some("s3"), None) => Err(err("is `s3` but there is no [storage.s3] table")),
            (Some(_), _) => Err(err("must be `disk` or `s3`")),
        }
    }
}

settings_table! {
    /// `[storage.s3]` as written; `None` takes the default.
    pub(crate) struct S3File in "storage.s3." (env: false) {
        /// e.g. `http://127.0.0.1:3900` (Garage), `http://minio:9000`; empty: AWS
        endpoint: String = Value("");
        /// the bucket that holds stored files
        bucket: String = Required;
        /// Garage's default is `garage`
        region: String = Value("us-east-1");
        /// `false`: virtual-hosted style (`bucket.host`)
        path_style: bool = Value("true");
        /// put before `{yyyy}/{M}/{d}/{uuid}.{ext}` in the object key
        key_prefix: String = Value("");
        /// a file up to this is one PUT; larger ones a multipart upload of such
        /// parts (5 MiB – 1 GiB; default 16 MiB)
        part_size_bytes: u64 = Value("16777216");
        /// parts of one upload sent at once
        parts_in_flight: usize = Value("4");
        /// part buffers of all uploads together (256 MiB)
        buffer_budget_bytes: u64 = Value("268435456");
        /// a store that does not accept the connection this soon has failed
        connect_timeout_secs: u64 = Value("5");
        /// a request to the store that takes longer has failed
        request_timeout_secs: u64 = Value("60");
        /// for requests the store failed transiently (0: none)
        retries: usize = Value("3");
        /// GETs of stored files redirect (302) there instead of being proxied
        public_base_url: String = Value("");
        /// an AWS-style credentials file (`[default]` profile); else
        /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
        credentials_file: PathBuf = Described("none");
    }
}

impl S3File {
    /// Checks every key against `file` (for error messages) and resolves a
    /// relative `credentials_file` against `folder`, the file's folder.
    pub(crate) fn into_settings(
        self,
        file: &Path,
        folder: &Path,
    ) -> Result<S3Settings, ConfigError> {
        let err = |key: &str, problem: String| {
            ConfigError::new(file, format!("storage.s3.{key}"), problem)
        };
        let bucket = self
            .bucket
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| err("bucket", "is not set".into()))?;
        let mut s = S3Settings::new(bucket.trim());
        if let Some(endpoint) = self.endpoint.filter(|e| !e.trim().is_empty()) {
            s.endpoint = Some(http_url(&endpoint).map_err(|p| err("endpoint", p))?);
        }
        if let Some(region) = self.region.filter(|r| !r.trim().is_empty()) {
            s.region = region.trim().to_owned();
        }
        s.path_style = self.path_style.unwrap_or(s.path_style);
        s.key_prefix = normalize_prefix(self.key_prefix.as_deref().unwrap_or(""));
        if s.key_prefix.contains(['\\', '?', '#']) || s.key_prefix.chars().any(char::is_control) {
            return Err(err(
                "key_prefix",
                "may hold letters, digits, `-`, `_`, `.` and `/` only".into(),
            ));
        }
        if let Some(part) = self.part_size_bytes {
            s.part_size = usize::try_from(part)
                .ok()
                .filter(|p| (MIN_PART_SIZE..=MAX_PART_SIZE).contains(p))
                .ok_or_else(|| {
                    err(
                        "part_size_bytes",
                        format!("must be between {MIN_PART_SIZE} (the store's smallest part) and {MAX_PART_SIZE}"),
                    )
                })?;
        }
        match self.parts_in_flight {
            Some(0) => return Err(err("parts_in_flight", "must be greater than 0".into())),
            Some(n) => s.parts_in_flight = n,
            None => {}
        }
        s.buffer_budget = self.buffer_budget_bytes.unwrap_or(s.buffer_budget);
        if s.buffer_budget < s.part_size as u64 {
            return Err(err(
                "buffer_budget_bytes",
                format!("must hold at least one part ({} bytes)", s.part_size),
            ));
        }
        let secs = |key: &str, v: Option<u64>, default: Duration| match v {
            Some(0) => Err(err(key, "must be greater than 0".into())),
            Some(n) => Ok(Duration::from_secs(n)),
            None => Ok(default),
        };
        s.connect_timeout = secs(
            "connect_timeout_secs",
            self.connect_timeout_secs,
            s.connect_timeout,
        )?;
        s.request_timeout = secs(
            "request_timeout_secs",
            self.request_timeout_secs,
            s.request_timeout,
        )?;
        s.retries = self.retries.unwrap_or(s.retries);
        if let Some(base) = self.public_base_url.filter(|u| !u.trim().is_empty()) {
            s.public_base_url = Some(
                http_url(&base)
                    .map_err(|p| err("public_base_url", p))?
                    .trim_end_matches('/')
                    .to_owned(),
            );
        }
        s.credentials_file = self
            .credentials_file
            .map(|p| if p.is_relative() { folder.join(p) } else { p });
        Ok(s)
    }
}

/// `url` trimmed, if it is an http(s) URL.
fn http_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}` must start with http:// or https://"));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<S3Settings, ConfigError> {
        let file: S3File = toml::from_str(text).expect("toml");
        file.into_settings(Path::new("app.toml"), Path::new("/site"))
    }

    #[test]
    fn defaults_need_only_a_bucket() {
        let s = parse("bucket = \"images\"").expect("valid");
        assert_eq!(s, S3Settings::new("images"));
        let e = parse("region = \"garage\"").expect_err("no bucket");
        assert!(e.to_string().contains("storage.s3.bucket"), "{e}");
    }

    #[test]
    fn every_key_is_read() {
        let s = parse(
            r#"
            endpoint = "http://127.0.0.1:3900"
            bucket = "b"
            region = "garage"
            path_style = false
            key_prefix = "site/images"
            part_size_bytes = 8388608
            parts_in_flight = 2
            buffer_budget_bytes = 67108864
            connect_timeout_secs = 2
            request_timeout_secs = 30
            retries = 1
            public_base_url = "https://cdn.example.com/img/"
            credentials_file = "s3.ini"
            "#,
        )
        .expect("valid");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(s.region, "garage");
        assert!(!s.path_style);
        assert_eq!(s.key_prefix, "site/images/");
        assert_eq!(
            (s.part_size, s.parts_in_flight, s.buffer_budget),
            (8 << 20, 2, 64 << 20)
        );
        assert_eq!(s.connect_timeout, Duration::from_secs(2));
        assert_eq!(s.request_timeout, Duration::from_secs(30));
        assert_eq!(s.retries, 1);
        assert_eq!(
            s.public_base_url.as_deref(),
            Some("https://cdn.example.com/img")
        );
        assert_eq!(s.credentials_file, Some(Path::new("/site").join("s3.ini")));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("bucket = \"b\"\npart_size_bytes = 1024", "part_size_bytes"),
            (
                "bucket = \"b\"\nbuffer_budget_bytes = 1024",
                "buffer_budget_bytes",
            ),
            ("bucket = \"b\"\nparts_in_flight = 0", "parts_in_flight"),
            ("bucket = \"b\"\nendpoint = \"127.0.0.1:3900\"", "endpoint"),
            (
                "bucket = \"b\"\nrequest_timeout_secs = 0",
                "request_timeout_secs",
            ),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.to_string().contains(&format!("storage.s3.{key}")), "{e}");
        }
    }
}
