//! The `vast-operator` command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vast_operator::controller::{self, Config, Context};
use vast_operator::{crd, duration, fake_vast, sync, vast};

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
    /// Serve a fake Vast API on 127.0.0.1, for tests and the demo.
    FakeVast {
        /// Port to listen on (0: any free port; the port is printed).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Play the demo story on this workergroup id.
        #[arg(long)]
        demo_workergroup: Option<i64>,
        /// API key the demo workergroup accepts.
        #[arg(
            long,
            env = "VAST_API_KEY",
            hide_env_values = true,
            default_value = "demo-key"
        )]
        demo_api_key: String,
        /// Time between steps of the demo story.
        #[arg(long, default_value = "8s", value_parser = parse_duration)]
        demo_step: Duration,
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

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Crd => {
            print!("{}", crd::crd_yaml()?);
        }
        Command::Run(args) => {
            init_tracing(args.log_json);
            let client = kube::Client::try_default().await?;
            let vast = vast::VastClient::new(&args.vast_url, args.vast_timeout)?;
            let config = Config {
                max_workers: usize::from(args.max_status_workers),
                status_heartbeat: (!args.status_heartbeat.is_zero())
                    .then_some(args.status_heartbeat),
                terminal_retry: args.terminal_retry,
                instance: std::env::var("POD_NAME").ok(),
                namespace: args.namespace,
                ..Config::default()
            };
            tracing::info!(vast_url = %args.vast_url, "starting vast-operator");
            controller::run(Context::new(client, vast, config), shutdown_signal()).await;
            tracing::info!("stopped");
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
        Command::FakeVast {
            port,
            demo_workergroup,
            demo_api_key,
            demo_step,
        } => {
            init_tracing(false);
            let server = fake_vast::FakeVast::start(port).await?;
            println!("fake Vast listening on {}", server.url());
            if let Some(id) = demo_workergroup {
                tokio::spawn(fake_vast::demo_scenario(
                    server.state.clone(),
                    id,
                    demo_api_key,
                    demo_step,
                ));
            }
            shutdown_signal().await;
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
