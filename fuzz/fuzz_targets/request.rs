//! The whole HTTP edge through the real router: query parsing (names in any
//! case, first occurrence wins), the key (header or query), action dispatch,
//! multipart handling and filename extraction, type sniffing, limits, `sync`
//! path and hash checks, stored-file reads. One server with no peers, so no
//! network; a small `max_file_bytes`, `max_request_bytes` and
//! `max_files_per_request` so the limits are reached.
//!
//! Invariants, for every request:
//! - never a 5xx other than 507; a `do.ashx` answer is the original envelope
//!   (`<resp><success>0|1</success>` / `{"resp":{"success":0|1`) in the
//!   format asked for, `success` 1 exactly when the status is 200;
//! - the key never appears in an answer (unless the fuzzed text carries it);
//! - 403 without the key, 400 for an unknown action, 405 for a wrong method;
//! - nothing but `.tmp/` (empty once answered) and stored-pattern files is
//!   ever in `data_dir`, and exactly the files the answer lists are there,
//!   each with the size and SHA-256 it lists and the bytes of one of the
//!   request's parts;
//! - an upload of only valid image parts (and ignorable fields) is a 200 that
//!   lists each file part's bytes in order;
//! - `sync` answers 200 only for a stored-file path and a body that hashes to
//!   `X-Content-SHA256`, and always for a valid replica;
//! - a stored file reads back with its bytes and type.

#![no_main]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use multiserver_upload::cli::Overrides;
use multiserver_upload::config::Config;
use multiserver_upload::http::router;
use multiserver_upload_fuzz::{PathInput, is_stored_path};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tower::ServiceExt;

const KEY: &str = "fuzz-key-0b7e5c1d9a";
const BOUNDARY: &str = "----fuzzBoundary7MA4YWxkTrZu0gW";
const MAX_FILE: usize = 4096;
const MAX_REQUEST: usize = 16384;
const MAX_FILES: usize = 4;
/// `allowed_types` of the fuzzed server: every type but bmp.
const ALLOWED: [ImageKind; 4] = [
    ImageKind::Jpg,
    ImageKind::Png,
    ImageKind::Gif,
    ImageKind::Webp,
];

struct World {
    rt: tokio::runtime::Runtime,
    router: Router,
    data_dir: PathBuf,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let root = tempfile::tempdir().expect("tempdir").keep();
        std::fs::write(
            root.join("servers.xml.config"),
            format!(
                "<Servers><Server Name=\"fuzz\" Uri=\"http://127.0.0.1:9/do.ashx\" SecurityKey=\"{KEY}\"/></Servers>"
            ),
        )
        .expect("servers.xml.config");
        std::fs::write(
            root.join("app.toml"),
            format!(
                "server_name = \"fuzz\"\nsecurity_key = \"{KEY}\"\ndata_dir = \"data\"\n\
                 log_dir = \"log\"\nservers = \"servers.xml.config\"\nfsync = false\n\
                 max_file_bytes = {MAX_FILE}\nmax_request_bytes = {MAX_REQUEST}\n\
                 max_files_per_request = {MAX_FILES}\n\
                 allowed_types = [\"jpg\", \"png\", \"gif\", \"webp\"]\n"
            ),
        )
        .expect("app.toml");
        let config = Arc::new(
            Config::load(&root.join("app.toml"), &Overrides::default()).expect("config"),
        );
        assert!(config.peers.is_empty());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let data_dir = config.data_dir.clone();
        let router = router(Arc::new(
            rt.block_on(multiserver_upload::open(config)).expect("state"),
        ));
        World {
            rt,
            router,
            data_dir,
        }
    })
}

