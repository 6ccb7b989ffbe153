//! The operator as a process, as it runs in a Deployment: two replicas with leader
//! election, metrics, bounded shutdown, and errors users see. Real control plane, fake
//! Vast; each operator is a `vast-operator run` child process.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::{OperatorProcess, TestNs, eventually, group_spec, http_get, metric};
use fake_vast::{FakeVast, Fault, Shape, worker_json};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-runtime-9876543210";

fn url(n: i64) -> String {
    format!("http://198.51.100.{n}:{}", 40000 + n)
}

async fn setup(test: &str, id: i64) -> (TestNs, FakeVast) {
    let ns = TestNs::new(test).await;
    common::install_workergroup_crd(&ns.client).await;
    let vast = FakeVast::start(0).await.expect("fake vast");
    vast.state.put_group(
        id,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some(&url(1)))],
    );
    ns.secret("vast", "api-key", KEY).await;
    (ns, vast)
}

async fn metrics_of(p: &OperatorProcess) -> String {
    http_get(&format!("{}/metrics", p.metrics))
        .await
        .map(|(_, body)| body)
        .unwrap_or_default()
}

async fn leader_value(p: &OperatorProcess) -> Option<f64> {
    metric(&metrics_of(p).await, "vast_operator_leader")
}

async fn ready_workers(ns: &TestNs, name: &str) -> Option<i64> {
    let wg = ns.api::<WorkerGroup>().get(name).await.ok()?;
    wg.status.map(|s| s.ready_workers)
}

/// The tests' lease duration for failover after kill -9 (the release after SIGTERM is
/// shown with a lease that cannot expire in the time allowed).
const LEASE: Duration = Duration::from_secs(8);

