//! Discovery end to end: the Service and EndpointSlices the operator publishes, on a real
//! kube-apiserver, from the fake Vast server's workers.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Harness, cond, eventually, ready_is};
use fake_vast::{Shape, worker_json};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-discovery-13579";

fn spec(id: i64) -> serde_json::Value {
    json!({"workergroupId": id, "apiKeySecretRef": {"name": "vast"}, "pollInterval": "5s"})
}

/// Slices of a Service: name -> (addressType, port, [(address, ready, serving, terminating)]).
type SliceView = BTreeMap<String, (String, i32, Vec<(String, bool, bool, bool)>)>;

async fn slices(h: &Harness, svc: &str) -> SliceView {
    let api: Api<EndpointSlice> = h.ns.api();
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
    api.list(&lp)
        .await
        .expect("list slices")
        .items
        .into_iter()
        .map(|s| {
            let port = s
                .ports
                .as_ref()
                .and_then(|p| p.first())
                .and_then(|p| p.port)
                .unwrap_or(0);
            let eps = s
                .endpoints
                .iter()
                .map(|e| {
                    let c = e.conditions.clone().unwrap_or_default();
                    (
                        e.addresses[0].clone(),
                        c.ready.unwrap_or(false),
                        c.serving.unwrap_or(false),
                        c.terminating.unwrap_or(false),
                    )
                })
                .collect();
            (
                s.metadata.name.clone().unwrap_or_default(),
                (s.address_type, port, eps),
            )
        })
        .collect()
}

/// For each slice of `svc`, whether it carries `service.kubernetes.io/headless` (the
/// label kube-proxy skips slices by).
async fn headless_labels(h: &Harness, svc: &str) -> Vec<bool> {
    let api: Api<EndpointSlice> = h.ns.api();
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
    api.list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            s.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.get("service.kubernetes.io/headless").is_some())
        })
        .collect()
}

async fn wait_slices(
    h: &Harness,
    svc: &str,
    what: &str,
    pred: impl Fn(&SliceView) -> bool,
) -> SliceView {
    eventually(what, Duration::from_secs(40), || async {
        let s = slices(h, svc).await;
        pred(&s).then_some(s)
    })
    .await
}

