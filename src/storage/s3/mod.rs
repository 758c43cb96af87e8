//! The S3 backend: stored files as objects in a bucket of any S3-compatible
//! store (Garage, MinIO, Ceph RGW, SeaweedFS, AWS), SPEC §11.
//!
//! The object key of a stored file is `key_prefix` + `{yyyy}/{M}/{d}/{name}`,
//! so a link names the same file whatever backend holds it. The client is
//! the `object_store` crate (its reqwest + rustls + ring stack is the one the
//! Windows 7 build already carries); this module owns what it does not: the
//! start-up check, which failures mean "the store is unavailable" (the
//! caller answers 503), and uploads with bounded memory (`upload.rs`).
//!
//! It knows nothing of HTTP requests from clients: serving objects is
//! `http/objects.rs`, choosing this backend is the storage interface's job.

mod backend;
mod config;
mod credentials;
mod upload;

pub(crate) use backend::S3Backend;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::{BoxStream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, BackoffConfig, ClientOptions, GetOptions, GetRange, GetResult, ObjectStore,
    ObjectStoreExt, RetryConfig,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

pub use config::{MAX_PART_SIZE, MIN_PART_SIZE, S3Settings, normalize_prefix};
use credentials::Credentials;

use super::StoredPath;

/// User metadata key under which an object carries its SHA-256 (lowercase
/// hex), as `x-amz-meta-sha256`.
pub const SHA256_METADATA: &str = "sha256";

/// Key of the object that is read (and never exists) to check that the
/// store answers: a `.` name is never a stored path.
const PROBE_KEY: &str = ".multiserver-upload-probe";

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The store did not answer in time, could not be reached, or answered
    /// with a server error or "slow down": the caller answers 503.
    #[error("the object store is unavailable: {0}")]
    Unavailable(#[source] object_store::Error),
    /// The store answered and refused (bad key, wrong region, no such
    /// bucket, no permission, …): a configuration or programming problem.
    #[error("the object store refused: {0}")]
    Store(#[source] object_store::Error),
    #[error("no credentials for the object store: {problem}")]
    Credentials { problem: String },
    #[error("[storage.s3]: {problem}")]
    Settings { problem: String },
    /// The local file to upload or download into.
    #[error("local file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the file to upload has {actual} bytes, not the {expected} expected")]
    SizeChanged { expected: u64, actual: u64 },
}

impl S3Error {
    /// True when the store could not take the request now; the same request
    /// may succeed later. Answer 503, keep nothing.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    fn from_store(e: object_store::Error) -> Self {
        if is_unavailable(&e) {
            Self::Unavailable(e)
        } else {
            Self::Store(e)
        }
    }
}

/// Whether `e` says the store was not reached, timed out, or answered 5xx,
/// 408 or 429. `object_store` keeps the status of a failed request in a
/// private type, so the status is read from its message ("…non-2xx status
/// code: 503 …") after the transport errors, which it does expose.
fn is_unavailable(e: &object_store::Error) -> bool {
    let object_store::Error::Generic { source, .. } = e else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(err) = cause {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return !matches!(http.kind(), HttpErrorKind::Decode | HttpErrorKind::Unknown)
                || is_transport(http);
        }
        cause = err.source();
    }
    status_in(&source.to_string()).is_some_and(|s| s >= 500 || s == 408 || s == 429)
}

/// An `Unknown` HTTP error that is a refused or reset connection.
fn is_transport(http: &HttpError) -> bool {
    let mut cause = std::error::Error::source(http);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::NotConnected
            );
        }
        cause = err.source();
    }
    false
}

/// The HTTP status in an `object_store` request error's message.
fn status_in(message: &str) -> Option<u16> {
    const MARK: &str = "status code: ";
    let at = message.find(MARK)? + MARK.len();
    message.get(at..at + 3)?.parse().ok()
}

