//! `make chaos`: two replicas of the operator, with leader election and a short Lease,
//! against the local control plane (etcd, kube-apiserver, kube-controller-manager,
//! CoreDNS) and the fake Vast, while workers change state all along and a fault schedule
//! drawn from a seed hits Vast, the replicas, the control plane and the WorkerGroups.
//! Everything that happens is recorded (the fake's truth, every WorkerGroup status and
//! EndpointSlice as watched, the Lease holder, the faults) and judged by the oracle
//! (`oracle.rs`). Writes `target/chaos/report.json` and a table; a violation fails the
//! run, with the seed to replay it.

mod audit;
mod oracle;
mod proxy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use fake_vast::{FakeState, Fault, FaultBody, Shape};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use vast_operator::crd::WorkerGroup;
use vast_testkit::cluster::Cluster;
use vast_testkit::operator::{Launch, OperatorProcess};

use oracle::{At, Bounds, GroupSeen, Own, Record, Scope, SliceSeen, TruthWorker};
use proxy::Proxy;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Chaos with an oracle.
#[derive(Parser, Debug)]
struct Args {
    /// The seed of the fault schedule and of the workers' changes.
    #[arg(long, env = "CHAOS_SEED", default_value_t = 1)]
    seed: u64,
    /// How long the faults go on; a quiet minute follows for the convergence check.
    #[arg(long, env = "CHAOS_MINUTES", default_value_t = 10.0)]
    minutes: f64,
    /// The operator binary.
    #[arg(long, default_value = "target/debug/vast-operator")]
    operator: PathBuf,
    /// Where the report, the logs and the control plane go.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
    /// A planted bug for the oracle to catch (needs an operator built with the
    /// `failpoints` feature): `stale`, endpoints that never go stale.
    #[arg(long, env = "CHAOS_PLANT", value_parser = ["stale"])]
    plant: Option<String>,
}

const NAMESPACES: [&str; 3] = ["chaos-a", "chaos-b", "chaos-c"];
const SYSTEM: &str = "chaos-system";
const LEASE: &str = "vast-operator-chaos";
const INTERVAL: Duration = Duration::from_secs(5);
const LEASE_DURATION: Duration = Duration::from_secs(6);
const STALE_AFTER: Duration = Duration::from_secs(20);
const HEARTBEAT: Duration = Duration::from_secs(10);
/// The quiet time after the last fault in which every WorkerGroup must converge.
const QUIET: Duration = Duration::from_secs(60);

/// The key of namespace `i` (each namespace has its own account).
fn key_of(i: usize, generation: u32) -> String {
    KEYS[i][generation as usize % KEYS[i].len()].to_string()
}

/// The keys of each namespace, by generation (rotations cycle through them). Written out
/// whole so that `hack/leak-search.sh` also looks for their tails and base64 forms.
const KEYS: [[&str; 4]; 3] = [
    [
        "vk1-chaos-a0-7c1e4b9a2d",
        "vk1-chaos-a1-5f0d2e8c31",
        "vk1-chaos-a2-9b4a6c1e07",
        "vk1-chaos-a3-2e7f9d0b54",
    ],
    [
        "vk1-chaos-b0-4d8e1a7c62",
        "vk1-chaos-b1-8c3b5f2e19",
        "vk1-chaos-b2-1a6d9e4c73",
        "vk1-chaos-b3-6f2c8b0d45",
    ],
    [
        "vk1-chaos-c0-3b9e7d1a28",
        "vk1-chaos-c1-7e1c4a9f56",
        "vk1-chaos-c2-0d5b8e3c91",
        "vk1-chaos-c3-9a4f2d6b17",
    ],
];

/// The workergroups of namespace `i`: 8 of them; the last two form endpoint `10 * (i+1)`.
fn groups_of_ns(i: usize) -> Vec<i64> {
    let base = (i as i64 + 1) * 100;
    (1..=8).map(|g| base + g).collect()
}

fn endpoint_of_ns(i: usize) -> i64 {
    (i as i64 + 1) * 10
}

/// The fake's truth, recorded as it changes.
#[derive(Clone)]
struct World {
    state: FakeState,
    started: Instant,
    inner: Arc<Mutex<WorldInner>>,
}

#[derive(Default)]
struct WorldInner {
    /// Per group: worker id -> (state, address, port).
    workers: BTreeMap<i64, BTreeMap<i64, (String, String, u16)>>,
    truth: BTreeMap<i64, Vec<(At, Vec<TruthWorker>)>>,
    next_id: i64,
    /// Workergroups Vast says are gone (a fault): their truth is empty meanwhile.
    deleted: std::collections::BTreeSet<i64>,
}

impl World {
    fn now(&self) -> At {
        self.started.elapsed().as_secs_f64()
    }

    /// Sets the workers of `group` at the fake and records them.
    fn set(&self, group: i64, workers: BTreeMap<i64, (String, String, u16)>) {
        let json: Vec<serde_json::Value> = workers
            .iter()
            .map(|(id, (status, addr, port))| {
                fake_vast::worker_json(*id, status, Some(&format!("http://[{addr}]:{port}")))
            })
            .collect();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.state.set_workers(group, json);
        let at = self.now();
        let gone = inner.deleted.contains(&group);
        let truth = workers
            .iter()
            .filter(|_| !gone)
            .map(|(id, (status, addr, _))| TruthWorker {
                id: *id,
                status: status.clone(),
                addr: addr.clone(),
            })
            .collect();
        inner.truth.entry(group).or_default().push((at, truth));
        inner.workers.insert(group, workers);
    }

    /// Vast says `group` is gone (`true`) or back (`false`), from now on.
    fn set_deleted(&self, group: i64, gone: bool) {
        {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if gone {
                inner.deleted.insert(group);
            } else {
                inner.deleted.remove(&group);
            }
        }
        self.set(group, self.workers(group));
    }

    /// A worker id never used before in the run.
    fn next_id(&self) -> i64 {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.next_id += 1;
        inner.next_id
    }

    fn workers(&self, group: i64) -> BTreeMap<i64, (String, String, u16)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.workers.get(&group).cloned().unwrap_or_default()
    }
}

/// A worker's address, from its id: unique in the run, in the documentation range
/// 2001:db8::/32 (which the address policy lets through).
fn addr_of(id: i64) -> String {
    let (hi, lo) = ((id >> 16) as u16, id as u16);
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, hi, lo).to_string()
}

const STATES: [&str; 6] = [
    "idle",
    "idle",
    "loading",
    "model_loading",
    "error",
    "running",
];

/// One change of the workers of a random group: a state change, an added worker or a
/// removed one.
fn churn(world: &World, rng: &mut StdRng, groups: &[i64]) {
    let group = groups[rng.random_range(0..groups.len())];
    let mut ws = world.workers(group);
    match rng.random_range(0..10) {
        0..=5 if !ws.is_empty() => {
            let ids: Vec<i64> = ws.keys().copied().collect();
            let id = ids[rng.random_range(0..ids.len())];
            if let Some(w) = ws.get_mut(&id) {
                w.0 = STATES[rng.random_range(0..STATES.len())].to_string();
            }
        }
        6..=7 if ws.len() < 5 => {
            // A new id (and address) every time: a reused one would let the old worker's
            // ready truth excuse the new one.
            let id = world.next_id();
            ws.insert(id, ("creating".into(), addr_of(id), 4000 + (id % 7) as u16));
        }
        _ if ws.len() > 1 => {
            let ids: Vec<i64> = ws.keys().copied().collect();
            ws.remove(&ids[rng.random_range(0..ids.len())]);
        }
        _ => {}
    }
    world.set(group, ws);
}

/// The faults the schedule draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Vast5xx,
    Vast429,
    VastTimeout,
    VastGarbage,
    VastReset,
    KeyRevoked,
    KillLeader,
    TermLeader,
    KillStandby,
    ApiserverStop,
    EtcdRestart,
    SecretRotated,
    Recreated,
    Suspended,
    Repointed,
    VastGroupDeleted,
    VastOutage,
    CutFromApiserver,
    CutFromVast,
    CrashPoint,
    StaleView,
    /// The leader's watches held, then made to start again from a fresh list.
    Relist,
}

/// The crash points of one reconcile (failpoints of a test build).
const CRASH_POINTS: [&str; 3] = [
    "crash-after-service",
    "crash-after-slices",
    "crash-after-status",
];

