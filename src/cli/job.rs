//! `arus job …`: jobs submitted to, and managed through, `arus controller`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

/// Where the controller is, and how to talk to it.
#[derive(Debug, clap::Args)]
pub struct Connection {
    /// The controller's address.
    #[arg(long, env = "ARUS_CONTROLLER", default_value = "http://127.0.0.1:8088", global = true)]
    controller: String,
    /// An access token with the admin scope (`arus controller --insecure-dev-issuer` prints one).
    #[arg(long, env = "ARUS_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// The CA (PEM) the controller's certificate chains to, for an `https://` controller.
    #[arg(long, env = "ARUS_CA", value_name = "PEM", global = true)]
    ca: Option<PathBuf>,
    /// A client certificate (PEM) for a controller that asks for one (mTLS).
    #[arg(long, env = "ARUS_CLIENT_CERT", value_name = "PEM", requires = "client_key", global = true)]
    client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "ARUS_CLIENT_KEY", value_name = "PEM", requires = "client_cert", global = true)]
    client_key: Option<PathBuf>,
    /// `table` for people, `json` for scripts.
    #[arg(long, default_value = "table", global = true, value_parser = ["table", "json"])]
    output: String,
}

/// `arus job` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Submit a pipeline spec; prints the job's id at once.
    Submit {
        /// The spec (`pipelines/<name>.toml`).
        spec: PathBuf,
        /// The job's name [default: its kind].
        #[arg(long)]
        name: Option<String>,
        /// Override a key of the spec (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Worker threads per process.
        #[arg(long, short = 'w', default_value_t = 1)]
        workers: u32,
        /// Processes in the job's timely cluster.
        #[arg(long, default_value_t = 1)]
        processes: u32,
        /// Start from this savepoint (a snapshot file, as `arus job savepoint` prints).
        #[arg(long, value_name = "PATH")]
        from_savepoint: Option<PathBuf>,
    },
    /// Every job: state, throughput, lag, watermark, last checkpoint.
    List,
    /// One job: the above, its transitions, savepoints and last error.
    Status {
        /// The job's id.
        id: String,
    },
    /// Take a savepoint; the job goes on.
    Savepoint {
        /// The job's id.
        id: String,
        /// Where to put it [default: the job's folder].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Stop with a savepoint.
    Stop {
        /// The job's id.
        id: String,
    },
    /// End at once, without a savepoint.
    Cancel {
        /// The job's id.
        id: String,
    },
    /// Start a stopped, cancelled, failed or finished job again.
    Resume {
        /// The job's id.
        id: String,
        /// From this savepoint instead of the newest snapshot.
        #[arg(long, value_name = "PATH")]
        from_savepoint: Option<PathBuf>,
    },
    /// The job's output.
    Logs {
        /// The job's id.
        id: String,
        /// Keep printing what comes.
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

/// `arus job` with its connection.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: JobCommand,
}

/// The certificates of a PEM file.
fn certificates(path: &PathBuf) -> anyhow::Result<Vec<ureq::tls::Certificate<'static>>> {
    let pem = std::fs::read(path).map_err(|e| super::refused(format!("reading {}: {e}", path.display())))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(super::refused(format!("{}: no certificate in it", path.display())));
    }
    Ok(certs)
}

struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn new(connection: &Connection, timeout: Duration) -> anyhow::Result<Self> {
        use ureq::tls::{ClientCert, PrivateKey, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &connection.ca {
            tls = tls.root_certs(RootCerts::new_with_certs(&certificates(ca)?));
        }
        if let (Some(cert), Some(key)) = (&connection.client_cert, &connection.client_key) {
            let chain = certificates(cert)?;
            let pem = std::fs::read(key).map_err(|e| super::refused(format!("reading {}: {e}", key.display())))?;
            let key = PrivateKey::from_pem(&pem).map_err(|e| super::refused(format!("{}: {e}", key.display())))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .new_agent();
        Ok(Client {
            base: connection.controller.trim_end_matches('/').to_owned(),
            token: connection.token.clone(),
            agent,
        })
    }

    /// `method path` with `body`; the answer's JSON, or the controller's error in words.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match (method, body) {
            ("GET", _) => {
                let mut request = self.agent.get(&url);
                if let Some(a) = &authorization {
                    request = request.header("Authorization", a);
                }
                request.call()
            }
            (_, body) => {
                let mut request = self.agent.post(&url);
                if let Some(a) = &authorization {
                    request = request.header("Authorization", a);
                }
                request.send_json(body.unwrap_or_else(|| json!({})))
            }
        };
        let mut response = result.map_err(|e| {
            anyhow::Error::new(arus_jobs::runtime::RunError::Invalid(format!(
                "the controller at {} is out of reach ({e}); is `arus controller` running there?",
                self.base
            )))
        })?;
        let status = response.status().as_u16();
        let bytes = response.body_mut().read_to_vec().context("reading the controller's answer")?;
        Ok((status, bytes))
    }

    fn json(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, bytes) = self.call(method, path, body)?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let message = value["error"]["message"].as_str().unwrap_or("no message").to_owned();
        let code = value["error"]["code"].as_str().unwrap_or("").to_owned();
        let hint = match status {
            401 => " (set ARUS_TOKEN or --token to an admin token)",
            _ => "",
        };
        Err(super::refused(format!("the controller answered {status} {code}: {message}{hint}")))
    }
}

