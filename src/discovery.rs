//! In-cluster discovery: a selector-less Service and EndpointSlices holding the workers'
//! addresses, so clients reach a workergroup the Kubernetes way.
//!
//! The pure part computes the desired objects from the workers and compares them with
//! what exists; the I/O part (reflector stores of our Services and slices, create,
//! apply, delete) stays thin. Objects are never taken over: a Service or slice of the
//! same name that the WorkerGroup does not own is a conflict, reported, not overwritten.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::crd::{DiscoveryStatus, WorkerGroup, WorkerStatus};

/// `endpointslice.kubernetes.io/managed-by` of our slices.
pub const MANAGED_BY: &str = "vast-operator.vast.ai";
/// Label naming the WorkerGroup an object belongs to.
pub const LABEL_WORKERGROUP: &str = "vast.ai/workergroup";
/// `app.kubernetes.io/managed-by` of our Services.
pub const LABEL_MANAGED_BY_APP: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const APP_MANAGER: &str = "vast-operator";
/// Most endpoints in one EndpointSlice.
pub const MAX_ENDPOINTS: usize = 1000;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const SLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// Why a worker is not published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// Vast gave no URL.
    NoUrl,
    /// The URL names a host, not an IP address (FQDN slices are ignored by kube-proxy).
    Hostname,
    /// The URL cannot be parsed.
    BadUrl,
    /// Loopback, link-local, unspecified or multicast: Kubernetes refuses it.
    ForbiddenAddress,
}

impl Skip {
    fn describe(self) -> &'static str {
        match self {
            Skip::NoUrl => "without URL",
            Skip::Hostname => "with a hostname URL (not an IP address)",
            Skip::BadUrl => "with an unparsable URL",
            Skip::ForbiddenAddress => {
                "with an address Kubernetes refuses (loopback, link-local, multicast)"
            }
        }
    }
}

/// One worker as an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Worker id.
    pub id: i64,
    /// Its address.
    pub addr: IpAddr,
    /// Its port.
    pub port: u16,
    /// Ready state (`idle`, `running`).
    pub ready: bool,
    /// Going away (`stopping`, `destroying`).
    pub terminating: bool,
}

/// Parses a worker URL into an address and port.
pub fn parse_endpoint(url: Option<&str>) -> Result<(IpAddr, u16), Skip> {
    let url = url.ok_or(Skip::NoUrl)?;
    let parsed = reqwest::Url::parse(url).map_err(|_| Skip::BadUrl)?;
    let addr = match parsed.host() {
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a),
        Some(url::Host::Domain(_)) => return Err(Skip::Hostname),
        None => return Err(Skip::BadUrl),
    };
    let forbidden = match addr {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    if forbidden {
        return Err(Skip::ForbiddenAddress);
    }
    let port = parsed.port_or_known_default().ok_or(Skip::BadUrl)?;
    Ok((addr, port))
}

/// Splits workers into endpoints and counts of the skipped.
pub fn targets(workers: &[WorkerStatus]) -> (Vec<Target>, BTreeMap<Skip, i64>) {
    let mut out = Vec::new();
    let mut skipped = BTreeMap::new();
    for w in workers {
        match parse_endpoint(w.url.as_deref()) {
            Ok((addr, port)) => out.push(Target {
                id: w.id,
                addr,
                port,
                ready: w.ready,
                terminating: matches!(w.status.as_str(), "stopping" | "destroying"),
            }),
            Err(skip) => *skipped.entry(skip).or_insert(0) += 1,
        }
    }
    (out, skipped)
}

/// What the discovery objects of one WorkerGroup should be.
#[derive(Clone, Debug)]
pub struct Desired {
    /// The Service.
    pub service: Service,
    /// The slices, by name.
    pub slices: BTreeMap<String, EndpointSlice>,
    /// Published endpoints.
    pub endpoints: i64,
    /// Skipped workers by cause.
    pub skipped: BTreeMap<Skip, i64>,
}

fn owner_ref(wg: &WorkerGroup) -> Option<OwnerReference> {
    wg.controller_owner_ref(&())
}

fn base_labels(wg: &WorkerGroup, service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_WORKERGROUP.to_string(), wg.name_any()),
        (SERVICE_NAME_LABEL.to_string(), service.to_string()),
    ])
}

/// The Service name of a WorkerGroup.
pub fn service_name(wg: &WorkerGroup) -> String {
    wg.spec
        .discovery
        .service_name
        .clone()
        .unwrap_or_else(|| wg.name_any())
}