const KINDS: [Kind; 22] = [
    Kind::Vast5xx,
    Kind::Vast429,
    Kind::VastTimeout,
    Kind::VastGarbage,
    Kind::VastReset,
    Kind::KeyRevoked,
    Kind::KillLeader,
    Kind::TermLeader,
    Kind::KillStandby,
    Kind::ApiserverStop,
    Kind::EtcdRestart,
    Kind::SecretRotated,
    Kind::Recreated,
    Kind::Suspended,
    Kind::Repointed,
    Kind::VastGroupDeleted,
    Kind::VastOutage,
    Kind::CutFromApiserver,
    Kind::CutFromVast,
    Kind::CrashPoint,
    Kind::StaleView,
    Kind::Relist,
];

/// Faults on a workergroup's calls at Vast (its fault slot at the fake, or its key).
const VAST_GROUP_KINDS: [Kind; 8] = [
    Kind::Vast5xx,
    Kind::Vast429,
    Kind::VastTimeout,
    Kind::VastGarbage,
    Kind::VastReset,
    Kind::VastOutage,
    Kind::KeyRevoked,
    Kind::VastGroupDeleted,
];

/// What a fault holds while it is open: two faults on one slot would end each other
/// early (an undo clears the fake's fault slot, lets a proxy through, drops the held
/// watch), while the record still says the later one goes on. One open fault per slot.
fn slot(kind: Kind, target: &str) -> Option<String> {
    match kind {
        k if VAST_GROUP_KINDS.contains(&k) => Some(format!("vast {target}")),
        Kind::CutFromApiserver => Some(format!("apiserver-cut {target}")),
        Kind::CutFromVast => Some(format!("vast-cut {target}")),
        Kind::StaleView | Kind::Relist => Some(format!("watch-hold {target}")),
        // The crash points are written to both replicas' files at once.
        Kind::CrashPoint => Some("crash-point".into()),
        // Each of these rewrites one WorkerGroup of the namespace until its undo.
        Kind::Recreated => Some(format!("{target}/wg-3")),
        Kind::Suspended => Some(format!("{target}/wg-4")),
        Kind::Repointed => Some(format!("{target}/wg-9")),
        _ => None,
    }
}

/// A fault as it happened.
#[derive(Clone, Debug)]
struct FaultRecord {
    at: At,
    kind: Kind,
    target: String,
    until: At,
}

/// The two replicas.
struct Replicas {
    root: PathBuf,
    args: Args2,
    procs: [Option<OperatorProcess>; 2],
    starts: [u32; 2],
    /// Each replica's failpoints beyond the planted one (`name=actions`).
    points: [Vec<String>; 2],
    /// Exits nobody asked for: (when, replica, how, whether a crash point made it).
    exits: Vec<(At, usize, String, bool)>,
    /// The value of the last `watch-relist` failpoint written.
    relists: u32,
}

#[derive(Clone)]
struct Args2 {
    bin: PathBuf,
    /// Per replica: its kubeconfig (its own user, through its own proxy).
    kubeconfigs: [PathBuf; 2],
    /// Per replica: the fake Vast through its own proxy.
    vast_urls: [String; 2],
    /// Per replica: the failpoints file it follows.
    points: [PathBuf; 2],
    /// The planted bug's failpoint line, in every replica all along.
    planted: Option<String>,
    logs: PathBuf,
}

impl Replicas {
    /// The identity (POD_NAME, the Lease holder) of replica `i` in its current start: new
    /// on every start, as a Deployment's pods are (a restarted replica under the same
    /// identity would take its Lease straight back, and the standby never would), and
    /// with this run's pid, so that a replica left by an earlier run cannot pass for one
    /// of this run's.
    fn name(&self, i: usize) -> String {
        format!("chaos-op-{i}-{}-{}", std::process::id(), self.starts[i])
    }

    /// Writes replica `i`'s failpoints file: the planted bug and its own points.
    fn write_points(&self, i: usize) {
        let lines: Vec<&str> = self
            .args
            .planted
            .iter()
            .chain(&self.points[i])
            .map(String::as_str)
            .collect();
        // Whole or not at all: the operator reads the file every 200 ms, and a file
        // caught half-written would switch every point off.
        let path = &self.args.points[i];
        let tmp = path.with_extension("tmp");
        if let Err(e) =
            std::fs::write(&tmp, lines.join("\n") + "\n").and_then(|()| std::fs::rename(&tmp, path))
        {
            eprintln!("[chaos] cannot write {}: {e}", path.display());
        }
    }

    /// Sets replica `i`'s own failpoints.
    fn set_points(&mut self, i: usize, points: Vec<String>) {
        self.points[i] = points;
        self.write_points(i);
    }

    fn start(&mut self, i: usize) -> Result<()> {
        // Two undos of kills of one replica (faults bunched after a blocked loop): the
        // second finds it running, and leaves it be.
        if self.running(i) {
            return Ok(());
        }
        self.starts[i] += 1;
        let log = self.name(i);
        self.write_points(i);
        let points = self.args.points[i].display().to_string();
        let p = Launch::new(
            &self.root.join(&self.args.bin),
            &self.args.kubeconfigs[i],
            &self.args.vast_urls[i],
            &self.args.logs,
            &log,
        )
        .args(["--lease-name", LEASE, "--lease-namespace", SYSTEM])
        .args([
            "--lease-duration",
            &format!("{}s", LEASE_DURATION.as_secs()),
        ])
        .args(["--stale-after", &format!("{}s", STALE_AFTER.as_secs())])
        .args(["--status-heartbeat", &format!("{}s", HEARTBEAT.as_secs())])
        .args(["--terminal-retry", "10s", "--vast-timeout", "5s"])
        .args(["--failure-threshold", "2", "--settings-interval", "15s"])
        .args(["--shutdown-timeout", "5s"])
        .env("POD_NAME", &self.name(i))
        .env("VAST_OPERATOR_FAILPOINTS", &points)
        .env("RUST_LOG", "info,vast_operator=debug")
        .spawn()?;
        self.procs[i] = Some(p);
        Ok(())
    }

    /// Signals replica `i` and waits (15 s at most) for it to exit, off the runtime's
    /// worker (the fake Vast and the watches run beside it).
    fn signal_blocking(&mut self, i: usize, sig: &str) {
        tokio::task::block_in_place(|| self.signal(i, sig));
    }