#[derive(Debug, Arbitrary)]
struct Input {
    method: Verb,
    target: Target,
    key: Key,
    action: Action,
    format: FormatParam,
    sync_path: Option<SyncPath>,
    extra: Vec<QueryPiece>,
    order: u8,
    host: Option<String>,
    peer: Option<Peer>,
    content_type: ContentType,
    content_length: ContentLength,
    hash: Hash,
    body: BodySpec,
    fetch_back: bool,
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Verb {
    Get,
    Post,
    Put,
    Head,
    Delete,
    Patch,
}

#[derive(Debug, Arbitrary)]
enum Target {
    DoAshx,
    Stored(PathInput),
    Page(bool),
    Asset(String),
    Health,
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Key {
    None,
    Header(KeyValue),
    Query(KeyValue, u16, u16),
    Both(KeyValue, KeyValue, u16),
}

#[derive(Debug, Arbitrary)]
enum KeyValue {
    Right,
    Wrong(String),
    Truncated(u8),
    Longer(char),
}

impl KeyValue {
    fn render(&self) -> String {
        match self {
            KeyValue::Right => KEY.to_owned(),
            KeyValue::Wrong(s) => s.clone(),
            KeyValue::Truncated(n) => KEY[..usize::from(*n) % KEY.len()].to_owned(),
            KeyValue::Longer(c) => format!("{KEY}{c}"),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Action {
    None,
    Upload(u16),
    UploadErrors(u16),
    Sync(u16),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum FormatParam {
    None,
    Xml,
    Json(u16),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum SyncPath {
    Built(PathInput),
    Raw(String),
    /// A valid path whose extension is the plain body's type.
    OfBody {
        year: u16,
        month: u8,
        day: u8,
        id: [u8; 16],
    },
}

#[derive(Debug, Arbitrary)]
enum QueryPiece {
    Pair(String, String),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Peer {
    Trusted {
        forwarded_for: Option<String>,
        proto: Option<String>,
        host: Option<String>,
    },
    Other([u8; 4]),
}

#[derive(Debug, Arbitrary)]
enum ContentType {
    Multipart,
    MultipartWith(String),
    Raw(String),
    None,
}

#[derive(Debug, Arbitrary)]
enum ContentLength {
    Exact,
    None,
    Value(u64),
}

#[derive(Debug, Arbitrary)]
enum Hash {
    None,
    OfBody,
    OfBodyUpper,
    Other([u8; 32]),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum BodySpec {
    Empty,
    Multipart(Multipart),
    Plain(Content),
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Multipart {
    preamble: Option<Vec<u8>>,
    parts: Vec<Part>,
    end: End,
}

#[derive(Debug, Arbitrary)]
struct Part {
    disposition: Disposition,
    content_type: Option<String>,
    extra_header: Option<(String, Vec<u8>)>,
    content: Content,
}

#[derive(Debug, Arbitrary)]
enum Disposition {
    /// `form-data; name="…"; filename="…"`
    File {
        field: String,
        name: Vec<u8>,
    },
    /// `form-data; name="file"; filename*=UTF-8''…`
    FileStar(Vec<u8>),
    /// `form-data; name="…"`: an ordinary field, to be ignored.
    Field(String),
    Raw(Vec<u8>),
    Missing,
}

#[derive(Debug, Arbitrary)]
enum Content {
    Image(ImageKind, Vec<u8>),
    Large(ImageKind, u16),
    Raw(Vec<u8>),
    Empty,
}

#[derive(Debug, Arbitrary, Clone, Copy, PartialEq, Eq)]
enum ImageKind {
    Jpg,
    Png,
    Gif,
    Webp,
    Bmp,
}

#[derive(Debug, Arbitrary)]
enum End {
    Proper,
    NoCloseDelimiter,
    Truncate(u16),
    Trailing(Vec<u8>),
}

impl ImageKind {
    fn ext(self) -> &'static str {
        match self {
            ImageKind::Jpg => "jpg",
            ImageKind::Png => "png",
            ImageKind::Gif => "gif",
            ImageKind::Webp => "webp",
            ImageKind::Bmp => "bmp",
        }
    }

    fn mime(self) -> &'static str {
        match self {
            ImageKind::Jpg => "image/jpeg",
            ImageKind::Png => "image/png",
            ImageKind::Gif => "image/gif",
            ImageKind::Webp => "image/webp",
            ImageKind::Bmp => "image/bmp",
        }
    }

    /// A header that passes the full signature check of its type.
    fn magic(self) -> &'static [u8] {
        match self {
            ImageKind::Jpg => b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xFF\xC0\x00\x0B\x08\x00\x01\x00\x01\x01\x01\x11\x00",
            ImageKind::Png => b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00",
            ImageKind::Gif => b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00",
            ImageKind::Webp => b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00",
            ImageKind::Bmp => b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00",
        }
    }
}

impl Content {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Content::Image(kind, tail) => [kind.magic(), tail].concat(),
            Content::Large(kind, n) => {
                let mut b = kind.magic().to_vec();
                b.extend((0..*n).map(|i| (i % 251) as u8));
                b
            }
            Content::Raw(b) => b.clone(),
            Content::Empty => Vec::new(),
        }
    }

    /// The type of a content that is an image by construction.
    fn kind(&self) -> Option<ImageKind> {
        match self {
            Content::Image(k, _) | Content::Large(k, _) => Some(*k),
            _ => None,
        }
    }
}

/// `name` spelled with the ASCII case of `case`'s bits.
fn spell(name: &str, case: u16) -> String {
    name.bytes()
        .enumerate()
        .map(|(i, b)| {
            char::from(if case >> (i % 16) & 1 == 1 {
                b.to_ascii_uppercase()
            } else {
                b
            })
        })
        .collect()
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The key parameter's name spelled with `case`, some bytes percent-encoded.
fn key_name(case: u16, pct: u16) -> String {
    spell("securitykey", case)
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            if pct >> i & 1 == 1 {
                format!("%{b:02X}")
            } else {
                char::from(b).to_string()
            }
        })
        .collect()
}

/// The content of each structured part, in order, and whether it is a file
/// part by construction (`None`: cannot tell).
type Parts = Vec<(Vec<u8>, Option<bool>)>;

/// What the request is made of, beside the request itself.
struct Built {
    request: Request<Body>,
    body: Vec<u8>,
    parts: Parts,
    /// Every structured part is unambiguous and the body is well formed.
    clean_multipart: bool,
    /// All text the fuzzer chose freely, to tell a leak from an echo.
    free: Vec<u8>,
    header_key: Option<Vec<u8>>,
}

fn multipart(m: &Multipart, boundary: &str, free: &mut Vec<u8>) -> (Vec<u8>, Parts, bool) {
    let mut body = Vec::new();
    let mut parts = Vec::new();
    let mut clean = true;
    if let Some(p) = &m.preamble {
        body.extend_from_slice(p);
        body.extend_from_slice(b"\r\n");
        free.extend_from_slice(p);
        clean &= !contains(p, boundary.as_bytes());
    }
    for part in &m.parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let is_file = match &part.disposition {
            Disposition::File { field, name } => {
                free.extend_from_slice(field.as_bytes());
                free.extend_from_slice(name);
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{field}\"; filename=\"")
                        .as_bytes(),
                );
                body.extend_from_slice(name);
                body.extend_from_slice(b"\"\r\n");
                clean &= safe_quoted(field.as_bytes()) && safe_quoted(name);
                Some(true)
            }
            Disposition::FileStar(name) => {
                free.extend_from_slice(name);
                let encoded: String = name.iter().map(|b| format!("%{b:02X}")).collect();
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''{encoded}\r\n"
                    )
                    .as_bytes(),
                );
                Some(true)
            }
            Disposition::Field(field) => {
                free.extend_from_slice(field.as_bytes());
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{field}\"\r\n").as_bytes(),
                );
                // Whatever the name holds (`filename` too), this is a field.
                clean &= safe_quoted(field.as_bytes());
                Some(false)
            }
            Disposition::Raw(raw) => {
                free.extend_from_slice(raw);
                body.extend_from_slice(b"Content-Disposition: ");
                body.extend_from_slice(raw);
                body.extend_from_slice(b"\r\n");
                clean = false;
                None
            }
            Disposition::Missing => {
                clean = false;
                None
            }
        };
        if let Some(ct) = &part.content_type {
            free.extend_from_slice(ct.as_bytes());
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
            clean &= safe_header(ct.as_bytes());
        }
        if let Some((name, value)) = &part.extra_header {
            free.extend_from_slice(name.as_bytes());
            free.extend_from_slice(value);
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(b": ");
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
            clean = false;
        }
        body.extend_from_slice(b"\r\n");
        let content = part.content.bytes();
        free.extend_from_slice(&content);
        clean &= !contains(&content, format!("\r\n--{boundary}").as_bytes());
        body.extend_from_slice(&content);
        body.extend_from_slice(b"\r\n");
        parts.push((content, is_file));
    }
    match &m.end {
        End::Proper => body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes()),
        End::NoCloseDelimiter => clean = false,
        End::Truncate(n) => {
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            let keep = usize::from(*n) % (body.len() + 1);
            clean &= keep == body.len();
            body.truncate(keep);
        }
        End::Trailing(t) => {
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            body.extend_from_slice(t);
            free.extend_from_slice(t);
        }
    }
    (body, parts, clean)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Bytes that can sit inside a quoted header parameter without ending it.
