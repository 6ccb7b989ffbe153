//! Control-plane faults, on a control plane of this test process alone: kube-apiserver
//! stopped for 30 s while Vast changes, etcd restarted, and a status write that loses a
//! race with a change of the object. Nothing may be lost, nor may events storm.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, cluster_fault, eventually, ready_is, worker_states};
use fake_vast::{Shape, worker_json};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-control-plane-77aa88bb";

fn url(n: i64) -> String {
    format!("http://198.51.100.{n}:4000")
}

#[tokio::test]
async fn apiserver_down_etcd_restart_and_a_lost_race_lose_nothing() {
    let hold = common::Hold::default();
    let h = Harness::start_holding("cp", |c, _| c, |v| v, hold.clone()).await;
    h.vast.state.put_group(
        301,
        KEY,
        Shape::Array,
        vec![
            worker_json(1, "idle", Some(&url(1))),
            worker_json(2, "idle", Some(&url(2))),
        ],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group(
        "g",
        json!({"workergroupId": 301, "apiKeySecretRef": {"name": "vast"}, "pollInterval": "5s"}),
    )
    .await;
    h.wait_for("g", "synced", |wg| ready_is(wg, "True", "Synced"))
        .await;

    // kube-apiserver goes away for 30 s; Vast changes meanwhile.
    cluster_fault("apiserver-stop").await;
    let calls = h.vast.state.calls(301);
    h.vast
        .state
        .upsert_worker(301, 2, worker_json(2, "error", Some(&url(2))));
    h.vast
        .state
        .upsert_worker(301, 3, worker_json(3, "idle", Some(&url(3))));
    // The length of the fault: the operator must ride it out.
    common::quiet_for(Duration::from_secs(30)).await;
    let polled_while_down = h.vast.state.calls(301) - calls;
    cluster_fault("apiserver-start").await;
    let back = Instant::now();
    let wg = h
        .wait_for("g", "the change caught up", |wg| {
            worker_states(wg)
                == [
                    (1, "idle".to_string()),
                    (2, "error".to_string()),
                    (3, "idle".to_string()),
                ]
        })
        .await;
    eprintln!(
        "control-plane: caught up {:.1}s after the apiserver came back; {polled_while_down} Vast calls during the 30 s outage",
        back.elapsed().as_secs_f64()
    );
    assert!(ready_is(&wg, "True", "Synced"));
    assert!(h.running());
    h.wait_events("g", "the WorkersChanged of the last change", |ev| {
        ev.iter()
            .any(|e| e.1 == "WorkersChanged" && e.2 == "+1 (ids 3) ~1 (2: idle->error)")
    })
    .await;
    // Once a later poll reaches the fake, that reconcile has told all it will.
    let seen = h.vast.state.calls(301);
    eventually("a later poll", Duration::from_secs(30), || async {
        (h.vast.state.calls(301) > seen).then_some(())
    })
    .await;
    let events = h.events("g").await;
    let told: i32 = events.iter().map(|e| e.3).sum();
    assert!(told <= 4, "an event storm: {events:?}");
    let changed: Vec<_> = events.iter().filter(|e| e.1 == "WorkersChanged").collect();
    assert_eq!(
        changed.last().map(|e| e.2.as_str()),
        Some("+1 (ids 3) ~1 (2: idle->error)"),
        "{events:?}"
    );

    // etcd restarts under the apiserver; then Vast changes again.
    cluster_fault("etcd-restart").await;
    h.vast
        .state
        .upsert_worker(301, 4, worker_json(4, "idle", Some(&url(4))));
    // The watches come back on their own backoff (up to 30 s after a long outage).
    let api = h.ns.api::<WorkerGroup>();
    eventually(
        "caught up after the etcd restart",
        Duration::from_secs(90),
        || async {
            let wg = api.get("g").await.ok()?;
            (worker_states(&wg).len() == 4 && ready_is(&wg, "True", "Synced")).then_some(())
        },
    )
    .await;

    // A status write that loses a race: the write planned from one version is on its
    // way when the object changes (a label), so it gets 409. It is retried from the new
    // version: the change lands, with no Warning.
    let status_applies = || {
        h.requests
            .snapshot()
            .get(&("APPLY".to_string(), "workergroups/status".to_string()))
            .copied()
            .unwrap_or(0)
    };
    let applies = status_applies();
    hold.set_before("/workergroups/g/status");
    h.vast
        .state
        .upsert_worker(301, 5, worker_json(5, "idle", Some(&url(5))));
    eventually(
        "the status write is on its way",
        Duration::from_secs(30),
        || async { (hold.held() == 1).then_some(()) },
    )
    .await;
    let label = json!({"apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
        "metadata": {"name": "g", "labels": {"touched": "yes"}}});
    h.ns.api::<WorkerGroup>()
        .patch(
            "g",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&label),
        )
        .await
        .expect("label");
    hold.release();
    h.wait_for("g", "the raced change landed", |wg| {
        worker_states(wg).len() == 5
    })
    .await;
    // One write refused for its resourceVersion, one that landed.
    assert!(
        status_applies() >= applies + 2,
        "no write was refused: {} status applies",
        status_applies() - applies
    );
    let events = h.events("g").await;
    assert!(
        events.iter().all(|e| e.0 != "Warning"),
        "a lost race warned: {events:?}"
    );
    h.stop().await;
}
