//! Subcommands.

/// `println!` for command output: when the reader has gone (`arus topics | head -1`), the
/// command stops quietly instead of panicking on the broken pipe.
macro_rules! out {
    () => {
        $crate::cli::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))
    };
}

pub mod alerts;
pub mod bus;
pub mod clickhouse;
pub mod controller;
pub mod demo;
pub mod dlq;
pub mod fraud;
pub mod gateway;
pub mod generate;
pub mod job;
pub mod run;
pub mod topics;

use arus_generator::GeneratorConfig;
use arus_generator::config::parse_rate_bp;
use arus_schemas::Date;

/// An error that is the user's to fix: a command, a file, a name (exit status 2).
pub fn refused(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(arus_jobs::runtime::RunError::Invalid(message.into()))
}

/// The authenticator of `--issuer` (its keys discovered), or, without one, of an issuer inside
/// this process (`--insecure-dev-issuer`) whose internal token, valid 12 hours, is printed
/// after `label` — development only.
pub fn authenticator(
    issuer: Option<&str>,
    audience: &str,
    label: &str,
) -> anyhow::Result<arus_gateway::auth::Authenticator> {
    if let Some(issuer) = issuer {
        return arus_gateway::auth::Authenticator::discover(issuer, audience)
            .map_err(|e| anyhow::anyhow!("--issuer {issuer}: {e}"));
    }
    let dev = arus_gateway::auth::DevIssuer::new("arus-insecure-dev-issuer").map_err(anyhow::Error::msg)?;
    let claims = arus_gateway::auth::dev_claims("internal", "dev");
    let token = dev.token(audience, &claims, std::time::Duration::from_secs(12 * 3_600));
    eprintln!(
        "INSECURE DEVELOPMENT ISSUER: tokens are signed by a key made in this process; an internal token (12 \
         hours):\n  {label}{token}"
    );
    Ok(dev.authenticator(audience))
}

/// Generator settings shared by `gen` and `demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct Population {
    /// Seed: the same seed and settings give byte-identical output.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Claims to generate.
    #[arg(long)]
    pub claims: Option<u64>,
    /// Members in force at the start [default: a third of the claims, at least 50].
    #[arg(long)]
    pub members: Option<u64>,
    /// Providers [default: one per 50 members, at least 24].
    #[arg(long)]
    pub providers: Option<u64>,
    /// First date of service (YYYY-MM-DD).
    #[arg(long, default_value = "2026-01-01", value_parser = parse_date)]
    pub start: Date,
    /// Days of service dates to simulate.
    #[arg(long)]
    pub days: Option<u32>,
    /// Share of claims made fraudulent: a fraction (0.02), a percentage (2%) or basis points (200bp).
    #[arg(long, default_value = "2%", value_parser = parse_rate_bp)]
    pub fraud_rate: u32,
}

impl Population {
    /// The generator configuration, validated.
    pub fn config(&self, default_claims: u64, default_days: u32) -> anyhow::Result<GeneratorConfig> {
        let config = GeneratorConfig {
            seed: self.seed,
            claims: self.claims.unwrap_or(default_claims),
            members: self.members,
            providers: self.providers,
            start: self.start,
            days: self.days.unwrap_or(default_days),
            fraud_rate_bp: self.fraud_rate,
        };
        config.validate()?;
        Ok(config)
    }
}

fn parse_date(text: &str) -> Result<Date, String> {
    text.parse::<Date>().map_err(|e| e.to_string())
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    arus_schemas::money::group_digits(n, ',')
}

/// Writes one line to stdout; exits quietly if stdout was closed by its reader.
pub fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(line).and_then(|()| stdout.write_all(b"\n")) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {error}");
        std::process::exit(1);
    }
}