fn safe_quoted(b: &[u8]) -> bool {
    safe_header(b) && !b.contains(&b'"') && !b.contains(&b'\\')
}

fn safe_header(b: &[u8]) -> bool {
    b.iter().all(|&c| c == b'\t' || (c >= 0x20 && c != 0x7f))
}

fn build(input: &Input) -> Option<Built> {
    let mut free = Vec::new();
    let mut pieces = Vec::new();
    let mut header_key = None;
    match &input.key {
        Key::None => {}
        Key::Header(v) => header_key = Some(v.render()),
        Key::Query(v, case, pct) => {
            pieces.push(format!("{}={}", key_name(*case, *pct), encode(&v.render())));
        }
        Key::Both(h, q, case) => {
            header_key = Some(h.render());
            pieces.push(format!("{}={}", key_name(*case, 0), encode(&q.render())));
        }
    }
    match &input.action {
        Action::None => {}
        Action::Upload(c) => pieces.push(format!("{}=upload", spell("action", *c))),
        Action::UploadErrors(c) => pieces.push(format!("action={}", spell("uploaderrors", *c))),
        Action::Sync(c) => pieces.push(format!(
            "{}={}",
            spell("action", *c),
            spell("sync", *c >> 6)
        )),
        Action::Raw(s) => {
            free.extend_from_slice(s.as_bytes());
            pieces.push(format!("action={}", encode(s)));
        }
    }
    match &input.format {
        FormatParam::None => {}
        FormatParam::Xml => pieces.push("format=xml".into()),
        FormatParam::Json(c) => pieces.push(format!(
            "{}={}",
            spell("format", *c),
            spell("json", *c >> 6)
        )),
        FormatParam::Raw(s) => {
            free.extend_from_slice(s.as_bytes());
            pieces.push(format!("format={}", encode(s)));
        }
    }
    let body_kind = match &input.body {
        BodySpec::Plain(c) => c.kind(),
        _ => None,
    };
    match &input.sync_path {
        None => {}
        Some(SyncPath::Built(p)) => {
            let p = p.render();
            free.extend_from_slice(p.as_bytes());
            pieces.push(format!("path={}", encode(&p)));
        }
        Some(SyncPath::Raw(s)) => {
            free.extend_from_slice(s.as_bytes());
            pieces.push(format!("path={s}"));
        }
        Some(SyncPath::OfBody {
            year,
            month,
            day,
            id,
        }) => {
            let ext = body_kind.map_or("jpg", ImageKind::ext);
            pieces.push(format!(
                "path={}/{}/{}/{}.{ext}",
                1000 + year % 9000,
                1 + month % 12,
                1 + day % 28,
                uuid::Uuid::from_bytes(*id).hyphenated()
            ));
        }
    }
    for piece in &input.extra {
        match piece {
            QueryPiece::Pair(n, v) => {
                free.extend_from_slice(n.as_bytes());
                free.extend_from_slice(v.as_bytes());
                pieces.push(format!("{}={}", encode(n), encode(v)));
            }
            QueryPiece::Raw(r) => {
                free.extend_from_slice(r.as_bytes());
                pieces.push(r.clone());
            }
        }
    }
    if !pieces.is_empty() {
        let at = usize::from(input.order) % pieces.len();
        pieces.rotate_left(at);
    }
    let path = match &input.target {
        Target::DoAshx => "/do.ashx".to_owned(),
        Target::Stored(p) => {
            let p = p.render();
            free.extend_from_slice(p.as_bytes());
            format!("/{p}")
        }
        Target::Page(aspx) => if *aspx {
            "/.m/upload.aspx"
        } else {
            "/.m/upload"
        }
        .to_owned(),
        Target::Asset(a) => {
            free.extend_from_slice(a.as_bytes());
            format!("/.m/{a}")
        }
        Target::Health => "/healthz".to_owned(),
        Target::Raw(r) => {
            free.extend_from_slice(r.as_bytes());
            r.clone()
        }
    };
    let uri = if pieces.is_empty() {
        path
    } else {
        format!("{path}?{}", pieces.join("&"))
    };
    let method = match input.method {
        Verb::Get => Method::GET,
        Verb::Post => Method::POST,
        Verb::Put => Method::PUT,
        Verb::Head => Method::HEAD,
        Verb::Delete => Method::DELETE,
        Verb::Patch => Method::PATCH,
    };

    let (body, parts, mut clean_multipart) = match &input.body {
        BodySpec::Empty => (Vec::new(), Vec::new(), false),
        BodySpec::Multipart(m) => multipart(m, BOUNDARY, &mut free),
        BodySpec::Plain(c) => {
            let b = c.bytes();
            free.extend_from_slice(&b);
            (b, Vec::new(), false)
        }
        BodySpec::Raw(b) => {
            free.extend_from_slice(b);
            (b.clone(), Vec::new(), false)
        }
    };
    let mut builder = Request::builder().method(method).uri(uri.as_str());
    match &input.content_type {
        ContentType::Multipart => {
            builder = builder.header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            );
        }
        ContentType::MultipartWith(b) => {
            free.extend_from_slice(b.as_bytes());
            clean_multipart = false;
            builder = builder.header("content-type", format!("multipart/form-data; boundary={b}"));
        }
        ContentType::Raw(s) => {
            free.extend_from_slice(s.as_bytes());
            clean_multipart = false;
            builder = builder.header("content-type", s.as_str());
        }
        ContentType::None => clean_multipart = false,
    }
    match input.content_length {
        ContentLength::Exact => builder = builder.header("content-length", body.len()),
        ContentLength::None => {}
        ContentLength::Value(n) => {
            clean_multipart &= n == body.len() as u64;
            builder = builder.header("content-length", n);
        }
    }
    let sha = hex::encode(Sha256::digest(&body));
    match &input.hash {
        Hash::None => {}
        Hash::OfBody => builder = builder.header("x-content-sha256", sha.as_str()),
        Hash::OfBodyUpper => builder = builder.header("x-content-sha256", sha.to_uppercase()),
        Hash::Other(h) => builder = builder.header("x-content-sha256", hex::encode(h)),
        Hash::Raw(s) => {
            free.extend_from_slice(s.as_bytes());
            if let Ok(v) = HeaderValue::from_str(s) {
                builder = builder.header("x-content-sha256", v);
            }
        }
    }
    let mut sent_key = None;
    if let Some(k) = header_key
        && let Ok(v) = HeaderValue::from_str(&k)
    {
        sent_key = Some(v.as_bytes().to_vec());
        builder = builder.header("x-security-key", v);
    }
    if let Some(h) = &input.host {
        free.extend_from_slice(h.as_bytes());
        if let Ok(v) = HeaderValue::from_str(h) {
            builder = builder.header("host", v);
        }
    }
    let mut peer_addr = None;
    match &input.peer {
        None => {}
        Some(Peer::Trusted {
            forwarded_for,
            proto,
            host,
        }) => {
            peer_addr = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
            for (name, value) in [
                ("x-forwarded-for", forwarded_for),
                ("x-forwarded-proto", proto),
                ("x-forwarded-host", host),
            ] {
                if let Some(v) = value {
                    free.extend_from_slice(v.as_bytes());
                    if let Ok(v) = HeaderValue::from_str(v) {
                        builder = builder.header(name, v);
                    }
                }
            }
        }
        Some(Peer::Other(ip)) => peer_addr = Some(IpAddr::from(*ip)),
    }
    let mut request = builder.body(Body::from(body.clone())).ok()?;
    if let Some(ip) = peer_addr {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
    }
    Some(Built {
        request,
        body,
        parts,
        clean_multipart,
        free,
        header_key: sent_key,
    })
}