    /// Whether replica `i` runs (started, and not exited).
    fn running(&mut self, i: usize) -> bool {
        self.procs[i]
            .as_mut()
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    fn signal(&mut self, i: usize, sig: &str) {
        if let Some(p) = self.procs[i].as_mut() {
            p.signal(sig);
            let deadline = Instant::now() + Duration::from_secs(15);
            while p.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.procs[i] = None;
    }

    /// Restarts each replica that exited without being told to (a crash point, or a
    /// crash of its own), as a Deployment would, recording the exit. An exit counts as a
    /// crash point's only when the replica aborted (SIGABRT) and its log says which point
    /// made it; a crash point that fired is switched off for the restarted replica.
    fn restart_exited(&mut self, now: At) -> Result<()> {
        for i in 0..2 {
            let Some(p) = self.procs[i].as_mut() else {
                continue;
            };
            let Ok(Some(status)) = p.child.try_wait() else {
                continue;
            };
            let crash_point = made_by_crash_point(status, &p.log_text());
            eprintln!("[chaos] {now:7.1}s replica {i} exited ({status}); restarting");
            self.exits.push((now, i, status.to_string(), crash_point));
            let kept = self.points[i]
                .iter()
                .filter(|l| !l.starts_with("crash-"))
                .cloned()
                .collect();
            self.points[i] = kept;
            self.procs[i] = None;
            self.start(i)?;
        }
        Ok(())
    }

    /// Records the exits since the last look without restarting (the run's end).
    fn record_exits(&mut self, now: At) {
        for i in 0..2 {
            let Some(p) = self.procs[i].as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = p.child.try_wait() {
                let crash_point = made_by_crash_point(status, &p.log_text());
                self.exits.push((now, i, status.to_string(), crash_point));
            }
        }
    }

    /// Holds replica `i`'s watches (`watch-hold`) or lets them go.
    fn hold(&mut self, i: usize, on: bool) {
        let mut p = self.points[i].clone();
        p.retain(|l| l != "watch-hold=return");
        if on {
            p.push("watch-hold=return".into());
        }
        self.set_points(i, p);
    }

    /// Lets replica `i`'s held watches go and makes each start again from a list (a new
    /// value of `watch-relist`), in one write.
    fn release_and_relist(&mut self, i: usize) {
        self.relists += 1;
        let mut p = self.points[i].clone();
        p.retain(|l| l != "watch-hold=return" && !l.starts_with("watch-relist="));
        p.push(format!("watch-relist=return({})", self.relists));
        self.set_points(i, p);
    }

    fn peak_rss_mib(&self) -> f64 {
        self.procs
            .iter()
            .flatten()
            .map(|p| p.peak_rss_kib() as f64 / 1024.0)
            .fold(0.0, f64::max)
    }
}

/// Whether an exit was a crash point's: the process aborted (SIGABRT, 6 on Linux) and
/// its log names the point that made it.
fn made_by_crash_point(status: std::process::ExitStatus, log: &str) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(6)
        && CRASH_POINTS
            .iter()
            .any(|c| log.contains(&format!("failpoint {c}: aborting")))
}

/// What the observer saw, shared with the watch tasks.
#[derive(Default)]
struct Seen {
    slices: Vec<SliceSeen>,
    groups: Vec<GroupSeen>,
    holders: Vec<(At, String)>,
}

fn scope_of(wg: &WorkerGroup) -> Option<Scope> {
    match wg.spec.scope().ok()? {
        vast_operator::crd::Scope::Workergroup(g) => Some(Scope::Group(g)),
        vast_operator::crd::Scope::Endpoint(e) => Some(Scope::Endpoint(e)),
    }
}

/// Watches WorkerGroups, our EndpointSlices and the Lease, recording each observation
/// with its time.
fn observe(client: Client, started: Instant, seen: Arc<Mutex<Seen>>) {
    let at = move || started.elapsed().as_secs_f64();
    let (c, s) = (client.clone(), seen.clone());
    tokio::spawn(async move {
        let api: Api<WorkerGroup> = Api::all(c);
        let events = watcher(api, watcher::Config::default())
            .backoff(vast_operator::runtime::watch::WatchBackoff::default());
        follow(events, |wg: Option<&WorkerGroup>, key: &str| {
            let g = GroupSeen {
                at: at(),
                key: key.to_string(),
                scope: wg.and_then(scope_of),
                workers: wg
                    .and_then(|wg| wg.status.as_ref())
                    .map(|st| {
                        st.workers
                            .iter()
                            .map(|w| (w.id, w.status.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
                suspended: wg.is_some_and(|wg| wg.spec.suspend),
            };
            s.lock().unwrap_or_else(|p| p.into_inner()).groups.push(g);
        })
        .await;
    });
    let (c, s) = (client.clone(), seen.clone());
    tokio::spawn(async move {
        let api: Api<EndpointSlice> = Api::all(c);
        let config = watcher::Config::default()
            .labels("endpointslice.kubernetes.io/managed-by=vast-operator.vast.ai");
        let events =
            watcher(api, config).backoff(vast_operator::runtime::watch::WatchBackoff::default());
        // Slices are named `<service>-...`; the service is remembered from the slice
        // itself, for a delete the relist inferred.
        let mut services: BTreeMap<String, String> = BTreeMap::new();
        follow(events, |slice: Option<&EndpointSlice>, key: &str| {
            let ns = key.split('/').next().unwrap_or_default();
            if let Some(x) = slice {
                let service = x
                    .labels()
                    .get("kubernetes.io/service-name")
                    .cloned()
                    .unwrap_or_default();
                services.insert(key.to_string(), format!("{ns}/{service}"));
            }
            let endpoints = slice
                .map(|x| {
                    x.endpoints
                        .iter()
                        .map(|e| {
                            let ready = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
                            (e.addresses.join(","), ready)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let seen = SliceSeen {
                at: at(),
                slice: key.to_string(),
                service: services.get(key).cloned().unwrap_or_default(),
                endpoints,
            };
            if slice.is_none() {
                services.remove(key);
            }
            s.lock()
                .unwrap_or_else(|p| p.into_inner())
                .slices
                .push(seen);
        })
        .await;
    });
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, SYSTEM);
        let config = watcher::Config::default().fields(&format!("metadata.name={LEASE}"));
        let mut events = watcher(api, config)
            .backoff(vast_operator::runtime::watch::WatchBackoff::default())
            .boxed();
        while let Some(ev) = events.next().await {
            let Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) = ev else {
                continue;
            };
            let holder = l.spec.and_then(|s| s.holder_identity).unwrap_or_default();
            let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
            if s.holders.last().is_none_or(|(_, h)| *h != holder) {
                s.holders.push((at(), holder));
            }
        }
    });
}

async fn apply<K>(api: &Api<K>, name: &str, obj: serde_json::Value) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply("chaos").force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(())
}

fn wg_spec(i: usize, n: usize, groups: &[i64]) -> serde_json::Value {
    // wg-1..wg-8: one group each; wg-9 shares wg-1's group; wg-10 the endpoint.
    let scope = match n {
        1..=8 => json!({"workergroupId": groups[n - 1]}),
        9 => json!({"workergroupId": groups[0]}),
        _ => json!({"endpointId": endpoint_of_ns(i)}),
    };
    let mut spec = json!({
        "apiKeySecretRef": {"name": "vast"},
        "pollInterval": format!("{}s", INTERVAL.as_secs()),
        "discovery": {"headless": n % 2 == 1},
    });
    if let (Some(s), Some(o)) = (spec.as_object_mut(), scope.as_object()) {
        s.extend(o.clone());
    }
    spec
}

fn wg(ns: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn secret(ns: &str, key: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vast", "namespace": ns},
           "stringData": {"api-key": key}})
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    vast_operator::install_crypto_provider();
    let args = Args::parse();
    // SIGTERM (CI's clean-up of a failed step) or SIGINT ends the run with its clean-up:
    // dropping the run drops the replicas (killed) and the control plane (`down`). The
    // handlers are in place before anything starts; a signal that comes during a
    // blocking step (the control plane starting) is acted on once it returns.
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("chaos: cannot handle SIGTERM and SIGINT");
            return std::process::ExitCode::from(2);
        }
    };
    let outcome = tokio::select! {
        biased;
        _ = term.recv() => Err("stopped by SIGTERM".into()),
        _ = int.recv() => Err("stopped by SIGINT".into()),
        outcome = run(args) => outcome,
    };
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    let root = std::env::current_dir()?;
    let out = root.join(&args.out);
    let _ = std::fs::remove_dir_all(out.join("logs"));
    std::fs::create_dir_all(out.join("logs"))?;
    eprintln!("[chaos] seed {} for {} min", args.seed, args.minutes);
    // A control plane left by an earlier run (killed before its clean-up) goes first:
    // its Lease and objects would be this run's start.
    let _ = std::process::Command::new(root.join("hack/cluster.sh"))
        .arg("down")
        .env("VAST_CLUSTER_DIR", out.join("cluster"))
        .output();
    // Each replica is a user of its own (a token), so that the audit log tells their
    // writes apart; the log holds the replicas' writes with their bodies.
    let auth = out.join("auth");
    let _ = std::fs::remove_dir_all(&auth);
    std::fs::create_dir_all(&auth)?;
    let users: Vec<String> = (0..2).map(|i| format!("chaos-op-{i}")).collect();
    let tokens: Vec<String> = (0..2)
        .map(|i| format!("chaos-token-{i}-{}-{:x}", std::process::id(), args.seed))
        .collect();
    let csv: String = (0..2)
        .map(|i| format!("{},{},{},system:masters\n", tokens[i], users[i], users[i]))
        .collect();
    std::fs::write(auth.join("tokens.csv"), csv)?;
    std::fs::write(auth.join("audit-policy.yaml"), audit::policy(&users))?;
    let audit_log = auth.join("audit.log");
    let options = vast_testkit::cluster::Options {
        apiserver_flags: vec![
            format!("--token-auth-file={}", auth.join("tokens.csv").display()),
            format!(
                "--audit-policy-file={}",
                auth.join("audit-policy.yaml").display()
            ),
            format!("--audit-log-path={}", audit_log.display()),
            "--audit-log-format=json".to_string(),
        ],
        no_dns: false,
        no_gc: false,
    };
    let cluster = Cluster::up(&root, &out.join("cluster"), &options)?;
    let kubeconfig = cluster.kubeconfig();
    let client = vast_testkit::cluster::client_for(&kubeconfig, None).await?;
    vast_testkit::apiserver::install_crd(&client, &vast_operator::crd::crd(), "chaos").await?;

    let vast = fake_vast::FakeVast::start(0).await?;
    vast.state
        .set_console_thresholds(Duration::ZERO, Duration::ZERO);
    // Each replica reaches the apiserver and Vast through proxies of its own, to be cut
    // off one at a time.
    let apiserver_url = std::fs::read_to_string(cluster.dir().join("apiserver-url"))?;
    let apiserver = proxy::socket_of(apiserver_url.trim()).ok_or("no apiserver address")?;
    let vast_addr = proxy::socket_of(&vast.url()).ok_or("no fake Vast address")?;
    let (api_proxies, vast_proxies) = (
        [
            Proxy::start(apiserver).await?,
            Proxy::start(apiserver).await?,
        ],
        [
            Proxy::start(vast_addr).await?,
            Proxy::start(vast_addr).await?,
        ],
    );
    let admin = std::fs::read_to_string(&kubeconfig)?;
    let ca = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .map(|v| v.trim().to_string())
        .ok_or("no CA in the admin kubeconfig")?;
    let mut kubeconfigs: [PathBuf; 2] = Default::default();
    for i in 0..2 {
        let kc = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "chaos", "cluster": {
                "server": format!("https://127.0.0.1:{}", api_proxies[i].addr.port()),
                "certificate-authority-data": ca}}],
            "users": [{"name": users[i], "user": {"token": tokens[i]}}],
            "contexts": [{"name": "chaos", "context": {"cluster": "chaos", "user": users[i], "namespace": "default"}}],
            "current-context": "chaos",
        });
        kubeconfigs[i] = auth.join(format!("kubeconfig-{i}"));
        std::fs::write(&kubeconfigs[i], serde_json::to_string_pretty(&kc)?)?;
    }
    let started = Instant::now();
    let started_wall = jiff::Timestamp::now();
    let world = World {
        state: vast.state.clone(),
        started,
        inner: Arc::default(),
    };
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut all_groups = Vec::new();
    let mut endpoints = BTreeMap::new();
    let mut generations = [0u32; 3];
    for (i, ns) in NAMESPACES.iter().enumerate() {
        let key = key_of(i, 0);
        let groups = groups_of_ns(i);
        let e = endpoint_of_ns(i);
        vast.state
            .put_endpoint(e, &key, json!({"endpoint_name": format!("{ns}-ep"), "endpoint_state": "active", "max_workers": 10}));
        endpoints.insert(e, groups[6..].to_vec());
        for &g in &groups {
            vast.state.put_group(g, &key, Shape::Array, vec![]);
            if groups[6..].contains(&g) {
                vast.state.set_group_settings(g, json!({"endpoint_id": e}));
            }
            let ws = (0..rng.random_range(1..4))
                .map(|_| {
                    let id = world.next_id();
                    (
                        id,
                        ("idle".to_string(), addr_of(id), 4000 + (id % 7) as u16),
                    )
                })
                .collect();
            world.set(g, ws);
        }
        all_groups.extend(groups);
        let nsapi: Api<Namespace> = Api::all(client.clone());
        apply(
            &nsapi,
            ns,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
        apply(
            &Api::<Secret>::namespaced(client.clone(), ns),
            "vast",
            secret(ns, &key),
        )
        .await?;
    }
    let nsapi: Api<Namespace> = Api::all(client.clone());
    apply(
        &nsapi,
        SYSTEM,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM}}),
    )
    .await?;

    let seen = Arc::new(Mutex::new(Seen::default()));
    observe(client.clone(), started, seen.clone());
    for (i, ns) in NAMESPACES.iter().enumerate() {
        let api: Api<WorkerGroup> = Api::namespaced(client.clone(), ns);
        for n in 1..=10 {
            let name = format!("wg-{n}");
            apply(&api, &name, wg(ns, &name, wg_spec(i, n, &groups_of_ns(i)))).await?;
        }
    }
    let mut replicas = Replicas {
        root: root.clone(),
        args: Args2 {
            bin: args.operator.clone(),
            kubeconfigs,
            vast_urls: [0, 1].map(|i| format!("http://{}", vast_proxies[i].addr)),
            points: [0, 1].map(|i| auth.join(format!("failpoints-{i}"))),
            planted: args
                .plant
                .as_ref()
                .map(|_| "skip-stale-rule=return".to_string()),
            logs: out.join("logs"),
        },
        procs: [None, None],
        starts: [0, 0],
        points: Default::default(),
        exits: Vec::new(),
        relists: 0,
    };
    if let Some(p) = &args.plant {
        eprintln!("[chaos] planted bug: {p} (the oracle must catch it)");
    }
    replicas.start(0)?;
    replicas.start(1)?;

    // The schedule: a change of the workers every 0.3-2 s; a fault every 5-20 s until
    // the chaos time is up, each undone after its duration.
    let chaos_end = started + Duration::from_secs_f64(args.minutes * 60.0);
    let mut faults: Vec<FaultRecord> = Vec::new();
    // The faults draw from a stream of their own, and their times are offsets from the
    // start: the same seed gives the same faults at the same times (the churn, which
    // draws as time allows, may differ).
    let mut frng = StdRng::seed_from_u64(args.seed ^ 0x0fa1_7500);
    let writes = Writes::start();
    let mut next_fault = started + Duration::from_secs(10);
    let mut undo: Vec<(Instant, Kind, String)> = Vec::new();
    let mut peak_rss: f64 = 0.0;
    let mut apiserver_down: Vec<(At, At)> = Vec::new();
    let leader = |seen: &Arc<Mutex<Seen>>, replicas: &Replicas| -> Option<usize> {
        let s = seen.lock().unwrap_or_else(|p| p.into_inner());
        let holder = s
            .holders
            .iter()
            .rev()
            .find(|(_, h)| !h.is_empty())?
            .1
            .clone();
        (0..2).find(|i| replicas.name(*i) == holder)
    };
    while Instant::now() < chaos_end || !undo.is_empty() {
        peak_rss = peak_rss.max(replicas.peak_rss_mib());
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2000))).await;
        replicas.restart_exited(world.now())?;
        if Instant::now() < chaos_end {
            churn(&world, &mut rng, &all_groups);
        }
        let now = Instant::now();
        // Undo what is due.
        let (due, rest): (Vec<_>, Vec<_>) = undo.into_iter().partition(|(t, _, _)| *t <= now);
        undo = rest;
        for (_, kind, target) in due {
            undo_fault(
                kind,
                &target,
                &vast.state,
                &root,
                &cluster,
                &mut replicas,
                &client,
                &mut apiserver_down,
                &world,
                &mut generations,
                [&api_proxies, &vast_proxies],
                &writes,
            )
            .await?;
        }
        if now < chaos_end && now >= next_fault {
            next_fault += Duration::from_secs(frng.random_range(5..20));
            let mut kind = KINDS[frng.random_range(0..KINDS.len())];
            let secs = frng.random_range(5..20);
            let ns_i = frng.random_range(0..3);
            let group = all_groups[frng.random_range(0..all_groups.len())];
            let restart_after = Duration::from_secs(frng.random_range(1..4));
            // One control-plane outage at a time, and none in the last 30 s: recovery
            // is part of the quiet time's bound.
            let outage_open = apiserver_down
                .last()
                .is_some_and(|(_, to)| to.is_infinite());
            if matches!(kind, Kind::ApiserverStop | Kind::EtcdRestart)
                && (outage_open || now + Duration::from_secs(30) > chaos_end)
            {
                kind = Kind::Vast5xx;
            }
            let mut target = match kind {
                Kind::Vast5xx
                | Kind::Vast429
                | Kind::VastTimeout
                | Kind::VastGarbage
                | Kind::VastReset
                | Kind::VastOutage
                | Kind::KeyRevoked => group.to_string(),
                Kind::SecretRotated | Kind::Recreated | Kind::Suspended | Kind::Repointed => {
                    NAMESPACES[ns_i].to_string()
                }
                // A workergroup no endpoint holds (the endpoint would still list it).
                Kind::VastGroupDeleted => groups_of_ns(ns_i)[frng.random_range(0..6)].to_string(),
                _ => String::new(),
            };
            // Every draw is made before a fault may be left out below, so that one seed
            // keeps its schedule whatever is left out.
            let point = CRASH_POINTS[frng.random_range(0..CRASH_POINTS.len())];
            // A Vast fault goes to the next workergroup without one open (among those
            // its kind may take); a fault on the leader whose slot is taken is left out.
            let open = |kind: Kind, target: &str| {
                slot(kind, target)
                    .is_some_and(|s| undo.iter().any(|(_, k, t)| slot(*k, t) == Some(s.clone())))
            };
            if VAST_GROUP_KINDS.contains(&kind) {
                let pool: Vec<i64> = if kind == Kind::VastGroupDeleted {
                    groups_of_ns(ns_i)[..6].to_vec()
                } else {
                    all_groups.clone()
                };
                let from = pool
                    .iter()
                    .position(|g| g.to_string() == target)
                    .unwrap_or(0);
                let free = (0..pool.len())
                    .map(|k| pool[(from + k) % pool.len()])
                    .find(|g| !open(kind, &g.to_string()));
                match free {
                    Some(g) => target = g.to_string(),
                    None => continue,
                }
            }
            let group: i64 = target.parse().unwrap_or(group);
            let on_leader = leader(&seen, &replicas);
            // Faults on the leader wait for one to be known (a restarted leader holds the
            // Lease under a new name only once it has taken it); a kill needs its
            // target running.
            let on_leader_kinds = matches!(
                kind,
                Kind::CutFromApiserver
                    | Kind::CutFromVast
                    | Kind::StaleView
                    | Kind::Relist
                    | Kind::KillLeader
                    | Kind::TermLeader
                    | Kind::KillStandby
            );
            if on_leader_kinds && on_leader.is_none() {
                eprintln!(
                    "[chaos] {:7.1}s {kind:?} left out: no leader known",
                    world.now()
                );
                continue;
            }
            let on_leader = on_leader.unwrap_or(0);
            let busy = match kind {
                // A cut or a held watch on a replica that is down would only carry over
                // to its restart, while the record counts it as a disturbance now.
                Kind::CutFromApiserver | Kind::CutFromVast | Kind::StaleView | Kind::Relist => {
                    open(kind, &on_leader.to_string()) || !replicas.running(on_leader)
                }
                Kind::KillLeader | Kind::TermLeader => !replicas.running(on_leader),
                Kind::KillStandby => !replicas.running(1 - on_leader),
                // A crash point after the Service makes wg-3 new, as Recreated does.
                Kind::CrashPoint => {
                    open(kind, "")
                        || (point == "crash-after-service"
                            && open(Kind::Recreated, NAMESPACES[ns_i]))
                }
                Kind::Recreated | Kind::Suspended | Kind::Repointed => open(kind, &target),
                _ => false,
            };
            if busy {
                eprintln!(
                    "[chaos] {:7.1}s {kind:?} left out: its target has a fault open",
                    world.now()
                );
                continue;
            }
            let at = world.now();
            let mut until = at;
            match kind {
                Kind::Vast5xx
                | Kind::Vast429
                | Kind::VastTimeout
                | Kind::VastGarbage
                | Kind::VastReset => {
                    let fault = match kind {
                        Kind::Vast5xx => Fault {
                            status: Some(503),
                            ..Default::default()
                        },
                        Kind::Vast429 => Fault {
                            status: Some(429),
                            ..Default::default()
                        },
                        Kind::VastTimeout => Fault {
                            delay_ms: 8000,
                            ..Default::default()
                        },
                        Kind::VastGarbage => Fault {
                            body: FaultBody::Malformed,
                            ..Default::default()
                        },
                        _ => Fault {
                            body: FaultBody::ResetMidBody,
                            ..Default::default()
                        },
                    };
                    vast.state.set_fault(group, Some(fault));
                    undo.push((now + Duration::from_secs(secs), kind, target.clone()));
                    until = at + secs as f64;
                }
                Kind::KeyRevoked => {
                    vast.state.set_api_key(group, "vk1-chaos-revoked-0000");
                    undo.push((now + Duration::from_secs(secs), kind, target.clone()));
                    until = at + secs as f64;
                }
                Kind::VastOutage => {
                    // Longer than the ready window: only the stale rule takes the
                    // workers' endpoints out meanwhile.
                    let long = 60 + secs * 2;
                    vast.state.set_fault(
                        group,
                        Some(Fault {
                            status: Some(503),
                            ..Default::default()
                        }),
                    );
                    undo.push((now + Duration::from_secs(long), kind, target.clone()));
                    until = at + long as f64;
                }
                Kind::VastGroupDeleted => {
                    if let Ok(g) = target.parse::<i64>() {
                        vast.state.set_fault(
                            g,
                            Some(Fault {
                                body: FaultBody::ErrorMsg(format!("workergroup {g} not found")),
                                ..Default::default()
                            }),
                        );
                        world.set_deleted(g, true);
                    }
                    undo.push((now + Duration::from_secs(secs), kind, target.clone()));
                    until = at + secs as f64;
                }
                Kind::CutFromApiserver | Kind::CutFromVast | Kind::StaleView | Kind::Relist => {
                    let l = on_leader;
                    match kind {
                        Kind::CutFromApiserver => api_proxies[l].cut(true),
                        Kind::CutFromVast => vast_proxies[l].cut(true),
                        // A Relist's list comes at its undo.
                        _ => replicas.hold(l, true),
                    }
                    target = l.to_string();
                    undo.push((now + Duration::from_secs(secs), kind, target.clone()));
                    until = at + secs as f64;
                }
                Kind::CrashPoint => {
                    // Both replicas: whichever leads when the point is reached crashes
                    // there, once.
                    for i in 0..2 {
                        let mut p = replicas.points[i].clone();
                        p.retain(|l| !l.starts_with("crash-"));
                        p.push(format!("{point}=1*return"));
                        replicas.set_points(i, p);
                    }
                    target = point.to_string();
                    if point == "crash-after-service" {
                        // A Service is written when a WorkerGroup is new: one is made
                        // new, by a delete and a create.
                        let ns = NAMESPACES[ns_i];
                        let api: Api<WorkerGroup> = Api::namespaced(client.clone(), ns);
                        writes.delete_group(&api, "wg-3");
                        writes.apply(
                            &api,
                            "wg-3",
                            wg(ns, "wg-3", wg_spec(ns_i, 3, &groups_of_ns(ns_i))),
                        );
                        target = format!("{point} {ns}/wg-3");
                    }
                    undo.push((now + Duration::from_secs(secs), kind, String::new()));
                    until = at + secs as f64;
                }
                Kind::KillLeader | Kind::TermLeader | Kind::KillStandby => {
                    let i = if kind == Kind::KillStandby {
                        1 - on_leader
                    } else {
                        on_leader
                    };
                    replicas.signal_blocking(
                        i,
                        if kind == Kind::TermLeader {
                            "-TERM"
                        } else {
                            "-9"
                        },
                    );
                    undo.push((now + restart_after, kind, i.to_string()));
                    target = i.to_string();
                    until = at + restart_after.as_secs_f64();
                }
                Kind::ApiserverStop => {
                    control_plane(&root, cluster.dir(), "apiserver-stop")?;
                    // The undo closes this outage, by its index.
                    undo.push((
                        now + Duration::from_secs(secs.min(12)),
                        kind,
                        apiserver_down.len().to_string(),
                    ));
                    apiserver_down.push((at, f64::INFINITY));
                }
                Kind::EtcdRestart => {
                    control_plane(&root, cluster.dir(), "etcd-restart")?;
                    apiserver_down.push((at, world.now() + 5.0));
                }
                Kind::SecretRotated => {
                    generations[ns_i] += 1;
                    let key = key_of(ns_i, generations[ns_i]);
                    // A revoked key stays revoked until its own undo (which then
                    // restores this generation's key).
                    for g in groups_of_ns(ns_i) {
                        let revoked = undo
                            .iter()
                            .any(|(_, k, t)| *k == Kind::KeyRevoked && *t == g.to_string());
                        if !revoked {
                            vast.state.set_api_key(g, &key);
                        }
                    }
                    vast.state.set_endpoint_api_key(endpoint_of_ns(ns_i), &key);
                    writes.apply(
                        &Api::<Secret>::namespaced(client.clone(), NAMESPACES[ns_i]),
                        "vast",
                        secret(NAMESPACES[ns_i], &key),
                    );
                }
                Kind::Recreated => {
                    let api: Api<WorkerGroup> = Api::namespaced(client.clone(), NAMESPACES[ns_i]);
                    writes.delete_group(&api, "wg-3");
                    undo.push((now + Duration::from_secs(secs), kind, target.clone()));
                    until = at + secs as f64;
                }
                Kind::Suspended => {
                    let api: Api<WorkerGroup> = Api::namespaced(client.clone(), NAMESPACES[ns_i]);
                    let mut spec = wg_spec(ns_i, 4, &groups_of_ns(ns_i));
                    spec["suspend"] = json!(true);
                    writes.apply(&api, "wg-4", wg(NAMESPACES[ns_i], "wg-4", spec));
                    undo.push((now + Duration::from_secs(secs), kind, target.clone()));
                    until = at + secs as f64;
                }
                Kind::Repointed => {
                    let api: Api<WorkerGroup> = Api::namespaced(client.clone(), NAMESPACES[ns_i]);
                    let groups = groups_of_ns(ns_i);
                    let mut spec = wg_spec(ns_i, 9, &groups);
                    spec["workergroupId"] = json!(groups[1]);
                    writes.apply(&api, "wg-9", wg(NAMESPACES[ns_i], "wg-9", spec));
                    undo.push((now + Duration::from_secs(secs), kind, target.clone()));
                    until = at + secs as f64;
                }
            }
            eprintln!("[chaos] {at:7.1}s {kind:?} {target}");
            faults.push(FaultRecord {
                at,
                kind,
                target,
                until,
            });
        }
    }
    // The quiet time starts when the last fault is undone, the harness's own writes are
    // in, and the control plane has had 15 s to catch up after its last outage.
    let caught_up = apiserver_down
        .iter()
        .map(|(_, to)| to + 15.0)
        .fold(0.0, f64::max);
    while world.now() < caught_up || !writes.idle() {
        replicas.restart_exited(world.now())?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let quiet_from = world.now();
    eprintln!(
        "[chaos] {quiet_from:7.1}s last fault undone; quiet for {} s",
        QUIET.as_secs()
    );
    let quiet_end = Instant::now() + QUIET;
    while Instant::now() < quiet_end {
        peak_rss = peak_rss.max(replicas.peak_rss_mib());
        // An exit in the quiet time is recorded too (no crash point is on then).
        replicas.restart_exited(world.now())?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    replicas.record_exits(world.now());
    let end = world.now();

    // The record, judged.
    let (record, holders) = {
        let s = seen.lock().unwrap_or_else(|p| p.into_inner());
        let record = Record {
            truth: world
                .inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .truth
                .clone(),
            endpoints,
            slices: s.slices.clone(),
            groups: s.groups.clone(),
            apiserver_down: apiserver_down.clone(),
            writes: std::fs::read_to_string(&audit_log)
                .ok()
                .map(|text| audit::writes(&text, started_wall)),
            own: Own {
                lease: format!("{SYSTEM}/{LEASE}"),
                namespaces: NAMESPACES.iter().map(|n| n.to_string()).collect(),
                names: (1..=10).map(|n| format!("wg-{n}")).collect(),
            },
            disturbed: disturbed(&faults),
            silent: silent(&faults),
            quiet_from,
            end,
        };
        (record, s.holders.clone())
    };
    let bounds = Bounds {
        stale_after: STALE_AFTER,
        interval: INTERVAL,
        heartbeat: HEARTBEAT,
        lease: LEASE_DURATION,
        slack: Duration::from_secs(5),
    };
    let mut verdict = oracle::judge(&record, &bounds);
    // A replica exits only when the harness kills it or a crash point fires.
    const EXITS: &str = "replicas-exit-only-when-made-to";
    *verdict.checks.entry(EXITS).or_default() += 1;
    for (at, i, how, crash_point) in &replicas.exits {
        if !crash_point {
            verdict.violations.push(oracle::Violation {
                invariant: EXITS,
                at: *at,
                what: format!(
                    "replica {i} exited on its own ({how}); see its log in {}",
                    out.join("logs").display()
                ),
            });
        }
    }
    // A write of the harness's that never took leaves the cluster apart from the truth:
    // the run tells nothing of the operator then.
    const WRITES: &str = "harness-writes-take";
    *verdict.checks.entry(WRITES).or_default() += 1;
    for what in writes.given_up() {
        verdict.violations.push(oracle::Violation {
            invariant: WRITES,
            at: end,
            what: format!(
                "the harness's write {what} never took: the run is void, not the operator's fault"
            ),
        });
    }
    orphans(&client, end, &mut verdict).await;
    leaks(&root, &out, &client, &audit_log, &mut verdict).await;
    const RSS_LIMIT_MIB: f64 = 256.0;
    *verdict.checks.entry("peak-rss-bounded").or_default() += 1;
    if peak_rss > RSS_LIMIT_MIB {
        verdict.violations.push(oracle::Violation {
            invariant: "peak-rss-bounded",
            at: end,
            what: format!("a replica peaked at {peak_rss:.1} MiB (limit {RSS_LIMIT_MIB})"),
        });
    }
    let conv: Vec<f64> = verdict.convergence.values().flatten().copied().collect();
    let mut by_kind: BTreeMap<String, u32> = BTreeMap::new();
    for f in &faults {
        *by_kind.entry(format!("{:?}", f.kind)).or_default() += 1;
    }
    let report = json!({
        "seed": args.seed,
        "minutes": args.minutes,
        "faults": by_kind,
        "fault_timeline": faults.iter().map(|f| json!({"at": f.at, "kind": format!("{:?}", f.kind), "target": f.target, "until": f.until})).collect::<Vec<_>>(),
        "checks": verdict.checks,
        "violations": verdict.violations.iter().map(|v| json!({"invariant": v.invariant, "at": v.at, "what": v.what})).collect::<Vec<_>>(),
        "convergence_seconds": {"p50": oracle::quantile(&conv, 0.5), "p99": oracle::quantile(&conv, 0.99), "never": verdict.convergence.values().filter(|c| c.is_none()).count()},
        "restarts": replicas.starts.iter().map(|n| n.saturating_sub(1)).sum::<u32>(),
        // A term begins whenever a replica takes the Lease; a takeover when another
        // replica than the last holder does.
        "terms": holders.iter().filter(|(_, h)| !h.is_empty()).count(),
        "takeovers": holders
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0].1 != w[1].1)
            .count(),
        "lease_holders": holders.iter().map(|(at, h)| json!({"at": at, "holder": h})).collect::<Vec<_>>(),
        "peak_rss_mib": peak_rss,
        "exits": replicas.exits.iter().map(|(at, i, how, cp)| json!({"at": at, "replica": i, "how": how, "crash_point": cp})).collect::<Vec<_>>(),
        "audited_writes": record.writes.as_ref().map(Vec::len),
        "planted": args.plant,
        "observations": {"slices": record.slices.len(), "workergroups": record.groups.len()},
    });
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!(
        "seed {}  minutes {}  faults {}  restarts {}  terms {}  takeovers {}",
        args.seed,
        args.minutes,
        faults.len(),
        report["restarts"],
        report["terms"],
        report["takeovers"]
    );
    for (k, n) in &by_kind {
        println!("  fault {k:<16} {n}");
    }
    for (k, n) in &verdict.checks {
        println!("  check {k:<34} {n}");
    }
    println!(
        "  convergence p50 {:?} s, p99 {:?} s; peak RSS {peak_rss:.1} MiB",
        oracle::quantile(&conv, 0.5),
        oracle::quantile(&conv, 0.99)
    );
    println!(
        "  exits at crash points {}, audited writes {:?}",
        replicas.exits.iter().filter(|e| e.3).count(),
        record.writes.as_ref().map(Vec::len)
    );
    println!("  violations {}", verdict.violations.len());
    for v in verdict.violations.iter().take(20) {
        println!("    [{:7.1}s] {}: {}", v.at, v.invariant, v.what);
        for f in faults
            .iter()
            .filter(|f| f.at <= v.at && f.until + 60.0 >= v.at)
        {
            println!(
                "      near fault at {:7.1}s {:?} {}",
                f.at, f.kind, f.target
            );
        }
    }
    if !verdict.violations.is_empty() {
        println!(
            "  replay: CHAOS_SEED={} CHAOS_MINUTES={} make chaos",
            args.seed, args.minutes
        );
    }
    drop(replicas);
    drop(cluster);
    Ok(verdict.violations.is_empty())
}

