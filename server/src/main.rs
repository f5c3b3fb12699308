//! `mussikon`: parses the command line, runs the command, and turns a failure into one message
//! on stderr and a non-zero exit code. Everything else lives in the library (`mussikon_server`).

use clap::Parser;
use mussikon_server::cli::{self, Cli};
use std::process::ExitCode;

fn main() -> ExitCode {
    let parsed = Cli::parse();
    match cli::run(parsed) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