/// What the store says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// The store's entity tag, as it sent it (with its quotes).
    pub e_tag: Option<String>,
    /// From the object's `sha256` metadata, when it was stored with one.
    pub sha256: Option<String>,
    pub last_modified: DateTime<Utc>,
}

/// An object being read: what it is, which bytes come, and the bytes.
pub struct Object {
    pub info: ObjectInfo,
    /// The bytes `range` of the object.
    pub range: std::ops::Range<u64>,
    pub body: BoxStream<'static, Result<Bytes, S3Error>>,
}

/// A connected bucket. Cloning is cheap: everything is shared.
#[derive(Debug, Clone)]
pub struct S3Store(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Requests that must end within `request_timeout` (PUTs, parts, HEADs).
    store: AmazonS3,
    /// GETs whose body streams as long as it keeps coming (a 1 GiB object to
    /// a slow client); each chunk must come within `request_timeout`.
    reader: AmazonS3,
    key_prefix: String,
    part_size: usize,
    parts_in_flight: usize,
    /// Bytes of part buffers all uploads may hold at once.
    budget: Arc<Semaphore>,
    idle_timeout: Duration,
    public_base_url: Option<String>,
}

impl S3Store {
    /// Builds the client and checks that the store answers with these
    /// settings, failing with the store's own words (wrong region, unknown
    /// key, wrong signature, no such bucket, a host that does not resolve
    /// because path style is off).
    pub async fn connect(settings: &S3Settings) -> Result<Self, S3Error> {
        let store = Self::build(settings)?;
        store.check().await?;
        Ok(store)
    }