async fn service_gone(services: &Api<Service>, name: &str, what: &str) {
    eventually(what, Duration::from_secs(20), || async {
        services
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn mixed_states_ports_families_and_skips() {
    let h = Harness::start("disc-mixed").await;
    h.vast.state.put_group(
        101,
        KEY,
        Shape::Array,
        vec![
            worker_json(1, "idle", Some("http://198.51.100.1:40001")),
            worker_json(2, "loading", Some("http://198.51.100.2:40001")),
            worker_json(3, "running", Some("http://198.51.100.3:40002")),
            worker_json(4, "stopping", Some("http://198.51.100.4:40003")),
            worker_json(5, "idle", Some("http://[2001:db8::5]:40001")),
            worker_json(6, "idle", Some("http://worker6.example.com:40001")),
            worker_json(7, "idle", None),
        ],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("llm", spec(101)).await;
    let wg = h
        .wait_for("llm", "synced and published", |wg| {
            ready_is(wg, "True", "Synced")
                && cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
        })
        .await;

    let svc: Service = h.ns.api::<Service>().get("llm").await.expect("service");
    let spec_ = svc.spec.clone().expect("spec");
    assert!(spec_.selector.is_none(), "no selector");
    assert_eq!(spec_.type_.as_deref(), Some("ClusterIP"));
    assert!(
        spec_.cluster_ip.as_deref().is_some_and(|ip| ip != "None"),
        "a cluster IP was allocated"
    );
    let port = &spec_.ports.expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 80));
    let owner = &svc.metadata.owner_references.expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("WorkerGroup", "llm")
    );

    let s = wait_slices(&h, "llm", "four slices", |s| s.len() == 4).await;
    let expected: SliceView = BTreeMap::from([
        (
            "llm-v4-40001-0".into(),
            (
                "IPv4".into(),
                40001,
                vec![
                    ("198.51.100.1".into(), true, true, false),
                    ("198.51.100.2".into(), false, false, false),
                ],
            ),
        ),
        (
            "llm-v4-40002-0".into(),
            (
                "IPv4".into(),
                40002,
                vec![("198.51.100.3".into(), true, true, false)],
            ),
        ),
        (
            "llm-v4-40003-0".into(),
            (
                "IPv4".into(),
                40003,
                vec![("198.51.100.4".into(), false, false, true)],
            ),
        ),
        (
            "llm-v6-40001-0".into(),
            (
                "IPv6".into(),
                40001,
                vec![("2001:db8::5".into(), true, true, false)],
            ),
        ),
    ]);
    assert_eq!(s, expected);
    // This apiserver (1.34) streams lists: the caches of our Services and slices start
    // with a WatchList, never a LIST.
    let r = h.requests.snapshot();
    for resource in ["services", "endpointslices"] {
        let n = |verb: &str| r.get(&(verb.into(), resource.into())).copied().unwrap_or(0);
        assert!(n("WATCHLIST") >= 1, "{resource}: {r:?}");
        assert_eq!(n("LIST"), 0, "{resource}: {r:?}");
    }

    let st = wg.status.clone().expect("status");
    let d = st.discovery.clone().expect("discovery status");
    assert_eq!(
        (d.service_name.as_str(), d.endpoints, d.skipped),
        ("llm", 5, 2)
    );
    assert!(d.reason.contains("1 worker without URL"), "{}", d.reason);
    assert!(d.reason.contains("hostname"), "{}", d.reason);
    assert_eq!(
        st.ready_urls,
        [
            "http://198.51.100.1:40001",
            "http://198.51.100.3:40002",
            "http://[2001:db8::5]:40001",
        ],
        "a hostname URL is no more listed than published"
    );
    assert_eq!(
        cond(&wg, "DiscoveryReady"),
        Some(("True".into(), "Published".into()))
    );

    // A state change moves the endpoint in place: same slice, other slices untouched.
    let api: Api<EndpointSlice> = h.ns.api();
    let rv = |s: &EndpointSlice| s.metadata.resource_version.clone();
    let before_other = rv(&api.get("llm-v4-40002-0").await.expect("slice"));
    let before_uid = api.get("llm-v4-40001-0").await.expect("slice").metadata.uid;
    h.vast
        .state
        .upsert_worker(101, 2, json!({"status": "idle"}));
    wait_slices(&h, "llm", "worker 2 ready", |s| {
        s.get("llm-v4-40001-0")
            .is_some_and(|v| v.2.iter().all(|e| e.1))
    })
    .await;
    let after = api.get("llm-v4-40001-0").await.expect("slice");
    assert_eq!(
        after.metadata.uid, before_uid,
        "updated in place, not recreated"
    );
    assert_eq!(
        rv(&api.get("llm-v4-40002-0").await.expect("slice")),
        before_other
    );

    // A worker going away deletes its now-empty slice.
    h.vast.state.remove_worker(101, 4);
    wait_slices(&h, "llm", "stale slice deleted", |s| {
        !s.contains_key("llm-v4-40003-0") && s.len() == 3
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn thousands_of_workers_are_split() {
    // A benchmarking range (refused by default) opted back in, and room for them all.
    let h = Harness::start_with("disc-big", |mut c| {
        let lab = vast_operator::sync::endpoints::parse_cidr("198.18.0.0/15").expect("cidr");
        c.endpoints = vast_operator::sync::EndpointPolicy::new(vec![lab], Vec::new(), 5000);
        c
    })
    .await;
    let workers = (0..2500)
        .map(|i| {
            worker_json(
                i + 1,
                "idle",
                Some(&format!("http://198.18.{}.{}:9000", i / 250, i % 250 + 1)),
            )
        })
        .collect();
    h.vast.state.put_group(102, KEY, Shape::Object, workers);
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("big", spec(102)).await;
    let wg = h
        .wait_for("big", "synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    let st = wg.status.expect("status");
    assert_eq!((st.worker_count, st.ready_workers), (2500, 2500));
    assert!(st.workers_truncated);
    assert_eq!(st.workers.len(), 500);
    assert_eq!(st.discovery.map(|d| d.endpoints), Some(2500));
    let s = wait_slices(&h, "big", "three slices", |s| s.len() == 3).await;
    let mut sizes: Vec<usize> = s.values().map(|v| v.2.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [500, 1000, 1000]);
    assert!(s.values().all(|v| v.1 == 9000 && v.0 == "IPv4"));
    h.stop().await;
}

#[tokio::test]
async fn foreign_service_is_a_conflict_and_left_alone() {
    let h = Harness::start("disc-conflict").await;
    let foreign: Service = serde_json::from_value(json!({
        "metadata": {"name": "taken", "labels": {"team": "other"}},
        "spec": {"ports": [{"name": "web", "port": 8080}], "selector": {"app": "other"}}
    }))
    .expect("service");
    let created =
        h.ns.api::<Service>()
            .create(&PostParams::default(), &foreign)
            .await
            .expect("create");
    h.vast.state.put_group(
        103,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some("http://198.51.100.9:7000"))],
    );
    h.secret("vast", "api-key", KEY).await;
    let mut s = spec(103);
    s["discovery"] = json!({"serviceName": "taken"});
    h.apply_group("g", s).await;
    let wg = h
        .wait_for("g", "DiscoveryConflict", |wg| {
            cond(wg, "DiscoveryReady") == Some(("False".into(), "DiscoveryConflict".into()))
        })
        .await;
    assert!(ready_is(&wg, "True", "Synced"), "the sync itself continues");
    let d = wg.status.and_then(|s| s.discovery).expect("discovery");
    assert!(
        d.reason.contains("not managed by this WorkerGroup"),
        "{}",
        d.reason
    );
    let now = h.ns.api::<Service>().get("taken").await.expect("get");
    assert_eq!(
        now.metadata.resource_version, created.metadata.resource_version,
        "never overwritten"
    );
    assert!(slices(&h, "taken").await.is_empty());
    let events = h
        .wait_events("g", "a DiscoveryConflict Warning", |ev| {
            ev.iter().any(|e| e.1 == "DiscoveryConflict")
        })
        .await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.1 == "DiscoveryConflict" && e.0 == "Warning")
            .count(),
        1
    );

    // Pointing at a free name resolves it.
    let mut s = spec(103);
    s["discovery"] = json!({"serviceName": "free"});
    h.apply_group("g", s).await;
    h.wait_for("g", "Published", |wg| {
        cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
    })
    .await;
    assert_eq!(slices(&h, "free").await.len(), 1);

    // Someone replaces our Service with theirs under the same name: our slices, which
    // carry that name, would route their traffic to our workers. They go.
    let services = h.ns.api::<Service>();
    services
        .delete("free", &DeleteParams::default())
        .await
        .expect("delete ours");
    let mut theirs = foreign.clone();
    theirs.metadata.name = Some("free".into());
    eventually("theirs created", Duration::from_secs(20), || async {
        services.create(&PostParams::default(), &theirs).await.ok()
    })
    .await;
    wait_slices(&h, "free", "our slices gone from their Service", |s| {
        s.is_empty()
    })
    .await;
    h.wait_for("g", "DiscoveryConflict again", |wg| {
        cond(wg, "DiscoveryReady") == Some(("False".into(), "DiscoveryConflict".into()))
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn disable_rename_headless_and_delete_clean_up() {
    let h = Harness::start("disc-lifecycle").await;
    h.vast.state.put_group(
        104,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some("http://198.51.100.7:7000"))],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(104)).await;
    wait_slices(&h, "g", "slice", |s| s.len() == 1).await;
    let services: Api<Service> = h.ns.api();

    // Rename: the old Service and slices go, new ones come.
    let mut s = spec(104);
    s["discovery"] =
        json!({"serviceName": "renamed", "headless": true, "portName": "api", "port": 8000});
    h.apply_group("g", s).await;
    wait_slices(&h, "renamed", "renamed slice", |s| s.len() == 1).await;
    wait_slices(&h, "g", "old slices gone", |s| s.is_empty()).await;
    service_gone(&services, "g", "old Service gone").await;
    let svc = services.get("renamed").await.expect("renamed service");
    let spec_ = svc.spec.expect("spec");
    assert_eq!(spec_.cluster_ip.as_deref(), Some("None"), "headless");
    assert_eq!(spec_.ports.expect("ports")[0].name.as_deref(), Some("api"));
    assert_eq!(
        headless_labels(&h, "renamed").await,
        [true],
        "a headless Service's slice is labelled for kube-proxy to skip"
    );

    // Back to ClusterIP: the Service is recreated (clusterIP is immutable).
    let mut s = spec(104);
    s["discovery"] = json!({"serviceName": "renamed"});
    h.apply_group("g", s).await;
    eventually("ClusterIP service", Duration::from_secs(20), || async {
        let svc = services.get_opt("renamed").await.ok().flatten()?;
        let ip = svc.spec?.cluster_ip?;
        (ip != "None").then_some(())
    })
    .await;
    eventually(
        "the slice loses the headless label",
        Duration::from_secs(20),
        || async { (headless_labels(&h, "renamed").await == [false]).then_some(()) },
    )
    .await;

    // A port change updates the Service in place, leaving one port.
    let mut s = spec(104);
    s["discovery"] = json!({"serviceName": "renamed", "port": 8080});
    h.apply_group("g", s).await;
    let ports = eventually("port 8080", Duration::from_secs(20), || async {
        let svc = services.get_opt("renamed").await.ok().flatten()?;
        let ports: Vec<(Option<String>, i32)> = svc
            .spec?
            .ports?
            .into_iter()
            .map(|p| (p.name, p.port))
            .collect();
        ports.iter().any(|p| p.1 == 8080).then_some(ports)
    })
    .await;
    assert_eq!(ports, [(Some("http".to_string()), 8080)]);

    // Disabled: everything we made is deleted; status says nothing about discovery.
    let mut s = spec(104);
    s["discovery"] = json!({"enabled": false});
    h.apply_group("g", s).await;
    wait_slices(&h, "renamed", "slices removed", |s| s.is_empty()).await;
    service_gone(&services, "renamed", "service removed").await;
    let wg = h
        .wait_for("g", "no discovery status", |wg| {
            wg.status.as_ref().is_some_and(|s| s.discovery.is_none())
                && cond(wg, "DiscoveryReady").is_none()
        })
        .await;
    assert!(ready_is(&wg, "True", "Synced"));

    // Deleting the WorkerGroup removes its objects (the garbage collector, through their
    // ownerReferences).
    h.apply_group("g", spec(104)).await;
    wait_slices(&h, "g", "published again", |s| s.len() == 1).await;
    h.ns.api::<WorkerGroup>()
        .delete("g", &DeleteParams::default())
        .await
        .expect("delete");
    wait_slices(&h, "g", "dependents collected", |s| s.is_empty()).await;
    service_gone(&services, "g", "the Service collected").await;
    h.stop().await;
}

/// Whether every endpoint of the view is (ready, serving) as given, and there are `n`.
fn all_endpoints(s: &SliceView, n: usize, ready: bool, serving: bool) -> bool {
    let eps: Vec<_> = s.values().flat_map(|v| v.2.iter()).collect();
    eps.len() == n && eps.iter().all(|e| e.1 == ready && e.2 == serving)
}

#[tokio::test]
async fn endpoints_go_not_ready_when_the_data_is_stale_and_come_back() {
    let h = Harness::start_with("disc-stale", |c| vast_operator::controller::Config {
        stale_after: Some(Duration::from_secs(6)),
        ..c
    })
    .await;
    let ws = vec![
        worker_json(1, "idle", Some("http://198.51.100.21:40001")),
        worker_json(2, "running", Some("http://198.51.100.22:40001")),
    ];
    h.vast.state.put_group(107, KEY, Shape::Array, ws);
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(107)).await;
    wait_slices(&h, "g", "published ready", |s| {
        all_endpoints(s, 2, true, true)
    })
    .await;

    // Vast fails from now on: once the last success is older than --stale-after the
    // endpoints stay but take no traffic, and DiscoveryReady says since when.
    h.vast.state.set_fault(
        107,
        Some(fake_vast::Fault {
            status: Some(502),
            ..Default::default()
        }),
    );
    wait_slices(&h, "g", "stale: kept, not ready", |s| {
        all_endpoints(s, 2, false, false)
    })
    .await;
    let wg = h
        .wait_for("g", "DiscoveryReady Stale", |wg| {
            cond(wg, "DiscoveryReady") == Some(("False".into(), "Stale".into()))
        })
        .await;
    let status = wg.status.as_ref().expect("status");
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "DiscoveryReady")
        .expect("condition");
    // The time of the last success as the operator saw it (status.lastSyncTime may be
    // older: unchanged polls write nothing), so at or after the recorded one.
    let last = status.last_sync_time.expect("lastSyncTime");
    let said = c
        .message
        .split("the last successful poll was at ")
        .nth(1)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .unwrap_or_else(|| panic!("no time in {:?}", c.message));
    assert!(said >= last, "{said} before {last}");
    assert_eq!(status.ready_workers, 2, "the last-known workers stay");
    h.wait_events("g", "a Stale Warning", |ev| {
        ev.iter().any(|e| e.1 == "Stale")
    })
    .await;
    // Two more polls while stale: the first is handled in full once the second comes.
    let seen = h.vast.state.calls(107);
    eventually("two more polls", Duration::from_secs(30), || async {
        (h.vast.state.calls(107) > seen + 1).then_some(())
    })
    .await;
    let events = h.events("g").await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.1 == "Stale")
            .map(|e| e.3)
            .sum::<i32>(),
        1,
        "one Warning, never repeated: {events:?}"
    );

    // Vast answers again: ready at the next poll, the same slice updated in place.
    h.vast.state.set_fault(107, None);
    wait_slices(&h, "g", "fresh again", |s| all_endpoints(s, 2, true, true)).await;
    h.wait_for("g", "Published", |wg| {
        cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
    })
    .await;

    // The Secret is deleted: a Kubernetes-side error says nothing about the workers, so
    // they stay ready for the window, then go stale, although the terminal retry (60 s
    // in tests) is much later.
    let secrets = h.ns.api::<k8s_openapi::api::core::v1::Secret>();
    secrets
        .delete("vast", &DeleteParams::default())
        .await
        .expect("delete secret");
    h.wait_for("g", "SecretNotFound", |wg| {
        ready_is(wg, "False", "SecretNotFound")
    })
    .await;
    wait_slices(&h, "g", "stale within the window", |s| {
        all_endpoints(s, 2, false, false)
    })
    .await;
    h.secret("vast", "api-key", KEY).await;
    wait_slices(&h, "g", "fresh once the Secret is back", |s| {
        all_endpoints(s, 2, true, true)
    })
    .await;
    // And in status (before the next step changes the spec under that write).
    h.wait_for("g", "synced again", |wg| {
        ready_is(wg, "True", "Synced")
            && cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
    })
    .await;

    // Suspend keeps the data, and it goes stale the same way.
    let mut s = spec(107);
    s["suspend"] = json!(true);
    h.apply_group("g", s).await;
    wait_slices(&h, "g", "suspended goes stale", |s| {
        all_endpoints(s, 2, false, false)
    })
    .await;
    h.wait_for("g", "stale while suspended", |wg| {
        ready_is(wg, "True", "Suspended")
            && cond(wg, "DiscoveryReady") == Some(("False".into(), "Stale".into()))
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_terminal_error_makes_endpoints_not_ready_at_once() {
    // A stale-after window of an hour: only the terminal rule can act within the test.
    let h = Harness::start_with("disc-terminal", |c| vast_operator::controller::Config {
        stale_after: Some(Duration::from_secs(3600)),
        ..c
    })
    .await;
    let ws = vec![worker_json(1, "idle", Some("http://198.51.100.31:40001"))];
    h.vast.state.put_group(108, KEY, Shape::Array, ws);
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(108)).await;
    wait_slices(&h, "g", "published ready", |s| {
        all_endpoints(s, 1, true, true)
    })
    .await;

    // The key is revoked at Vast: authentication fails, a terminal error.
    h.vast.state.set_api_key(108, "vk1-another-24680");
    h.wait_for("g", "AuthenticationFailed", |wg| {
        ready_is(wg, "False", "AuthenticationFailed")
    })
    .await;
    let s = slices(&h, "g").await;
    assert!(
        all_endpoints(&s, 1, false, false),
        "not ready in the same reconcile that saw the error: {s:?}"
    );
    let wg = h.ns.api::<WorkerGroup>().get("g").await.expect("get");
    assert_eq!(
        cond(&wg, "DiscoveryReady"),
        Some(("False".into(), "Stale".into()))
    );
    h.stop().await;
}

#[tokio::test]
async fn an_update_never_takes_over_an_object_recreated_by_someone_else() {
    let ns = common::TestNs::new("disc-uid").await;
    common::install_workergroup_crd(&ns.client).await;
    let wg: WorkerGroup = serde_json::from_value(json!({
        "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
        "metadata": {"name": "g", "namespace": ns.name, "uid": "4f1c2d4e-0000-4000-8000-000000000001"},
        "spec": spec(1)
    }))
    .expect("object");
    let services: Api<Service> = ns.api();
    let pp = PostParams {
        field_manager: Some(vast_operator::FIELD_MANAGER.into()),
        ..Default::default()
    };
    // Ours, as the store last saw it (without the ownerReference: its WorkerGroup does
    // not exist here, and the garbage collector would take the Service first)...
    let mut want = vast_operator::discovery::desired(&wg, &[], false, &Default::default()).service;
    want.metadata.owner_references = None;
    let ours = services.create(&pp, &want).await.expect("create");
    // ...deleted, and a Service of the same name created by someone else.
    services
        .delete("g", &DeleteParams::default())
        .await
        .expect("delete");
    let foreign: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "g", "labels": {"team": "other"}},
        "spec": {"ports": [{"port": 9999, "name": "other"}]}
    }))
    .expect("service");
    let theirs = eventually("recreated", Duration::from_secs(20), || async {
        services.create(&PostParams::default(), &foreign).await.ok()
    })
    .await;
    // The update we would send for the object we saw is refused for its uid...
    let mut stale_view = ours.clone();
    stale_view.metadata.resource_version = theirs.metadata.resource_version.clone();
    let body = vast_operator::discovery::publish::update_body(
        &want,
        &vast_operator::discovery::Seen::of(&stale_view),
    );
    let res = services.replace("g", &pp, &body).await;
    assert!(
        matches!(&res, Err(kube::Error::Api(s)) if s.code == 409 && s.message.contains("UID")),
        "{res:?}"
    );
    // ...and so is a create: a POST never takes a name over.
    let res = services.create(&pp, &want).await;
    assert!(
        matches!(&res, Err(kube::Error::Api(s)) if s.code == 409),
        "{res:?}"
    );
    let now = services.get("g").await.expect("get");
    assert_eq!(now.metadata.uid, theirs.metadata.uid);
    assert_eq!(
        now.spec.and_then(|s| s.ports).map(|p| p[0].port),
        Some(9999),
        "their Service is untouched"
    );
    // A delete of the object we saw leaves theirs alone too.
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: ours.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert!(services.delete("g", &dp).await.is_err());
    assert!(services.get_opt("g").await.expect("get").is_some());
    ns.cleanup().await;
}

