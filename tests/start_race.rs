//! Every WorkerGroup is reconciled, however its creation and the operator's start
//! interleave (issue 15): many WorkerGroups applied just before the operator starts, a
//! restart with more applied just before it, WorkerGroups created during a takeover, and
//! WorkerGroups created while the apiserver had dropped the operator's watches.
//!
//! The operator runs as a process with leader election, for every namespace, in a
//! control plane of this binary's own; the tests take turns (each would act on the
//! others' WorkerGroups).

// Id ranges, one or two per call.
#![allow(clippy::single_range_in_vec_init)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{OperatorProcess, TestNs, eventually, http_get, metric};
use fake_vast::{FakeVast, Shape, worker_json};
use futures::{StreamExt, TryStreamExt};
use kube::api::{ListParams, PostParams};
use serde_json::json;
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-start-race-0123456789";

/// The tests take turns: each runs an operator for every namespace.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The poll interval of every WorkerGroup here.
const INTERVAL: Duration = Duration::from_secs(10);

/// When every WorkerGroup must have been polled: never-synced WorkerGroups are polled at
/// once (no start-up spread applies to them), so one interval for the queue behind the
/// concurrency limit, plus what the operator's own overdue check allows for.
fn deadline() -> Duration {
    INTERVAL * 2 + vast_operator::controller::overdue::GRACE
}

/// A namespace with the Secret, and `n` workergroups at the fake (ids from `first`).
async fn namespace(test: &str, vast: &FakeVast, first: i64, n: usize) -> TestNs {
    let ns = TestNs::new(test).await;
    ns.secret("vast", "api-key", KEY).await;
    for i in 0..n as i64 {
        let id = first + i;
        let workers = (1..=2)
            .map(|w| {
                let url = format!("http://203.0.113.{w}:{}", 20000 + id % 40000);
                worker_json(w, "idle", Some(&url))
            })
            .collect();
        vast.state.put_group(id, KEY, Shape::Array, workers);
    }
    ns
}

