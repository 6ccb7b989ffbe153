//! A kube-apiserver that refuses work with 429: this process's own control plane runs
//! with at most two mutating requests in flight (API Priority and Fairness off, so the
//! in-flight limit answers 429). The operator runs as a ServiceAccount bound to
//! cluster-admin (members of system:masters are exempt from the limit). Thirty
//! WorkerGroups created at once make its status, event and discovery writes collide;
//! every refused write must be retried until all are synced.

mod common;

use std::time::Duration;

use common::{TestNs, eventually, group_spec, ready_is};
use fake_vast::{Shape, worker_json};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PostParams};
use serde_json::json;
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-limits-31415";
const GROUPS: i64 = 30;

/// A client acting as a ServiceAccount of `ns` bound to cluster-admin.
async fn service_account_client(ns: &TestNs) -> kube::Client {
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "operator"}})).expect("sa");
    ns.api::<ServiceAccount>()
        .create(&PostParams::default(), &sa)
        .await
        .expect("create sa");
    let crb: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{}-operator", ns.name)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": ns.name}]
    }))
    .expect("crb");
    Api::<ClusterRoleBinding>::all(ns.client.clone())
        .create(&PostParams::default(), &crb)
        .await
        .expect("create binding");
    let token = common::service_account_token(&ns.client, &ns.name, "operator").await;
    let mut config = common::admin_config().await;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    kube::Client::try_from(config).expect("client")
}

#[tokio::test]
async fn writes_refused_with_429_are_retried_until_everything_is_synced() {
    common::kubeconfig_with_apiserver_flags(
        "--enable-priority-and-fairness=false --max-mutating-requests-inflight=1",
    );
    let ns = TestNs::new("limits").await;
    common::install_workergroup_crd(&ns.client).await;
    let operator = service_account_client(&ns).await;
    let vast = fake_vast::FakeVast::start(0).await.expect("fake vast");
    ns.secret("vast", "api-key", KEY).await;
    let before_429 = common::apiserver_requests(&ns.client, &[("code", "429")]).await;
    let client =
        vast_operator::vast::VastClient::new(&vast.url(), Duration::from_secs(3)).expect("client");
    common::log_in_process();
    let ctx =
        vast_operator::controller::Context::new(operator, client, common::test_config(&ns.name));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(vast_operator::controller::run(ctx, async {
        let _ = rx.await;
    }));

    let api = ns.api::<WorkerGroup>();
    for id in 1..=GROUPS {
        vast.state.put_group(
            400 + id,
            KEY,
            Shape::Array,
            vec![worker_json(
                1,
                "idle",
                Some(&format!("http://198.51.100.{id}:4000")),
            )],
        );
        // The admin is exempt from the limit.
        ns.apply_group(&format!("g{id}"), group_spec(400 + id, "30s"))
            .await;
    }
    let synced = eventually("all synced", Duration::from_secs(180), || async {
        let list = api.list(&Default::default()).await.ok()?;
        let n = list
            .items
            .iter()
            .filter(|wg| {
                ready_is(wg, "True", "Synced")
                    && wg.status.as_ref().is_some_and(|s| s.ready_workers == 1)
            })
            .count();
        (n == GROUPS as usize).then_some(n)
    })
    .await;
    let refused = common::apiserver_requests(&ns.client, &[("code", "429")]).await - before_429;
    eprintln!(
        "apiserver-429: {refused} requests refused with 429; {synced} of {GROUPS} WorkerGroups synced"
    );
    assert!(
        refused > 0,
        "the limit refused nothing: the test proves nothing"
    );
    assert!(!task.is_finished(), "the operator stopped");
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    ns.cleanup().await;
}