/// Runs an `arus job` command.
pub fn run(args: JobArgs) -> anyhow::Result<()> {
    let connection = &args.connection;
    // An answer as JSON for scripts, or in `people`'s words.
    let show = |answer: &Value, people: &dyn Fn(&Value)| {
        if connection.output == "json" {
            out!("{answer}");
        } else {
            people(answer);
        }
    };
    let client = Client::new(connection, Duration::from_secs(30))?;
    match args.command {
        JobCommand::Submit { spec, name, overrides, workers, processes, from_savepoint } => {
            let text = std::fs::read_to_string(&spec)
                .map_err(|e| super::refused(format!("reading {}: {e}", spec.display())))?;
            let name = name.or_else(|| spec.file_stem().and_then(|s| s.to_str()).map(str::to_owned));
            let from_savepoint = absolute_savepoint(from_savepoint)?;
            let body = json!({"spec": text, "name": name, "set": overrides, "workers": workers,
                              "processes": processes, "from_savepoint": from_savepoint});
            let job = client.json("POST", "/internal/v1/jobs", Some(body))?;
            show(&job, &|job| {
                out!("{}", job["id"].as_str().unwrap_or(""));
            });
        }
        JobCommand::List => {
            let jobs = client.json("GET", "/internal/v1/jobs", None)?;
            show(&jobs, &|jobs| {
                print_table(jobs.as_array().map(Vec::as_slice).unwrap_or_default());
            });
        }
        JobCommand::Status { id } => {
            let job = client.json("GET", &format!("/internal/v1/jobs/{id}"), None)?;
            show(&job, &|job| {
                print_status(job);
            });
        }
        JobCommand::Savepoint { id, dir } => {
            let dir = dir.map(|d| std::path::absolute(&d).unwrap_or(d));
            let waited = Client::new(connection, Duration::from_secs(30 * 60))?;
            let answer = with_progress(&format!("savepoint of {id}"), || {
                waited.json("POST", &format!("/internal/v1/jobs/{id}/savepoint"), Some(json!({"dir": dir})))
            })?;
            show(&answer, &|answer| {
                out!("savepoint {}: {}", answer["epoch"], answer["path"].as_str().unwrap_or(""));
            });
        }
        JobCommand::Stop { id } => {
            let waited = Client::new(connection, Duration::from_secs(30 * 60))?;
            let answer = with_progress(&format!("stopping {id} with a savepoint"), || {
                waited.json("POST", &format!("/internal/v1/jobs/{id}/stop"), None)
            })?;
            show(&answer, &|answer| match answer["savepoint"].as_str() {
                Some(path) => out!("{id} {}; savepoint {path}", answer["state"].as_str().unwrap_or("")),
                None => out!("{id} {}", answer["state"].as_str().unwrap_or("")),
            });
        }
        JobCommand::Cancel { id } => {
            let answer = with_progress(&format!("cancelling {id}"), || {
                client.json("POST", &format!("/internal/v1/jobs/{id}/cancel"), None)
            })?;
            show(&answer, &|answer| {
                out!("{id} {}", answer["state"].as_str().unwrap_or(""));
            });
        }
        JobCommand::Resume { id, from_savepoint } => {
            let from_savepoint = absolute_savepoint(from_savepoint)?;
            let answer = client.json(
                "POST",
                &format!("/internal/v1/jobs/{id}/resume"),
                Some(json!({"from_savepoint": from_savepoint})),
            )?;
            show(&answer, &|answer| {
                out!("{id} {}", answer["state"].as_str().unwrap_or(""));
            });
        }
        JobCommand::Logs { id, follow } => {
            use std::io::Write as _;
            let mut from = 0u64;
            loop {
                let (status, bytes) = client.call("GET", &format!("/internal/v1/jobs/{id}/logs?from={from}"), None)?;
                if status != 200 {
                    return client.json("GET", &format!("/internal/v1/jobs/{id}/logs?from={from}"), None).map(|_| ());
                }
                let mut stdout = std::io::stdout().lock();
                if stdout.write_all(&bytes).and_then(|()| stdout.flush()).is_err() {
                    return Ok(());
                }
                from += bytes.len() as u64;
                if bytes.is_empty() {
                    if !follow {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
    Ok(())
}

/// A savepoint's path made absolute (the controller may run elsewhere in the file system).
fn absolute_savepoint(path: Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    path.map(|p| p.canonicalize().with_context(|| format!("--from-savepoint {}", p.display()))).transpose()
}

/// Runs `call` with a spinner and the time it has taken on stderr.
fn with_progress<T>(what: &str, call: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a template"));
    spinner.set_message(what.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = call();
    spinner.finish_and_clear();
    result
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "—".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_u64().map_or_else(|| n.to_string(), super::thousands),
        other => other.to_string(),
    }
}

/// `ms` since the epoch as a UTC time.
fn when(value: &Value) -> String {
    value.as_i64().map_or_else(|| "—".to_owned(), |ms| arus_schemas::Timestamp(ms).to_string())
}

/// The jobs as `arus job list` prints them.
pub fn print_table(jobs: &[Value]) {
    let header =
        ["ID", "NAME", "KIND", "STATE", "SINCE", "WORKERS", "RECORDS/S", "LAG", "WATERMARK", "LAST CHECKPOINT"];
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            vec![
                text(&job["id"]),
                text(&job["name"]),
                text(&job["kind"]),
                text(&job["state"]),
                when(&job["since_ms"]),
                format!("{}×{}", job["workers"], job["processes"]),
                text(&job["records_per_second"]),
                text(&job["lag"]),
                when(&job["watermark_ms"]),
                job["checkpoint"]["epoch"]
                    .as_u64()
                    .map_or_else(|| "—".to_owned(), |e| format!("#{e} {}", when(&job["checkpoint"]["at_ms"]))),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    if rows.is_empty() {
        out!("(no jobs: `arus job submit pipelines/<name>.toml`)");
    }
    for row in rows {
        line(row);
    }
}

fn print_status(job: &Value) {
    out!("{}  {} ({})", text(&job["id"]), text(&job["state"]), text(&job["kind"]));
    out!("  since        {}", when(&job["since_ms"]));
    out!(
        "  workers      {} × {} process(es), launched {} time(s), pids {}",
        job["workers"],
        job["processes"],
        job["launches"],
        job["pids"]
    );
    out!(
        "  records      {} ({}/s), lag {}, dead letters {}",
        text(&job["records"]),
        text(&job["records_per_second"]),
        text(&job["lag"]),
        text(&job["dead_letters"])
    );
    out!("  watermark    {}", when(&job["watermark_ms"]));
    match job["checkpoint"].as_object() {
        Some(c) => out!("  checkpoint   #{} at {}: {}", c["epoch"], when(&c["at_ms"]), text(&c["path"])),
        None => out!("  checkpoint   —"),
    }
    if let Some(error) = job["last_error"].as_str() {
        out!("  last error   {error}");
    }
    for savepoint in job["savepoints"].as_array().into_iter().flatten() {
        out!("  savepoint    {}", text(savepoint));
    }
    out!("  transitions");
    for t in job["transitions"].as_array().into_iter().flatten() {
        out!(
            "    {}  {:>10} → {:<10}  {}",
            when(&t["at_ms"]),
            t["from"].as_str().unwrap_or(""),
            text(&t["to"]),
            text(&t["reason"])
        );
    }
}
