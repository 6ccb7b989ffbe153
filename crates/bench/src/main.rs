//! `make bench`: the operator (a child process) against a real kube-apiserver and etcd
//! and the fake Vast server (in this process), at N WorkerGroups of 20 workers, 10 % of
//! them sharing a workergroup with another one. Phases: first sync, steady state (no
//! change), churn (5 % of the workers change state per interval). Then the start phases,
//! in a namespace of their own with N WorkerGroups of distinct workergroups (a third with
//! discovery): a cold start (every WorkerGroup created just before the operator, with
//! leader election, starts) and a restart (kill -9, start again). Then, at the same or a
//! smaller N, the script a user would write instead (`hack/bench/baseline.sh`: curl plus
//! `kubectl patch --subresource=status` in a loop).
//!
//! Figures come from the same run: Vast calls (the fake's counters), apiserver requests
//! by verb (the apiserver's `apiserver_request_total`), change-to-status latency (the
//! bench changes workers at the fake and watches the status), operator CPU and peak RSS
//! (`/proc`). Results are printed as a table and written as JSON lines.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use fake_vast::{FakeVast, Shape, worker_json};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use vast_operator::crd::WorkerGroup;
use vast_testkit::cluster::Cluster;
use vast_testkit::operator::{Launch, OperatorProcess};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Benchmark the operator at several sizes.
#[derive(Parser, Clone)]
struct Args {
    /// Numbers of WorkerGroups.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    sizes: Vec<usize>,
    /// pollInterval of every WorkerGroup, in seconds.
    #[arg(long, default_value_t = 30)]
    interval: u64,
    /// Intervals of the steady phase.
    #[arg(long, default_value_t = 5)]
    steady_intervals: u32,
    /// Intervals of the churn phase.
    #[arg(long, default_value_t = 3)]
    churn_intervals: u32,
    /// Workers per workergroup.
    #[arg(long, default_value_t = 20)]
    workers: usize,
    /// Largest N the baseline script runs at (0: no baseline).
    #[arg(long, default_value_t = 200)]
    baseline_max: usize,
    /// Rounds of the baseline script.
    #[arg(long, default_value_t = 2)]
    baseline_rounds: u32,
    /// `--vast-max-rps` of the operator (N / interval calls per second are needed).
    #[arg(long, default_value_t = 250)]
    vast_max_rps: u32,
    /// The operator binary.
    #[arg(long, default_value = "target/release/vast-operator")]
    operator: PathBuf,
    /// Phases to run: `main` (first sync, steady, churn, baseline) and `start` (cold
    /// start and restart).
    #[arg(long, value_delimiter = ',', default_value = "main,start")]
    phases: Vec<String>,
    /// Where the JSON lines of the results go.
    #[arg(long, default_value = "target/bench/results.jsonl")]
    out: PathBuf,
    /// Add to `--out` instead of replacing it (a size run alone beside an earlier run;
    /// the plot takes the last row of each size).
    #[arg(long)]
    append: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    vast_operator::install_crypto_provider();
    let args = Args::parse();
    if let Some(bad) = args
        .phases
        .iter()
        .find(|p| !["main", "start"].contains(&p.as_str()))
    {
        return Err(format!("unknown phase {bad:?}: the phases are main and start").into());
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize()?;
    std::fs::create_dir_all(root.join("target/bench"))?;
    let out_path = root.join(&args.out);
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(args.append)
        .truncate(!args.append)
        .open(&out_path)?;
    let mut rows = Vec::new();
    for &n in &args.sizes {
        eprintln!("[bench] N = {n}");
        let row = run_size(&root, &args, n).await?;
        writeln!(out, "{row}")?;
        print_row(&row);
        rows.push(row);
    }
    eprintln!("[bench] results in {}", out_path.display());
    Ok(())
}

fn print_row(r: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
}

/// A local control plane for one size, stopped on drop. Without CoreDNS: its watches
/// would count in the apiserver requests measured, and the figures compare with those
/// taken before it was added.
fn cluster_up(root: &Path, n: usize) -> Result<Cluster> {
    let options = vast_testkit::cluster::Options {
        no_dns: true,
        ..Default::default()
    };
    Cluster::up(
        root,
        &root.join(format!("target/bench/cluster-{n}")),
        &options,
    )
}

/// Starts `vast-operator run` for namespace `ns`, logging to `target/bench/<log>.log`;
/// with leader election (a Lease in `ns`, a fixed identity) when `elect`.
fn spawn_operator(
    root: &Path,
    args: &Args,
    cluster: &Cluster,
    ns: &str,
    vast_url: &str,
    log: &str,
    elect: bool,
) -> Result<OperatorProcess> {
    let launch = Launch::new(
        &root.join(&args.operator),
        &cluster.kubeconfig(),
        vast_url,
        &root.join("target/bench"),
        log,
    )
    .args(["--namespace", ns])
    .args(["--vast-max-rps", &args.vast_max_rps.to_string()])
    // The workers' addresses come from the benchmarking range (RFC 2544), which the
    // endpoint address policy refuses unless opted back in, as a lab would.
    .args(["--endpoint-allow-cidrs", "198.18.0.0/15"])
    // Warnings only, so that logging costs nothing measurable; `make bench-smoke` asks
    // for more, to search it for keys.
    .env(
        "RUST_LOG",
        &std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
    );
    let launch = if elect {
        launch
            .args(["--lease-namespace", ns])
            .env("POD_NAME", "bench-0")
    } else {
        launch.args(["--leader-elect=false"])
    };
    launch.spawn()
}

/// Peak resident set size of the operator, MiB.
fn peak_rss_mib(op: &OperatorProcess) -> f64 {
    op.peak_rss_kib() as f64 / 1024.0
}

async fn client_for(kubeconfig: &Path) -> Result<Client> {
    vast_testkit::cluster::client_for(kubeconfig, Some(Duration::from_secs(300))).await
}

/// What the operator reads and writes, and the bench's own creates of WorkerGroups in
/// the first sync (subtracted where a figure is the operator's own). The apiserver's own
/// traffic (its Leases in kube-system, its controllers) and the bench's scrapes of
/// `/metrics` are left out.
const RESOURCES: &[&str] = &[
    "workergroups",
    "secrets",
    "services",
    "endpointslices",
    "events",
];

/// `apiserver_request_total` of [`RESOURCES`], summed by verb.
async fn requests_by_verb(client: &Client) -> Result<BTreeMap<String, f64>> {
    let text = vast_testkit::apiserver::metrics_text(client).await?;
    Ok(vast_testkit::apiserver::requests_by_verb(&text, RESOURCES))
}

fn total(requests: &BTreeMap<String, f64>) -> f64 {
    requests.values().sum()
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// CPU seconds so far of the control plane: the apiserver's own
/// `process_cpu_seconds_total`, and etcd's from /proc (its pid file in the cluster's
/// directory; None when that cannot be read).
#[derive(Clone, Copy, Default)]
struct PlaneCpu {
    apiserver: f64,
    etcd: Option<f64>,
}

/// One sample at a phase boundary: the requests of [`RESOURCES`] by verb, the control
/// plane's CPU (both from one scrape of the apiserver's `/metrics`, so that the bench's
/// own scraping costs the apiserver as little as it can) and when it was taken.
struct Sample {
    requests: BTreeMap<String, f64>,
    /// APPLYs of WorkerGroups themselves (not their status): the bench's creates, with
    /// the client's retries of them; the operator writes only the status.
    creates: f64,
    plane: PlaneCpu,
    at: Instant,
}

async fn sample(client: &Client, cluster: &Cluster) -> Result<Sample> {
    let text = vast_testkit::apiserver::metrics_text(client).await?;
    let etcd = std::fs::read_to_string(cluster.dir().join("etcd.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .map(vast_testkit::operator::cpu_seconds);
    Ok(Sample {
        requests: vast_testkit::apiserver::requests_by_verb(&text, RESOURCES),
        creates: vast_testkit::apiserver::requests(
            &text,
            &[
                ("resource", "workergroups"),
                ("subresource", ""),
                ("verb", "APPLY"),
            ],
        ) as f64,
        plane: PlaneCpu {
            apiserver: vast_testkit::metrics::sum(&text, "process_cpu_seconds_total"),
            etcd,
        },
        at: Instant::now(),
    })
}

/// The control plane's CPU between two samples (null for etcd where it was not read,
/// or where it went down: a restarted etcd starts its count again).
/// Seconds between two samples: the span of every per-second figure of a phase.
fn span(before: &Sample, after: &Sample) -> f64 {
    after.at.duration_since(before.at).as_secs_f64().max(1e-9)
}

fn plane_json(before: &Sample, after: &Sample) -> serde_json::Value {
    let span = span(before, after);
    let api = after.plane.apiserver - before.plane.apiserver;
    let etcd = match (before.plane.etcd, after.plane.etcd) {
        (Some(b), Some(a)) if a >= b => Some(a - b),
        _ => None,
    };
    json!({
        "apiserver_cpu_s": api,
        "apiserver_cores": api / span,
        "etcd_cpu_s": etcd,
        "etcd_cores": etcd.map(|e| e / span),
    })
}

/// The cumulative buckets of the operator's wait for a slot of `queue` (`reconcile`: to
/// poll; `write`: to write), from its `/metrics`.
async fn queue_wait(http: &reqwest::Client, base: &str, queue: &str) -> Vec<(f64, f64)> {
    let text = match http.get(format!("{base}/metrics")).send().await {
        Ok(resp) => resp.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    vast_testkit::metrics::buckets(
        &text,
        "vast_operator_queue_wait_seconds",
        &[("queue", queue)],
    )
}

/// A sample from the operator's `/metrics` (at `base`, its [`OperatorProcess::metrics`]),
/// summed over the series starting with `name` (0 when it does not answer).
async fn operator_metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let url = format!("{base}/metrics");
    let Ok(resp) = http.get(&url).send().await else {
        return 0.0;
    };
    vast_testkit::metrics::sum(&resp.text().await.unwrap_or_default(), name)
}

fn worker_url(id: i64, w: usize) -> String {
    let n = id as usize * 31 + w;
    format!(
        "http://198.18.{}.{}:{}",
        (n / 250) % 250,
        n % 250 + 1,
        40000 + w
    )
}

/// What the watch of the WorkerGroups saw.
#[derive(Default)]
struct Seen {
    first_ready: HashMap<String, Instant>,
    /// (WorkerGroup, worker id) -> (awaited state, when it changed at Vast).
    pending: HashMap<(String, i64), (String, Instant)>,
    latencies: Vec<Duration>,
}

fn watch_groups(client: Client, ns: &str, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    let api: Api<WorkerGroup> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(ev) = events.next().await {
            let Ok(wg) = ev else { continue };
            let Some(status) = wg.status.as_ref() else {
                continue;
            };
            let now = Instant::now();
            let name = wg.name_any();
            let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready && status.observed_generation == wg.metadata.generation {
                s.first_ready.entry(name.clone()).or_insert(now);
            }
            for w in &status.workers {
                let key = (name.clone(), w.id);
                if let Some((want, at)) = s.pending.get(&key)
                    && *want == w.status
                {
                    let latency = now - *at;
                    s.pending.remove(&key);
                    s.latencies.push(latency);
                }
            }
        }
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64()
}

async fn install_crd(client: &Client) -> Result<()> {
    vast_testkit::apiserver::install_crd(client, &vast_operator::crd::crd(), "bench").await
}

/// Creates namespace `ns` (if need be) with the Secret `vast` holding `key`.
async fn namespace_with_key(client: &Client, ns: &str, key: &str) -> Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await;
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "vast"}, "stringData": {"api-key": key}}),
    )?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            "vast",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