/// The query as the service should read it: names in any ASCII case, the
/// first occurrence of each wins.
#[derive(Debug, Default)]
struct Query {
    action: Option<String>,
    format: Option<String>,
    key: Option<String>,
    path: Option<String>,
}

impl Query {
    fn of(query: Option<&str>) -> Self {
        let mut q = Query::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = if name.eq_ignore_ascii_case("action") {
                &mut q.action
            } else if name.eq_ignore_ascii_case("format") {
                &mut q.format
            } else if name.eq_ignore_ascii_case("securitykey") {
                &mut q.key
            } else if name.eq_ignore_ascii_case("path") {
                &mut q.path
            } else {
                continue;
            };
            slot.get_or_insert_with(|| value.into_owned());
        }
        q
    }
}

#[derive(Debug, Deserialize)]
struct JsonAnswer {
    resp: Answer<Vec<Listed>>,
}

#[derive(Debug, Deserialize)]
struct XmlFiles {
    #[serde(default)]
    file: Vec<Listed>,
}

#[derive(Debug, Deserialize)]
struct Answer<F> {
    success: u8,
    error: Option<String>,
    link: Option<String>,
    files: Option<F>,
    path: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
struct Listed {
    #[serde(default)]
    name: String,
    link: String,
    path: String,
    size: u64,
    sha256: String,
    #[serde(rename = "type")]
    mime: String,
}

/// The envelope of a `do.ashx` answer: success, listed files, `path`.
fn envelope(
    json: bool,
    status: StatusCode,
    content_type: &str,
    body: &[u8],
) -> (u8, Vec<Listed>, Option<String>) {
    let text = std::str::from_utf8(body).expect("answers are UTF-8");
    let (success, link, files, path, error) = if json {
        assert_eq!(content_type, "application/json; charset=utf-8");
        assert!(
            text.starts_with("{\"resp\":{\"success\":0")
                || text.starts_with("{\"resp\":{\"success\":1"),
            "not the original JSON envelope: {text}"
        );
        let a: JsonAnswer = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let r = a.resp;
        (
            r.success,
            r.link,
            r.files.unwrap_or_default(),
            r.path,
            r.error,
        )
    } else {
        assert_eq!(content_type, "text/xml; charset=utf-8");
        assert!(
            text.starts_with("<resp><success>0</success>")
                || text.starts_with("<resp><success>1</success>"),
            "not the original XML envelope: {text}"
        );
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
            "XML 1.0 cannot carry this: {text:?}"
        );
        let r: Answer<XmlFiles> =
            quick_xml::de::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (
            r.success,
            r.link,
            r.files.map(|f| f.file).unwrap_or_default(),
            r.path,
            r.error,
        )
    };
    assert_eq!(success == 1, status == StatusCode::OK, "{status}: {text}");
    assert!(
        success == 1 || error.is_some_and(|e| !e.is_empty()),
        "{text}"
    );
    if let Some(first) = files.first() {
        assert_eq!(link.as_deref(), Some(first.link.as_str()), "{text}");
    }
    (success, files, path)
}

