//! `mussikon`: parses the command line, runs the command, and turns a failure into one message
//! on stderr and a non-zero exit code. Everything else lives in the library (`mussikon_server`).

use clap::Parser;
use mussikon_server::cli::{self, Cli};
use std::process::ExitCode;

/// mimalloc instead of the system allocator: under replicated writes glibc's malloc and free
/// were about 16 % of the nodes' CPU (sled's node copies, tantivy's segment building,
/// request buffers); docs/perf.md has the before and after.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
