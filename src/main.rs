//! `arus`: the command line of the arus stream-processing system.
//!
//! # Layout
//! - `cli::generate`: `arus gen`, the traffic generator into files.
//! - `cli::demo`: `arus demo`, the whole system in one process on the embedded log.
//! - `cli::run`: `arus run`, a pipeline in the foreground.
//! - `cli::topics`: `arus topics`, the topic table, applied, and events loaded and read.
//! - `cli::dlq`: `arus dlq tail/replay`, the dead letters.
//! - `cli::bus`: where a command's topics are (`--kafka` or `--log`).
//! - `cli::controller`: `arus controller`, jobs kept, launched and supervised; the jobs page.
//! - `cli::job`: `arus job …`, the controller's command line.
//! - `cli::gateway`: `arus gateway`, the REST and gRPC gateway over the serving store.
//! - `cli::alerts`: `arus alerts tail`, fraud alerts for analysts.
//! - `cli::fraud`: `arus fraud features`, the model's training data.
//! - `cli::clickhouse`: `arus clickhouse migrate`, the analytics tables.
//!
//! A failure exits 2 when it is the user's to fix (a spec, a file, a checkpoint of another
//! run), 3 when a service failed (running again may succeed), 4 on a bug, 1 otherwise.

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
    /// Keep, launch and supervise jobs: a REST API and a jobs page (`arus job …` talks to it).
    Controller(Box<cli::controller::ControllerArgs>),
    /// Jobs through the controller: submit, list, status, savepoint, stop, cancel, resume, logs.
    Job(cli::job::JobArgs),
    /// Serve the REST gateway over the state the jobs keep in Redis.
    Gateway(Box<cli::gateway::GatewayArgs>),
    /// The topics: list the table, apply it to a cluster, load and read events.
    Topics {
        #[command(subcommand)]
        command: Option<cli::topics::TopicsCommand>,
    },
    /// Dead letters: records the jobs could not read, shown and re-driven.
    #[command(subcommand)]
    Dlq(cli::dlq::DlqCommand),
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
        Command::Controller(a) => cli::controller::run(*a),
        Command::Job(a) => cli::job::run(a),
        Command::Gateway(a) => cli::gateway::run(*a),
        Command::Topics { command } => cli::topics::run(command),
        Command::Dlq(c) => cli::dlq::run(c),
        Command::Clickhouse(c) => cli::clickhouse::run(c),
        Command::Alerts(c) => cli::alerts::run(c),
        Command::Fraud(c) => cli::fraud::run(c),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let domain = domain_of(&e);
            let hint = match domain {
                Some(Domain::External) => "\n(a service failed: running again may succeed once it is back)",
                Some(Domain::Internal) => "\n(a bug in arus: please report it with this message)",
                Some(Domain::User) | None => "",
            };
            eprintln!("error: {e:#}{hint}");
            std::process::ExitCode::from(exit_code(domain))
        }
    }
}

use arus_jobs::runtime::{Domain, RunError};

/// Whose an error is, where it says: a job's failure, or a spec the user must fix.
fn domain_of(error: &anyhow::Error) -> Option<Domain> {
    error.chain().find_map(|cause| {
        if let Some(run) = cause.downcast_ref::<RunError>() {
            Some(run.domain())
        } else {
            cause.downcast_ref::<arus_jobs::runtime::spec::SpecError>().map(|_| Domain::User)
        }
    })
}

/// The exit status of a failure: 2 the user's input, 3 a service (retrying may help), 4 a bug;
/// 1 anything else.
fn exit_code(domain: Option<Domain>) -> u8 {
    match domain {
        Some(Domain::User) => 2,
        Some(Domain::External) => 3,
        Some(Domain::Internal) => 4,
        None => 1,
    }
}