#[tokio::test]
async fn a_236_character_name_with_dots_publishes_under_its_service_name() {
    let h = Harness::start("disc-longname").await;
    let ws = vec![worker_json(1, "idle", Some("http://198.51.100.41:40001"))];
    h.vast.state.put_group(109, KEY, Shape::Array, ws);
    h.secret("vast", "api-key", KEY).await;
    let name = format!("{}.team.example", "n".repeat(223));
    assert_eq!(name.len(), vast_operator::crd::MAX_NAME);
    let mut s = spec(109);
    s["discovery"] = json!({"serviceName": "long-svc"});
    h.apply_group(&name, s).await;
    let view = wait_slices(&h, "long-svc", "published", |s| {
        all_endpoints(s, 1, true, true)
    })
    .await;
    assert_eq!(view.len(), 1);
    let api: Api<EndpointSlice> = h.ns.api();
    let slice = api
        .get(view.keys().next().expect("slice"))
        .await
        .expect("get");
    let label = &slice.metadata.labels.expect("labels")["vast.ai/workergroup"];
    assert!(label.len() <= 63, "{label}");
    assert_eq!(
        label,
        &vast_operator::discovery::desired::workergroup_label(&name)
    );
    h.wait_for(&name, "published", |wg| {
        cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
    })
    .await;
    // Its events can be named (`<name>.<16 hex>` fits in 253).
    eventually(
        "its WorkersChanged event",
        Duration::from_secs(20),
        || async {
            let events = h.events(&name).await;
            events.iter().any(|e| e.1 == "WorkersChanged").then_some(())
        },
    )
    .await;
    h.stop().await;
}