/// Computes the desired Service and slices.
pub fn desired(wg: &WorkerGroup, workers: &[WorkerStatus]) -> Desired {
    let d = &wg.spec.discovery;
    let svc_name = service_name(wg);
    let ns = wg.namespace();
    let owners = owner_ref(wg).map(|o| vec![o]);

    let mut svc_labels = base_labels(wg, &svc_name);
    svc_labels.remove(SERVICE_NAME_LABEL);
    svc_labels.insert(LABEL_MANAGED_BY_APP.into(), APP_MANAGER.into());
    let service = Service {
        metadata: ObjectMeta {
            name: Some(svc_name.clone()),
            namespace: ns.clone(),
            labels: Some(svc_labels),
            owner_references: owners.clone(),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: d.headless.then(|| "None".to_string()),
            ports: Some(vec![ServicePort {
                name: Some(d.port_name.clone()),
                port: d.port,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::String(d.port_name.clone())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };

    let (targets, skipped) = targets(workers);
    let endpoints = targets.len() as i64;
    let mut groups: BTreeMap<(&'static str, u16), Vec<&Target>> = BTreeMap::new();
    for t in &targets {
        let family = if t.addr.is_ipv4() { "IPv4" } else { "IPv6" };
        groups.entry((family, t.port)).or_default().push(t);
    }
    let mut slices = BTreeMap::new();
    for ((family, port), mut members) in groups {
        members.sort_by_key(|t| (t.addr, t.id));
        for (i, chunk) in members.chunks(MAX_ENDPOINTS).enumerate() {
            let name = format!(
                "{svc_name}-{}-{port}-{i}",
                if family == "IPv4" { "v4" } else { "v6" }
            );
            let mut labels = base_labels(wg, &svc_name);
            labels.insert(SLICE_MANAGED_BY_LABEL.into(), MANAGED_BY.into());
            let slice = EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: ns.clone(),
                    labels: Some(labels),
                    owner_references: owners.clone(),
                    ..Default::default()
                },
                address_type: family.into(),
                endpoints: chunk
                    .iter()
                    .map(|t| Endpoint {
                        addresses: vec![t.addr.to_string()],
                        conditions: Some(EndpointConditions {
                            ready: Some(t.ready && !t.terminating),
                            serving: Some(t.ready),
                            terminating: Some(t.terminating),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ports: Some(vec![EndpointPort {
                    name: Some(d.port_name.clone()),
                    port: Some(i32::from(port)),
                    protocol: Some("TCP".into()),
                    app_protocol: None,
                }]),
            };
            slices.insert(name, slice);
        }
    }
    Desired {
        service,
        slices,
        endpoints,
        skipped,
    }
}

/// Whether an object is ours: labelled for this WorkerGroup and owned by it (by uid).
pub fn owned_by<K: Resource>(obj: &K, wg: &WorkerGroup) -> bool {
    let uid = wg.meta().uid.as_deref();
    uid.is_some()
        && obj
            .meta()
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|r| Some(r.uid.as_str()) == uid))
}

fn labels_include(
    have: &Option<BTreeMap<String, String>>,
    want: &Option<BTreeMap<String, String>>,
) -> bool {
    let empty = BTreeMap::new();
    let have = have.as_ref().unwrap_or(&empty);
    want.as_ref()
        .unwrap_or(&empty)
        .iter()
        .all(|(k, v)| have.get(k) == Some(v))
}

/// Whether an existing slice already has the desired content.
pub fn slice_matches(existing: &EndpointSlice, want: &EndpointSlice) -> bool {
    labels_include(&existing.metadata.labels, &want.metadata.labels)
        && existing.address_type == want.address_type
        && existing.endpoints == want.endpoints
        && existing.ports == want.ports
}

/// Whether an existing Service already has the desired content.
pub fn service_matches(existing: &Service, want: &Service) -> bool {
    let (Some(have), Some(spec)) = (existing.spec.as_ref(), want.spec.as_ref()) else {
        return false;
    };
    let headless = |s: &ServiceSpec| s.cluster_ip.as_deref() == Some("None");
    let ports = |s: &ServiceSpec| {
        s.ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone(),
                    p.port,
                    p.protocol.clone(),
                    p.target_port.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    labels_include(&existing.metadata.labels, &want.metadata.labels)
        && headless(have) == headless(spec)
        && have.selector.as_ref().is_none_or(BTreeMap::is_empty)
        && ports(have) == ports(spec)
}

/// Whether switching between headless and ClusterIP, which needs a new Service.
pub fn needs_recreate(existing: &Service, want: &Service) -> bool {
    let headless =
        |s: &Service| s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    headless(existing) != headless(want)
}

/// Summary text for `status.discovery.reason`.
pub fn skipped_reason(skipped: &BTreeMap<Skip, i64>) -> String {
    skipped
        .iter()
        .map(|(k, n)| {
            format!(
                "{n} worker{} {}",
                if *n == 1 { "" } else { "s" },
                k.describe()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Watches of the Services and EndpointSlices the operator manages.
#[derive(Clone)]
pub struct Stores {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    ready: tokio::sync::watch::Receiver<bool>,
}

impl Stores {
    /// Starts watches of our Services and slices (in `namespace`, or everywhere). Returns
    /// at once; [`Stores::wait_ready`] tells when both have listed. The handles end the
    /// watches when aborted.
    pub fn start(
        client: Client,
        namespace: Option<&str>,
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (services, svc_writer) = reflector::store::<Service>();
        let (slices, slice_writer) = reflector::store::<EndpointSlice>();
        let (svc_api, slice_api) = match namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client, ns),
            ),
            None => (Api::all(client.clone()), Api::all(client)),
        };
        let svc_cfg =
            watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY_APP}={APP_MANAGER}"));
        let slice_cfg =
            watcher::Config::default().labels(&format!("{SLICE_MANAGED_BY_LABEL}={MANAGED_BY}"));
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let handles = vec![
            tokio::spawn(
                watcher(svc_api, svc_cfg)
                    .default_backoff()
                    .reflect(svc_writer)
                    .for_each(log_watch_errors("Services")),
            ),
            tokio::spawn(
                watcher(slice_api, slice_cfg)
                    .default_backoff()
                    .reflect(slice_writer)
                    .for_each(log_watch_errors("EndpointSlices")),
            ),
            tokio::spawn({
                let (services, slices) = (services.clone(), slices.clone());
                async move {
                    if services.wait_until_ready().await.is_ok()
                        && slices.wait_until_ready().await.is_ok()
                    {
                        let _ = ready_tx.send(true);
                    }
                }
            }),
        ];
        (
            Self {
                services,
                slices,
                ready,
            },
            handles,
        )
    }

    /// Waits up to `timeout` until both watches have listed, so the stores can be trusted
    /// to hold our objects; false when they have not.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready.clone();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await,
            Ok(Ok(_))
        )
    }

    fn ours_services(&self, wg: &WorkerGroup) -> Vec<Arc<Service>> {
        let ns = wg.namespace();
        self.services
            .state()
            .into_iter()
            .filter(|s| s.namespace() == ns && owned_by(&**s, wg))
            .collect()
    }

    fn ours_slices(&self, wg: &WorkerGroup) -> Vec<Arc<EndpointSlice>> {
        let ns = wg.namespace();
        self.slices
            .state()
            .into_iter()
            .filter(|s| s.namespace() == ns && owned_by(&**s, wg))
            .collect()
    }
}

fn log_watch_errors<T>(
    what: &'static str,
) -> impl FnMut(Result<T, watcher::Error>) -> futures::future::Ready<()> {
    move |ev| {
        if let Err(e) = ev {
            tracing::warn!(error = %e, "watch of our {what} failed (may the operator list and watch them?); retrying");
        }
        futures::future::ready(())
    }
}

/// The result of reconciling discovery for one WorkerGroup.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// `status.discovery` (None when disabled).
    pub status: Option<DiscoveryStatus>,
    /// A conflict or failure message, when publishing did not fully succeed.
    pub problem: Option<(&'static str, String)>,
    /// Writes made (creates, applies, deletes).
    pub writes: u32,
}

/// Brings the Service and slices of `wg` to match `workers`, with the fewest writes.
pub async fn reconcile(
    client: &Client,
    stores: &Stores,
    wg: &WorkerGroup,
    workers: &[WorkerStatus],
) -> Outcome {
    let ns = wg.namespace().unwrap_or_default();
    let svc_api: Api<Service> = Api::namespaced(client.clone(), &ns);
    let slice_api: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let mut out = Outcome::default();
    let mut problems: Vec<String> = Vec::new();
    let mut conflict = false;

    let existing_services = stores.ours_services(wg);
    let existing_slices = stores.ours_slices(wg);

    if !wg.spec.discovery.enabled {
        for s in &existing_services {
            delete(&svc_api, &s.name_any(), &mut out, &mut problems).await;
        }
        for s in &existing_slices {
            delete(&slice_api, &s.name_any(), &mut out, &mut problems).await;
        }
        if !problems.is_empty() {
            out.problem = Some(("DiscoveryFailed", problems.join("; ")));
        }
        return out;
    }

    let want = desired(wg, workers);
    let svc_name = service_name(wg);
    let pp = PatchParams::apply(crate::controller::FIELD_MANAGER).force();

    // Services of ours under another name (renamed): delete.
    for s in existing_services
        .iter()
        .filter(|s| s.name_any() != svc_name)
    {
        delete(&svc_api, &s.name_any(), &mut out, &mut problems).await;
    }
    let current = existing_services
        .iter()
        .find(|s| s.name_any() == svc_name)
        .cloned();
    let service_ok = match current {
        Some(cur) if service_matches(&cur, &want.service) => true,
        Some(cur) if !needs_recreate(&cur, &want.service) => {
            apply(&svc_api, &want.service, &pp, &mut out, &mut problems).await
        }
        found => {
            if found.is_some() {
                delete(&svc_api, &svc_name, &mut out, &mut problems).await;
            }
            create_or_adopt(
                &svc_api,
                &want.service,
                wg,
                &pp,
                &mut out,
                &mut problems,
                &mut conflict,
            )
            .await
        }
    };

    let existing: BTreeMap<String, Arc<EndpointSlice>> = existing_slices
        .iter()
        .map(|s| (s.name_any(), s.clone()))
        .collect();
    // Our slices that are not wanted go, whatever happened to the Service: a slice left
    // labelled with an old Service name would route that name's traffic to the workers.
    let wanted: BTreeSet<&String> = want.slices.keys().collect();
    for name in existing.keys().filter(|n| !wanted.contains(n)) {
        delete(&slice_api, name, &mut out, &mut problems).await;
    }
    if service_ok {
        for (name, slice) in &want.slices {
            match existing.get(name) {
                Some(cur) if slice_matches(cur, slice) => {}
                Some(_) => {
                    apply(&slice_api, slice, &pp, &mut out, &mut problems).await;
                }
                None => {
                    create_or_adopt(
                        &slice_api,
                        slice,
                        wg,
                        &pp,
                        &mut out,
                        &mut problems,
                        &mut conflict,
                    )
                    .await;
                }
            }
        }
    }

    let mut reason = skipped_reason(&want.skipped);
    if !problems.is_empty() {
        let text = problems.join("; ");
        reason = if reason.is_empty() {
            text.clone()
        } else {
            format!("{text}; {reason}")
        };
        out.problem = Some((
            if conflict {
                "DiscoveryConflict"
            } else {
                "DiscoveryFailed"
            },
            text,
        ));
    }
    out.status = Some(DiscoveryStatus {
        service_name: svc_name,
        endpoints: if service_ok { want.endpoints } else { 0 },
        skipped: want.skipped.values().sum(),
        reason: crate::sync::cut(reason, 1024),
    });
    out
}

fn with_kind<K: Resource<DynamicType = ()> + serde::Serialize>(obj: &K) -> serde_json::Value {
    let mut v = serde_json::to_value(obj).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("apiVersion".into(), K::api_version(&()).into());
        o.insert("kind".into(), K::kind(&()).into());
    }
    v
}

/// The kinds this module writes (Services and EndpointSlices).
trait Object:
    Resource<DynamicType = ()>
    + Clone
    + serde::Serialize
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
}
impl<K> Object for K where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

/// Creates `obj` with server-side apply (so that later applies own, and can remove,
/// every field) unless the name is taken: an object of ours that the store has not
/// caught up with is updated, anyone else's is a conflict and left alone. Returns
/// whether `obj` is in place.
async fn create_or_adopt<K>(
    api: &Api<K>,
    obj: &K,
    wg: &WorkerGroup,
    pp: &PatchParams,
    out: &mut Outcome,
    problems: &mut Vec<String>,
    conflict: &mut bool,
) -> bool
where
    K: Object,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let kind = K::kind(&());
    match api.get_opt(&name).await {
        Ok(Some(cur)) if !owned_by(&cur, wg) => {
            *conflict = true;
            problems.push(format!(
                "{kind} {name} exists and is not managed by this WorkerGroup"
            ));
            return false;
        }
        Ok(_) => {}
        Err(e) => {
            problems.push(format!("cannot read {kind} {name}: {e}"));
            return false;
        }
    }
    apply(api, obj, pp, out, problems).await
}

/// Applies `obj` (server-side, forced, our field manager); returns whether it worked.
async fn apply<K>(
    api: &Api<K>,
    obj: &K,
    pp: &PatchParams,
    out: &mut Outcome,
    problems: &mut Vec<String>,
) -> bool
where
    K: Object,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.patch(&name, pp, &Patch::Apply(&with_kind(obj))).await {
        Ok(_) => {
            out.writes += 1;
            true
        }
        Err(e) => {
            problems.push(format!("cannot write {} {name}: {e}", K::kind(&())));
            false
        }
    }
}