    fn build(settings: &S3Settings) -> Result<Self, S3Error> {
        let invalid = |problem: String| S3Error::Settings { problem };
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&settings.part_size) {
            return Err(invalid(format!(
                "part_size_bytes must be between {MIN_PART_SIZE} and {MAX_PART_SIZE}"
            )));
        }
        if settings.buffer_budget < settings.part_size as u64 || settings.parts_in_flight == 0 {
            return Err(invalid(
                "buffer_budget_bytes must hold at least one part, and parts_in_flight be at least 1"
                    .to_owned(),
            ));
        }
        let key_prefix = normalize_prefix(&settings.key_prefix);
        ObjectPath::parse(format!("{key_prefix}{PROBE_KEY}"))
            .map_err(|e| invalid(format!("key_prefix `{}`: {e}", settings.key_prefix)))?;
        let credentials = Credentials::load(settings.credentials_file.as_deref())?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_access_key_id(credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: settings.retries,
                // A store that is down must turn into a 503 within seconds,
                // not after the library's default of three minutes.
                retry_timeout: settings.request_timeout,
            });
        if let Some(token) = credentials.session_token {
            builder = builder.with_token(token);
        }
        let mut allow_http = false;
        if let Some(endpoint) = &settings.endpoint {
            let endpoint = bucket_endpoint(endpoint, &settings.bucket, settings.path_style)
                .map_err(|problem| invalid(format!("endpoint `{endpoint}`: {problem}")))?;
            allow_http = endpoint.starts_with("http://");
            builder = builder.with_endpoint(endpoint);
        }
        // Client options replace the builder's (its `allow_http` too), so
        // every client setting is made here.
        let options = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_connect_timeout(settings.connect_timeout);
        let store = builder
            .clone()
            .with_client_options(options.clone().with_timeout(settings.request_timeout))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let reader = builder
            .with_client_options(options.with_timeout_disabled())
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        // The semaphore counts bytes; it cannot count more than this.
        let budget = usize::try_from(settings.buffer_budget)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Ok(Self(Arc::new(Inner {
            store,
            reader,
            key_prefix,
            part_size: settings.part_size,
            parts_in_flight: settings.parts_in_flight,
            budget: Arc::new(Semaphore::new(budget)),
            idle_timeout: settings.request_timeout,
            public_base_url: settings
                .public_base_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
        })))
    }

    /// A GET (not a HEAD: its answer has no body to explain itself) of a key
    /// that does not exist. "No such key" means bucket, credentials, region
    /// and addressing are right; anything else is the store's complaint.
    async fn check(&self) -> Result<(), S3Error> {
        let probe = self.probe_path();
        match self.0.store.get_opts(&probe, GetOptions::default()).await {
            Ok(_) => Ok(()),
            Err(e @ object_store::Error::NotFound { .. }) => {
                if e.to_string().contains("NoSuchBucket") {
                    Err(S3Error::Store(e))
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(S3Error::from_store(e)),
        }
    }

    fn probe_path(&self) -> ObjectPath {
        ObjectPath::from(format!("{}{PROBE_KEY}", self.0.key_prefix))
    }

    /// The object key of a stored file.
    pub fn key(&self, path: &StoredPath) -> String {
        format!("{}{path}", self.0.key_prefix)
    }

    fn location(&self, path: &StoredPath) -> ObjectPath {
        ObjectPath::from(self.key(path))
    }

    /// Where a GET of `path` should be redirected, when a public base URL
    /// is configured.
    pub fn public_url(&self, path: &StoredPath) -> Option<String> {
        self.0
            .public_base_url
            .as_ref()
            .map(|base| format!("{base}/{path}"))
    }

    /// Size, ETag, SHA-256 and date of the object, or `None` if absent.
    pub async fn head(&self, path: &StoredPath) -> Result<Option<ObjectInfo>, S3Error> {
        // A GET with `head` set is a HEAD that also returns user metadata
        // (the plain `head` of object_store drops it).
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.0.store.get_opts(&self.location(path), options).await {
            Ok(result) => Ok(Some(info(&result))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(S3Error::from_store(e)),
        }
    }

    /// Starts reading `range` of the object (all of it with `None`), or
    /// `None` if absent. The range must lie within the object.
    pub async fn get(
        &self,
        path: &StoredPath,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<Object>, S3Error> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = match self.0.reader.get_opts(&self.location(path), options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(S3Error::from_store(e)),
        };
        let info = info(&result);
        let range = result.range.clone();
        let idle = self.0.idle_timeout;
        // After an error the stream ends: the state becomes `None`.
        let body =
            futures_util::stream::unfold(Some(result.into_stream()), move |state| async move {
                let mut bytes = state?;
                match tokio::time::timeout(idle, bytes.next()).await {
                    Ok(None) => None,
                    Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(bytes))),
                    Ok(Some(Err(e))) => Some((Err(S3Error::from_store(e)), None)),
                    Err(_) => Some((Err(stalled(idle)), None)),
                }
            })
            .boxed();
        Ok(Some(Object { info, range, body }))
    }

    /// Deletes the object; an absent one is not an error.
    pub async fn delete(&self, path: &StoredPath) -> Result<(), S3Error> {
        match self.0.store.delete(&self.location(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(S3Error::from_store(e)),
        }
    }

    /// Copies the object into the file `to` (for variants); `false` if absent.
    pub async fn download(&self, path: &StoredPath, to: &Path) -> Result<bool, S3Error> {
        let Some(mut object) = self.get(path, None).await? else {
            return Ok(false);
        };
        let mut file = tokio::fs::File::create(to).await?;
        while let Some(chunk) = object.body.next().await {
            file.write_all(&chunk?).await?;
        }
        file.flush().await?;
        Ok(true)
    }

    /// A cheap request that says whether the store answers (for `/healthz`).
    pub async fn probe(&self) -> Result<(), S3Error> {
        match self.0.store.head(&self.probe_path()).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(S3Error::from_store(e)),
        }
    }
}