#[tokio::test]
async fn with_the_operator_stopped_the_garbage_collector_removes_a_deleted_groups_objects() {
    let mut h = Harness::start("disc-gc").await;
    let ws = vec![worker_json(1, "idle", Some("http://198.51.100.51:40001"))];
    h.vast.state.put_group(110, KEY, Shape::Array, ws);
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(110)).await;
    wait_slices(&h, "g", "published", |s| all_endpoints(s, 1, true, true)).await;
    // Nothing of the operator runs now; only kube-controller-manager can act.
    h.pause().await;
    h.ns.api::<WorkerGroup>()
        .delete("g", &DeleteParams::default())
        .await
        .expect("delete");
    wait_slices(&h, "g", "slices collected", |s| s.is_empty()).await;
    service_gone(&h.ns.api::<Service>(), "g", "Service collected").await;
    h.stop().await;
}

#[tokio::test]
async fn deleting_a_namespace_with_a_workergroup_completes() {
    let h = Harness::start("disc-nsdel").await;
    let ws = vec![worker_json(1, "idle", Some("http://198.51.100.52:40001"))];
    h.vast.state.put_group(111, KEY, Shape::Array, ws);
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(111)).await;
    wait_slices(&h, "g", "published", |s| all_endpoints(s, 1, true, true)).await;
    // With the operator still running: nothing it does holds the namespace up.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(h.ns.client.clone());
    namespaces
        .delete(&h.ns.name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    let name = h.ns.name.clone();
    eventually("the namespace is gone", Duration::from_secs(60), || async {
        matches!(namespaces.get_opt(&name).await, Ok(None)).then_some(())
    })
    .await;
    h.stop().await;
}

