//! The `vast-operator` command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vast_operator::controller::Config;
use vast_operator::{app, crd, duration, runtime, sync, vast};

/// Mirrors Vast.ai serverless workergroups into Kubernetes `WorkerGroup` resources.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster).
    Run(RunArgs),
    /// Print the WorkerGroup CustomResourceDefinition (YAML).
    Crd,
    /// Print the workers of a workergroup as the operator would write them (reads VAST_API_KEY).
    Workers {
        /// The workergroup id.
        id: i64,
        /// Base URL of the Vast serverless API.
        #[arg(long, env = "VAST_API_URL", default_value = "https://run.vast.ai")]
        vast_url: String,
        /// The Vast API key.
        #[arg(long, env = "VAST_API_KEY", hide_env_values = true)]
        api_key: String,
        /// Print the raw list as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Base URL of the Vast serverless API.
    #[arg(long, env = "VAST_API_URL", default_value = "https://run.vast.ai")]
    vast_url: String,
    /// Timeout of one Vast call.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    vast_timeout: Duration,
    /// Most workers listed in a status (counts stay exact beyond it).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=2000))]
    max_status_workers: u16,
    /// Refresh status.lastSyncTime at least this often when nothing changed (0: never).
    #[arg(long, default_value = "10m", value_parser = parse_duration_or_zero)]
    status_heartbeat: Duration,
    /// Retry interval for errors that retrying cannot fix (bad key, missing Secret).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    terminal_retry: Duration,
    /// Watch WorkerGroups and Secrets in this namespace only (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s)
}

fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    if s == "0" {
        Ok(Duration::ZERO)
    } else {
        duration::parse(s)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    vast_operator::install_crypto_provider();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Crd => {
            print!("{}", crd::crd_yaml()?);
        }
        Command::Run(args) => {
            runtime::telemetry::init(args.log_json);
            app::run(app::Settings {
                vast_url: args.vast_url,
                vast_timeout: args.vast_timeout,
                controller: Config {
                    max_workers: usize::from(args.max_status_workers),
                    status_heartbeat: (!args.status_heartbeat.is_zero())
                        .then_some(args.status_heartbeat),
                    terminal_retry: args.terminal_retry,
                    instance: std::env::var("POD_NAME").ok(),
                    namespace: args.namespace,
                    ..Config::default()
                },
            })
            .await?;
        }
        Command::Workers {
            id,
            vast_url,
            api_key,
            json,
        } => {
            let client = vast::VastClient::new(&vast_url, Duration::from_secs(30))?;
            let workers = client.workergroup_workers(id, &api_key).await?;
            let rows = sync::to_status_workers(&workers);
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", table(&rows));
            }
        }
    }
    Ok(())
}

fn table(rows: &[vast_operator::crd::WorkerStatus]) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut lines = vec![[
        "ID".to_string(),
        "STATUS".into(),
        "READY".into(),
        "URL".into(),
        "CREATED".into(),
        "LOAD".into(),
        "REQS".into(),
        "PERF".into(),
    ]];
    for w in rows {
        lines.push([
            w.id.to_string(),
            w.status.clone(),
            w.ready.to_string(),
            opt(w.url.clone()),
            opt(w.created_at.map(|t| t.to_string())),
            opt(w.cur_load.map(|v| format!("{v:.2}"))),
            opt(w.reqs_working.map(|v| v.to_string())),
            opt(w.perf.map(|v| format!("{v:.1}"))),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}