async fn run_size(root: &Path, args: &Args, n: usize) -> Result<serde_json::Value> {
    let cluster = cluster_up(root, n)?;
    let client = client_for(&cluster.kubeconfig()).await?;
    install_crd(&client).await?;
    let ns = "bench";
    let key = "vk1-bench-key-0123456789";
    namespace_with_key(&client, ns, key).await?;

    // The fake Vast: N - N/10 distinct workergroups; the last tenth of the WorkerGroups
    // share a workergroup with the first tenth.
    let fake = FakeVast::start(0).await?;
    let distinct = n - n / 10;
    let base = 200_000i64;
    for d in 0..distinct {
        let id = base + d as i64;
        let workers = (0..args.workers)
            .map(|w| worker_json(w as i64 + 1, "idle", Some(&worker_url(id, w))))
            .collect();
        fake.state.put_group(id, key, Shape::Array, workers);
    }
    let group_of = |i: usize| base + (i % distinct) as i64;
    let mut names_of: HashMap<i64, Vec<String>> = HashMap::new();
    for i in 0..n {
        names_of
            .entry(group_of(i))
            .or_default()
            .push(format!("wg-{i}"));
    }

    let seen = Arc::new(Mutex::new(Seen::default()));
    let watch = watch_groups(client.clone(), ns, seen.clone());

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    if !args.phases.iter().any(|p| p == "main") {
        let row =
            json!({"n": n, "start": start_phases(root, args, &cluster, &client, &fake, n).await?});
        drop(fake);
        drop(cluster);
        return Ok(row);
    }
    let op = spawn_operator(
        root,
        args,
        &cluster,
        ns,
        &fake.url(),
        &format!("operator-{n}"),
        false,
    )?;
    op.wait_ready(&http, Duration::from_secs(60)).await?;
    let interval = Duration::from_secs(args.interval);
    let calls = || -> u64 {
        (0..distinct)
            .map(|d| fake.state.calls(base + d as i64))
            .sum()
    };
    let polls = |http: reqwest::Client, url: String| async move {
        operator_metric(
            &http,
            &url,
            "vast_operator_reconciles_total{result=\"synced\"}",
        )
        .await
    };

    // Phase 1: first sync of N new WorkerGroups.
    let (s0, calls0, cpu0) = (sample(&client, &cluster).await?, calls(), op.cpu_seconds());
    let req0 = s0.requests.clone();
    let t0 = Instant::now();
    let api: Api<WorkerGroup> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let body = json!({
                "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
                "metadata": {"name": format!("wg-{i}")},
                "spec": {"workergroupId": group_of(i), "apiKeySecretRef": {"name": "vast"},
                         "pollInterval": format!("{}s", args.interval)}
            });
            async move {
                api.patch(
                    &format!("wg-{i}"),
                    &PatchParams::apply("bench"),
                    &Patch::Apply(&body),
                )
                .await
                .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let created = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let done = seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_ready
            .len();
        if done >= n {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {done}/{n} synced").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first_sync = seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .first_ready
        .values()
        .max()
        .map_or(Duration::ZERO, |t| *t - t0);
    let (s1, calls1, cpu1) = (sample(&client, &cluster).await?, calls(), op.cpu_seconds());
    let req1 = s1.requests.clone();

    // Phase 2: steady state. A measurement window: nothing changes at Vast.
    let polls1 = polls(http.clone(), op.metrics.clone()).await;
    let shared1 = operator_metric(
        &http,
        &op.metrics,
        "vast_operator_vast_shared_answers_total",
    )
    .await;
    tokio::time::sleep(interval * args.steady_intervals).await;
    let (s2, calls2, cpu2) = (sample(&client, &cluster).await?, calls(), op.cpu_seconds());
    let req2 = s2.requests.clone();
    let wait2 = queue_wait(&http, &op.metrics, "reconcile").await;
    let write_wait2 = queue_wait(&http, &op.metrics, "write").await;
    let polls2 = polls(http.clone(), op.metrics.clone()).await;
    let shared2 = operator_metric(
        &http,
        &op.metrics,
        "vast_operator_vast_shared_answers_total",
    )
    .await;

    // Phase 3: churn. Each interval 5 % of the workers change state.
    let changes_per_interval = (distinct * args.workers).div_ceil(20);
    let mut flipped: HashMap<(i64, i64), bool> = HashMap::new();
    let mut rng_state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let mut changed = 0usize;
    let churn_started = Instant::now();
    for _ in 0..args.churn_intervals {
        let started = Instant::now();
        // Distinct workers within an interval: a worker flipped twice before a poll
        // would never be seen in its first new state.
        let mut picked = std::collections::HashSet::new();
        while picked.len() < changes_per_interval {
            let id = base + (next() % distinct as u64) as i64;
            let worker = (next() % args.workers as u64) as i64 + 1;
            if !picked.insert((id, worker)) {
                continue;
            }
            let state = flipped.entry((id, worker)).or_insert(false);
            *state = !*state;
            let new = if *state { "loading" } else { "idle" };
            let at = Instant::now();
            fake.state.upsert_worker(id, worker, json!({"status": new}));
            let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
            for name in &names_of[&id] {
                s.pending
                    .insert((name.clone(), worker), (new.to_string(), at));
            }
            changed += 1;
        }
        let left = interval.saturating_sub(started.elapsed());
        tokio::time::sleep(left).await;
    }
    // Let the last changes arrive (at most two intervals more).
    let deadline = Instant::now() + interval * 2;
    while Instant::now() < deadline
        && !seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s3, calls3, cpu3) = (sample(&client, &cluster).await?, calls(), op.cpu_seconds());
    let req3 = s3.requests.clone();
    let wait3 = queue_wait(&http, &op.metrics, "reconcile").await;
    let write_wait3 = queue_wait(&http, &op.metrics, "write").await;
    // The churn intervals plus the wait for the last changes.
    let churn_span = churn_started.elapsed().as_secs_f64() / interval.as_secs_f64();
    let peak_rss = peak_rss_mib(&op);
    let rss_end = op.rss_kib() as f64 / 1024.0;
    let (mut latencies, missing) = {
        let s = seen.lock().unwrap_or_else(|p| p.into_inner());
        (s.latencies.clone(), s.pending.len())
    };
    latencies.sort();
    drop(op);
    watch.abort();
    let start = if args.phases.iter().any(|p| p == "start") {
        Some(start_phases(root, args, &cluster, &client, &fake, n).await?)
    } else {
        None
    };

    let steady_requests = delta(&req2, &req1);
    let steady_total: f64 = steady_requests.values().sum();
    let steady_polls = (polls2 - polls1).max(1.0);
    let intervals = f64::from(args.steady_intervals);
    let cpu_steady = cpu2 - cpu1;
    let mut row = json!({
        "n": n,
        "distinct_workergroups": distinct,
        "workers": args.workers,
        "interval_s": args.interval,
        "first_sync": {
            "create_s": created.as_secs_f64(),
            "all_synced_s": first_sync.as_secs_f64(),
            "vast_calls": calls1 - calls0,
            "apiserver_requests": delta(&req1, &req0),
            // The operator's own: less the bench's creates.
            "bench_creates": s1.creates - s0.creates,
            "apiserver_requests_per_workergroup": (total(&delta(&req1, &req0)) - (s1.creates - s0.creates)) / n as f64,
            "operator_cpu_s": cpu1 - cpu0,
            "operator_cores": (cpu1 - cpu0) / span(&s0, &s1),
            "plane": plane_json(&s0, &s1),
        },
        "steady": {
            "intervals": args.steady_intervals,
            "vast_calls_per_distinct_per_interval": (calls2 - calls1) as f64 / distinct as f64 / intervals,
            "polls": steady_polls,
            "shared_answers": shared2 - shared1,
            "apiserver_requests": steady_requests,
            "apiserver_requests_per_poll": (steady_total / steady_polls).max(0.0),
            "operator_cpu_s": cpu_steady,
            "operator_cores": cpu_steady / span(&s1, &s2),
            "operator_cpu_per_poll_ms": cpu_steady / steady_polls * 1000.0,
            "plane": plane_json(&s1, &s2),
        },
        "churn": {
            "intervals": args.churn_intervals,
            "changes": changed,
            "span_intervals": churn_span,
            "vast_calls_per_distinct_per_interval": (calls3 - calls2) as f64 / distinct as f64 / churn_span,
            "apiserver_requests": delta(&req3, &req2),
            "apiserver_requests_per_change": total(&delta(&req3, &req2)) / changed.max(1) as f64,
            "reconcile_queue_wait_p99_at_most_s": vast_testkit::metrics::quantile_bound(&wait2, &wait3, 0.99),
            // Writes wait for a slot of their own: the apiserver's pace.
            "write_queue_wait_p50_at_most_s": vast_testkit::metrics::quantile_bound(&write_wait2, &write_wait3, 0.5),
            "write_queue_wait_p99_at_most_s": vast_testkit::metrics::quantile_bound(&write_wait2, &write_wait3, 0.99),
            "latency_p50_s": percentile(&latencies, 0.5),
            "latency_p99_s": percentile(&latencies, 0.99),
            "latency_samples": latencies.len(),
            "not_seen": missing,
            "operator_cpu_s": cpu3 - cpu2,
            "operator_cores": (cpu3 - cpu2) / span(&s2, &s3),
            "plane": plane_json(&s2, &s3),
        },
        "operator_peak_rss_mib": peak_rss,
        "operator_rss_after_churn_mib": rss_end,
    });
    if let Some(start) = start {
        row["start"] = start;
    }

    if args.baseline_max > 0 {
        let nb = n.min(args.baseline_max);
        row["baseline"] = baseline(
            root,
            args,
            &cluster,
            &client,
            &fake.url(),
            key,
            nb,
            &group_of,
        )
        .await?;
        let b = &row["baseline"];
        let base_cpu_per_sync = b["cpu_per_sync_ms"].as_f64().unwrap_or(f64::NAN);
        let base_req_per_sync = b["apiserver_requests_per_sync"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let op_req_per_poll = steady_total / steady_polls;
        row["ratios"] = json!({
            "cpu_per_sync_baseline_over_operator":
                base_cpu_per_sync / (cpu_steady / steady_polls * 1000.0),
            // None when the operator made no request at all in the steady phase.
            "apiserver_requests_per_sync_baseline_over_operator":
                (op_req_per_poll > 0.0).then(|| base_req_per_sync / op_req_per_poll),
        });
    }
    drop(fake);
    drop(cluster);
    Ok(row)
}

/// The start phases in namespace `bench-start`: N WorkerGroups of distinct workergroups
/// (a third of them with discovery) created just before the operator starts (leader
/// election on, as a Deployment runs it), then a kill -9 and a start of the same pod
/// again. For each: the time until every WorkerGroup has been polled (its workergroup
/// called at the fake), the busiest second of Vast calls beside `--vast-max-rps`, the
/// most WorkerGroups counted overdue, and the apiserver requests.
async fn start_phases(
    root: &Path,
    args: &Args,
    cluster: &Cluster,
    client: &Client,
    fake: &FakeVast,
    n: usize,
) -> Result<serde_json::Value> {
    let ns = "bench-start";
    let key = "vk1-bench-start-0123456789";
    namespace_with_key(client, ns, key).await?;
    let base = 700_000i64;
    let ids: Vec<i64> = (0..n as i64).map(|i| base + i).collect();
    for &id in &ids {
        let workers = (0..args.workers)
            .map(|w| worker_json(w as i64 + 1, "idle", Some(&worker_url(id, w))))
            .collect();
        fake.state.put_group(id, key, Shape::Array, workers);
    }
    let api: Api<WorkerGroup> = Api::namespaced(client.clone(), ns);
    let t_create = Instant::now();
    futures::stream::iter(ids.clone())
        .map(|id| {
            let api = api.clone();
            let wg: WorkerGroup = serde_json::from_value(json!({
                "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
                "metadata": {"name": format!("wg-{id}")},
                "spec": {"workergroupId": id, "apiKeySecretRef": {"name": "vast"},
                         "pollInterval": format!("{}s", args.interval),
                         "discovery": {"enabled": id % 3 == 0}}
            }))
            .expect("workergroup");
            async move { api.create(&PostParams::default(), &wg).await.map(|_| ()) }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let created = t_create.elapsed();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut out = json!({"create_s": created.as_secs_f64()});
    let mut op: Option<OperatorProcess> = None;
    for phase in ["cold_start", "restart"] {
        if let Some(mut old) = op.take() {
            let _ = old.child.kill();
            let _ = old.child.wait();
        }
        let req0 = requests_by_verb(client).await?;
        let calls0: u64 = ids.iter().map(|id| fake.state.calls(*id)).sum();
        let t0 = Instant::now();
        let started = spawn_operator(
            root,
            args,
            cluster,
            ns,
            &fake.url(),
            &format!("operator-{n}-{phase}"),
            true,
        )?;
        let deadline = t0 + Duration::from_secs(1800);
        // The most WorkerGroups the operator's gauge counted overdue during the phase.
        let mut overdue_max = 0f64;
        let mut scraped = t0;
        let all_s = loop {
            if scraped.elapsed() >= Duration::from_secs(1) {
                scraped = Instant::now();
                let o = operator_metric(
                    &http,
                    &started.metrics,
                    "vast_operator_workergroups_overdue",
                )
                .await;
                overdue_max = overdue_max.max(o);
            }
            let firsts: Vec<Option<Instant>> = ids
                .iter()
                .map(|id| fake.state.call_times(*id).into_iter().find(|t| *t >= t0))
                .collect();
            let polled = firsts.iter().filter(|f| f.is_some()).count();
            if polled == n {
                let last = firsts.into_iter().flatten().max().unwrap_or(t0);
                break (last - t0).as_secs_f64();
            }
            if Instant::now() > deadline {
                return Err(
                    format!("{phase}: only {polled}/{n} WorkerGroups polled in 30 min").into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let req1 = requests_by_verb(client).await?;
        // Calls per whole second since the start, over every workergroup.
        let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
        for id in &ids {
            for t in fake.state.call_times(*id).into_iter().filter(|t| *t >= t0) {
                *per_second.entry((t - t0).as_secs()).or_insert(0) += 1;
            }
        }
        let calls: u64 = ids.iter().map(|id| fake.state.calls(*id)).sum::<u64>() - calls0;
        out[phase] = json!({
            "all_polled_s": all_s,
            "vast_calls": calls,
            "vast_calls_peak_per_s": per_second.values().max().copied().unwrap_or(0),
            "vast_max_rps": args.vast_max_rps,
            "apiserver_requests": delta(&req1, &req0),
            "overdue_max": overdue_max,
            "operator_peak_rss_mib": peak_rss_mib(&started),
        });
        op = Some(started);
    }
    drop(op);
    Ok(out)
}

/// Runs `hack/bench/baseline.sh` over the first `nb` WorkerGroups.
#[allow(clippy::too_many_arguments)]
async fn baseline(
    root: &Path,
    args: &Args,
    cluster: &Cluster,
    client: &Client,
    vast_url: &str,
    key: &str,
    nb: usize,
    group_of: &dyn Fn(usize) -> i64,
) -> Result<serde_json::Value> {
    let list: String = (0..nb)
        .map(|i| format!("wg-{i} {}\n", group_of(i)))
        .collect();
    let list_path = root.join("target/bench/baseline-groups.txt");
    std::fs::write(&list_path, list)?;
    let times_path = root.join("target/bench/baseline-times.txt");
    let before = requests_by_verb(client).await?;
    let t = Instant::now();
    let status = Command::new("bash")
        .arg(root.join("hack/bench/baseline.sh"))
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("KUBECTL", root.join("hack/bin/kubectl"))
        .env("VAST_URL", vast_url)
        .env("VAST_API_KEY", key)
        .env("NAMESPACE", "bench")
        .env("GROUPS_FILE", &list_path)
        .env("INTERVAL", args.interval.to_string())
        .env("ROUNDS", args.baseline_rounds.to_string())
        .env("TIMES_FILE", &times_path)
        .stdout(Stdio::null())
        .status()?;
    let wall = t.elapsed();
    if !status.success() {
        return Err("the baseline script failed".into());
    }
    let after = requests_by_verb(client).await?;
    // `times` prints two lines: the shell's user and system time, then its children's.
    let times = std::fs::read_to_string(&times_path)?;
    let cpu: f64 = times
        .split_whitespace()
        .map(|t| {
            let (m, s) = t.split_once('m').unwrap_or(("0", t));
            m.parse::<f64>().unwrap_or(0.0) * 60.0
                + s.trim_end_matches('s').parse::<f64>().unwrap_or(0.0)
        })
        .sum();
    let syncs = (nb as f64) * f64::from(args.baseline_rounds);
    let requests = delta(&after, &before);
    let total: f64 = requests.values().sum();
    let round_s = wall.as_secs_f64() / f64::from(args.baseline_rounds);
    Ok(json!({
        "n": nb,
        "rounds": args.baseline_rounds,
        "wall_s": wall.as_secs_f64(),
        "round_s": round_s,
        "keeps_up": round_s <= args.interval as f64 * 1.05,
        "cpu_s": cpu,
        "cpu_per_sync_ms": cpu / syncs * 1000.0,
        "apiserver_requests": requests,
        "apiserver_requests_per_sync": total / syncs,
    }))
}