/// What the test's WorkerGroup status says of discovery: (endpoints, skipped, refused).
fn discovery_counts(wg: &WorkerGroup) -> Option<(i64, i64, i64)> {
    let d = wg.status.as_ref()?.discovery.as_ref()?;
    Some((d.endpoints, d.skipped, d.refused))
}

#[tokio::test]
async fn worker_reported_addresses_outside_the_policy_are_refused_and_the_rest_published() {
    let h = Harness::start("disc-refused").await;
    h.vast.state.put_group(
        111,
        KEY,
        Shape::Array,
        vec![
            worker_json(1, "idle", Some("http://203.0.113.1:7000")),
            // The cluster's own Service network, a cloud metadata address (also
            // link-local), a shared-space metadata address, Azure's wire server.
            worker_json(2, "idle", Some("http://10.96.0.1:443")),
            worker_json(3, "idle", Some("http://169.254.169.254:80")),
            worker_json(4, "idle", Some("http://100.100.100.200:80")),
            worker_json(5, "idle", Some("http://168.63.129.16:80")),
            // A unique-local IPv6 address, and an IPv4-mapped one, which the apiserver
            // would refuse together with every other endpoint of the slice.
            worker_json(6, "idle", Some("http://[fd00::6]:7000")),
            worker_json(7, "idle", Some("http://[::ffff:203.0.113.9]:7000")),
            worker_json(8, "idle", Some("http://[2001:db8::8]:7000")),
        ],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("llm", spec(111)).await;
    let wg = h
        .wait_for("llm", "synced, 2 published, 6 refused", |wg| {
            ready_is(wg, "True", "Synced") && discovery_counts(wg) == Some((2, 0, 6))
        })
        .await;
    let st = wg.status.clone().expect("status");
    assert_eq!(
        cond(&wg, "DiscoveryReady"),
        Some(("True".into(), "Published".into())),
        "refusals are not a failure of discovery"
    );
    assert_eq!(st.workers.len(), 8, "refused workers stay listed");
    assert_eq!(
        st.workers[1].url.as_deref(),
        Some("http://10.96.0.1:443"),
        "as Vast reports them"
    );
    assert_eq!(
        st.ready_urls,
        ["http://203.0.113.1:7000", "http://[2001:db8::8]:7000"]
    );
    let reason = st.discovery.expect("discovery").reason;
    assert!(
        reason.contains("6 workers refused by the address policy"),
        "{reason}"
    );
    let s = wait_slices(&h, "llm", "one slice per family, public only", |s| {
        s.len() == 2
    })
    .await;
    assert_eq!(
        s["llm-v4-7000-0"].2,
        [("203.0.113.1".to_string(), true, true, false)]
    );
    assert_eq!(
        s["llm-v6-7000-0"].2,
        [("2001:db8::8".to_string(), true, true, false)]
    );

    let refused: Vec<String> = common::eventually(
        "an EndpointRefused event",
        Duration::from_secs(20),
        || async {
            let notes: Vec<String> = h
                .events("llm")
                .await
                .into_iter()
                .filter(|e| e.0 == "Warning" && e.1 == "EndpointRefused")
                .map(|e| e.2)
                .collect();
            (!notes.is_empty()).then_some(notes)
        },
    )
    .await;
    assert_eq!(refused.len(), 1, "one event for the change: {refused:?}");
    let note = &refused[0];
    for (id, rule) in [
        (2, "10.0.0.0/8"),
        (3, "169.254.0.0/16"),
        (4, "100.64.0.0/10"),
        (5, "168.63.129.16/32"),
        (6, "fc00::/7"),
        (7, "::ffff:0.0.0.0/96"),
    ] {
        let named = format!("worker {id} by {rule} (");
        assert!(note.contains(&named), "{named:?} in {note}");
    }
    for addr in [
        "10.96.0.1",
        "169.254.169.254",
        "100.100.100.200",
        "fd00::6",
        "203.0.113.9",
    ] {
        assert!(!note.contains(addr), "no address in the event: {note}");
    }

    // The public IPv6 worker changes: its slice still updates (the mapped address does
    // not freeze it).
    h.vast
        .state
        .upsert_worker(111, 8, json!({"status": "stopping"}));
    wait_slices(&h, "llm", "the IPv6 endpoint terminating", |s| {
        s.get("llm-v6-7000-0")
            .is_some_and(|v| v.2 == [("2001:db8::8".to_string(), false, false, true)])
    })
    .await;
    // Several polls later: still the one event, never repeated (the Recorder would
    // count repeats in its series).
    let refused_events: Vec<i32> = h
        .events("llm")
        .await
        .into_iter()
        .filter(|e| e.1 == "EndpointRefused")
        .map(|e| e.3)
        .collect();
    assert_eq!(refused_events, [1], "one EndpointRefused, told once");
    // A refused worker turning public is published.
    h.vast
        .state
        .upsert_worker(111, 2, json!({"url": "http://198.51.100.2:7000"}));
    h.wait_for("llm", "worker 2 published", |wg| {
        discovery_counts(wg) == Some((3, 0, 5))
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn allowed_ranges_come_back_and_the_cap_keeps_the_lowest_ids() {
    let mut h = Harness::start("disc-allow").await;
    h.pause().await;
    h.vast.state.put_group(
        112,
        KEY,
        Shape::Array,
        vec![
            worker_json(1, "idle", Some("http://10.20.0.1:7000")),
            worker_json(2, "idle", Some("http://10.20.9.2:7000")),
            worker_json(3, "idle", Some("http://10.30.0.3:7000")),
            worker_json(4, "idle", Some("http://203.0.113.4:7000")),
            worker_json(5, "idle", Some("http://203.0.113.5:7000")),
        ],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("llm", spec(112)).await;
    let op = common::OperatorProcess::start(
        "op",
        &h.ns.name,
        &h.vast.url(),
        &[
            "--leader-elect=false",
            // A peered network opted back in, one subnet of it denied again.
            "--endpoint-allow-cidrs",
            "10.20.0.0/16,192.0.2.0/24",
            "--endpoint-deny-cidrs",
            "10.20.9.0/24",
            "--max-endpoints",
            "2",
        ],
    );
    // Worker 2 is denied (deny wins), 3 is outside the allowed range; of 1, 4 and 5 the
    // two lowest ids are published and 5 is skipped by the cap.
    let wg = h
        .wait_for("llm", "2 published, 1 skipped, 2 refused", |wg| {
            discovery_counts(wg) == Some((2, 1, 2))
        })
        .await;
    let reason = wg
        .status
        .and_then(|s| s.discovery)
        .expect("discovery")
        .reason;
    assert!(
        reason.contains("1 worker beyond --max-endpoints"),
        "{reason}"
    );
    let s = wait_slices(&h, "llm", "workers 1 and 4", |s| s.len() == 1).await;
    let published: Vec<&str> = s["llm-v4-7000-0"].2.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(published, ["10.20.0.1", "203.0.113.4"]);
    let events = common::eventually("both warnings", Duration::from_secs(20), || async {
        let ev = h.events("llm").await;
        let has = |r: &str| ev.iter().any(|e| e.0 == "Warning" && e.1 == r);
        (has("EndpointRefused") && has("TooManyEndpoints")).then_some(ev)
    })
    .await;
    let refused = events
        .iter()
        .find(|e| e.1 == "EndpointRefused")
        .map(|e| e.2.clone())
        .unwrap_or_default();
    assert!(
        refused.contains("worker 2 by 10.20.9.0/24 (--endpoint-deny-cidrs)"),
        "{refused}"
    );
    assert!(refused.contains("worker 3 by 10.0.0.0/8"), "{refused}");
    drop(op);
    h.stop().await;
}

#[tokio::test]
async fn a_foreign_slice_of_our_name_is_a_conflict_and_left_alone() {
    let h = Harness::start("disc-sliceconflict").await;
    // Someone else's slice under the name ours would take, labelled for another Service.
    let foreign: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "llm-v4-7000-0", "labels": {"kubernetes.io/service-name": "other"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["203.0.113.250"]}],
        "ports": [{"name": "http", "port": 7000, "protocol": "TCP"}]
    }))
    .expect("slice");
    let created =
        h.ns.api::<EndpointSlice>()
            .create(&PostParams::default(), &foreign)
            .await
            .expect("create");
    h.vast.state.put_group(
        113,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some("http://203.0.113.1:7000"))],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("llm", spec(113)).await;
    let wg = h
        .wait_for("llm", "DiscoveryConflict", |wg| {
            cond(wg, "DiscoveryReady") == Some(("False".into(), "DiscoveryConflict".into()))
        })
        .await;
    assert!(ready_is(&wg, "True", "Synced"), "the sync itself continues");
    let reason = wg
        .status
        .and_then(|s| s.discovery)
        .expect("discovery")
        .reason;
    assert!(reason.contains("EndpointSlice llm-v4-7000-0"), "{reason}");
    let now =
        h.ns.api::<EndpointSlice>()
            .get("llm-v4-7000-0")
            .await
            .expect("get");
    assert_eq!(
        now.metadata.resource_version, created.metadata.resource_version,
        "never overwritten"
    );
    h.wait_events("llm", "a DiscoveryConflict Warning", |ev| {
        ev.iter()
            .any(|e| e.0 == "Warning" && e.1 == "DiscoveryConflict")
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_name_that_cannot_be_a_service_publishes_nothing_and_says_so() {
    let h = Harness::start("disc-badname").await;
    h.vast.state.put_group(
        114,
        KEY,
        Shape::Array,
        vec![
            worker_json(1, "idle", Some("http://203.0.113.1:7000")),
            worker_json(2, "idle", Some("http://10.0.0.2:7000")),
        ],
    );
    h.secret("vast", "api-key", KEY).await;
    // Accepted with discovery off (the name need not be a Service name then) ...
    let name = format!("{}.team", "a".repeat(60));
    let mut s = spec(114);
    s["discovery"] = json!({"enabled": false});
    h.apply_group(&name, s).await;
    h.wait_for(&name, "Synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    // ... then turned on, which an update may do.
    let mut s = spec(114);
    s["discovery"] = json!({"enabled": true});
    h.apply_group(&name, s).await;
    let wg = h
        .wait_for(&name, "InvalidServiceName", |wg| {
            cond(wg, "DiscoveryReady") == Some(("False".into(), "InvalidServiceName".into()))
        })
        .await;
    let reason = wg
        .status
        .and_then(|s| s.discovery)
        .expect("discovery")
        .reason;
    assert!(reason.contains("spec.discovery.serviceName"), "{reason}");
    let services =
        h.ns.api::<Service>()
            .list(&ListParams::default())
            .await
            .expect("list");
    assert!(services.items.is_empty(), "nothing published");
    // Several polls later: one Warning, and no EndpointRefused for what was never
    // published.
    let events = h
        .wait_events(&name, "the InvalidServiceName Warning", |ev| {
            ev.iter().any(|e| e.1 == "InvalidServiceName")
        })
        .await;
    common::quiet_for(Duration::from_secs(11)).await;
    let events_later = h.events(&name).await;
    let count = |ev: &[(String, String, String, i32)], r: &str| -> i32 {
        ev.iter().filter(|e| e.1 == r).map(|e| e.3).sum()
    };
    assert_eq!(
        count(&events_later, "InvalidServiceName"),
        1,
        "{events_later:?}"
    );
    assert_eq!(
        count(&events_later, "EndpointRefused"),
        0,
        "{events_later:?}"
    );
    assert!(count(&events, "InvalidServiceName") == 1);
    h.stop().await;
}

#[tokio::test]
async fn a_refused_slice_write_is_discovery_failed_and_the_sync_goes_on() {
    let h = Harness::start("disc-failed").await;
    // The apiserver refuses EndpointSlices of the Service "g" in this namespace: a
    // failure that is no conflict (nobody else holds the name).
    let policy = format!("refuse-slices-{}", h.ns.name);
    let refused = "!has(object.metadata.labels) || !('kubernetes.io/service-name' in object.metadata.labels) || object.metadata.labels['kubernetes.io/service-name'] != 'g'";
    common::refusing_policy(
        &h.ns.client,
        &policy,
        &h.ns.name,
        (
            "discovery.k8s.io",
            &["CREATE", "UPDATE"],
            &["endpointslices"],
        ),
        refused,
        "EndpointSlices of g are refused by a test policy",
    )
    .await;
    let probe: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "probe", "labels": {"kubernetes.io/service-name": "g"}},
        "addressType": "IPv4", "endpoints": []
    }))
    .expect("slice");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let slices_api = h.ns.api::<EndpointSlice>();
    eventually("the policy in force", Duration::from_secs(30), || async {
        slices_api.create(&dry, &probe).await.is_err().then_some(())
    })
    .await;

    h.vast.state.put_group(
        115,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some("http://203.0.113.15:7000"))],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(115)).await;
    let wg = h
        .wait_for("g", "DiscoveryFailed", |wg| {
            cond(wg, "DiscoveryReady") == Some(("False".into(), "DiscoveryFailed".into()))
        })
        .await;
    // The workers' status lands all the same.
    assert!(ready_is(&wg, "True", "Synced"), "{:?}", wg.status);
    assert_eq!(
        common::worker_states(&wg),
        [(1, "idle".to_string())],
        "the workers are in status"
    );
    let d = wg
        .status
        .as_ref()
        .and_then(|s| s.discovery.clone())
        .expect("discovery");
    assert!(
        d.reason.contains("cannot create EndpointSlice g-v4-7000-0")
            && d.reason.contains("refused by a test policy"),
        "{}",
        d.reason
    );
    assert!(!d.reason.contains(KEY));
    assert!(slices(&h, "g").await.is_empty(), "nothing got through");
    assert!(
        h.ns.api::<Service>()
            .get_opt("g")
            .await
            .expect("get")
            .is_some(),
        "the Service, which the policy lets through, is in place"
    );
    let events = h
        .wait_events("g", "a DiscoveryFailed Warning", |ev| {
            ev.iter().any(|e| e.1 == "DiscoveryFailed")
        })
        .await;
    let e = events
        .iter()
        .find(|e| e.1 == "DiscoveryFailed")
        .expect("event");
    assert_eq!(e.0, "Warning");
    assert!(e.2.contains("refused by a test policy"), "{}", e.2);
    // Two more polls, refused the same way: the first is handled in full once the
    // second comes, and it repeated nothing.
    let seen = h.vast.state.calls(115);
    eventually("two more polls", Duration::from_secs(30), || async {
        (h.vast.state.calls(115) > seen + 1).then_some(())
    })
    .await;
    let events = h.events("g").await;
    let failed: i32 = events
        .iter()
        .filter(|e| e.1 == "DiscoveryFailed")
        .map(|e| e.3)
        .sum();
    assert_eq!(failed, 1, "one Warning per streak: {events:?}");
    assert!(
        !events.iter().any(|e| e.1 == "DiscoveryConflict"),
        "a refusal is no conflict: {events:?}"
    );

    // The policy goes: published at the next poll.
    common::remove_policy(&h.ns.client, &policy).await;
    wait_slices(&h, "g", "published once the policy is gone", |s| {
        all_endpoints(s, 1, true, true)
    })
    .await;
    h.wait_for("g", "Published", |wg| {
        cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
            && ready_is(wg, "True", "Synced")
    })
    .await;
    h.stop().await;
}