fn lease_args(ns: &str) -> Vec<String> {
    [
        "--lease-namespace",
        ns,
        "--lease-name",
        "vast-operator-test",
        "--lease-duration",
        &format!("{}s", LEASE.as_secs()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn two_replicas_one_leader_failover_release_and_metrics() {
    let id = 31;
    let (ns, vast) = setup("replicas", id).await;
    let la = lease_args(&ns.name);
    let a = OperatorProcess::start("op-a", &ns.name, &vast.url(), &args(&la));
    let b = OperatorProcess::start("op-b", &ns.name, &vast.url(), &args(&la));
    let wait = Duration::from_secs(30);

    // Exactly one leads; both are ready (a standby is not held back by the election).
    let (leader, standby) = eventually("one leader, one standby", wait, || async {
        match (leader_value(&a).await?, leader_value(&b).await?) {
            (l, s) if l == 1.0 && s == 0.0 => Some((&a, &b)),
            (s, l) if l == 1.0 && s == 0.0 => Some((&b, &a)),
            _ => None,
        }
    })
    .await;
    for p in [&a, &b] {
        eventually("/readyz 200 on both", wait, || async {
            (http_get(&format!("{}/readyz", p.health)).await?.0 == 200).then_some(())
        })
        .await;
        assert_eq!(
            http_get(&format!("{}/healthz", p.health))
                .await
                .map(|r| r.0),
            Some(200)
        );
    }

    ns.apply_group("llama", group_spec(id, "5s")).await;
    eventually("status written", wait, || async {
        (ready_workers(&ns, "llama").await? == 1).then_some(())
    })
    .await;
    // The leader polls and exports the WorkerGroup's series; the standby does neither.
    let series = format!(
        "vast_operator_workergroup_ready_workers{{namespace=\"{}\",name=\"llama\"}}",
        ns.name
    );
    let lm = eventually("leader exports the series", wait, || async {
        let text = metrics_of(leader).await;
        (metric(&text, &series) == Some(1.0)).then_some(text)
    })
    .await;
    assert!(
        lm.contains("vast_operator_vast_requests_total{outcome=\"ok\",code=\"200\"}"),
        "{lm}"
    );
    assert!(
        lm.contains("vast_operator_reconciles_total{result=\"synced\"}"),
        "{lm}"
    );
    // Both count what their watch caches hold (the standby's are warm too): exactly this
    // namespace's objects, and their resident memory.
    for p in [leader, standby] {
        let text = eventually("the caches counted", wait, || async {
            let text = metrics_of(p).await;
            ["WorkerGroup", "Secret", "Service", "EndpointSlice"]
                .iter()
                .all(|k| {
                    metric(
                        &text,
                        &format!("vast_operator_cache_objects{{kind=\"{k}\"}}"),
                    ) == Some(1.0)
                })
                .then_some(text)
        })
        .await;
        let rss = metric(&text, "vast_operator_resident_memory_bytes").unwrap_or(0.0);
        assert!(rss > 4.0 * 1024.0 * 1024.0, "resident memory {rss}");
    }
    let sm = metrics_of(standby).await;
    assert!(
        !sm.contains("vast_operator_vast_requests_total{"),
        "the standby polled:\n{sm}"
    );
    assert_eq!(
        metric(&sm, &series),
        None,
        "the standby exports WorkerGroup series"
    );
    // Nothing in the metrics holds the key.
    assert!(!lm.contains(KEY) && !sm.contains(KEY));

    // The series move with the workers.
    vast.state
        .upsert_worker(id, 2, worker_json(2, "idle", Some(&url(2))));
    eventually("the series move", wait, || async {
        (metric(&metrics_of(leader).await, &series) == Some(2.0)).then_some(())
    })
    .await;

    // kill -9 the leader, change the workers at Vast: the standby takes over once the
    // Lease expires (one lease duration; the slack is for a shared machine), then shows
    // the change.
    leader.signal("-9");
    let killed = Instant::now();
    vast.state
        .upsert_worker(id, 3, worker_json(3, "idle", Some(&url(3))));
    eventually(
        "the standby leads within a lease duration of kill -9",
        LEASE + Duration::from_secs(4),
        || async { (leader_value(standby).await? == 1.0).then_some(()) },
    )
    .await;
    eprintln!("takeover after kill -9: {:?}", killed.elapsed());
    eventually("the new leader shows the change", wait, || async {
        (ready_workers(&ns, "llama").await? == 3).then_some(())
    })
    .await;
    eprintln!("the change in status after kill -9: {:?}", killed.elapsed());

    // SIGTERM to the leader: it releases the Lease and exits 0.
    standby.signal("-TERM");
    let mut exited = if std::ptr::eq(standby, &a) { a } else { b };
    let status = tokio::task::spawn_blocking(move || exited.child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "SIGTERM exit: {status:?}");

    // A release is told apart from an expiry by a Lease that cannot expire in the time
    // allowed: with 60 s (renewed every 40 s) it expires 20 s after SIGTERM at the
    // earliest; the standby must lead within 15 s.
    let long = [
        "--lease-namespace",
        &ns.name,
        "--lease-name",
        "vast-operator-release",
        "--lease-duration",
        "60s",
    ];
    let c = OperatorProcess::start("op-c", &ns.name, &vast.url(), &long);
    let d = OperatorProcess::start("op-d", &ns.name, &vast.url(), &long);
    let (leader, c) = eventually("one of the long-lease pair leads", wait, || async {
        match (leader_value(&c).await?, leader_value(&d).await?) {
            (l, s) if l == 1.0 && s == 0.0 => Some((&c, &d)),
            (s, l) if l == 1.0 && s == 0.0 => Some((&d, &c)),
            _ => None,
        }
    })
    .await;
    leader.signal("-TERM");
    let termed = Instant::now();
    eventually(
        "the standby leads long before the Lease could expire",
        Duration::from_secs(15),
        || async { (leader_value(c).await? == 1.0).then_some(()) },
    )
    .await;
    eprintln!("takeover after SIGTERM: {:?}", termed.elapsed());

    // Deleting the WorkerGroup removes its series.
    let _ = eventually("the new leader exports the series", wait, || async {
        metric(&metrics_of(c).await, &series)
    })
    .await;
    ns.api::<WorkerGroup>()
        .delete("llama", &Default::default())
        .await
        .expect("delete");
    eventually("the series vanish", wait, || async {
        let text = metrics_of(c).await;
        (!text.contains("name=\"llama\"") && text.contains("vast_operator_leader 1")).then_some(())
    })
    .await;
    drop(d);
    ns.cleanup().await;
}

#[tokio::test]
async fn sigterm_exits_zero_within_the_shutdown_timeout_while_vast_hangs() {
    let id = 32;
    let (ns, vast) = setup("shutdown", id).await;
    vast.state.set_fault(
        id,
        Some(Fault {
            delay_ms: 120_000,
            ..Default::default()
        }),
    );
    let mut p = OperatorProcess::start(
        "op",
        &ns.name,
        &vast.url(),
        &[
            "--leader-elect=false",
            "--shutdown-timeout",
            "4s",
            "--vast-timeout",
            "60s",
        ],
    );
    ns.apply_group("hang", group_spec(id, "5s")).await;
    eventually(
        "a Vast call is in flight",
        Duration::from_secs(30),
        || async { (vast.state.calls(id) >= 1).then_some(()) },
    )
    .await;
    p.signal("-TERM");
    let t = Instant::now();
    let status = eventually("exit", Duration::from_secs(15), || {
        let r = p.child.try_wait().ok().flatten();
        async move { r }
    })
    .await;
    let took = t.elapsed();
    assert!(status.success(), "{status:?}\n{}", p.log_text());
    assert!(
        took < Duration::from_secs(6),
        "exited after {took:?}, timeout 4s"
    );
    assert!(p.log_text().contains("cancelled"), "{}", p.log_text());
    ns.cleanup().await;
}

#[tokio::test]
async fn a_refused_status_write_is_a_warn_line_and_one_warning_event() {
    let id = 33;
    let (ns, vast) = setup("refused", id).await;
    // A validating admission policy refuses status writes of this namespace's
    // WorkerGroup named "refused".
    let policy = format!("refuse-status-{}", ns.name);
    common::refusing_policy(
        &ns.client,
        &policy,
        &ns.name,
        ("vast.ai", &["UPDATE"], &["workergroups/status"]),
        "object.metadata.name != 'refused'",
        "status writes are refused by a test policy",
    )
    .await;
    ns.apply_group("refused", group_spec(id, "5s")).await;
    // Wait until the policy is in force (a dry-run status write is refused).
    let api = ns.api::<WorkerGroup>();
    eventually("the policy refuses status writes", Duration::from_secs(30), || async {
        let body = json!({"apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup", "status": {"workerCount": 0}});
        let mut pp = PatchParams::apply("probe").force();
        pp.dry_run = true;
        api.patch_status("refused", &pp, &Patch::Apply(&body)).await.is_err().then_some(())
    })
    .await;

    let p = OperatorProcess::start("op", &ns.name, &vast.url(), &["--leader-elect=false"]);
    let events = |ns: &TestNs| {
        let api: Api<k8s_openapi::api::events::v1::Event> = ns.api();
        async move {
            api.list(&Default::default())
                .await
                .expect("events")
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("StatusUpdateFailed"))
                .collect::<Vec<_>>()
        }
    };
    let found = eventually(
        "a StatusUpdateFailed event",
        Duration::from_secs(30),
        || async {
            let list = events(&ns).await;
            (!list.is_empty()).then_some(list)
        },
    )
    .await;
    assert_eq!(found[0].type_.as_deref(), Some("Warning"));
    assert!(
        found[0]
            .note
            .as_deref()
            .unwrap_or("")
            .contains("refused by a test policy"),
        "{:?}",
        found[0].note
    );
    // Several retries later: still one event (once per error streak), and warn lines
    // naming the object.
    eventually("retries", Duration::from_secs(30), || async {
        (p.log_text().matches("reconcile error").count() >= 3).then_some(())
    })
    .await;
    let list = events(&ns).await;
    let count: i32 = list
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum();
    assert_eq!(count, 1, "one StatusUpdateFailed per streak: {list:?}");
    let log = p.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("reconcile error"))
        .expect("a reconcile error line");
    assert!(line.contains("WARN") && line.contains("refused"), "{line}");
    assert!(!log.contains(KEY), "the key is in the log");
    common::remove_policy(&ns.client, &policy).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn sigterm_during_start_up_is_a_clean_exit() {
    // An "apiserver" that accepts connections and never answers: reading the Lease
    // hangs, as it does when the real one is slow or unreachable.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = blackhole.local_addr().expect("addr").port();
    let dir = common::repo_root().join("target").join("test-logs");
    std::fs::create_dir_all(&dir).expect("dir");
    let kc = dir.join(format!("blackhole-{port}.kubeconfig"));
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n"
        ),
    )
    .expect("kubeconfig");
    let mut p = OperatorProcess::start_with("op", "nowhere", "http://127.0.0.1:9", &[], &kc);
    eventually("start-up under way", Duration::from_secs(30), || async {
        p.log_text()
            .contains("starting vast-operator")
            .then_some(())
    })
    .await;
    p.signal("-TERM");
    let status = eventually("exit", Duration::from_secs(15), || {
        let r = p.child.try_wait().ok().flatten();
        async move { r }
    })
    .await;
    assert!(status.success(), "{status:?}\n{}", p.log_text());
    assert!(
        p.log_text().contains("stopped during start-up"),
        "{}",
        p.log_text()
    );
    drop(blackhole);
}