/// The endpoint the client is given. With virtual-hosted style the client
/// expects the bucket already in the host, while the setting names the
/// store (`https://s3.example.com`), so the bucket is put in front of it
/// here (`https://images.s3.example.com`).
fn bucket_endpoint(endpoint: &str, bucket: &str, path_style: bool) -> Result<String, String> {
    if path_style {
        return Ok(endpoint.to_owned());
    }
    let mut url = reqwest::Url::parse(endpoint).map_err(|e| e.to_string())?;
    let host = url.host_str().ok_or("it has no host")?.to_owned();
    url.set_host(Some(&format!("{bucket}.{host}")))
        .map_err(|e| e.to_string())?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A body that sent nothing for `idle`: the store is as good as down.
fn stalled(idle: Duration) -> S3Error {
    S3Error::Unavailable(object_store::Error::Generic {
        store: "S3",
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no bytes of the object for {idle:?}"),
        )),
    })
}

fn info(result: &GetResult) -> ObjectInfo {
    let sha256 = result
        .attributes
        .get(&Attribute::Metadata(SHA256_METADATA.into()))
        .map(|v| v.as_ref().to_owned());
    ObjectInfo {
        size: result.meta.size,
        e_tag: result.meta.e_tag.clone(),
        sha256,
        last_modified: result.meta.last_modified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "2014/4/15/5310bcaf-0f8a-45c5-9a61-9bf45b5e09c1.jpg";

    /// Settings for a store on `endpoint` with keys from a file in `dir`.
    fn settings(dir: &Path, endpoint: &str) -> S3Settings {
        let credentials = dir.join("credentials");
        std::fs::write(
            &credentials,
            "[default]\naws_access_key_id = GK1\naws_secret_access_key = secret\n",
        )
        .expect("write");
        S3Settings {
            endpoint: Some(endpoint.to_owned()),
            credentials_file: Some(credentials),
            retries: 1,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            ..S3Settings::new("images")
        }
    }

    #[test]
    fn keys_are_prefix_and_stored_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = StoredPath::parse(PATH).expect("valid");
        let mut s = settings(dir.path(), "http://127.0.0.1:1");
        let store = S3Store::build(&s).expect("builds");
        assert_eq!(store.key(&path), PATH);
        assert_eq!(store.public_url(&path), None);
        s.key_prefix = "/site/images".into();
        s.public_base_url = Some("https://cdn.example.com/i/".into());
        let store = S3Store::build(&s).expect("builds");
        assert_eq!(store.key(&path), format!("site/images/{PATH}"));
        assert_eq!(
            store.public_url(&path),
            Some(format!("https://cdn.example.com/i/{PATH}"))
        );
    }

    #[test]
    fn virtual_hosted_style_puts_the_bucket_in_the_host() {
        let e = "https://s3.example.com:8443";
        assert_eq!(bucket_endpoint(e, "images", true).as_deref(), Ok(e));
        assert_eq!(
            bucket_endpoint(e, "images", false).as_deref(),
            Ok("https://images.s3.example.com:8443")
        );
    }

    #[test]
    fn status_is_read_from_the_message() {
        let message = "Error performing GET http://h/b/k in 1ms - Server returned \
                       non-2xx status code: 503 Service Unavailable: <Error/>";
        assert_eq!(status_in(message), Some(503));
        assert_eq!(status_in("connection refused"), None);
    }

    #[tokio::test]
    async fn a_store_that_is_not_there_is_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A port nobody listens on: the connection is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let s = settings(dir.path(), &format!("http://127.0.0.1:{port}"));
        let started = std::time::Instant::now();
        let e = S3Store::connect(&s).await.expect_err("nothing listens");
        assert!(e.is_unavailable(), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn parts_must_fit_the_store_and_the_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = settings(dir.path(), "http://127.0.0.1:1");
        s.part_size = 1 << 20;
        assert!(matches!(S3Store::build(&s), Err(S3Error::Settings { .. })));
        s.part_size = 16 << 20;
        s.buffer_budget = 8 << 20;
        assert!(matches!(S3Store::build(&s), Err(S3Error::Settings { .. })));
    }
}
