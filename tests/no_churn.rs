//! Unchanged polls write nothing, counted from the apiserver's own metrics. In a test
//! binary of its own, so that its control plane sees no other writer.

mod common;

use std::time::Duration;

use common::{Harness, eventually, ready_is};
use fake_vast::{Shape, worker_json};
use serde_json::json;

#[tokio::test]
async fn unchanged_polls_make_zero_status_writes() {
    let h = Harness::start("nochurn").await;
    let workers = (1..=20)
        .map(|i| worker_json(i, "idle", Some(&format!("http://198.51.100.{i}:8000"))))
        .collect();
    h.vast
        .state
        .put_group(61, "vk1-nochurn-11223", Shape::Array, workers);
    h.secret("vast", "api-key", "vk1-nochurn-11223").await;
    h.apply_group(
        "g",
        json!({"workergroupId": 61, "apiKeySecretRef": {"name": "vast"}, "pollInterval": "5s"}),
    )
    .await;
    h.wait_for("g", "synced", |wg| ready_is(wg, "True", "Synced"))
        .await;

    let status_writes = [("resource", "workergroups"), ("subresource", "status")];
    let before = common::apiserver_requests(&h.ns.client, &status_writes).await;
    assert!(before >= 1, "the metric counts our status write");
    let discovery_before = discovery_writes(&h.ns.client).await;
    assert!(
        discovery_before >= 2,
        "the metric counts the Service and slice creates"
    );
    let calls = h.vast.state.calls(61);
    let reads = h.requests.snapshot();
    // Loads move on every poll, states do not.
    for round in 0..3u32 {
        for i in 1..=20 {
            h.vast
                .state
                .upsert_worker(61, i, json!({"cur_load": f64::from(round) + 0.5}));
        }
        let target = calls + u64::from(round) + 1;
        eventually("another poll", Duration::from_secs(20), || async {
            (h.vast.state.calls(61) >= target).then_some(())
        })
        .await;
    }
    // Reconciles of one object never overlap: once a fourth poll has begun, the third
    // one's reconcile (and any write it made) has finished.
    eventually("a fourth poll", Duration::from_secs(20), || async {
        (h.vast.state.calls(61) > calls + 3).then_some(())
    })
    .await;
    let after = common::apiserver_requests(&h.ns.client, &status_writes).await;
    assert_eq!(
        after,
        before,
        "3 unchanged polls made {} status requests",
        after - before
    );
    // Reads included: the key comes from the cache (the Secret did not change), the
    // discovery objects from watches.
    // Counted on the operator's own client: other clients of the cluster (the garbage
    // collector looks owners up) do not count.
    let reads_after = h.requests.snapshot();
    assert!(
        reads.contains_key(&("APPLY".to_string(), "workergroups/status".to_string())),
        "{reads:?}"
    );
    assert_eq!(
        reads_after, reads,
        "3 unchanged polls made apiserver requests ((verb, resource) -> count, before/after)"
    );

    // A real change is one write.
    h.vast
        .state
        .upsert_worker(61, 7, json!({"status": "error"}));
    h.wait_for("g", "change written", |wg| {
        wg.status.as_ref().is_some_and(|s| s.ready_workers == 19)
    })
    .await;
    let changed = common::apiserver_requests(&h.ns.client, &status_writes).await;
    assert_eq!(changed, before + 1);
    // ...and one slice update: the endpoint changes in place.
    eventually("slice updated", Duration::from_secs(20), || async {
        (discovery_writes(&h.ns.client).await > discovery_before).then_some(())
    })
    .await;
    assert_eq!(discovery_writes(&h.ns.client).await, discovery_before + 1);
    h.stop().await;
}

/// Write requests (create, apply, patch, update, delete) to Services and EndpointSlices.
async fn discovery_writes(client: &kube::Client) -> u64 {
    let mut n = 0;
    for resource in ["services", "endpointslices"] {
        for verb in ["POST", "APPLY", "PATCH", "PUT", "DELETE"] {
            n +=
                common::apiserver_requests(client, &[("resource", resource), ("verb", verb)]).await;
        }
    }
    n
}
