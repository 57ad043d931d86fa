//! `sf3d`: the one user-facing binary.
//!
//! * `sf3d serve` — the server for browsers (WebSocket) and pipelines (REST) on the GPU box.
//! * `sf3d run IMAGE|DIR... --out DIR` — generate locally.
//! * `sf3d remote IMAGE... --server URL` — generate on a server, save the results here.
//! * `sf3d bench` — per-stage timings and peak memory.
//! * `sf3d check-golden DIR` — parity with a golden set of the reference implementation.

#[cfg(not(target_env = "msvc"))]
mod allocator;
mod cli;

/// jemalloc, set up to re-use the network's large buffers in place (see `allocator`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: allocator::Allocator = allocator::Allocator;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::init_tracing(cli.verbose);
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
