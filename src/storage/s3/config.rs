//! The settings of the S3 backend, as the config loader fills them.
//!
//! Plain data with the defaults of SPEC §11. Credentials are deliberately not
//! here: they are read by [`super::credentials`] when the store connects, so
//! no `Debug` print of the configuration can ever show them.

use std::path::PathBuf;
use std::time::Duration;

/// Smallest part S3 stores accept for every part but the last.
pub const MIN_PART_SIZE: usize = 5 << 20;
/// Largest part this service uses. S3 allows 5 GiB, but a part is one
/// buffer in memory, and the buffer budget counts bytes in `u32` steps.
pub const MAX_PART_SIZE: usize = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// e.g. `http://127.0.0.1:3900`; `None`: AWS, from `region`.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// `http://host/bucket/key` rather than `http://bucket.host/key`; what
    /// Garage, MinIO and most self-hosted stores expect. Off, the bucket is
    /// put in front of `endpoint`'s host.
    pub path_style: bool,
    /// Put before every object key; empty or ending with `/`.
    pub key_prefix: String,
    /// Files up to this size go in one PUT; larger ones in parts of it.
    pub part_size: usize,
    /// Parts of one upload sent at once.
    pub parts_in_flight: usize,
    /// Bytes of part buffers of all uploads together.
    pub buffer_budget: u64,
    pub connect_timeout: Duration,
    /// One request (a part, a small PUT, a HEAD) must finish within this;
    /// a download must receive something within it.
    pub request_timeout: Duration,
    /// Retries of a request that failed on the way or with a 5xx.
    pub retries: usize,
    /// With it, GETs of stored files redirect to `{base}/{yyyy}/{M}/{d}/{name}`
    /// (a CDN, or the store's website endpoint) instead of proxying.
    pub public_base_url: Option<String>,
    /// An AWS-style credentials file (`[default]`, `aws_access_key_id`,
    /// `aws_secret_access_key`); without it the environment is used.
    pub credentials_file: Option<PathBuf>,
}

impl S3Settings {
    /// The settings for `bucket` with every default of SPEC §11.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            endpoint: None,
            bucket: bucket.into(),
            region: "us-east-1".to_owned(),
            path_style: true,
            key_prefix: String::new(),
            part_size: 16 << 20,
            parts_in_flight: 4,
            buffer_budget: 256 << 20,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            retries: 3,
            public_base_url: None,
            credentials_file: None,
        }
    }
}

/// `images` → `images/`, `/a//b/` → `a/b/`, `` → ``: a prefix joins a
/// stored path with exactly one `/`, and object keys never hold empty segments.
pub fn normalize_prefix(prefix: &str) -> String {
    let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        String::new()
    } else {
        format!("{}/", segments.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_normalized() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/"), "");
        assert_eq!(normalize_prefix("images"), "images/");
        assert_eq!(normalize_prefix("images/"), "images/");
        assert_eq!(normalize_prefix("/site//images/"), "site/images/");
    }
}
