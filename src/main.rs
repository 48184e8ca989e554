//! `arus`: the command line of the arus stream-processing system.
//!
//! # Layout
//! - `cli::generate`: `arus gen`, the traffic generator into files.
//! - `cli::demo`: `arus demo`, the whole system in one process on the embedded log.
//! - `cli::run`: `arus run`, a pipeline in the foreground.
//! - `cli::topics`: `arus topics`, the topics and their settings.

#[macro_use]
mod cli;

/// mimalloc instead of glibc's malloc: the generator and the jobs make many small, short-lived
/// allocations, where glibc spent over a quarter of `arus gen`'s time (measured with perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// arus: stream processing for a health insurer: eligibility, adjudication, fraud and cost
/// accumulators over Kafka topics.
#[derive(Debug, Parser)]
#[command(name = "arus", version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate realistic insurer traffic (with labelled fraud) into files.
    Gen(cli::generate::GenArgs),
    /// Run the whole system in one process on the embedded log: no servers needed.
    Demo(cli::demo::DemoArgs),
    /// Run a pipeline (`pipelines/*.toml`) in the foreground.
    Run(cli::run::RunArgs),
    /// Serve the REST gateway over the state the jobs keep in Redis.
    Gateway(cli::gateway::GatewayArgs),
    /// List the topics and their settings.
    Topics,
    /// Fraud model data.
    #[command(subcommand)]
    Fraud(cli::fraud::FraudCommand),
    /// Fraud alerts, for analysts.
    #[command(subcommand)]
    Alerts(cli::alerts::AlertsCommand),
    /// Manage the ClickHouse tables.
    #[command(subcommand)]
    Clickhouse(cli::clickhouse::ClickhouseCommand),
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Gen(a) => cli::generate::run(a),
        Command::Demo(a) => cli::demo::run(a),
        Command::Run(a) => cli::run::run(a),
        Command::Gateway(a) => cli::gateway::run(a),
        Command::Topics => cli::topics::run(),
        Command::Clickhouse(c) => cli::clickhouse::run(c),
        Command::Alerts(c) => cli::alerts::run(c),
        Command::Fraud(c) => cli::fraud::run(c),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