/// A TCP proxy to the test apiserver that can be cut: open connections are dropped and
/// new ones refused, as when the apiserver becomes unreachable.
struct Proxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        Self::start_on(0, upstream).await
    }

    /// On `port` of 127.0.0.1 (0: a free one).
    async fn start_on(port: u16, upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { port, task }
    }

    /// Drops every connection (the JoinSet goes with the task) and the listener.
    fn cut(&self) {
        self.task.abort();
    }
}

/// Found by `make chaos` (a replica restarted while cut off from the apiserver exited
/// with "cannot use Lease", and a Deployment would have crash-looped it): a replica that
/// cannot reach the apiserver at start waits for it, and leads once it can.
#[tokio::test]
async fn a_replica_started_while_the_apiserver_is_unreachable_waits_and_then_leads() {
    let id = 36;
    let (ns, vast) = setup("startcut", id).await;
    ns.apply_group("g", group_spec(id, "5s")).await;
    let real = std::fs::read_to_string(common::kubeconfig()).expect("kubeconfig");
    let server = real
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .expect("server line")
        .to_string();
    // A port with nothing on it yet: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let kc = common::repo_root()
        .join("target/test-logs")
        .join(format!("{}-unreachable.kubeconfig", ns.name));
    if let Some(dir) = kc.parent() {
        std::fs::create_dir_all(dir).expect("log dir");
    }
    std::fs::write(&kc, real.replace(&server, &format!("127.0.0.1:{port}")))
        .expect("write kubeconfig");
    let la = lease_args(&ns.name);
    let mut p = OperatorProcess::start_with("op", &ns.name, &vast.url(), &args(&la), &kc);
    eventually(
        "waiting for the apiserver",
        Duration::from_secs(30),
        || async {
            p.log_text()
                .contains("cannot read the Lease yet")
                .then_some(())
        },
    )
    .await;
    // A second refused attempt at least, and the process still there.
    eventually("still waiting", Duration::from_secs(30), || async {
        (p.log_text().matches("cannot read the Lease yet").count() >= 2).then_some(())
    })
    .await;
    assert!(
        p.child.try_wait().ok().flatten().is_none(),
        "the replica exited: {}",
        p.log_text()
    );
    // The apiserver becomes reachable on that address.
    let _proxy = Proxy::start_on(port, server.clone()).await;
    eventually("leading and polling", Duration::from_secs(40), || async {
        let leads = leader_value(&p).await? == 1.0;
        (leads && ready_workers(&ns, "g").await? == 1).then_some(())
    })
    .await;
    drop(p);
    ns.cleanup().await;
}

