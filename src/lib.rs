//! multiserver-upload: an image upload service that keeps every uploaded file
//! on several servers at once.
//!
//! The data flow of an upload, one module per step: `http` takes the request
//! and asks `auth` who sent it (a key by role, an upload token, a peer);
//! the file arrives as a multipart stream (`http::upload`, `http::body`) or,
//! resumably, through tus (`http::tus` speaks the protocol, `resumable`
//! stages the bytes) and enters `storage` the same way either way: a
//! temporary file, hashed, sniffed, checked and stripped by `images`, then
//! named by a backend (one data folder, several volumes, or an S3 bucket).
//! On disks the name is recorded in `index`, `replication` copies the file
//! to every peer, and a copy that fails goes into `journal`, which replays
//! it until the peer has it; a bucket keeps its copies itself.
//!
//! Beside that walk, rooms of their own that never climb back into it:
//! `repair` (anti-entropy against the peers' index digests, read-through,
//! scrub, the trash's purge), `images` (pixel limits, metadata, thumbnails
//! and widths), `migrate` (a data folder into the bucket), `downloads`
//! (counts of the served GETs of stored files). `config` turns
//! files, environment and flags into one `Config`; `server` and `shutdown`
//! run the listener; `logging` sets up `tracing`; `metrics` holds the
//! latency histograms, `progress` what long commands show while they run;
//! `memory` keeps freed large buffers from staying with the process.

mod auth;
pub mod cli;
pub mod config;
pub mod downloads;
pub mod http;
pub mod images;
pub mod index;
pub mod journal;
mod logging;
mod memory;
mod metrics;
mod migrate;
mod progress;
pub mod repair;
pub mod replication;
pub mod resumable;
mod server;
mod shutdown;
pub mod storage;

use std::borrow::Cow;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use cli::{Cli, Command, MigrateArgs, ReplayArgs};
use config::Config;
use http::AppState;
use journal::{Journal, Replayer};
use repair::{Fetcher, Repairer};
use replication::Replicator;
use storage::Storage;

/// Exit code for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;

