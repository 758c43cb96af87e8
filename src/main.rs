//! Entry point: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    multiserver_upload::run(multiserver_upload::cli::Cli::parse())
}
