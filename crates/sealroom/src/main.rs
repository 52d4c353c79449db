//! # sealroom
//!
//! The command-line tool of sealroom, secure multi-party computation for
//! federated AI and joint analytics. It owns argument parsing, terminal output
//! and exit codes; all cryptography and protocol logic live in the library
//! crates below it. It must never print a secret (shares, seeds, keys, raw
//! inputs) and never bypass the library's checks.

#![forbid(unsafe_code)]

mod audit_budget;
mod audit_cmd;
mod audit_cross;
mod bench;
mod chart;
mod demo;
mod init_cmd;
mod node_cmd;
mod plan;
mod plan_cmd;
mod query_cmd;
mod rotate_cert_cmd;
mod rotate_cmd;
mod sharing;
mod table;
mod telemetry;
mod train_cmd;

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
    /// Start a whole federation on loopback (coordinator, helpers, clients over
    /// mutual TLS), train a model with secure FedAvg and answer joint SQL
    /// questions, checking every secure result against its plaintext twin;
    /// writes a JSON report and a chart.
    Demo(demo::DemoArgs),
    /// Create a federation in a directory: a CA, a certificate and key per
    /// node, signing keys for the coordinator and helpers, federation.toml and
    /// one config per node, ready for `sealroom node --config`.
    Init(init_cmd::InitArgs),
    /// Run one node (coordinator, helper or client) from its config file as a
    /// long-running service, until Ctrl-C or SIGTERM. SIGHUP reads
    /// federation.toml again: clients and admins removed from it (or whose
    /// fingerprint changed) are refused and their connections closed, and a
    /// signing-key rotation (`sealroom rotate-key`) or certificate rotation
    /// (`sealroom rotate-cert`) takes effect, with no restart; a change to
    /// anything else is refused and logged.
    Node(node_cmd::NodeArgs),
    /// Operate rounds through the coordinator's admin API (mutual TLS with an
    /// admin identity).
    #[command(subcommand)]
    Round(node_cmd::RoundCommand),
    /// Ask the federation a joint question in SQL (as an admin): each client
    /// answers from its own data; small cells are suppressed.
    Query(query_cmd::QueryArgs),
    /// Train a model with secure FedAvg across the clients (as an admin).
    Train(train_cmd::TrainArgs),
    /// Inspect a node's signed, hash-chained audit log: verify it, show a
    /// round's story, export it as JSON Lines; show a client's
    /// differential-privacy budgets.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Re-run one node's state machine for one round from its own archive and
    /// check that everything it sent is reproduced byte for byte (never
    /// combines two helpers' shares).
    Replay(audit_cmd::ReplayArgs),
    /// Measure whole secure rounds on loopback against a plaintext baseline
    /// (same transport, same run) and check DESIGN.md §9's targets; writes
    /// a JSON report and a chart.
    Bench(bench::BenchArgs),
    /// Choose a federation's sharing mode, threshold and min_clients: for
    /// each setting a federation accepts, the probability that a round
    /// reconstructs given helper availability and client dropout, and the
    /// smallest coalitions of helpers and of clients that break privacy;
    /// recommends the safest setting that meets a target probability.
    Plan(plan_cmd::PlanArgs),
    /// Rotate the coordinator's or a helper's signing key while the
    /// federation runs: writes a new key file, points the node's config at
    /// it and updates federation.toml (new key, next key epoch, the old key
    /// kept for rounds under way); then SIGHUP every node, the rotating one
    /// last. `--retire` drops the old key once those rounds are over.
    RotateKey(rotate_cmd::RotateKeyArgs),
    /// Give any node a new TLS certificate while the federation runs: issues
    /// one from the federation CA (its key is needed), points the node's
    /// config at it and records it in federation.toml beside the old one
    /// (the node's identity does not change); then SIGHUP every node, the
    /// rotating one last. `--retire` drops the old certificate: refused
    /// everywhere, its connections closed.
    RotateCert(rotate_cert_cmd::RotateCertArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Init(args) => init_cmd::run(args),
        Command::Node(args) => node_cmd::run_node(args),
        Command::Round(command) => node_cmd::run_round(command),
        Command::Query(args) => query_cmd::run(args),
        Command::Train(args) => train_cmd::run(args),
        Command::Audit(command) => audit_cmd::run(command),
        Command::Replay(args) => audit_cmd::run_replay(args),
        Command::Bench(args) => bench::run(args),
        Command::Plan(args) => plan_cmd::run(args),
        Command::RotateKey(args) => rotate_cmd::run(args),
        Command::RotateCert(args) => rotate_cert_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
