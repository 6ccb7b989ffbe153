//! Discovery through the cluster's own DNS: the CoreDNS of the test control plane (its
//! kubernetes plugin, zone cluster.local) answers for the Services and EndpointSlices the
//! operator publishes, the way a client in the cluster would look them up.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use common::{Harness, cond, eventually};
use fake_vast::{Shape, worker_json};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use k8s_openapi::api::core::v1::Service;
use kube::api::DeleteParams;
use serde_json::json;
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-dns-24242";

/// A resolver asking only the test CoreDNS, with no cache of its own: what it answers is
/// what CoreDNS says now.
fn resolver() -> TokioResolver {
    let dns = common::cluster_dns();
    let servers = NameServerConfigGroup::from_ips_clear(&[dns.ip()], dns.port(), true);
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.attempts = 2;
    opts.timeout = Duration::from_secs(2);
    TokioResolver::builder_with_config(
        ResolverConfig::from_parts(None, vec![], servers),
        TokioConnectionProvider::default(),
    )
    .with_options(opts)
    .build()
}

/// The A/AAAA answers for `name` (empty when the name exists without addresses); None on
/// NXDOMAIN or errors (see [`nxdomain`]).
async fn addresses(r: &TokioResolver, name: String) -> Option<BTreeSet<IpAddr>> {
    match r.lookup_ip(format!("{name}.")).await {
        Ok(l) => Some(l.iter().collect()),
        Err(e) if e.is_no_records_found() && !e.is_nx_domain() => Some(BTreeSet::new()),
        Err(_) => None,
    }
}

/// Whether `name` does not exist (NXDOMAIN), as opposed to existing, with records or
/// not; None on other errors.
async fn nxdomain(r: &TokioResolver, name: String) -> Option<bool> {
    match r.lookup_ip(format!("{name}.")).await {
        Ok(_) => Some(false),
        Err(e) if e.is_nx_domain() => Some(true),
        Err(e) if e.is_no_records_found() => Some(false),
        Err(_) => None,
    }
}