pub fn run(cli: Cli) -> ExitCode {
    let config_path = cli.config_path();
    let (overrides, command) = match cli.command {
        None => (cli.overrides, Mode::Serve),
        Some(Command::Serve(o)) => (o, Mode::Serve),
        Some(Command::CheckConfig(o)) => (o, Mode::Check),
        Some(Command::Replay(ReplayArgs {
            overrides,
            url,
            progress,
        })) => (overrides, Mode::Replay(url, progress.every())),
        Some(Command::Migrate(MigrateArgs {
            overrides,
            from,
            concurrency,
            progress,
        })) => (
            overrides,
            Mode::Migrate(from, concurrency.into(), progress.every()),
        ),
        Some(Command::ConfigReference) => {
            print!("{}", config::reference());
            return ExitCode::SUCCESS;
        }
    };
    let config = match Config::load(&config_path, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = match command {
        Mode::Check => {
            check_config(&config);
            Ok(())
        }
        Mode::Serve => runtime().and_then(|rt| rt.block_on(serve(config))),
        Mode::Replay(url, every) => {
            runtime().and_then(|rt| rt.block_on(replay(config, url, every)))
        }
        Mode::Migrate(from, concurrency, every) => runtime().and_then(|rt| {
            let _log = logging::init(None, &config.secrets())?;
            rt.block_on(migrate::run(&config, from, concurrency, every))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A start-up error may quote an endpoint or a peer's URL.
            eprintln!("error: {}", config::without_userinfo(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

enum Mode {
    Serve,
    Check,
    /// A running server's URL, or none; the time between progress lines.
    Replay(Option<String>, Duration),
    /// The folder to copy (default: data_dir), files at once, and the time
    /// between progress lines.
    Migrate(Option<std::path::PathBuf>, usize, Duration),
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    memory::return_large_blocks();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn check_config(config: &Config) {
    println!("configuration OK: {}", config.file.display());
    println!("  server_name   {}", config.server_name);
    println!("  listen        {}", config.listen);
    println!("  data_dir      {}", config.data_dir.display());
    println!("  log_dir       {}", config.log_dir.display());
    println!("  servers       {}", config.servers_file.display());
    match &config.storage {
        storage::BackendSettings::Disk { data_dirs, .. } if data_dirs.len() > 1 => {
            for dir in data_dirs {
                println!("  volume        {}", dir.display());
            }
        }
        storage::BackendSettings::Disk { .. } => {}
        storage::BackendSettings::S3(_) => {
            println!("  storage       s3 (data_dir holds only files being received)");
        }
    }
    if let Some(s3) = &config.s3 {
        let endpoint = s3
            .endpoint
            .as_deref()
            .map_or(Cow::Borrowed("AWS"), config::without_userinfo);
        println!(
            "  s3 bucket     {} at {endpoint} (region {})",
            s3.bucket, s3.region
        );
    }
    for peer in &config.peers {
        println!(
            "  peer          {} {}",
            peer.name,
            config::without_userinfo(peer.uri.as_str())
        );
    }
    for origin in &config.cors.allowed_origins {
        println!("  cors origin   {origin}");
    }
    let auth = &config.auth;
    // Counts only: a key is never printed.
    println!(
        "  keys          {} upload, {} admin, {} peer",
        1 + auth.security_keys.len(),
        auth.admin_keys.len(),
        auth.peer_keys.len()
    );
    // Ids only: a token secret is never printed.
    let ids: Vec<&str> = auth.token_secrets.ids().collect();
    match ids.split_first() {
        None => println!("  tokens        off (no [auth] token_secrets)"),
        Some((minting, older)) => println!(
            "  tokens        minted with `{minting}`{}; at most {} s, clock skew {} s",
            older
                .iter()
                .map(|id| format!(", `{id}` accepted"))
                .collect::<String>(),
            auth.max_token_secs,
            auth.clock_skew_secs
        ),
    }
    if config.security_key == config::PLACEHOLDER_KEY {
        println!("  warning: security_key is the shipped placeholder; change it before going live");
    }
    if auth.peer_keys.is_empty() {
        println!("  warning: {NO_PEER_KEYS}");
    }
}

/// Why a cluster wants `[auth] peer_keys`, said at every start without them.
const NO_PEER_KEYS: &str = "[auth] peer_keys is not set: security_key is also what peers send, \
     so whoever holds it can list every stored name (the names are a link's only secret) \
     and write replicas; set the same \
     `[auth] peer_keys = [\"…\"]` on every server to keep peer actions to peers";

/// Opens storage and journal and builds the replication client and the
/// replayer for `config`: the state every mode (and the fuzz targets) run on.
pub async fn open(config: Arc<Config>) -> anyhow::Result<AppState> {
    let storage = Storage::open(
        &config.storage,
        &config.data_dir,
        config.fsync,
        &config.server_name,
    )
    .await
    .with_context(|| format!("cannot open the storage in {}", config.data_dir.display()))?;
    let journal = Journal::open(&config.log_dir, config.fsync)
        .with_context(|| format!("cannot use log_dir {}", config.log_dir.display()))?;
    let latency = metrics::Latency::default();
    let replicator =
        Replicator::new(&config, latency.clone()).context("cannot build the HTTP client")?;
    let replayer = Arc::new(Replayer::new(
        journal.clone(),
        storage.clone(),
        replicator.clone(),
        config.server_name.clone(),
    ));
    let fetcher =
        Fetcher::new(&config, storage.clone(), latency).context("cannot build the HTTP client")?;
    // No counts file (nor its writer thread and cache) where no token
    // can exist.
    let spent = if config.auth.token_secrets.is_empty() {
        None
    } else {
        Some(auth::spent::Spent::open(
            &config.data_dir,
            config.auth.lifetime(),
            auth::now(),
        )?)
    };
    let tokens = auth::Tokens::new(
        config.auth.token_secrets.clone(),
        config.auth.lifetime(),
        spent,
    );
    AppState::new(
        config, tokens, storage, replicator, journal, replayer, fetcher,
    )
    .context("cannot open the staging folders of resumable uploads")
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let _log = logging::init(Some(&config.log_dir), &config.secrets())?;
    let max_connections = server::fit_connections(config.max_connections);
    let state = Arc::new(open(config.clone()).await?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(server = %config.server_name, peers = config.peers.len(), "listening on {local}");
    if config.security_key == config::PLACEHOLDER_KEY {
        tracing::warn!(
            "security_key is the shipped placeholder `{}`: anyone who can reach this port can upload; set a secret key",
            config::PLACEHOLDER_KEY
        );
    }
    if config.auth.peer_keys.is_empty() {
        tracing::warn!("{NO_PEER_KEYS}");
    }
    let background = tokio::spawn(
        state
            .replayer
            .clone()
            .run_background(config.replication.retry_interval),
    );
    let scrub = tokio::spawn(state.scrubber.clone().run(config.repair.scrub_interval));
    let reaper = tokio::spawn(state.resumable.clone().run_reaper());
    let counts = tokio::spawn(state.downloads.clone().run(config.downloads.flush_every));
    let repairer = {
        let uploads = state.clone();
        // Repair waits while more than half of the upload places are taken.
        let busy = Box::new(move || {
            let (used, max) = uploads.uploads_in_flight();
            used * 2 > max
        });
        Arc::new(Repairer::new(
            config.clone(),
            state.storage.clone(),
            state.fetcher.clone(),
            state.repair.clone(),
            busy,
        ))
    };
    let repair = tokio::spawn(repairer.run_background(state.replicator.clone()));
    let settings = server::Settings {
        header_timeout: config.header_timeout,
        send_timeout: config.send_timeout,
        grace: config.shutdown_grace,
        max_connections,
        max_connections_per_client: config.max_connections_per_client,
        trusted_proxies: config.trusted_proxies.clone(),
    };
    server::serve(
        listener,
        http::router(state.clone()),
        settings,
        shutdown::signal(),
    )
    .await;
    background.abort();
    scrub.abort();
    reaper.abort();
    repair.abort();
    counts.abort();
    // Every GET answered is counted by now: the last batch is kept.
    if let Err(e) = state.downloads.flush().await {
        tracing::error!(error = %e, "the last download counts could not be added to the index");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn replay(config: Config, url: Option<String>, every: Duration) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let _log = logging::init(None, &config.secrets())?;
    match url {
        Some(url) => replay_remote(&config, &url).await,
        None => {
            let state = open(config).await?;
            let tally = Arc::new(progress::Tally::default());
            let shown = progress::show("replay", tally.clone(), every);
            let report = state.replayer.replay_counted(None, &tally).await;
            shown.finish().await;
            let report = report.context("replay failed")?;
            println!("{}", serde_json::to_string(&report)?);
            if report.busy {
                anyhow::bail!("another replay is running; nothing done");
            }
            Ok(())
        }
    }
}

/// Asks a running server to replay, as Task Scheduler's job does. The key
/// goes to that URL only: a redirect is not followed but reported. Exits
/// with an error unless the answer is the service's success envelope.
async fn replay_remote(config: &Config, url: &str) -> anyhow::Result<()> {
    /// An `uploaderrors` answer is a few counts; more is not one.
    const ANSWER_LIMIT: usize = 64 * 1024;
    let mut url = reqwest::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
    url.query_pairs_mut()
        .append_pair("action", "uploaderrors")
        .append_pair("format", "json");
    let shown =
        config::without_userinfo(&http::redact(url.as_str(), &[&config.security_key])).into_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the HTTP client")?;
    let response = client
        .post(url)
        .header("X-Security-Key", &config.security_key)
        .send()
        .await
        .with_context(|| format!("cannot reach {shown}"))?;
    let status = response.status();
    if status.is_redirection() {
        let to = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        anyhow::bail!(
            "{shown} answered {status}, a redirect to `{}`; redirects are not followed \
             (the key would go along): give the server's own do.ashx URL with --url",
            replication::escape_controls(&http::redact(&to, &[&config.security_key]))
        );
    }
    let body = replication::read_limited(response, ANSWER_LIMIT, || ())
        .await
        .context("cannot read the answer")?;
    println!(
        "{}",
        replication::escape_controls(&String::from_utf8_lossy(&body))
    );
    if !status.is_success() {
        anyhow::bail!("the server answered {status}");
    }
    if !replication::envelope(&body).is_some_and(|resp| replication::is_success(&resp)) {
        anyhow::bail!(
            "{shown} answered {status} but not with a success envelope \
             ({{\"resp\":{{\"success\":1,…}}}}): is it this service's do.ashx?"
        );
    }
    Ok(())
}