/// When each fault kept the operator from seeing a workergroup (or all of them) or from
/// writing what it saw, with the time to catch up after: for the oracle's
/// lasting-changes-are-seen (control-plane outages are in the record of their own).
fn disturbed(faults: &[FaultRecord]) -> Vec<(At, At, Option<i64>)> {
    let catch_up = (INTERVAL * 2 + LEASE_DURATION).as_secs_f64() + 5.0;
    let mut out = Vec::new();
    for f in faults {
        let to = f.until + catch_up;
        match f.kind {
            Kind::Vast5xx
            | Kind::Vast429
            | Kind::VastTimeout
            | Kind::VastGarbage
            | Kind::VastReset
            | Kind::KeyRevoked
            | Kind::VastOutage
            | Kind::VastGroupDeleted => {
                if let Ok(g) = f.target.parse() {
                    out.push((f.at, to, Some(g)));
                }
            }
            // The leader gone or cut off: until the standby (or the restarted replica)
            // leads and polls. A held watch too: the polls go on, but the status writes
            // carry the held view's resourceVersion and are refused (409) until it
            // moves. The standby's faults hide nothing.
            Kind::KillLeader
            | Kind::TermLeader
            | Kind::CutFromApiserver
            | Kind::CutFromVast
            | Kind::CrashPoint
            | Kind::StaleView
            | Kind::Relist => out.push((f.at, to, None)),
            Kind::KillStandby | Kind::ApiserverStop | Kind::EtcdRestart => {}
            Kind::SecretRotated | Kind::Recreated | Kind::Suspended | Kind::Repointed => {
                if let Some(i) = NAMESPACES.iter().position(|n| *n == f.target) {
                    let groups = groups_of_ns(i);
                    let hit: Vec<i64> = match f.kind {
                        Kind::SecretRotated => groups,
                        Kind::Recreated => vec![groups[2]],
                        Kind::Suspended => vec![groups[3]],
                        _ => vec![],
                    };
                    out.extend(hit.into_iter().map(|g| (f.at, to, Some(g))));
                }
            }
        }
    }
    out
}

