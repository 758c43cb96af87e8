//! Command-line interface: `serve` (the default), `replay`, `check-config`
//! and `migrate`.
//!
//! Flags here override environment variables and files (SPEC §3); turning them
//! into a `Config` is the job of `config`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "multiserver-upload", version, about)]
pub struct Cli {
    /// Path of app.toml; relative paths inside it are relative to its folder.
    /// Default: app.toml in the working directory, else beside the executable.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// Overrides for running without a subcommand (same as `serve`).
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the upload service (the default when no subcommand is given).
    Serve(Overrides),
    /// Replay the failure journal: through a running server with `--url`,
    /// or in this process without it.
    Replay(ReplayArgs),
    /// Load and validate the configuration, print a summary, and exit.
    CheckConfig(Overrides),
    /// Copy a data folder's stored files into the `[storage.s3]` bucket;
    /// run it again to resume after an interruption.
    Migrate(MigrateArgs),
    /// Print the settings tables of docs/configuration.md, generated from
    /// the declarations in `config`: how that page is refreshed after a
    /// setting is added.
    #[command(hide = true)]
    ConfigReference,
}

/// Settings that flags can override, above environment and files.
#[derive(Debug, Args, Clone, Default)]
pub struct Overrides {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// This server's `Name` in servers.xml.config.
    #[arg(long)]
    pub server_name: Option<String>,
    /// Folder where stored files live.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Folder for the journal and the daily log files.
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub overrides: Overrides,
    /// `do.ashx` URL of a running server, e.g. http://127.0.0.1:8080/do.ashx;
    /// the key goes in the X-Security-Key header, never in the URL.
    #[arg(long)]
    pub url: Option<String>,
    #[command(flatten)]
    pub progress: ProgressArgs,
}

#[derive(Debug, Args, Clone)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub overrides: Overrides,
    /// The data folder to copy (default: data_dir of the configuration).
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Files copied at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    #[command(flatten)]
    pub progress: ProgressArgs,
}

/// How often a long command reports its progress.
#[derive(Debug, Args, Clone)]
pub struct ProgressArgs {
    /// Milliseconds between progress lines when standard error is not a
    /// terminal (hidden: the default suits a log; tests shorten it).
    #[arg(
        long,
        hide = true,
        env = "MULTISERVER_UPLOAD_PROGRESS_EVERY_MS",
        default_value_t = 5000
    )]
    pub progress_every_ms: u64,
}

impl ProgressArgs {
    pub fn every(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.progress_every_ms)
    }
}

impl Cli {
    /// The app.toml to load. Under IIS the working directory is not always
    /// the site folder, so the executable's folder is the fallback.
    pub fn config_path(&self) -> PathBuf {
        if let Some(path) = &self.config {
            return path.clone();
        }
        let here = PathBuf::from("app.toml");
        if here.exists() {
            return here;
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("app.toml")))
            .filter(|beside| beside.exists())
            .unwrap_or(here)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_is_accepted_by_every_subcommand() {
        for args in [
            vec!["x", "--config", "a.toml"],
            vec![
                "x",
                "serve",
                "--config",
                "a.toml",
                "--listen",
                "127.0.0.1:1",
            ],
            vec![
                "x",
                "replay",
                "--config",
                "a.toml",
                "--url",
                "http://h/do.ashx",
            ],
            vec!["x", "check-config", "--config", "a.toml"],
            vec!["x", "migrate", "--config", "a.toml", "--concurrency", "4"],
        ] {
            let cli = Cli::try_parse_from(&args).expect("parses");
            assert_eq!(cli.config, Some(PathBuf::from("a.toml")), "{args:?}");
        }
    }
}
