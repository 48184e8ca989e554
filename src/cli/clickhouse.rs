//! `arus clickhouse migrate`: the analytics tables, from the versioned DDL in
//! `deploy/clickhouse/`.

use anyhow::Context;

/// `arus clickhouse` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClickhouseCommand {
    /// Apply the migrations not applied yet (idempotent; applied versions are recorded).
    Migrate(MigrateArgs),
}

/// `arus clickhouse migrate` arguments.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// ClickHouse's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    url: String,
    /// Database (created if missing).
    #[arg(long, default_value = "arus")]
    database: String,
    /// Folder of `V<version>__<name>.sql` files.
    #[arg(long, default_value = "deploy/clickhouse")]
    dir: std::path::PathBuf,
}

/// Runs a subcommand.
pub fn run(command: ClickhouseCommand) -> anyhow::Result<()> {
    match command {
        ClickhouseCommand::Migrate(args) => {
            let migrations = arus_connectors::clickhouse::Migration::from_dir(&args.dir)
                .with_context(|| format!("--dir {}", args.dir.display()))?;
            let clickhouse = arus_connectors::clickhouse::ClickHouse::connect(&args.url, &args.database)?;
            let applied = clickhouse.migrate(&migrations)?;
            arus_jobs::analytics::check_tables(&clickhouse)?;
            if applied.is_empty() {
                eprintln!(
                    "{} (database {}): all {} migrations already applied",
                    args.url,
                    args.database,
                    migrations.len()
                );
            } else {
                let names: Vec<String> = migrations
                    .iter()
                    .filter(|m| applied.contains(&m.version))
                    .map(|m| format!("V{}__{}", m.version, m.name))
                    .collect();
                eprintln!("{} (database {}): applied {}", args.url, args.database, names.join(", "));
            }
            Ok(())
        }
    }
}