#[tokio::test]
async fn a_leader_cut_off_from_the_apiserver_stops_before_its_lease_expires() {
    let id = 34;
    let (ns, vast) = setup("cutoff", id).await;
    ns.apply_group("g", group_spec(id, "5s")).await;
    // The operator reaches the apiserver through the proxy.
    let real = std::fs::read_to_string(common::kubeconfig()).expect("kubeconfig");
    let server = real
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .expect("server line")
        .to_string();
    let proxy = Proxy::start(server.clone()).await;
    let kc = common::repo_root()
        .join("target/test-logs")
        .join(format!("{}-proxied.kubeconfig", ns.name));
    std::fs::write(
        &kc,
        real.replace(&server, &format!("127.0.0.1:{}", proxy.port)),
    )
    .expect("write kubeconfig");
    let la = lease_args(&ns.name);
    let p = OperatorProcess::start_with("op", &ns.name, &vast.url(), &args(&la), &kc);
    let wait = Duration::from_secs(30);
    eventually("leading and polling", wait, || async {
        let leads = leader_value(&p).await? == 1.0;
        (leads && ready_workers(&ns, "g").await? == 1).then_some(())
    })
    .await;

    proxy.cut();
    let cut = Instant::now();
    // The Lease was last renewed before the cut: the leader must stop acting within the
    // lease duration, before anyone else may take it over.
    eventually(
        "the leader steps down",
        LEASE + Duration::from_secs(2),
        || async { (leader_value(&p).await? == 0.0).then_some(()) },
    )
    .await;
    let stepped = cut.elapsed();
    assert!(stepped < LEASE, "stepped down after {stepped:?}");
    // And no more polls happen: nothing of a leader runs.
    let calls = vast.state.calls(id);
    common::quiet_for(Duration::from_secs(10)).await;
    assert_eq!(
        vast.state.calls(id),
        calls,
        "a cut-off leader kept polling Vast (two intervals after its step-down)"
    );
    assert!(p.log_text().contains("not leading"), "{}", p.log_text());
    drop(p);
    ns.cleanup().await;
}

