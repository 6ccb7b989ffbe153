//! The default mode: one operator for every namespace. In a cluster of its own (a test
//! binary gets one), since it would act on every other test's WorkerGroups.

mod common;

use std::time::Duration;

use common::{TestNs, eventually, group_spec, ready_is};
use fake_vast::{Shape, worker_json};
use kube::api::Api;
use vast_operator::crd::WorkerGroup;

async fn synced(api: &Api<WorkerGroup>) -> bool {
    api.get("g")
        .await
        .ok()
        .is_some_and(|wg| ready_is(&wg, "True", "Synced"))
}

#[tokio::test]
async fn all_namespaces_a_secret_change_wakes_only_its_own_namespace() {
    let a = TestNs::new("all-a").await;
    let b = TestNs::new("all-b").await;
    common::install_workergroup_crd(&a.client).await;
    let vast = fake_vast::FakeVast::start(0).await.expect("fake vast");
    let url = |n: i64| format!("http://198.51.100.{n}:4000");
    vast.state.put_group(
        81,
        "vk1-ns-a-1001",
        Shape::Array,
        vec![worker_json(1, "idle", Some(&url(1)))],
    );
    vast.state.put_group(
        82,
        "vk1-ns-b-2002",
        Shape::Array,
        vec![worker_json(2, "idle", Some(&url(2)))],
    );
    a.secret("vast", "api-key", "vk1-ns-a-1001").await;
    b.secret("vast", "api-key", "vk1-ns-b-2002").await;
    let config = vast_operator::controller::Config {
        namespace: None,
        ..common::test_config(&a.name)
    };
    let (ctx, _) = common::in_process_context(&vast.url(), config).await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(vast_operator::controller::run(ctx, async {
        let _ = rx.await;
    }));

    a.apply_group("g", group_spec(81, "1h")).await;
    b.apply_group("g", group_spec(82, "1h")).await;
    let (wa, wb) = (a.api::<WorkerGroup>(), b.api::<WorkerGroup>());
    eventually(
        "both namespaces synced",
        Duration::from_secs(40),
        || async { (synced(&wa).await && synced(&wb).await).then_some(()) },
    )
    .await;

    // The key of A is rotated at Vast and then in A's Secret: A polls at once with the
    // new key (its interval is an hour); B, whose Secret has the same name, does not.
    let (a0, b0) = (vast.state.calls(81), vast.state.calls(82));
    vast.state.set_api_key(81, "vk1-ns-a-3003");
    a.secret("vast", "api-key", "vk1-ns-a-3003").await;
    eventually(
        "A polls with the new key",
        Duration::from_secs(10),
        || async { (vast.state.calls(81) > a0 && synced(&wa).await).then_some(()) },
    )
    .await;
    // A window in which a wrongly woken B would have polled.
    common::quiet_for(Duration::from_secs(3)).await;
    assert_eq!(vast.state.calls(82), b0, "B was woken by A's Secret");
    let wg = wa.get("g").await.expect("get");
    assert!(ready_is(&wg, "True", "Synced"), "{:?}", wg.status);

    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    a.cleanup().await;
    b.cleanup().await;
}