/// Every file below `data_dir`, as relative `/`-separated paths; panics on
/// anything that is not `.tmp/` (empty) or of the stored-file pattern.
fn stored_files(data_dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![(data_dir.to_path_buf(), String::new(), 0)];
    while let Some((dir, rel, depth)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type().expect("file type");
            if depth == 0 && name == ".tmp" {
                let left: Vec<_> = std::fs::read_dir(entry.path()).expect("tmp").collect();
                assert!(left.is_empty(), "temporary files left: {left:?}");
            } else if kind.is_dir() && depth < 3 {
                stack.push((entry.path(), rel, depth + 1));
            } else {
                assert!(
                    kind.is_file() && is_stored_path(&rel),
                    "not a stored file: {rel}"
                );
                found.insert(rel);
            }
        }
    }
    found
}

fn clean(data_dir: &Path) {
    for entry in std::fs::read_dir(data_dir).expect("read_dir").flatten() {
        if entry.file_name() != ".tmp" {
            std::fs::remove_dir_all(entry.path()).expect("clean");
        }
    }
}

/// Whether the client's name, as echoed, is a harmless label.
fn harmless(name: &str) -> bool {
    !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
        && name.chars().count() <= 255
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("answer body")
        .to_vec();
    (status, content_type, body)
}

fuzz_target!(|input: Input| {
    let world = world();
    let Some(built) = build(&input) else {
        return;
    };
    let method = built.request.method().clone();
    let uri = built.request.uri().clone();
    let query = Query::of(uri.query());
    let authorized = match &built.header_key {
        Some(k) => k == KEY.as_bytes(),
        None => query.key.as_deref() == Some(KEY),
    };
    let json = query
        .format
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let action = query
        .action
        .clone()
        .unwrap_or_default()
        .to_ascii_lowercase();

    let (status, content_type, answer) = world.rt.block_on(send(&world.router, built.request));
    assert!(
        !status.is_server_error() || status == StatusCode::INSUFFICIENT_STORAGE,
        "{status} for {uri}: {}",
        String::from_utf8_lossy(&answer)
    );
    if !contains(&built.free, KEY.as_bytes()) {
        assert!(!contains(&answer, KEY.as_bytes()), "the key leaked: {uri}");
    }
    let stored = stored_files(&world.data_dir);

    if uri.path() != "/do.ashx" {
        if matches!(uri.path(), "/.m/upload" | "/.m/upload.aspx") && method == Method::GET {
            assert_eq!(
                status,
                if authorized {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                }
            );
        }
        if uri.path() == "/healthz" && method == Method::GET {
            assert_eq!(status, StatusCode::OK);
        }
        if status == StatusCode::OK && !uri.path().starts_with("/.m/") && uri.path() != "/healthz" {
            panic!("{uri} answered 200 with nothing stored");
        }
        assert!(stored.is_empty());
        return;
    }

    let with_body = method != Method::HEAD || !answer.is_empty();
    let (_, listed, synced) = if with_body {
        envelope(json, status, &content_type, &answer)
    } else {
        (0, Vec::new(), None)
    };
    if !authorized {
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
        assert!(stored.is_empty());
        return;
    }
    let expected_method = match action.as_str() {
        "upload" => Some(method == Method::POST),
        "uploaderrors" => Some(method == Method::GET || method == Method::POST),
        "sync" => Some(method == Method::PUT || method == Method::POST),
        _ => None,
    };
    match expected_method {
        None => assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}"),
        Some(false) => assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{uri}"),
        Some(true) => {}
    }
    if expected_method != Some(true) {
        assert!(stored.is_empty());
        return;
    }

    match action.as_str() {
        "uploaderrors" => {
            assert_eq!(status, StatusCode::OK);
            assert!(stored.is_empty());
        }
        "upload" => check_upload(
            &input,
            &built.parts,
            built.clean_multipart,
            &built.body,
            status,
            &listed,
            &stored,
        ),
        _ => check_sync(&input, &query, &built.body, status, synced, &stored),
    }

    if input.fetch_back {
        for path in &stored {
            let request = Request::get(format!("/{path}"))
                .body(Body::empty())
                .expect("request");
            let (status, content_type, bytes) = world.rt.block_on(send(&world.router, request));
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(
                bytes,
                std::fs::read(world.data_dir.join(path)).expect("stored")
            );
            let ext = path.rsplit('.').next().unwrap_or("");
            let kind = [
                ImageKind::Jpg,
                ImageKind::Png,
                ImageKind::Gif,
                ImageKind::Webp,
                ImageKind::Bmp,
            ]
            .into_iter()
            .find(|k| k.ext() == ext)
            .expect("a stored extension");
            assert_eq!(content_type, kind.mime());
        }
    }
    clean(&world.data_dir);
});

