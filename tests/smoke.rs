//! Proves the test control plane is a real kube-apiserver: CRDs become Established,
//! the status subresource takes server-side apply, watches deliver, TokenRequest issues
//! tokens and RBAC denies until a Role allows.

mod common;

use std::time::Duration;

use common::{TestNs, eventually, install_workergroup_crd};
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use vast_operator::crd::WorkerGroup;

#[tokio::test]
async fn control_plane_is_real() {
    let ns = TestNs::new("smoke").await;
    install_workergroup_crd(&ns.client).await;

    // The server reports the pinned version.
    let version = ns.client.apiserver_version().await.expect("version");
    assert_eq!(version.major, "1");
    assert!(
        version.git_version.starts_with("v1.3"),
        "{}",
        version.git_version
    );

    let groups: Api<WorkerGroup> = ns.api();
    let wg: WorkerGroup = serde_json::from_value(json!({
        "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
        "metadata": {"name": "smoke"},
        "spec": {"workergroupId": 7, "apiKeySecretRef": {"name": "k"}}
    }))
    .expect("object");
    let created = groups
        .create(&PostParams::default(), &wg)
        .await
        .expect("create");
    // Server-side defaulting from the CRD schema.
    assert_eq!(created.spec.poll_interval, "30s");
    assert_eq!(created.spec.api_key_secret_ref.key, "api-key");
    assert_eq!(created.status.and_then(|s| s.observed_generation), Some(-1));

    // Watch, then write status through server-side apply, and see it arrive.
    let mut stream = watcher(groups.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let patch = json!({
        "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
        "status": {"readySummary": "7/9", "workerCount": 9, "readyWorkers": 7}
    });
    groups
        .patch_status(
            "smoke",
            &PatchParams::apply("smoke-test").force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect("apply status");
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = stream.next().await {
            let obj = ev.expect("watch event");
            if obj.status.as_ref().and_then(|s| s.ready_summary.as_deref()) == Some("7/9") {
                return obj;
            }
        }
        panic!("watch ended");
    })
    .await
    .expect("status observed through the watch");
    let managers: Vec<String> = seen
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.iter().any(|m| m == "smoke-test"), "{managers:?}");

    // A ServiceAccount token from the TokenRequest API is a real identity, denied by RBAC...
    let sas: Api<ServiceAccount> = ns.api();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "reader"}})).expect("sa");
    sas.create(&PostParams::default(), &sa)
        .await
        .expect("create sa");
    let tr: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [], "expirationSeconds": 600}
    }))
    .expect("token request");
    let tr: TokenRequest = sas
        .create_subresource("token", "reader", &PostParams::default(), &tr)
        .await
        .expect("TokenRequest");
    let token = tr.status.expect("token status").token;
    let mut cfg = common::admin_config().await;
    cfg.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let sa_client = kube::Client::try_from(cfg).expect("sa client");
    let as_sa: Api<WorkerGroup> = Api::namespaced(sa_client, &ns.name);
    match as_sa.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("expected 403, got {other:?}"),
    }

    // ...until a Role grants access.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "wg-reader"},
        "rules": [{"apiGroups": ["vast.ai"], "resources": ["workergroups"], "verbs": ["get", "list"]}]
    }))
    .expect("role");
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .expect("role");
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "wg-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "wg-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns.name}]
    }))
    .expect("rolebinding");
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &rb)
        .await
        .expect("rolebinding");
    let listed = eventually("RBAC grants list", Duration::from_secs(30), || {
        let as_sa = as_sa.clone();
        async move { as_sa.list(&ListParams::default()).await.ok() }
    })
    .await;
    assert_eq!(listed.items.len(), 1);
    ns.cleanup().await;
}

/// For `hack/leak-check.sh`: a key logged through the in-process operators' log (the
/// subscriber `VAST_TEST_LOG` installs), which the leak check must find, or it fails: a
/// search of logs that never reached it would find nothing and pass.
#[tokio::test]
async fn a_key_planted_for_the_leak_check() {
    let h = common::Harness::start("planted").await;
    tracing::warn!(
        planted = "vk1-leak-canary-5a4b3c2d1e",
        "planted for hack/leak-check.sh, which must find it"
    );
    h.stop().await;
}

/// For `hack/leak-check.sh`: a key that reaches a child operator's log file through the
/// operator's own logging of what Vast answered (an error message quoting it, which the
/// operator does not redact: it is not the operator's key). The leak check must find it
/// in that file, or the child operators' logs did not reach the search.
#[tokio::test]
async fn a_key_planted_in_a_child_operators_log() {
    const PLANTED: &str = "vk1-leak-canary-5a4b3c2d1e";
    const KEY: &str = "vk1-smoke-child-7e6d5c4b3a";
    let ns = TestNs::new("planted-child").await;
    install_workergroup_crd(&ns.client).await;
    let vast = fake_vast::FakeVast::start(0).await.expect("fake vast");
    vast.state
        .put_group(9301, KEY, fake_vast::Shape::Array, Vec::new());
    vast.state.set_fault(
        9301,
        Some(fake_vast::Fault {
            body: fake_vast::FaultBody::ErrorMsg(format!("no workergroup for {PLANTED}")),
            ..Default::default()
        }),
    );
    ns.secret("vast", "api-key", KEY).await;
    let p =
        common::OperatorProcess::start("canary", &ns.name, &vast.url(), &["--leader-elect=false"]);
    ns.apply_group("g", common::group_spec(9301, "1h")).await;
    eventually(
        "the child operator logged what Vast answered",
        Duration::from_secs(60),
        || async { p.log_text().contains(PLANTED).then_some(()) },
    )
    .await;
    drop(p);
    ns.cleanup().await;
}