/// When Vast answered no call of a scope: a fault on a workergroup's calls silences its
/// group scope (an endpoint's calls are answered apart), a leader cut off from Vast hears
/// nothing of any.
fn silent(faults: &[FaultRecord]) -> Vec<(At, At, Option<Scope>)> {
    faults
        .iter()
        .filter_map(|f| match f.kind {
            Kind::Vast5xx
            | Kind::Vast429
            | Kind::VastTimeout
            | Kind::VastGarbage
            | Kind::VastReset
            | Kind::VastOutage
            | Kind::KeyRevoked
            | Kind::VastGroupDeleted => {
                let g = f.target.parse().ok()?;
                Some((f.at, f.until, Some(Scope::Group(g))))
            }
            Kind::CutFromVast => Some((f.at, f.until, None)),
            _ => None,
        })
        .collect()
}

/// A fault of `hack/cluster.sh` (it waits for the apiserver to answer), off the
/// runtime's worker.
fn control_plane(root: &Path, dir: &Path, cmd: &str) -> Result<()> {
    tokio::task::block_in_place(|| vast_testkit::cluster::fault(root, dir, cmd))
        .map_err(|e| e.to_string().into())
}

/// Follows a watch, calling `seen` with each object as it comes (`Some`) and with each
/// deletion (`None`), also the deletions a relist shows only by leaving the object out
/// (after an apiserver restart the watch starts again from a fresh list, and what went
/// meanwhile never has a delete event).
async fn follow<K, S>(events: S, mut seen: impl FnMut(Option<&K>, &str))
where
    K: kube::Resource + Clone,
    S: futures::Stream<Item = std::result::Result<watcher::Event<K>, watcher::Error>>,
{
    let key = |o: &K| {
        format!(
            "{}/{}",
            o.meta().namespace.clone().unwrap_or_default(),
            o.meta().name.clone().unwrap_or_default()
        )
    };
    let mut known: std::collections::BTreeSet<String> = Default::default();
    let mut relisted: Option<std::collections::BTreeSet<String>> = None;
    let mut events = std::pin::pin!(events);
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Init) => relisted = Some(Default::default()),
            Ok(watcher::Event::InitApply(o)) => {
                let k = key(&o);
                if let Some(r) = relisted.as_mut() {
                    r.insert(k.clone());
                }
                known.insert(k.clone());
                seen(Some(&o), &k);
            }
            Ok(watcher::Event::InitDone) => {
                let listed = relisted.take().unwrap_or_default();
                for gone in known.difference(&listed).cloned().collect::<Vec<_>>() {
                    seen(None, &gone);
                }
                known = listed;
            }
            Ok(watcher::Event::Apply(o)) => {
                let k = key(&o);
                known.insert(k.clone());
                seen(Some(&o), &k);
            }
            Ok(watcher::Event::Delete(o)) => {
                let k = key(&o);
                known.remove(&k);
                seen(None, &k);
            }
            Err(_) => {}
        }
    }
}