fn check_upload(
    input: &Input,
    parts: &[(Vec<u8>, Option<bool>)],
    clean: bool,
    body: &[u8],
    status: StatusCode,
    listed: &[Listed],
    stored: &BTreeSet<String>,
) {
    // A declared length over the limit is refused before anything else.
    let declared = match input.content_length {
        ContentLength::Exact => Some(body.len() as u64),
        ContentLength::None => None,
        ContentLength::Value(n) => Some(n),
    };
    let declared_too_large = declared.is_some_and(|n| n > MAX_REQUEST as u64);
    if declared_too_large {
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    } else if matches!(input.content_type, ContentType::None) {
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let paths: BTreeSet<String> = listed.iter().map(|f| f.path.clone()).collect();
    assert_eq!(&paths, stored, "the answer and the disk disagree");
    assert_eq!(paths.len(), listed.len(), "a file listed twice");
    if status == StatusCode::OK {
        assert!(!listed.is_empty(), "a successful upload stored nothing");
    }
    let data_dir = &world().data_dir;
    let files: Vec<Vec<u8>> = listed
        .iter()
        .map(|f| {
            assert!(is_stored_path(&f.path), "{}", f.path);
            assert!(f.link.ends_with(&format!("/{}", f.path)), "{}", f.link);
            assert!(harmless(&f.name), "{:?}", f.name);
            let bytes = std::fs::read(data_dir.join(&f.path)).expect("listed file");
            assert_eq!(bytes.len() as u64, f.size);
            assert_eq!(hex::encode(Sha256::digest(&bytes)), f.sha256);
            let ext = f.path.rsplit('.').next().unwrap_or("");
            assert!(
                ALLOWED.iter().any(|k| k.ext() == ext && k.mime() == f.mime),
                "{f:?}"
            );
            assert!(!bytes.is_empty() && bytes.len() <= MAX_FILE);
            bytes
        })
        .collect();
    if matches!(input.body, BodySpec::Multipart(_)) && clean_enough(parts) {
        for f in &files {
            assert!(
                parts.iter().any(|(c, _)| c == f),
                "a stored file is no part's content"
            );
        }
    }
    // A clean upload of valid images (and fields to ignore) must succeed.
    let file_parts: Vec<&Vec<u8>> = parts
        .iter()
        .filter(|(_, f)| *f == Some(true))
        .map(|(c, _)| c)
        .collect();
    let good = clean
        && matches!(input.content_type, ContentType::Multipart)
        && body.len() <= MAX_REQUEST
        && (1..=MAX_FILES).contains(&file_parts.len())
        && parts_are_images(input);
    if good {
        assert_eq!(status, StatusCode::OK, "a valid upload was refused");
        assert_eq!(
            files.iter().collect::<Vec<_>>(),
            file_parts,
            "files stored differ from the parts"
        );
    }
}

/// No part's content holds the boundary, so each part's bytes are known.
fn clean_enough(parts: &[(Vec<u8>, Option<bool>)]) -> bool {
    let delimiter = format!("\r\n--{BOUNDARY}");
    parts
        .iter()
        .all(|(c, _)| !contains(c, delimiter.as_bytes()))
}

/// Every file part is an allowed image within the file limit.
fn parts_are_images(input: &Input) -> bool {
    let BodySpec::Multipart(m) = &input.body else {
        return false;
    };
    m.parts.iter().all(|p| match p.disposition {
        Disposition::File { .. } | Disposition::FileStar(_) => {
            p.content.kind().is_some_and(|k| ALLOWED.contains(&k))
                && p.content.bytes().len() <= MAX_FILE
        }
        _ => true,
    })
}

fn check_sync(
    input: &Input,
    query: &Query,
    body: &[u8],
    status: StatusCode,
    synced: Option<String>,
    stored: &BTreeSet<String>,
) {
    let path = query.path.clone().unwrap_or_default();
    let sha = hex::encode(Sha256::digest(body));
    if status == StatusCode::OK {
        assert!(is_stored_path(&path), "sync accepted {path:?}");
        assert_eq!(synced.as_deref(), Some(path.as_str()));
        let bytes = std::fs::read(world().data_dir.join(&path)).expect("synced file");
        assert_eq!(bytes, body, "the replica differs from the body");
        assert_eq!(hex::encode(Sha256::digest(&bytes)), sha);
        assert_eq!(stored, &BTreeSet::from([path.clone()]));
        let hash_sent = matches!(input.hash, Hash::OfBody | Hash::OfBodyUpper)
            || matches!(&input.hash, Hash::Raw(s) if s.eq_ignore_ascii_case(&sha));
        assert!(
            hash_sent,
            "sync accepted a body that does not hash to X-Content-SHA256"
        );
    } else {
        assert!(stored.is_empty(), "a refused replica was kept");
    }
    let kind = match &input.body {
        BodySpec::Plain(c) => c.kind(),
        _ => None,
    };
    let valid = is_stored_path(&path)
        && matches!(input.hash, Hash::OfBody | Hash::OfBodyUpper)
        && kind.is_some_and(|k| path.ends_with(&format!(".{}", k.ext())))
        && body.len() <= MAX_FILE
        && match input.content_length {
            ContentLength::Value(n) => n <= MAX_FILE as u64,
            _ => true,
        };
    if valid {
        assert_eq!(
            status,
            StatusCode::OK,
            "a valid replica was refused: {path}"
        );
    }
}