/// A harness whose operator is down while the WorkerGroup `g` on workergroup `id` (one
/// worker at `http://203.0.113.<id % 100>:7000`) is applied with `spec`: what a test
/// creates next is there before the operator starts again. Returns the ownerReferences
/// of an object owned by `g`.
async fn paused_with_group(
    test: &str,
    id: i64,
    spec: serde_json::Value,
) -> (Harness, serde_json::Value) {
    let mut h = Harness::start(test).await;
    h.pause().await;
    let url = format!("http://203.0.113.{}:7000", id % 100);
    h.vast.state.put_group(
        id,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some(&url))],
    );
    h.secret("vast", "api-key", KEY).await;
    let wg = h.apply_group("g", spec).await;
    let owner = json!([{
        "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup", "name": "g",
        "uid": wg.metadata.uid.clone().expect("uid"), "controller": true
    }]);
    (h, owner)
}

/// Once a poll after now shows the reconcile that published over: no `DiscoveryConflict`
/// and no `DiscoveryFailed` was told.
async fn no_discovery_problem_told(h: &Harness, id: i64) {
    let seen = h.vast.state.calls(id);
    eventually("another poll", Duration::from_secs(30), || async {
        (h.vast.state.calls(id) > seen).then_some(())
    })
    .await;
    let events = h.events("g").await;
    assert!(
        !events
            .iter()
            .any(|e| e.1 == "DiscoveryConflict" || e.1 == "DiscoveryFailed"),
        "{events:?}"
    );
}