#[tokio::test]
async fn a_leader_whose_renewals_are_refused_writes_no_status_after_its_deadline() {
    use k8s_openapi::api::coordination::v1::Lease;
    let id = 35;
    let (ns, vast) = setup("renewrefused", id).await;
    ns.apply_group("g", group_spec(id, "5s")).await;
    let la = lease_args(&ns.name);
    let p = OperatorProcess::start("op", &ns.name, &vast.url(), &args(&la));
    eventually("leading and polling", Duration::from_secs(30), || async {
        let leads = leader_value(&p).await? == 1.0;
        (leads && ready_workers(&ns, "g").await? == 1).then_some(())
    })
    .await;
    // Vast changes all the time: a worker more every second, so every poll of a
    // leader writes status.
    let (state, at_vast) = (vast.state.clone(), std::sync::Arc::new(AtomicI64::new(1)));
    let grow = {
        let at_vast = at_vast.clone();
        tokio::spawn(async move {
            for n in 2i64.. {
                state.upsert_worker(id, n, worker_json(n, "idle", Some(&url(n % 250 + 1))));
                at_vast.store(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // When each status change reaches a watch of the WorkerGroup.
    let changes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let watch = {
        use futures::StreamExt;
        use kube::runtime::WatchStreamExt;
        let (api, changes) = (ns.api::<WorkerGroup>(), changes.clone());
        tokio::spawn(async move {
            let mut last = None;
            let stream = kube::runtime::watcher::watch_object(api, "g").default_backoff();
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let Ok(Some(wg)) = item else { continue };
                let status = serde_json::to_value(&wg.status).ok();
                if last.is_some() && status != last {
                    changes.lock().expect("lock").push(Instant::now());
                }
                last = status;
            }
        })
    };
    let writes_after = |t: Instant| {
        changes
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| **c > t)
            .count()
    };
    // (The watch sees the leader's writes.)
    eventually("a status write seen", Duration::from_secs(20), || async {
        (!changes.lock().expect("lock").is_empty()).then_some(())
    })
    .await;

    // From now on the apiserver refuses every write of this namespace's Lease.
    let policy = format!("refuse-lease-{}", ns.name);
    common::refusing_policy(
        &ns.client,
        &policy,
        &ns.name,
        ("coordination.k8s.io", &["UPDATE"], &["leases"]),
        "object.metadata.name != 'vast-operator-test'",
        "Lease renewals are refused by a test policy",
    )
    .await;
    let leases = ns.api::<Lease>();
    eventually(
        "the policy refuses Lease writes",
        Duration::from_secs(30),
        || async {
            let pp = PatchParams {
                dry_run: true,
                ..Default::default()
            };
            let probe = json!({"metadata": {"labels": {"probe": "x"}}});
            leases
                .patch("vast-operator-test", &pp, &Patch::Merge(&probe))
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    // The last renewal that got through, and the deadline it gives: one second before
    // that Lease expires (src/runtime/leader.rs).
    let renewed = leases
        .get("vast-operator-test")
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.renew_time)
        .expect("renewTime")
        .0;
    let expires = renewed
        .checked_add(jiff::SignedDuration::try_from(LEASE).expect("d"))
        .expect("time");
    let until = |t: jiff::Timestamp| {
        Instant::now()
            + Duration::try_from(jiff::Timestamp::now().duration_until(t)).unwrap_or_default()
    };
    let deadline = until(expires) - Duration::from_secs(1);
    let expiry = until(expires);

    eventually(
        "the leader steps down",
        LEASE + Duration::from_secs(5),
        || async { (leader_value(&p).await? == 0.0).then_some(()) },
    )
    .await;
    let stepped = Instant::now();
    assert!(
        stepped < expiry + Duration::from_millis(500),
        "stepped down {:?} after its Lease expired",
        stepped - expiry
    );
    // Two intervals more of Vast changing: nothing is written after the deadline (a
    // watch event arrives within half a second of its write).
    common::quiet_for(Duration::from_secs(12)).await;
    let late = writes_after(deadline + Duration::from_millis(500));
    assert_eq!(
        late,
        0,
        "{late} status writes after the step-down deadline\n{}",
        p.log_text()
    );
    let wg = ns.api::<WorkerGroup>().get("g").await.expect("get");
    let (recorded, now) = (
        wg.status.map(|s| s.worker_count).unwrap_or_default(),
        at_vast.load(Ordering::Relaxed),
    );
    assert!(
        recorded + 10 <= now,
        "status kept up with Vast: {recorded} workers recorded of {now}"
    );
    assert!(p.log_text().contains("not leading"), "{}", p.log_text());
    assert!(!watch.is_finished(), "the watch of the WorkerGroup ended");
    grow.abort();
    watch.abort();
    drop(p);
    common::remove_policy(&ns.client, &policy).await;
    ns.cleanup().await;
}

/// Two replicas may both take the Lease when an outage ends (each write lands; the
/// later one holds it). The one whose write came first must stop as soon as its Lease
/// watch shows the other holder (and a read confirms it), not at its next renewal: here
/// the Lease lasts 60 s, so the next renewal is some 40 s away, and the step-down must
/// come within 5 s.
#[tokio::test]
async fn a_leader_that_sees_another_holder_stops_at_once() {
    use k8s_openapi::api::coordination::v1::Lease;
    let id = 37;
    let (ns, vast) = setup("otherholder", id).await;
    ns.apply_group("g", group_spec(id, "5s")).await;
    let lease = "vast-operator-other";
    let p = OperatorProcess::start(
        "op",
        &ns.name,
        &vast.url(),
        &[
            "--lease-namespace",
            &ns.name,
            "--lease-name",
            lease,
            "--lease-duration",
            "60s",
        ],
    );
    eventually("leading and polling", Duration::from_secs(30), || async {
        let leads = leader_value(&p).await? == 1.0;
        (leads && ready_workers(&ns, "g").await? == 1).then_some(())
    })
    .await;
    // Another replica's acquisition lands last.
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now());
    let patch = json!({"spec": {"holderIdentity": "another-replica", "renewTime": now,
        "acquireTime": now}});
    ns.api::<Lease>()
        .patch(lease, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch the Lease");
    let taken = Instant::now();
    eventually(
        "the replica that lost the race steps down",
        Duration::from_secs(5),
        || async { (leader_value(&p).await? == 0.0).then_some(()) },
    )
    .await;
    eprintln!(
        "stepped down {:?} after the other holder's write",
        taken.elapsed()
    );
    assert!(
        p.log_text().contains("held by another replica"),
        "{}",
        p.log_text()
    );
    drop(p);
    ns.cleanup().await;
}