/// The SRV answers for `name`: (port, target without the trailing dot).
async fn srv(r: &TokioResolver, name: String) -> Option<BTreeSet<(u16, String)>> {
    match r.srv_lookup(format!("{name}.")).await {
        Ok(l) => Some(
            l.iter()
                .map(|s| {
                    (
                        s.port(),
                        s.target().to_utf8().trim_end_matches('.').to_string(),
                    )
                })
                .collect(),
        ),
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => Some(BTreeSet::new()),
        Err(_) => None,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn spec(id: i64, discovery: serde_json::Value) -> serde_json::Value {
    json!({"workergroupId": id, "apiKeySecretRef": {"name": "vast"}, "pollInterval": "5s",
           "discovery": discovery})
}

/// Waits until `f` gives `want`, asking again and again.
async fn until<T, F, Fut>(what: &str, want: T, f: F) -> T
where
    T: PartialEq + std::fmt::Debug + Clone,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually(what, Duration::from_secs(40), || {
        let fut = f();
        let want = want.clone();
        async move {
            let got = fut.await;
            (got.as_ref() == Some(&want)).then_some(())
        }
    })
    .await;
    want
}

#[tokio::test]
async fn a_cluster_ip_service_resolves_to_its_cluster_ip_with_an_srv_port() {
    let h = Harness::start("dns-cip").await;
    h.vast.state.put_group(
        701,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some("http://198.51.100.91:4001"))],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("llm", spec(701, json!({"port": 8080}))).await;
    h.wait_for("llm", "published", |wg| {
        cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
    })
    .await;
    let svc = h.ns.api::<Service>().get("llm").await.expect("service");
    let cluster_ip = ip(&svc.spec.and_then(|s| s.cluster_ip).expect("cluster ip"));
    let r = resolver();
    let name = format!("llm.{}.svc.cluster.local", h.ns.name);
    until(
        "the Service name gives its ClusterIP",
        BTreeSet::from([cluster_ip]),
        || addresses(&r, name.clone()),
    )
    .await;
    until(
        "SRV gives the Service port",
        BTreeSet::from([(8080, name.clone())]),
        || srv(&r, format!("_http._tcp.{name}")),
    )
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_headless_service_gives_each_ready_worker_a_name_and_follows_changes() {
    let h = Harness::start("dns-headless").await;
    h.vast.state.put_group(
        702,
        KEY,
        Shape::Array,
        vec![
            worker_json(1001, "idle", Some("http://198.51.100.1:4001")),
            worker_json(1002, "running", Some("http://198.51.100.2:4002")),
            worker_json(1003, "loading", Some("http://198.51.100.3:4001")),
            worker_json(1004, "error", Some("http://198.51.100.4:4001")),
        ],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("llm", spec(702, json!({"headless": true})))
        .await;
    let wg = h
        .wait_for("llm", "published", |wg| {
            cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
        })
        .await;
    let r = resolver();
    let svc = format!("llm.{}.svc.cluster.local", h.ns.name);

    // The ready workers' addresses, and no others.
    let ready = BTreeSet::from([ip("198.51.100.1"), ip("198.51.100.2")]);
    until("A records are the ready workers", ready.clone(), || {
        addresses(&r, svc.clone())
    })
    .await;
    // Each with its own name and port.
    let w = |id: i64| format!("w{id}.{svc}");
    until(
        "w1001 resolves",
        BTreeSet::from([ip("198.51.100.1")]),
        || addresses(&r, w(1001)),
    )
    .await;
    until(
        "w1002 resolves",
        BTreeSet::from([ip("198.51.100.2")]),
        || addresses(&r, w(1002)),
    )
    .await;
    until("w1003 (loading) has no name", true, || {
        nxdomain(&r, w(1003))
    })
    .await;
    let srvs = until(
        "SRV names each worker with its port",
        BTreeSet::from([(4001, w(1001)), (4002, w(1002))]),
        || srv(&r, format!("_http._tcp.{svc}")),
    )
    .await;
    // The answers are what status.readyUrls says, host and port.
    let urls: BTreeSet<(IpAddr, u16)> = wg
        .status
        .as_ref()
        .expect("status")
        .ready_urls
        .iter()
        .map(|u| {
            let u = url::Url::parse(u).expect("url");
            (ip(u.host_str().expect("host")), u.port().expect("port"))
        })
        .collect();
    // Each SRV target resolves to its worker's address: (address, port) per worker.
    let mut from_dns = BTreeSet::new();
    for (port, target) in &srvs {
        let a = eventually("the SRV target resolves", Duration::from_secs(20), || {
            addresses(&r, target.clone())
        })
        .await;
        for a in a {
            from_dns.insert((a, *port));
        }
    }
    assert_eq!(urls, from_dns);

    // Changes: 1003 becomes idle and appears; 1001 errors and disappears.
    h.vast.state.upsert_worker(
        702,
        1003,
        worker_json(1003, "idle", Some("http://198.51.100.3:4001")),
    );
    h.vast.state.upsert_worker(
        702,
        1001,
        worker_json(1001, "error", Some("http://198.51.100.1:4001")),
    );
    until(
        "the change in DNS",
        BTreeSet::from([ip("198.51.100.2"), ip("198.51.100.3")]),
        || addresses(&r, svc.clone()),
    )
    .await;
    until(
        "w1003 (now idle) resolves",
        BTreeSet::from([ip("198.51.100.3")]),
        || addresses(&r, w(1003)),
    )
    .await;
    until("w1001 (now error) has no name", true, || {
        nxdomain(&r, w(1001))
    })
    .await;

    // A deleted WorkerGroup's names stop resolving: NXDOMAIN, the Service is gone.
    h.ns.api::<WorkerGroup>()
        .delete("llm", &DeleteParams::default())
        .await
        .expect("delete");
    until("the Service name is gone", true, || {
        nxdomain(&r, svc.clone())
    })
    .await;
    until("the worker names are gone", true, || nxdomain(&r, w(1002))).await;
    h.stop().await;
}

/// An endpoint-scoped WorkerGroup mirrors the workers of all the endpoint's workergroups
/// (polled with `/get_endpoint_workers/`, never per group): its status records the
/// endpoint, its headless Service's names resolve to the ready workers of both groups
/// and follow a change in either; re-pointed at one workergroup, it shows that group's
/// workers alone, as after a change of id.
#[tokio::test]
async fn an_endpoint_scope_publishes_the_workers_of_all_its_groups() {
    let h = Harness::start("dns-endpoint").await;
    h.vast
        .state
        .put_endpoint(71, KEY, json!({"endpoint_name": "llama"}));
    for (group, workers) in [
        (
            711,
            vec![
                worker_json(2001, "idle", Some("http://198.51.100.21:4001")),
                worker_json(2002, "loading", Some("http://198.51.100.22:4001")),
            ],
        ),
        (
            712,
            vec![worker_json(2003, "idle", Some("http://198.51.100.23:4001"))],
        ),
    ] {
        h.vast.state.put_group(group, KEY, Shape::Array, workers);
        h.vast
            .state
            .set_group_settings(group, json!({"endpoint_id": 71}));
    }
    // Another endpoint's group under the same key stays out.
    h.vast.state.put_group(
        713,
        KEY,
        Shape::Array,
        vec![worker_json(2004, "idle", Some("http://198.51.100.24:4001"))],
    );
    h.vast
        .state
        .set_group_settings(713, json!({"endpoint_id": 72}));
    h.secret("vast", "api-key", KEY).await;
    h.apply_group(
        "llm",
        json!({"endpointId": 71, "apiKeySecretRef": {"name": "vast"}, "pollInterval": "5s",
               "discovery": {"headless": true}}),
    )
    .await;
    let wg = h
        .wait_for("llm", "synced and published", |wg| {
            common::ready_is(wg, "True", "Synced")
                && cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
        })
        .await;
    let status = wg.status.as_ref().expect("status");
    assert_eq!(
        (status.endpoint_id, status.workergroup_id),
        (Some(71), None)
    );
    let ids: Vec<i64> = status.workers.iter().map(|w| w.id).collect();
    assert_eq!(ids, [2001, 2002, 2003]);
    assert_eq!(status.ready_summary.as_deref(), Some("2/3"));
    assert!(h.vast.state.endpoint_calls(71) >= 1);
    assert_eq!(
        (h.vast.state.calls(711), h.vast.state.calls(712)),
        (0, 0),
        "asked by endpoint"
    );
    // The slices hold the workers of both groups (ready as Vast says), not the other
    // endpoint's.
    let slices: kube::Api<k8s_openapi::api::discovery::v1::EndpointSlice> = h.ns.api();
    let listed = slices
        .list(&kube::api::ListParams::default().labels("kubernetes.io/service-name=llm"))
        .await
        .expect("list slices");
    let published: BTreeSet<(String, bool)> = listed
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            let ready = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
            (e.addresses.join(","), ready)
        })
        .collect();
    assert_eq!(
        published,
        BTreeSet::from([
            ("198.51.100.21".to_string(), true),
            ("198.51.100.22".to_string(), false),
            ("198.51.100.23".to_string(), true),
        ])
    );

    let r = resolver();
    let svc = format!("llm.{}.svc.cluster.local", h.ns.name);
    until(
        "A records are the ready workers of both groups",
        BTreeSet::from([ip("198.51.100.21"), ip("198.51.100.23")]),
        || addresses(&r, svc.clone()),
    )
    .await;
    // A change in one group of the endpoint.
    h.vast.state.upsert_worker(
        711,
        2002,
        worker_json(2002, "idle", Some("http://198.51.100.22:4001")),
    );
    until(
        "the change in DNS",
        BTreeSet::from([
            ip("198.51.100.21"),
            ip("198.51.100.22"),
            ip("198.51.100.23"),
        ]),
        || addresses(&r, svc.clone()),
    )
    .await;
    until(
        "w2003 of the second group resolves",
        BTreeSet::from([ip("198.51.100.23")]),
        || addresses(&r, format!("w2003.{svc}")),
    )
    .await;

    // Re-pointed at workergroup 712: its workers alone.
    h.apply_group("llm", spec(712, json!({"headless": true})))
        .await;
    let wg = h
        .wait_for("llm", "re-pointed", |wg| {
            wg.status
                .as_ref()
                .is_some_and(|s| s.workergroup_id == Some(712) && s.worker_count == 1)
                && common::ready_is(wg, "True", "Synced")
        })
        .await;
    assert_eq!(wg.status.as_ref().and_then(|s| s.endpoint_id), None);
    until(
        "DNS follows the new scope",
        BTreeSet::from([ip("198.51.100.23")]),
        || addresses(&r, svc.clone()),
    )
    .await;
    h.stop().await;
}