#[tokio::test]
async fn objects_of_ours_the_watch_does_not_show_are_adopted_not_a_conflict() {
    // The operator is down while the WorkerGroup is created and a Service and a slice
    // owned by it appear that the operator's watches do not select (no managed-by
    // label, as if written by an older version, or not yet seen): its first creates
    // are answered 409.
    let (mut h, owner) = paused_with_group("disc-adopt", 116, spec(116)).await;
    let services = h.ns.api::<Service>();
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "g", "labels": {"left": "over"}, "ownerReferences": owner},
        "spec": {"ports": [{"name": "old", "port": 9999}]}
    }))
    .expect("service");
    let svc = services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "g-v4-7000-0", "ownerReferences": owner,
                     "labels": {"kubernetes.io/service-name": "g"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["203.0.113.99"]}],
        "ports": [{"name": "old", "port": 7000, "protocol": "TCP"}]
    }))
    .expect("slice");
    let slice =
        h.ns.api::<EndpointSlice>()
            .create(&PostParams::default(), &slice)
            .await
            .expect("create slice");

    h.restart(|c| c).await;
    h.wait_for("g", "Published", |wg| {
        ready_is(wg, "True", "Synced")
            && cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
    })
    .await;
    // Updated in place (same uid), to the content wanted, labels and all.
    let now = services.get("g").await.expect("service");
    assert_eq!(now.metadata.uid, svc.metadata.uid, "the same Service");
    let labels = now.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("vast-operator"),
        "{labels:?}"
    );
    assert!(
        !labels.contains_key("left"),
        "replaced, not merged: {labels:?}"
    );
    let ports: Vec<(Option<String>, i32)> = now
        .spec
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name, p.port))
        .collect();
    assert_eq!(ports, [(Some("http".to_string()), 80)], "the default port");
    let view = wait_slices(&h, "g", "the slice holds the worker", |s| {
        all_endpoints(s, 1, true, true)
    })
    .await;
    assert_eq!(
        view.get("g-v4-7000-0").map(|v| v.2[0].0.as_str()),
        Some("203.0.113.16"),
        "{view:?}"
    );
    let now =
        h.ns.api::<EndpointSlice>()
            .get("g-v4-7000-0")
            .await
            .expect("slice");
    assert_eq!(now.metadata.uid, slice.metadata.uid, "the same slice");
    // Once a later poll shows that reconcile over: no conflict, no failure was told.
    no_discovery_problem_told(&h, 116).await;
    h.stop().await;
}

#[tokio::test]
async fn an_owned_service_of_the_other_headless_kind_is_recreated_not_failed() {
    // As above, but the unseen Service of ours has a ClusterIP while the WorkerGroup now
    // wants it headless: a replace cannot change that (the apiserver refuses a new
    // clusterIP), so it is deleted and created again.
    let mut s = spec(117);
    s["discovery"] = json!({"headless": true});
    let (mut h, owner) = paused_with_group("disc-adopt-headless", 117, s).await;
    let services = h.ns.api::<Service>();
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "g", "ownerReferences": owner},
        "spec": {"ports": [{"name": "http", "port": 80}]}
    }))
    .expect("service");
    let svc = services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");

    h.restart(|c| c).await;
    h.wait_for("g", "Published", |wg| {
        ready_is(wg, "True", "Synced")
            && cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
    })
    .await;
    let now = services.get("g").await.expect("service");
    assert_ne!(now.metadata.uid, svc.metadata.uid, "created again");
    assert_eq!(
        now.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()),
        Some("None"),
        "headless"
    );
    no_discovery_problem_told(&h, 117).await;
    h.stop().await;
}