/// Creates WorkerGroups `wg-<i>` for ids `first..first + n` (every third with discovery),
/// 32 requests at a time, as `kubectl apply` of many objects does them.
async fn create_groups(ns: &TestNs, first: i64, n: usize, prefix: &str) {
    let api = ns.api::<WorkerGroup>();
    futures::stream::iter(0..n as i64)
        .map(|i| {
            let api = api.clone();
            let wg: WorkerGroup = serde_json::from_value(json!({
                "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
                "metadata": {"name": format!("{prefix}-{i}")},
                "spec": {"workergroupId": first + i, "apiKeySecretRef": {"name": "vast"},
                         "pollInterval": format!("{}s", INTERVAL.as_secs()),
                         "discovery": {"enabled": i % 3 == 0}}
            }))
            .expect("workergroup");
            async move { api.create(&PostParams::default(), &wg).await.map(|_| ()) }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .expect("create workergroups");
}

/// Names of the WorkerGroups in `ns` without a Ready condition.
async fn unsynced(ns: &TestNs) -> BTreeSet<String> {
    ns.api::<WorkerGroup>()
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|wg| common::cond(wg, "Ready").is_none_or(|(s, _)| s != "True"))
        .map(|wg| wg.metadata.name.unwrap_or_default())
        .collect()
}

/// Waits until every WorkerGroup of `namespaces` is Ready and every id in `ids` has been
/// called at the fake Vast, each after `since`; says which are missing when not.
async fn all_polled(
    what: &str,
    namespaces: &[&TestNs],
    vast: &FakeVast,
    ids: &[std::ops::Range<i64>],
    since: Instant,
) {
    let deadline = Instant::now() + deadline();
    loop {
        let mut missing = Vec::new();
        for ns in namespaces {
            let names = unsynced(ns).await;
            if !names.is_empty() {
                missing.push(format!(
                    "{} not Ready in {} (first: {:?})",
                    names.len(),
                    ns.name,
                    names.iter().take(5).collect::<Vec<_>>()
                ));
            }
        }
        let uncalled: Vec<i64> = ids
            .iter()
            .flat_map(|r| r.clone())
            .filter(|id| !vast.state.call_times(*id).iter().any(|t| *t >= since))
            .collect();
        if !uncalled.is_empty() {
            missing.push(format!(
                "{} workergroups never called (first: {:?})",
                uncalled.len(),
                &uncalled[..uncalled.len().min(5)]
            ));
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not every WorkerGroup polled within {:?}: {}",
            self::deadline(),
            missing.join("; ")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn metric_of(p: &OperatorProcess, series: &str) -> Option<f64> {
    let (_, body) = http_get(&format!("{}/metrics", p.metrics)).await?;
    metric(&body, series)
}

fn lease(ns: &TestNs) -> Vec<String> {
    [
        "--lease-namespace",
        &ns.name,
        "--lease-name",
        "start-race",
        "--lease-duration",
        "8s",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--vast-max-rps".into(), "1000".into()])
    .collect()
}

fn start(ns: &TestNs, identity: &str, vast: &FakeVast) -> OperatorProcess {
    start_with(ns, identity, vast, &[])
}

fn start_with(ns: &TestNs, identity: &str, vast: &FakeVast, extra: &[&str]) -> OperatorProcess {
    let mut args = lease(ns);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    OperatorProcess::start_all_namespaces(
        &ns.name,
        identity,
        &vast.url(),
        &args,
        common::kubeconfig(),
    )
}

/// The operator's overdue gauge reads 0 on the leader.
async fn none_overdue(p: &OperatorProcess) {
    eventually(
        "the overdue gauge is published",
        Duration::from_secs(10),
        || async { metric_of(p, "vast_operator_workergroups_overdue").await },
    )
    .await;
    assert_eq!(
        metric_of(p, "vast_operator_workergroups_overdue").await,
        Some(0.0),
        "WorkerGroups counted overdue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workergroups_applied_just_before_a_start_or_restart_are_all_polled() {
    let _turn = TURN.lock().await;
    let client = common::client().await;
    common::install_workergroup_crd(&client).await;
    let vast = FakeVast::start(0).await.expect("fake vast");
    // 1,200 WorkerGroups in two namespaces, every third with discovery, applied just
    // before the operator starts; 400 more just before it is restarted.
    let a = namespace("start-race-a", &vast, 600_000, 800).await;
    let b = namespace("start-race-b", &vast, 601_000, 800).await;
    create_groups(&a, 600_000, 600, "wg").await;
    create_groups(&b, 601_000, 600, "wg").await;
    let t0 = Instant::now();
    let mut op = start(&a, "start-race-0", &vast);
    all_polled(
        "a cold start",
        &[&a, &b],
        &vast,
        &[600_000..600_600, 601_000..601_600],
        t0,
    )
    .await;
    none_overdue(&op).await;

    // kill -9, 400 more, and the same pod again (it holds the Lease it finds).
    op.signal("-9");
    let _ = op.child.wait();
    create_groups(&a, 600_600, 200, "more").await;
    create_groups(&b, 601_600, 200, "more").await;
    let t1 = Instant::now();
    let op = start(&a, "start-race-0", &vast);
    // The new ones are polled at once; the others were synced before the restart and
    // are spread over their interval, so they are called again within it too.
    all_polled(
        "a restart",
        &[&a, &b],
        &vast,
        &[600_000..600_800, 601_000..601_800],
        t1,
    )
    .await;
    none_overdue(&op).await;
    drop(op);
    a.cleanup().await;
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workergroups_created_during_a_takeover_are_polled() {
    let _turn = TURN.lock().await;
    let client = common::client().await;
    common::install_workergroup_crd(&client).await;
    let vast = FakeVast::start(0).await.expect("fake vast");
    let ns = namespace("takeover-race", &vast, 610_000, 400).await;
    create_groups(&ns, 610_000, 100, "wg").await;
    let leader = start(&ns, "takeover-0", &vast);
    all_polled(
        "the first leader",
        &[&ns],
        &vast,
        &[610_000..610_100],
        Instant::now(),
    )
    .await;
    let standby = start(&ns, "takeover-1", &vast);
    eventually(
        "the standby has listed",
        Duration::from_secs(30),
        || async {
            let (code, _) = http_get(&format!("{}/readyz", standby.health)).await?;
            (code == 200).then_some(())
        },
    )
    .await;
    // The leader dies; WorkerGroups are created while the standby waits for the Lease
    // to expire, and while it takes over.
    leader.signal("-9");
    let t = Instant::now();
    create_groups(&ns, 610_100, 150, "during").await;
    eventually("the standby leads", Duration::from_secs(30), || async {
        (metric_of(&standby, "vast_operator_leader").await? == 1.0).then_some(())
    })
    .await;
    create_groups(&ns, 610_250, 150, "after").await;
    all_polled("a takeover", &[&ns], &vast, &[610_000..610_400], t).await;
    none_overdue(&standby).await;
    drop((leader, standby));
    ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workergroups_created_while_the_watch_was_down_are_polled() {
    let _turn = TURN.lock().await;
    let client = common::client().await;
    common::install_workergroup_crd(&client).await;
    let vast = FakeVast::start(0).await.expect("fake vast");
    let ns = namespace("relist-race", &vast, 620_000, 600).await;
    create_groups(&ns, 620_000, 100, "wg").await;
    let op = start(&ns, "relist-0", &vast);
    all_polled(
        "before the fault",
        &[&ns],
        &vast,
        &[620_000..620_100],
        Instant::now(),
    )
    .await;
    // The apiserver goes away; the one that comes back has a new watch cache, so the
    // operator's watches cannot resume where they were and list again. WorkerGroups
    // created before that relist come in through it, not as watch events (the watches'
    // backoff after the outage makes that likely for many of them; how many is printed).
    common::cluster_fault("apiserver-stop").await;
    tokio::time::sleep(Duration::from_secs(5)).await; // the fault itself: an outage of 5 s
    common::cluster_fault("apiserver-start").await;
    let t = Instant::now();
    create_groups(&ns, 620_100, 500, "gap").await;
    all_polled("a relist", &[&ns], &vast, &[620_000..620_600], t).await;
    let by_relist = op.log_text().matches("woken by a (re)list").count();
    println!("relist test: {by_relist} WorkerGroups woken through a relist");
    none_overdue(&op).await;
    drop(op);
    ns.cleanup().await;
}

/// The safety net itself: with one reconcile at a time and a Vast that takes 3 s per
/// answer, 20 WorkerGroups at 5 s need 60 s for their first polls, beyond twice the
/// interval plus the grace (40 s): the last ones are counted overdue and named in a
/// warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workergroups_left_waiting_are_counted_overdue_and_named() {
    let _turn = TURN.lock().await;
    let client = common::client().await;
    common::install_workergroup_crd(&client).await;
    let vast = FakeVast::start(0).await.expect("fake vast");
    let ns = namespace("overdue", &vast, 630_000, 20).await;
    for id in 630_000..630_020 {
        vast.state.set_fault(
            id,
            Some(fake_vast::Fault {
                delay_ms: 3000,
                ..Default::default()
            }),
        );
    }
    let api = ns.api::<WorkerGroup>();
    for i in 0..20 {
        let wg: WorkerGroup = serde_json::from_value(json!({
            "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
            "metadata": {"name": format!("slow-{i}")},
            "spec": {"workergroupId": 630_000 + i, "apiKeySecretRef": {"name": "vast"},
                     "pollInterval": "5s", "discovery": {"enabled": false}}
        }))
        .expect("workergroup");
        api.create(&PostParams::default(), &wg)
            .await
            .expect("create");
    }
    let op = start_with(&ns, "overdue-0", &vast, &["--concurrency", "1"]);
    let seen = eventually(
        "WorkerGroups counted overdue",
        Duration::from_secs(90),
        || async {
            let n = metric_of(&op, "vast_operator_workergroups_overdue").await?;
            (n > 0.0).then_some(n)
        },
    )
    .await;
    assert!(seen <= 20.0, "{seen}");
    let log = op.log_text();
    assert!(
        log.contains("WorkerGroups not reconciled within their interval") && log.contains("/slow-"),
        "no warning naming them"
    );
    drop(op);
    ns.cleanup().await;
}
