//! Fair share of the Vast budget between namespaces: a namespace whose 80 WorkerGroups
//! all fail (and retry fast) cannot push back the polls of a healthy WorkerGroup in
//! another namespace, under a saturated `--vast-max-rps`. The operator watches every
//! namespace, so this runs in a cluster of its own (a test binary gets one).

mod common;

use std::time::{Duration, Instant};

use common::{Harness, TestNs, eventually, ready_is};
use fake_vast::{Fault, Shape, worker_json};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use vast_operator::crd::WorkerGroup;

const NOISY: &str = "vk1-fair-noisy-1357";
const CALM: &str = "vk1-fair-calm-2468";
const CALM_ID: i64 = 900;
const INTERVAL: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_namespace_of_failing_groups_cannot_starve_another() {
    let per_second = std::num::NonZeroU32::new(2).expect("2 > 0");
    let h = Harness::start_full(
        "fair-noisy",
        |mut c| {
            c.namespace = None;
            c
        },
        |v| v.with_rate_limit(per_second),
    )
    .await;
    let calm = TestNs::new("fair-calm").await;

    // 80 WorkerGroups whose polls all fail: with the tests' quick backoff (200 ms to
    // 2 s) they ask for about 40 calls a second, twenty times the budget.
    h.secret("vast", "api-key", NOISY).await;
    for i in 0..80 {
        let id = 100 + i;
        h.vast.state.put_group(id, NOISY, Shape::Array, Vec::new());
        h.vast.state.set_fault(
            id,
            Some(Fault {
                status: Some(500),
                ..Default::default()
            }),
        );
        h.apply_group(
            &format!("noisy-{i}"),
            json!({"workergroupId": id, "apiKeySecretRef": {"name": "vast"}, "pollInterval": "5s"}),
        )
        .await;
    }
    eventually(
        "the noisy namespace saturates the budget",
        Duration::from_secs(60),
        || async {
            let calls: u64 = (100..180).map(|id| h.vast.state.calls(id)).sum();
            (calls >= 40).then_some(())
        },
    )
    .await;

    // One healthy WorkerGroup in another namespace.
    h.vast.state.put_group(
        CALM_ID,
        CALM,
        Shape::Array,
        vec![worker_json(1, "idle", Some("http://203.0.113.90:4000"))],
    );
    calm.secret("vast", "api-key", CALM).await;
    let created = Instant::now();
    let wg = json!({
        "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
        "metadata": {"name": "calm"},
        "spec": {"workergroupId": CALM_ID, "apiKeySecretRef": {"name": "vast"}, "pollInterval": "5s"}
    });
    let api = calm.api::<WorkerGroup>();
    api.patch(
        "calm",
        &PatchParams::apply("tests").force(),
        &Patch::Apply(&wg),
    )
    .await
    .expect("apply");
    eventually(
        "the calm WorkerGroup synced",
        Duration::from_secs(30),
        || async {
            api.get("calm")
                .await
                .ok()
                .filter(|wg| ready_is(wg, "True", "Synced"))
        },
    )
    .await;
    let first_sync = created.elapsed();

    // Six intervals of polls, all while the other namespace keeps failing.
    let watch_from = Instant::now();
    let noisy_before: u64 = (100..180).map(|id| h.vast.state.calls(id)).sum();
    // Six intervals in which the other namespace's failures must not crowd out this one.
    common::quiet_for(INTERVAL * 6).await;
    let noisy_calls: u64 = (100..180).map(|id| h.vast.state.calls(id)).sum::<u64>() - noisy_before;
    let times: Vec<Instant> = h
        .vast
        .state
        .call_times(CALM_ID)
        .into_iter()
        .filter(|t| *t >= watch_from)
        .collect();
    let mut gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // The wait before the first call of the window counts too.
    if let Some(first) = times.first() {
        gaps.push(*first - watch_from);
    }
    let worst = gaps.iter().max().copied().unwrap_or(Duration::MAX);
    println!(
        "fairness: first sync {first_sync:?}; calm calls {} in {:?} (worst gap {worst:?}); noisy calls {noisy_calls}",
        times.len(),
        watch_from.elapsed()
    );
    assert!(
        noisy_calls as f64 >= 0.5 * watch_from.elapsed().as_secs_f64(),
        "the budget stayed saturated: {noisy_calls} noisy calls"
    );
    assert!(
        times.len() >= 4,
        "calm polled {} times in six intervals",
        times.len()
    );
    // About its interval: the interval, plus a turn for a slot and a turn for a call.
    assert!(
        worst <= INTERVAL + Duration::from_secs(4),
        "the calm WorkerGroup waited {worst:?} between polls (interval {INTERVAL:?})"
    );
    assert!(
        first_sync < Duration::from_secs(10),
        "first sync took {first_sync:?}"
    );
    calm.cleanup().await;
    h.stop().await;
}
