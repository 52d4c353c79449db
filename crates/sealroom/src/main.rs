//! # sealroom
//!
//! The command-line tool of sealroom, secure multi-party computation for
//! federated AI and joint analytics. It owns argument parsing, terminal output
//! and exit codes; all cryptography and protocol logic live in the library
//! crates below it. It must never print a secret (shares, seeds, keys, raw
//! inputs) and never bypass the library's checks.

#![forbid(unsafe_code)]

mod demo;
mod table;
mod wine;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// sealroom: parties compute together; only the agreed result leaves the room.
///
/// Parties with private data secret-share their inputs to independent helpers;
/// the helpers compute on shares; only the agreed aggregate is revealed.
#[derive(Parser, Debug)]
#[command(name = "sealroom", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Demonstrate secure aggregation on real data: three wineries compute the
    /// average of several wine-quality columns per quality grade without
    /// revealing their rows, and the result is checked against plaintext.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