/// One write of the harness's, tried again until it returns true.
type Attempt = Box<dyn FnMut() -> futures::future::BoxFuture<'static, bool> + Send>;

/// The harness's own writes to the cluster (a suspended or re-pointed WorkerGroup, a
/// deleted and re-created one, a rotated Secret), made in order by one task, each tried
/// again until it takes (5 min at most): a write must not be lost to the harness's own
/// faults (an apiserver it stopped), or the truth and the cluster part. The fault loop
/// never waits for them: when it did, a write due during an apiserver outage held the
/// loop, and with it the undo that starts the apiserver again (seed 2: an outage of
/// 75 s instead of 12, then a WorkerGroup left suspended for good when the write gave
/// up).
struct Writes {
    tx: tokio::sync::mpsc::UnboundedSender<(String, Attempt)>,
    /// Writes sent and not yet done.
    pending: Arc<std::sync::atomic::AtomicUsize>,
    /// Writes that never took: each one leaves the cluster apart from the truth, which
    /// the oracle would charge to the operator, so the run fails as the harness's.
    gave_up: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writes {
    /// Longest a write is tried for; one attempt's longest.
    const GIVE_UP: Duration = Duration::from_secs(300);
    const ATTEMPT: Duration = Duration::from_secs(30);

    fn start() -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Attempt)>();
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let gave_up = Arc::new(Mutex::new(Vec::new()));
        let (left, lost) = (pending.clone(), gave_up.clone());
        let task = tokio::spawn(async move {
            while let Some((what, mut attempt)) = rx.recv().await {
                let deadline = Instant::now() + Self::GIVE_UP;
                loop {
                    // A request the apiserver never answers must not hold the queue.
                    if let Ok(true) = tokio::time::timeout(Self::ATTEMPT, attempt()).await {
                        break;
                    }
                    if Instant::now() > deadline {
                        eprintln!("[chaos] the harness's write {what} did not take within 5 min");
                        lost.lock().unwrap_or_else(|p| p.into_inner()).push(what);
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        Self {
            tx,
            pending,
            gave_up,
            task,
        }
    }

    fn send(&self, what: String, attempt: Attempt) {
        self.pending
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.tx.send((what.clone(), attempt)).is_err() {
            self.pending
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            self.lost(what);
        }
    }

    fn lost(&self, what: String) {
        self.gave_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what);
    }

    /// Whether every write sent is done or given up. A writer that ended (a panic)
    /// makes every write still queued lost.
    fn idle(&self) -> bool {
        let pending = self.pending.load(std::sync::atomic::Ordering::SeqCst);
        if pending > 0 && self.task.is_finished() {
            self.pending.store(0, std::sync::atomic::Ordering::SeqCst);
            self.lost(format!(
                "{pending} writes queued when the writer task ended"
            ));
            return true;
        }
        pending == 0
    }

    /// The writes that never took.
    fn given_up(&self) -> Vec<String> {
        self.gave_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Server-side applies `obj` as `name`.
    fn apply<K>(&self, api: &Api<K>, name: &str, obj: serde_json::Value)
    where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let (api, name) = (api.clone(), name.to_string());
        let what = format!(
            "apply {} {}/{name}",
            obj["kind"].as_str().unwrap_or(""),
            obj["metadata"]["namespace"].as_str().unwrap_or("")
        );
        self.send(
            what,
            Box::new(move || {
                let (api, name, obj) = (api.clone(), name.clone(), obj.clone());
                Box::pin(async move { apply(&api, &name, obj).await.is_ok() })
            }),
        );
    }

    /// Deletes WorkerGroup `name` and waits until it is gone (the next write, its
    /// re-creation, must make a new one).
    fn delete_group(&self, api: &Api<WorkerGroup>, name: &str) {
        let (api, name) = (api.clone(), name.to_string());
        self.send(
            format!("delete WorkerGroup {name}"),
            Box::new(move || {
                let (api, name) = (api.clone(), name.clone());
                Box::pin(async move {
                    match api.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(_) => return false,
                    }
                    // Gone by a list that answers, not by a 404 alone: an apiserver just
                    // started answers 404 for a CRD it does not serve yet.
                    let lp = ListParams::default().fields(&format!("metadata.name={name}"));
                    matches!(api.list(&lp).await, Ok(list) if list.items.is_empty())
                })
            }),
        );
    }
}

#[allow(clippy::too_many_arguments)]
async fn undo_fault(
    kind: Kind,
    target: &str,
    state: &FakeState,
    root: &Path,
    cluster: &Cluster,
    replicas: &mut Replicas,
    client: &Client,
    apiserver_down: &mut [(At, At)],
    world: &World,
    generations: &mut [u32; 3],
    [api_proxies, vast_proxies]: [&[Proxy; 2]; 2],
    writes: &Writes,
) -> Result<()> {
    match kind {
        Kind::VastGroupDeleted => {
            if let Ok(g) = target.parse::<i64>() {
                state.set_fault(g, None);
                world.set_deleted(g, false);
            }
        }
        Kind::CutFromApiserver | Kind::CutFromVast | Kind::StaleView | Kind::Relist => {
            if let Ok(i) = target.parse::<usize>() {
                match kind {
                    Kind::CutFromApiserver => api_proxies[i].cut(false),
                    Kind::CutFromVast => vast_proxies[i].cut(false),
                    Kind::Relist => {
                        // Let go and list again at once: what happened meanwhile
                        // comes as the world is now, not as its events.
                        replicas.release_and_relist(i);
                    }
                    _ => replicas.hold(i, false),
                }
            }
        }
        Kind::CrashPoint => {
            for i in 0..2 {
                let mut p = replicas.points[i].clone();
                p.retain(|l| !l.starts_with("crash-"));
                replicas.set_points(i, p);
            }
        }
        Kind::Vast5xx
        | Kind::Vast429
        | Kind::VastTimeout
        | Kind::VastGarbage
        | Kind::VastReset
        | Kind::VastOutage => {
            if let Ok(g) = target.parse() {
                state.set_fault(g, None);
            }
        }
        Kind::KeyRevoked => {
            if let Ok(g) = target.parse::<i64>() {
                let ns_i = (g / 100 - 1) as usize;
                state.set_api_key(g, &key_of(ns_i, generations[ns_i]));
            }
        }
        Kind::KillLeader | Kind::TermLeader | Kind::KillStandby => {
            if let Ok(i) = target.parse::<usize>() {
                replicas.start(i)?;
            }
        }
        Kind::ApiserverStop => {
            control_plane(root, cluster.dir(), "apiserver-start")?;
            if let Some(outage) = target
                .parse::<usize>()
                .ok()
                .and_then(|i| apiserver_down.get_mut(i))
            {
                outage.1 = world.now();
            }
        }
        Kind::Recreated => {
            if let Some(i) = NAMESPACES.iter().position(|n| *n == target) {
                let api: Api<WorkerGroup> = Api::namespaced(client.clone(), target);
                writes.apply(
                    &api,
                    "wg-3",
                    wg(target, "wg-3", wg_spec(i, 3, &groups_of_ns(i))),
                );
            }
        }
        Kind::Suspended | Kind::Repointed => {
            if let Some(i) = NAMESPACES.iter().position(|n| *n == target) {
                let api: Api<WorkerGroup> = Api::namespaced(client.clone(), target);
                let n = if kind == Kind::Suspended { 4 } else { 9 };
                let name = format!("wg-{n}");
                writes.apply(
                    &api,
                    &name,
                    wg(target, &name, wg_spec(i, n, &groups_of_ns(i))),
                );
            }
        }
        Kind::EtcdRestart | Kind::SecretRotated => {}
    }
    Ok(())
}

/// No Service or EndpointSlice of ours is left without its WorkerGroup (the garbage
/// collector runs), checked once the quiet time is over. A list that fails is a
/// violation too: nothing was checked.
async fn orphans(client: &Client, at: At, verdict: &mut oracle::Verdict) {
    const NAME: &str = "no-object-outlives-its-workergroup";
    let mut fail = |what: String| {
        verdict.violations.push(oracle::Violation {
            invariant: NAME,
            at,
            what,
        })
    };
    let wgs: Api<WorkerGroup> = Api::all(client.clone());
    let uids: std::collections::BTreeSet<String> = match wgs.list(&ListParams::default()).await {
        Ok(l) => l
            .items
            .iter()
            .filter_map(|w| w.metadata.uid.clone())
            .collect(),
        Err(e) => return fail(format!("cannot list WorkerGroups: {e}")),
    };
    let mut owners: Vec<(
        String,
        Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    )> = Vec::new();
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let lp = ListParams::default()
        .labels("endpointslice.kubernetes.io/managed-by=vast-operator.vast.ai");
    match slices.list(&lp).await {
        Ok(l) => owners.extend(l.items.into_iter().map(|o| {
            let name = format!(
                "slice {}/{}",
                o.namespace().unwrap_or_default(),
                o.name_any()
            );
            (name, o.metadata.owner_references.unwrap_or_default())
        })),
        Err(e) => return fail(format!("cannot list EndpointSlices: {e}")),
    }
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::all(client.clone());
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=vast-operator");
    match services.list(&lp).await {
        Ok(l) => owners.extend(l.items.into_iter().map(|o| {
            let name = format!(
                "Service {}/{}",
                o.namespace().unwrap_or_default(),
                o.name_any()
            );
            (name, o.metadata.owner_references.unwrap_or_default())
        })),
        Err(e) => return fail(format!("cannot list Services: {e}")),
    }
    for (name, refs) in owners {
        *verdict.checks.entry(NAME).or_default() += 1;
        if !refs
            .iter()
            .any(|o| o.kind == "WorkerGroup" && uids.contains(&o.uid))
        {
            verdict.violations.push(oracle::Violation {
                invariant: NAME,
                at,
                what: format!("{name} has no live WorkerGroup owner"),
            });
        }
    }
}

/// No key in any replica's log, event, status or object: the objects dumped beside the
/// logs, searched by `hack/leak-search.sh`.
async fn leaks(
    root: &Path,
    out: &Path,
    client: &Client,
    audit_log: &Path,
    verdict: &mut oracle::Verdict,
) {
    const NAME: &str = "no-key-anywhere";
    let dir = out.join("leak");
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let mut objects = Vec::new();
    for ns in NAMESPACES {
        let wgs: Api<WorkerGroup> = Api::namespaced(client.clone(), ns);
        if let Ok(l) = wgs.list(&ListParams::default()).await {
            objects.push(serde_json::to_value(&l.items).unwrap_or_default());
        }
        let ev: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
        if let Ok(l) = ev.list(&ListParams::default()).await {
            objects.push(serde_json::to_value(&l.items).unwrap_or_default());
        }
    }
    let _ = std::fs::write(
        dir.join("chaos-objects.json"),
        serde_json::to_string(&objects).unwrap_or_default(),
    );
    // The audit log holds the bodies of the replicas' writes.
    let _ = std::fs::copy(audit_log, dir.join("audit.log"));
    if let Ok(entries) = std::fs::read_dir(out.join("logs")) {
        for e in entries.flatten() {
            let _ = std::fs::copy(e.path(), dir.join(e.file_name()));
        }
    }
    *verdict.checks.entry(NAME).or_default() += 1;
    let status = std::process::Command::new(root.join("hack/leak-search.sh"))
        .arg(&dir)
        .args(["--min-files", "3", "--min-lines", "100", "--min-dumps", "1"])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        verdict.violations.push(oracle::Violation {
            invariant: NAME,
            at: 0.0,
            what: format!(
                "hack/leak-search.sh found a key (or could not search) in {}",
                dir.display()
            ),
        });
    }
}
