//! The `vast-operator` command line.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vast_operator::controller::Config;
use vast_operator::controller::context;
use vast_operator::runtime::leader;
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
    Run(Box<RunArgs>),
    /// Print the WorkerGroup CustomResourceDefinition (YAML).
    Crd,
    /// Print the workers of a workergroup (or, with --endpoint, of an endpoint) as the
    /// operator would write them (reads VAST_API_KEY).
    Workers {
        /// The workergroup id.
        #[arg(required_unless_present = "endpoint", conflicts_with = "endpoint", value_parser = clap::value_parser!(i64).range(1..))]
        id: Option<i64>,
        /// The endpoint id: list the workers of all its workergroups
        /// (`POST /get_endpoint_workers/`).
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        endpoint: Option<i64>,
        /// Base URL of the Vast serverless API.
        #[arg(long, env = "VAST_API_URL", default_value = "https://run.vast.ai")]
        vast_url: String,
        /// The Vast API key.
        #[arg(long, env = "VAST_API_KEY", hide_env_values = true)]
        api_key: String,
        /// Print the raw list as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        transport: TransportArgs,
    },
}

/// How Vast is reached.
#[derive(clap::Args)]
struct TransportArgs {
    /// Accept a plain http:// --vast-url to a host that is not loopback: the API key
    /// then travels unencrypted.
    #[arg(long, env = "ALLOW_INSECURE_VAST_URL")]
    allow_insecure_vast_url: bool,
    /// PEM file of CA certificates to trust for Vast besides the system's (a private
    /// CA, or a TLS-inspecting proxy).
    #[arg(long, env = "VAST_CA_FILE")]
    vast_ca_file: Option<std::path::PathBuf>,
}

impl TransportArgs {
    fn transport(&self) -> vast::Transport {
        vast::Transport {
            allow_insecure: self.allow_insecure_vast_url,
            ca_file: self.vast_ca_file.clone(),
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// Base URL of the Vast serverless API.
    #[arg(long, env = "VAST_API_URL", default_value = "https://run.vast.ai")]
    vast_url: String,
    /// Timeout of one Vast call.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    vast_timeout: Duration,
    #[command(flatten)]
    transport: TransportArgs,
    /// Most workers listed in a status (counts stay exact beyond it).
    #[arg(long, default_value_t = Config::default().max_workers as u16, value_parser = clap::value_parser!(u16).range(1..=2000))]
    max_status_workers: u16,
    /// Refresh status.lastSyncTime at least this often when nothing changed (0: never).
    #[arg(long, default_value = context::DEFAULT_STATUS_HEARTBEAT, value_parser = parse_duration_or_zero)]
    status_heartbeat: Duration,
    /// Retry interval for errors that retrying cannot fix (bad key, missing Secret).
    #[arg(long, default_value = context::DEFAULT_TERMINAL_RETRY, value_parser = parse_duration)]
    terminal_retry: Duration,
    /// Watch WorkerGroups and Secrets in this namespace only (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Elect a leader with a Lease: only the leader polls and writes.
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "vast-operator")]
    lease_name: String,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long the Lease holds without renewal; a standby takes over within it.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// Longest time from SIGTERM to exit: running reconciles are cancelled after it.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// Address of the Prometheus endpoint (`/metrics`).
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Serve `/metrics` over HTTPS, to callers whose bearer token may `get` the
    /// non-resource URL /metrics (checked with a TokenReview and a SubjectAccessReview):
    /// 401 without a valid token, 403 without the permission. Needs --metrics-addr and
    /// --health-addr to differ (the probes stay plain HTTP).
    #[arg(long, env = "METRICS_SECURE", default_value_t = false, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    metrics_secure: bool,
    /// Directory holding `tls.crt` and `tls.key` for --metrics-secure (read again when
    /// they change); without it a self-signed certificate is made at start-up.
    #[arg(long, env = "METRICS_CERT_DIR")]
    metrics_cert_dir: Option<std::path::PathBuf>,
    /// Most polls at once, and apart from them most reconciles writing at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = Config::default().concurrency, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Most calls per second to Vast, over all WorkerGroups (the rest wait their turn).
    #[arg(long, env = "VAST_MAX_RPS", default_value_t = std::num::NonZeroU32::new(10).expect("10 > 0"))]
    vast_max_rps: std::num::NonZeroU32,
    /// Consecutive transient failures before Ready turns False (nothing is written below).
    #[arg(long, env = "FAILURE_THRESHOLD", default_value_t = Config::default().failure_threshold, value_parser = clap::value_parser!(u32).range(1..))]
    failure_threshold: u32,
    /// Label selector narrowing the Secret watch (e.g. `vast.ai/api-key=true`).
    #[arg(long, env = "SECRET_SELECTOR")]
    secret_selector: Option<String>,
    /// How long after the last successful poll a WorkerGroup's endpoints stay ready;
    /// then (and at once on a terminal error) they are published not ready
    /// (default: 3 × pollInterval, at least 2m).
    #[arg(long, env = "STALE_AFTER", value_parser = parse_duration)]
    stale_after: Option<Duration>,
    /// Address of the probes (`/healthz`, `/readyz`).
    #[arg(long, env = "HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    health_addr: SocketAddr,
    /// Ranges opted back in to the endpoint address policy, comma-separated (a VPN, a
    /// peered network): worker addresses in them may become endpoints although they are
    /// not globally routable. What the apiserver refuses stays refused.
    #[arg(long, env = "ENDPOINT_ALLOW_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    endpoint_allow_cidrs: Vec<ipnet::IpNet>,
    /// Ranges refused as endpoints on top of the defaults, comma-separated (the cluster's
    /// own node or load-balancer ranges); wins over --endpoint-allow-cidrs.
    #[arg(long, env = "ENDPOINT_DENY_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    endpoint_deny_cidrs: Vec<ipnet::IpNet>,
    /// Base URL of Vast's console API, read for status.settings (https only, like
    /// --vast-url; the same CA options).
    #[arg(
        long,
        env = "VAST_CONSOLE_URL",
        default_value = "https://console.vast.ai"
    )]
    vast_console_url: String,
    /// How often each API key's workergroup and endpoint listings are read from the
    /// console for status.settings (one read per key serves all its WorkerGroups), from
    /// 10s to 24h; 0 switches settings off.
    #[arg(long, env = "SETTINGS_INTERVAL", default_value = "5m", value_parser = parse_settings_interval)]
    settings_interval: Duration,
    /// Most endpoints published per WorkerGroup (lowest worker ids first; the rest are
    /// counted in status.discovery.skipped).
    #[arg(long, env = "MAX_ENDPOINTS", default_value_t = Config::default().endpoints.max_endpoints as u32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_endpoints: u32,
}

fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    sync::endpoints::parse_cidr(s)
}

impl RunArgs {
    fn leader(&self) -> Result<Option<leader::Settings>, String> {
        if !self.leader_elect {
            return Ok(None);
        }
        leader::check_duration(self.lease_duration)?;
        let namespace = self
            .lease_namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "default".to_string());
        let identity = std::env::var("POD_NAME")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "vast-operator".into());
                format!("{host}-{:08x}", rand::random::<u32>())
            });
        Ok(Some(leader::Settings {
            lease_name: self.lease_name.clone(),
            namespace,
            identity,
            duration: self.lease_duration,
        }))
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s)
}

/// `0` (off), or from 10s (Vast refuses a second listing within 3 s) to 24h.
fn parse_settings_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if !d.is_zero() && d < Duration::from_secs(10) {
        return Err(format!(
            "{s} is shorter than 10s (use 0 to switch settings off)"
        ));
    }
    if d > vast_operator::controller::settings::MAX_INTERVAL {
        return Err(format!("{s} is longer than 24h"));
    }
    Ok(d)
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
            let leader = args.leader()?;
            if args.metrics_cert_dir.is_some() && !args.metrics_secure {
                return Err("--metrics-cert-dir needs --metrics-secure".into());
            }
            app::run(app::Settings {
                leader,
                metrics_addr: args.metrics_addr,
                metrics_secure: args.metrics_secure,
                metrics_cert_dir: args.metrics_cert_dir,
                health_addr: args.health_addr,
                shutdown_timeout: args.shutdown_timeout,
                vast_max_rps: args.vast_max_rps,
                console: (!args.settings_interval.is_zero())
                    .then(|| (args.vast_console_url.clone(), args.settings_interval)),
                vast_url: args.vast_url,
                vast_timeout: args.vast_timeout,
                vast_transport: args.transport.transport(),
                controller: Config {
                    max_workers: usize::from(args.max_status_workers),
                    status_heartbeat: (!args.status_heartbeat.is_zero())
                        .then_some(args.status_heartbeat),
                    terminal_retry: args.terminal_retry,
                    instance: std::env::var("POD_NAME").ok(),
                    namespace: args.namespace,
                    concurrency: args.concurrency,
                    failure_threshold: args.failure_threshold,
                    secret_selector: args.secret_selector,
                    stale_after: args.stale_after,
                    endpoints: sync::EndpointPolicy::new(
                        args.endpoint_allow_cidrs,
                        args.endpoint_deny_cidrs,
                        args.max_endpoints as usize,
                    ),
                    ..Config::default()
                },
            })
            .await?;
        }
        Command::Workers {
            id,
            endpoint,
            vast_url,
            api_key,
            json,
            transport,
        } => {
            let client = vast::VastClient::with_transport(
                &vast_url,
                Duration::from_secs(30),
                &transport.transport(),
            )?;
            let scope = match (id, endpoint) {
                (_, Some(e)) => crd::Scope::Endpoint(e),
                (Some(id), None) => crd::Scope::Workergroup(id),
                (None, None) => return Err("give a workergroup id or --endpoint <id>".into()),
            };
            let workers = client.workers_for(scope, &api_key, "").await?;
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