async fn delete<K>(api: &Api<K>, name: &str, out: &mut Outcome, problems: &mut Vec<String>)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => out.writes += 1,
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => problems.push(format!("cannot delete {} {name}: {e}", K::kind(&()))),
    }
}

/// Deletes Services and slices whose WorkerGroup no longer exists (there may be no
/// garbage collector, and users should not wait for one). Runs every `every`. The
/// WorkerGroup store only nominates candidates; each is confirmed with a GET, so a cache
/// that lags never causes a deletion.
pub async fn sweep_orphans(
    client: Client,
    stores: Stores,
    groups: Store<WorkerGroup>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let live: BTreeSet<String> = groups
            .state()
            .iter()
            .filter_map(|g| g.meta().uid.clone())
            .collect();
        let services = stores.services.state();
        let slices = stores.slices.state();
        let metas = services
            .iter()
            .map(|s| ("Service", &s.metadata))
            .chain(slices.iter().map(|s| ("EndpointSlice", &s.metadata)));
        for (kind, meta) in metas {
            let Some(owner) = meta.owner_references.iter().flatten().find(|r| {
                r.kind == "WorkerGroup"
                    && r.api_version.starts_with("vast.ai/")
                    && !live.contains(&r.uid)
            }) else {
                continue;
            };
            let ns = meta.namespace.clone().unwrap_or_default();
            let name = meta.name.clone().unwrap_or_default();
            let groups_api: Api<WorkerGroup> = Api::namespaced(client.clone(), &ns);
            match groups_api.get_opt(&owner.name).await {
                Ok(Some(wg)) if wg.meta().uid.as_deref() == Some(owner.uid.as_str()) => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "cannot confirm an orphan; skipped");
                    continue;
                }
            }
            tracing::info!(kind, namespace = %ns, name = %name, workergroup = %owner.name, "deleting the object of a deleted WorkerGroup");
            // Only the object seen, not one recreated under the same name since.
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: meta.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let res = if kind == "Service" {
                Api::<Service>::namespaced(client.clone(), &ns)
                    .delete(&name, &dp)
                    .await
                    .map(|_| ())
            } else {
                Api::<EndpointSlice>::namespaced(client.clone(), &ns)
                    .delete(&name, &dp)
                    .await
                    .map(|_| ())
            };
            if let Err(e) = res {
                tracing::debug!(error = %e, kind, name = %name, "orphan delete failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wg() -> WorkerGroup {
        let mut wg: WorkerGroup = serde_json::from_value(serde_json::json!({
            "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
            "metadata": {"name": "llm", "namespace": "ai", "uid": "u-1"},
            "spec": {"workergroupId": 1, "apiKeySecretRef": {"name": "s"}}
        }))
        .expect("wg");
        wg.spec.discovery.port = 8080;
        wg
    }

    fn w(id: i64, status: &str, url: Option<&str>) -> WorkerStatus {
        WorkerStatus {
            id,
            status: status.into(),
            ready: crate::sync::is_ready_state(status),
            url: url.map(str::to_string),
            created_at: None,
            cur_load: None,
            reqs_working: None,
            perf: None,
        }
    }

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse_endpoint(Some("http://203.0.113.5:40001")),
            Ok(("203.0.113.5".parse().expect("ip"), 40001))
        );
        assert_eq!(
            parse_endpoint(Some("https://[2001:db8::7]")),
            Ok(("2001:db8::7".parse().expect("ip"), 443))
        );
        assert_eq!(
            parse_endpoint(Some("http://203.0.113.5")),
            Ok(("203.0.113.5".parse().expect("ip"), 80))
        );
        assert_eq!(
            parse_endpoint(Some("http://worker.example.com:80")),
            Err(Skip::Hostname)
        );
        assert_eq!(parse_endpoint(None), Err(Skip::NoUrl));
        assert_eq!(parse_endpoint(Some("not a url")), Err(Skip::BadUrl));
        assert_eq!(
            parse_endpoint(Some("http://127.0.0.1:80")),
            Err(Skip::ForbiddenAddress)
        );
        assert_eq!(
            parse_endpoint(Some("http://169.254.1.1:80")),
            Err(Skip::ForbiddenAddress)
        );
        assert_eq!(
            parse_endpoint(Some("http://[fe80::1]:80")),
            Err(Skip::ForbiddenAddress)
        );
    }

    #[test]
    fn one_slice_per_family_and_port_with_conditions() {
        let workers = [
            w(1, "idle", Some("http://203.0.113.1:40001")),
            w(2, "loading", Some("http://203.0.113.2:40001")),
            w(3, "stopping", Some("http://203.0.113.3:40002")),
            w(4, "running", Some("http://[2001:db8::4]:40001")),
            w(5, "idle", None),
            w(6, "idle", Some("http://host.example:1")),
        ];
        let d = desired(&wg(), &workers);
        let names: Vec<&str> = d.slices.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["llm-v4-40001-0", "llm-v4-40002-0", "llm-v6-40001-0"]
        );
        assert_eq!(d.endpoints, 4);
        assert_eq!(d.skipped.get(&Skip::NoUrl), Some(&1));
        assert_eq!(d.skipped.get(&Skip::Hostname), Some(&1));
        let s = &d.slices["llm-v4-40001-0"];
        assert_eq!(s.address_type, "IPv4");
        let conds: Vec<(String, Option<bool>)> = s
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.addresses[0].clone(),
                    e.conditions.as_ref().and_then(|c| c.ready),
                )
            })
            .collect();
        assert_eq!(
            conds,
            [
                ("203.0.113.1".into(), Some(true)),
                ("203.0.113.2".into(), Some(false))
            ]
        );
        let stopping = &d.slices["llm-v4-40002-0"].endpoints[0];
        assert_eq!(
            stopping.conditions.as_ref().and_then(|c| c.terminating),
            Some(true)
        );
        let labels = s.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[SERVICE_NAME_LABEL], "llm");
        assert_eq!(labels[SLICE_MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(
            s.ports.as_ref().expect("ports")[0].name.as_deref(),
            Some("http")
        );
        assert_eq!(s.ports.as_ref().expect("ports")[0].port, Some(40001));
        let svc = d.service.spec.as_ref().expect("spec");
        assert!(svc.selector.is_none());
        assert_eq!(svc.ports.as_ref().expect("ports")[0].port, 8080);
        assert!(skipped_reason(&d.skipped).contains("1 worker without URL"));
    }

    #[test]
    fn splits_beyond_a_thousand() {
        let workers: Vec<WorkerStatus> = (0..2500)
            .map(|i| {
                w(
                    i,
                    "idle",
                    Some(&format!("http://198.18.{}.{}:9000", i / 250, i % 250 + 1)),
                )
            })
            .collect();
        let d = desired(&wg(), &workers);
        let sizes: Vec<usize> = d.slices.values().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
    }

    #[test]
    fn matching_ignores_server_additions() {
        let d = desired(&wg(), &[w(1, "idle", Some("http://203.0.113.1:40001"))]);
        let want = &d.slices["llm-v4-40001-0"];
        let mut have = want.clone();
        have.metadata.resource_version = Some("9".into());
        have.metadata
            .labels
            .get_or_insert_default()
            .insert("extra".into(), "x".into());
        assert!(slice_matches(&have, want));
        have.endpoints[0].conditions = Some(EndpointConditions {
            ready: Some(false),
            serving: Some(false),
            terminating: Some(false),
        });
        assert!(!slice_matches(&have, want));

        let mut svc = d.service.clone();
        svc.spec.get_or_insert_default().cluster_ip = Some("10.0.0.7".into());
        assert!(service_matches(&svc, &d.service));
        assert!(!needs_recreate(&svc, &d.service));
        svc.spec.get_or_insert_default().cluster_ip = Some("None".into());
        assert!(needs_recreate(&svc, &d.service));
    }
}
