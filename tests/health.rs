//! GitOps health with the consumers' own code: WorkerGroups as the operator wrote them,
//! at each stage of their life, judged by Argo CD's Lua interpreter (gopher-lua) running
//! `charts/vast-operator/files/argocd-health.lua` and by Flux's kstatus (cli-utils), both
//! in `hack/tools/health-check`.

mod common;

use common::{Harness, cond, ready_is};
use fake_vast::{Fault, Shape, worker_json};
use serde_json::{Value, json};
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-health-97531";

fn spec(extra: Value) -> Value {
    let mut s =
        json!({"workergroupId": 601, "apiKeySecretRef": {"name": "vast"}, "pollInterval": "5s"});
    for (k, v) in extra.as_object().into_iter().flatten() {
        s[k] = v.clone();
    }
    s
}

async fn snapshot(h: &Harness, stage: &str) -> Value {
    let wg = h.ns.api::<WorkerGroup>().get("g").await.expect("get");
    let mut v = serde_json::to_value(&wg).expect("json");
    // The checker names results by metadata.name: the stage stands in for it.
    v["metadata"]["name"] = json!(stage);
    v
}

#[tokio::test]
async fn argo_cd_and_kstatus_read_each_stage_as_documented() {
    let mut h = Harness::start("health").await;
    h.vast.state.put_group(
        601,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some("http://198.51.100.81:4000"))],
    );
    h.secret("vast", "api-key", KEY).await;
    let mut stages = Vec::new();

    // Created while no operator runs: nothing observed yet.
    h.pause().await;
    h.apply_group("g", spec(json!({}))).await;
    stages.push(snapshot(&h, "created").await);

    // The first sync fails: Reconciling.
    h.vast.state.set_fault(
        601,
        Some(Fault {
            status: Some(502),
            ..Default::default()
        }),
    );
    h.restart(|c| c).await;
    h.wait_for("g", "first sync failing", |wg| {
        cond(wg, "Reconciling") == Some(("True".into(), "Progressing".into()))
    })
    .await;
    stages.push(snapshot(&h, "first-sync-failing").await);

    h.vast.state.set_fault(601, None);
    h.wait_for("g", "synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    stages.push(snapshot(&h, "synced").await);

    // Failing after a sync (the test operator reports the first failure).
    h.vast.state.set_fault(
        601,
        Some(Fault {
            status: Some(502),
            ..Default::default()
        }),
    );
    h.wait_for("g", "failing", |wg| ready_is(wg, "False", "PollFailed"))
        .await;
    stages.push(snapshot(&h, "failing-after-sync").await);
    h.vast.state.set_fault(601, None);
    h.wait_for("g", "synced again", |wg| ready_is(wg, "True", "Synced"))
        .await;

    // Vast refuses the key: Stalled.
    h.vast.state.set_api_key(601, "vk1-health-other-1");
    h.wait_for("g", "stalled", |wg| {
        cond(wg, "Stalled") == Some(("True".into(), "AuthenticationFailed".into()))
    })
    .await;
    stages.push(snapshot(&h, "stalled").await);
    // A new key in the Secret: the Secret watch wakes it, synced again.
    h.vast.state.set_api_key(601, "vk1-health-rotated-2");
    h.secret("vast", "api-key", "vk1-health-rotated-2").await;
    h.wait_for("g", "synced with the new key", |wg| {
        ready_is(wg, "True", "Synced")
    })
    .await;

    h.apply_group("g", spec(json!({"suspend": true}))).await;
    h.wait_for("g", "suspended", |wg| ready_is(wg, "True", "Suspended"))
        .await;
    stages.push(snapshot(&h, "suspended").await);

    // A spec change not yet observed.
    h.pause().await;
    h.apply_group("g", spec(json!({"pollInterval": "1m"})))
        .await;
    stages.push(snapshot(&h, "spec-not-observed").await);

    let dir = common::repo_root().join("target/test-logs");
    std::fs::create_dir_all(&dir).expect("dir");
    let objects = dir.join(format!("{}-health-objects.json", h.ns.name));
    std::fs::write(
        &objects,
        serde_json::to_string_pretty(&stages).expect("json"),
    )
    .expect("write");
    let checker = common::repo_root().join("hack/bin/health-check");
    let script = common::repo_root().join("charts/vast-operator/files/argocd-health.lua");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&checker)
            .arg(&script)
            .arg(&objects)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "run {} (hack/tools.sh health-check): {e}",
                    checker.display()
                )
            })
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("checker output");
    let got: Vec<(String, String, String)> = results
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["argo"]["status"].as_str().unwrap_or_default().to_string(),
                r["kstatus"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    for r in &results {
        eprintln!("health: {}", r);
    }
    let want = [
        ("created", "Progressing", "InProgress"),
        ("first-sync-failing", "Progressing", "InProgress"),
        ("synced", "Healthy", "Current"),
        ("failing-after-sync", "Degraded", "InProgress"),
        ("stalled", "Degraded", "Failed"),
        ("suspended", "Suspended", "Current"),
        ("spec-not-observed", "Progressing", "InProgress"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want);
    h.stop().await;
}
