//! The desired Service and EndpointSlices of a WorkerGroup, and the comparison with what
//! exists. Pure: no I/O.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use super::{
    APP_MANAGER, HEADLESS_LABEL, LABEL_MANAGED_BY_APP, LABEL_WORKERGROUP, MANAGED_BY,
    MAX_ENDPOINTS, SERVICE_NAME_LABEL, SLICE_MANAGED_BY_LABEL,
};
use crate::crd::{WorkerGroup, WorkerStatus};
use crate::sync::endpoints::{EndpointPolicy, Selection, Target, refused_summary, select};

/// What the discovery objects of one WorkerGroup should be.
#[derive(Clone, Debug)]
pub struct Desired {
    /// The Service.
    pub service: Service,
    /// The slices, by name.
    pub slices: BTreeMap<String, EndpointSlice>,
    /// Published endpoints.
    pub endpoints: i64,
    /// What was published, skipped and refused.
    pub selection: Selection,
}

fn owner_ref(wg: &WorkerGroup) -> Option<OwnerReference> {
    wg.controller_owner_ref(&())
}

/// The `vast.ai/workergroup` label value of a WorkerGroup: its name when that is a
/// valid label value (at most 63 characters), else the first 52 characters and a stable
/// hash of the whole name, so that a 253-character name still labels its objects.
pub fn workergroup_label(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    // FNV-1a, 64 bits: stable across builds and versions, unlike std's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let head = name[..52].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{head}-{:010x}", hash & 0xff_ffff_ffff)
}

/// Why the Service name cannot be used, if it cannot: Kubernetes requires a DNS-1035
/// label. The CRD refuses such names; objects created before that rule still get a
/// clear message rather than a write refused on every poll.
pub fn service_name_problem(wg: &WorkerGroup) -> Option<String> {
    let name = service_name(wg);
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!valid).then(|| {
        format!(
            "{name:?} is not a valid Service name (a DNS-1035 label: at most 63 characters, lowercase letters, digits and '-', starting with a letter); set spec.discovery.serviceName"
        )
    })
}

fn base_labels(wg: &WorkerGroup, service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            LABEL_WORKERGROUP.to_string(),
            workergroup_label(&wg.name_any()),
        ),
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

/// The DNS label of a worker in a headless Service: `w` and its Vast id (`w1001`; a
/// negative id, which Vast does not hand out, gives `wm7`).
pub fn worker_hostname(id: i64) -> String {
    if id < 0 {
        format!("wm{}", id.unsigned_abs())
    } else {
        format!("w{id}")
    }
}

/// Computes the desired Service and slices of the workers `policy` lets through. With
/// `stale` set every endpoint is published neither ready nor serving: kept, so that
/// recovery is one write, but given no traffic.
pub fn desired(
    wg: &WorkerGroup,
    workers: &[WorkerStatus],
    stale: bool,
    policy: &EndpointPolicy,
) -> Desired {
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

    let selection = select(workers, policy);
    let endpoints = selection.targets.len() as i64;
    let mut groups: BTreeMap<(&'static str, u16), Vec<&Target>> = BTreeMap::new();
    for t in &selection.targets {
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
            if d.headless {
                labels.insert(HEADLESS_LABEL.into(), String::new());
            }
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
                        // A headless Service gives each endpoint a DNS name of its own:
                        // w<id>.<service>.<namespace>.svc.<zone>, and an SRV target.
                        hostname: d.headless.then(|| worker_hostname(t.id)),
                        conditions: Some(EndpointConditions {
                            ready: Some(!stale && t.ready && !t.terminating),
                            serving: Some(!stale && t.ready),
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
        selection,
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

/// Whether `obj` was left by an earlier WorkerGroup of `wg`'s name (deleted and created
/// again): its owners are all WorkerGroups (`vast.ai`) of that name with another uid than
/// `wg`'s, and it was made before `wg` was (a whole second before: timestamps have
/// seconds only). A name is held by one object at a time in a namespace, so that owner is
/// gone, and the object waits for the garbage collector, which may be behind (after an
/// apiserver restart it was for minutes in `make chaos`). Such an object is ours to
/// replace; anything else under our names stays a conflict. The age test keeps a stale
/// view safe: a replica whose cache still holds the earlier WorkerGroup sees the new
/// one's objects as younger than itself, and leaves them alone. The times compared are
/// all stamped by the apiserver; with several apiservers, that holds only as far as their
/// clocks agree (to well under a second, as etcd's leases already need).
pub fn left_by_earlier<K: Resource>(obj: &K, wg: &WorkerGroup) -> bool {
    let (Some(uid), Some(name)) = (wg.meta().uid.as_deref(), wg.meta().name.as_deref()) else {
        return false;
    };
    let older = match (
        &obj.meta().creation_timestamp,
        &wg.meta().creation_timestamp,
    ) {
        (Some(made), Some(wg_made)) => made.0 < wg_made.0,
        _ => false,
    };
    let owners = obj.meta().owner_references.as_deref().unwrap_or_default();
    older
        && !owners.is_empty()
        && owners.iter().all(|o| {
            o.kind == "WorkerGroup"
                && o.api_version.starts_with("vast.ai/")
                && o.name == name
                && !o.uid.is_empty()
                && o.uid != uid
        })
}

/// After a replace of `seen` was refused with 409: whether the object now under its
/// name (`now`, read again) is another one that this WorkerGroup does not own (a uid
/// precondition failed), rather than ours changed since it was read. Judged from the
/// objects, not from the wording of the apiserver's message.
pub fn replaced_by_another<K: Resource>(seen: &Seen, now: Option<&K>, wg: &WorkerGroup) -> bool {
    now.is_some_and(|now| now.meta().uid != seen.uid && !owned_by(now, wg))
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

/// What publishing needs of an existing object to replace or delete that very object: a
/// replace carries its uid and resourceVersion as preconditions, a delete its uid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// The object's name.
    pub name: String,
    /// Its uid.
    pub uid: Option<String>,
    /// Its resourceVersion when seen.
    pub resource_version: Option<String>,
}

impl Seen {
    /// Name, uid and resourceVersion of `obj`.
    pub fn of<K: Resource>(obj: &K) -> Self {
        let m = obj.meta();
        Self {
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone(),
            resource_version: m.resource_version.clone(),
        }
    }
}

/// What the operator keeps in memory of one of its EndpointSlices (there is about one
/// per worker): its identity and a fingerprint of what [`slice_matches`] compares, not
/// its endpoints, ports or labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptSlice {
    /// Name, uid and resourceVersion.
    pub seen: Seen,
    /// [`slice_fingerprint`] of the slice as the apiserver holds it.
    pub fingerprint: Option<u64>,
}

impl KeptSlice {
    /// What is kept of `slice`.
    pub fn of(slice: &EndpointSlice) -> Self {
        Self {
            seen: Seen::of(slice),
            fingerprint: slice_fingerprint(slice),
        }
    }
}

/// The labels of a slice that the comparison reads: each one [`desired`] may set.
const SLICE_LABELS: [&str; 4] = [
    LABEL_WORKERGROUP,
    SERVICE_NAME_LABEL,
    SLICE_MANAGED_BY_LABEL,
    HEADLESS_LABEL,
];

/// A 64-bit digest of what makes a slice right: the values of our labels (a missing one
/// counts; others' labels do not), the address type, the endpoints and the ports. Equal
/// content gives an equal digest in one process; it is never written anywhere. None only
/// if the content cannot be serialized (which never matches).
pub fn slice_fingerprint(slice: &EndpointSlice) -> Option<u64> {
    struct Digest(DefaultHasher);
    impl std::io::Write for Digest {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let labels = slice.metadata.labels.as_ref();
    let ours: Vec<Option<&String>> = SLICE_LABELS
        .iter()
        .map(|k| labels.and_then(|l| l.get(*k)))
        .collect();
    let mut d = Digest(DefaultHasher::new());
    serde_json::to_writer(
        &mut d,
        &(ours, &slice.address_type, &slice.endpoints, &slice.ports),
    )
    .ok()?;
    Some(d.0.finish())
}

/// Whether a slice of ours, as kept in memory, already has the desired content: the
/// labels wanted (and the headless label only where wanted: a slice left with it by a
/// Service that was headless would be skipped by kube-proxy), the address type,
/// endpoints and ports.
pub fn slice_matches(kept: &KeptSlice, want: &EndpointSlice) -> bool {
    kept.fingerprint.is_some() && kept.fingerprint == slice_fingerprint(want)
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

/// Summary text for `status.discovery.reason`: the skipped by cause, then the refused.
pub fn skipped_reason(selection: &Selection) -> String {
    selection
        .skipped
        .iter()
        .map(|(k, n)| {
            format!(
                "{n} worker{} {}",
                if *n == 1 { "" } else { "s" },
                k.describe()
            )
        })
        .chain(Some(refused_summary(selection)).filter(|s| !s.is_empty()))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_replace_is_a_conflict_only_when_another_object_holds_the_name() {
        let wg: WorkerGroup = serde_json::from_value(serde_json::json!({
            "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
            "metadata": {"name": "g", "uid": "wg-uid"},
            "spec": {"workergroupId": 1, "apiKeySecretRef": {"name": "s"}}
        }))
        .expect("wg");
        let svc = |uid: &str, owner: Option<&str>| -> Service {
            let refs = owner.map(|o| {
                serde_json::json!([{"apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
                    "name": "g", "uid": o}])
            });
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "g", "uid": uid, "ownerReferences": refs}
            }))
            .expect("service")
        };
        let seen = Seen::of(&svc("a", Some("wg-uid")));
        assert!(replaced_by_another(&seen, Some(&svc("b", None)), &wg));
        assert!(replaced_by_another(
            &seen,
            Some(&svc("b", Some("other"))),
            &wg
        ));
        assert!(
            !replaced_by_another(&seen, Some(&svc("a", Some("wg-uid"))), &wg),
            "ours, changed"
        );
        assert!(
            !replaced_by_another(&seen, Some(&svc("b", Some("wg-uid"))), &wg),
            "ours again"
        );
        assert!(
            !replaced_by_another::<Service>(&seen, None, &wg),
            "gone: made at the next poll"
        );
    }
    use crate::sync::endpoints::Skip;
    use crate::sync::workers::test_worker as w;

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
        let d = desired(&wg(), &workers, false, &EndpointPolicy::default());
        let names: Vec<&str> = d.slices.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["llm-v4-40001-0", "llm-v4-40002-0", "llm-v6-40001-0"]
        );
        assert_eq!(d.endpoints, 4);
        assert_eq!(d.selection.skipped.get(&Skip::NoUrl), Some(&1));
        assert_eq!(d.selection.skipped.get(&Skip::Hostname), Some(&1));
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
        assert!(skipped_reason(&d.selection).contains("1 worker without URL"));
    }

    #[test]
    fn stale_data_is_kept_but_neither_ready_nor_serving() {
        let workers = [
            w(1, "idle", Some("http://203.0.113.1:40001")),
            w(2, "stopping", Some("http://203.0.113.2:40001")),
        ];
        let fresh = desired(&wg(), &workers, false, &EndpointPolicy::default());
        let stale = desired(&wg(), &workers, true, &EndpointPolicy::default());
        assert_eq!(stale.endpoints, 2, "the endpoints stay");
        let conds = |d: &Desired| -> Vec<(Option<bool>, Option<bool>, Option<bool>)> {
            d.slices["llm-v4-40001-0"]
                .endpoints
                .iter()
                .map(|e| {
                    let c = e.conditions.clone().unwrap_or_default();
                    (c.ready, c.serving, c.terminating)
                })
                .collect()
        };
        assert_eq!(
            conds(&fresh),
            [
                (Some(true), Some(true), Some(false)),
                (Some(false), Some(false), Some(true))
            ]
        );
        assert_eq!(
            conds(&stale),
            [
                (Some(false), Some(false), Some(false)),
                (Some(false), Some(false), Some(true))
            ]
        );
    }

    #[test]
    fn long_names_get_a_valid_stable_label_and_bad_service_names_a_message() {
        let long = format!("{}.example.team", "a".repeat(240));
        let label = workergroup_label(&long);
        assert!(label.len() <= 63, "{label}");
        // Stable across builds and versions: objects already labelled keep matching.
        assert_eq!(
            label,
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-c477967920"
        );
        let dotted = format!("inference-{}.team-b.example", "x".repeat(50));
        assert_eq!(
            workergroup_label(&dotted),
            "inference-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-86083a9811"
        );
        assert_ne!(label, workergroup_label(&format!("{long}x")));
        assert!(
            label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        assert_eq!(workergroup_label("llama"), "llama");

        let mut g = wg();
        assert_eq!(service_name_problem(&g), None);
        g.spec.discovery.service_name = None;
        g.metadata.name = Some(long.clone());
        assert!(service_name_problem(&g).is_some_and(|m| m.contains("spec.discovery.serviceName")));
        g.metadata.name = Some("a.b".into());
        assert!(service_name_problem(&g).is_some());
        g.spec.discovery.service_name = Some("ok-name".into());
        assert_eq!(service_name_problem(&g), None);
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
        // A benchmarking range, refused by default: allowed back, as a lab would.
        let lab = "198.18.0.0/15".parse().expect("net");
        let policy = EndpointPolicy::new(vec![lab], Vec::new(), 5000);
        let d = desired(&wg(), &workers, false, &policy);
        let sizes: Vec<usize> = d.slices.values().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
    }

    /// The slice of a WorkerGroup with one ready worker on port 40001.
    fn one_ready_slice() -> EndpointSlice {
        let d = desired(
            &wg(),
            &[w(1, "idle", Some("http://203.0.113.1:40001"))],
            false,
            &EndpointPolicy::default(),
        );
        d.slices["llm-v4-40001-0"].clone()
    }

    #[test]
    fn the_fingerprint_covers_what_matching_compares_and_nothing_else() {
        let want = &one_ready_slice();
        let fp = slice_fingerprint(want);
        assert!(fp.is_some());
        // What the apiserver or others add does not count...
        let mut added = want.clone();
        added.metadata.resource_version = Some("12".into());
        added.metadata.uid = Some("u".into());
        added.metadata.generation = Some(3);
        added.metadata.annotations = Some(BTreeMap::from([("a".into(), "b".into())]));
        added
            .metadata
            .labels
            .get_or_insert_default()
            .insert("team".into(), "x".into());
        assert_eq!(slice_fingerprint(&added), fp);
        // ...each part of the content does.
        type Change = (&'static str, fn(&mut EndpointSlice));
        let changes: Vec<Change> = vec![
            ("address", |s| {
                s.endpoints[0].addresses[0] = "203.0.113.2".into()
            }),
            ("readiness", |s| {
                s.endpoints[0].conditions.get_or_insert_default().ready = Some(false)
            }),
            ("hostname", |s| s.endpoints[0].hostname = Some("w1".into())),
            ("an endpoint more", |s| {
                let e = s.endpoints[0].clone();
                s.endpoints.push(e)
            }),
            ("port", |s| {
                s.ports.get_or_insert_default()[0].port = Some(40002)
            }),
            ("address type", |s| s.address_type = "IPv6".into()),
            ("our label", |s| {
                s.metadata
                    .labels
                    .get_or_insert_default()
                    .insert(SERVICE_NAME_LABEL.into(), "other".into());
            }),
            ("our label gone", |s| {
                s.metadata
                    .labels
                    .get_or_insert_default()
                    .remove(LABEL_WORKERGROUP);
            }),
            ("headless label", |s| {
                s.metadata
                    .labels
                    .get_or_insert_default()
                    .insert(HEADLESS_LABEL.into(), String::new());
            }),
        ];
        for (what, change) in changes {
            let mut s = want.clone();
            change(&mut s);
            assert_ne!(slice_fingerprint(&s), fp, "{what}");
            assert!(!slice_matches(&KeptSlice::of(&s), want), "{what}");
        }
        // A fingerprint that could not be made matches nothing.
        let none = KeptSlice {
            seen: Seen::of(want),
            fingerprint: None,
        };
        assert!(!slice_matches(&none, want));
    }

    #[test]
    fn matching_ignores_server_additions() {
        let d = desired(
            &wg(),
            &[w(1, "idle", Some("http://203.0.113.1:40001"))],
            false,
            &EndpointPolicy::default(),
        );
        let want = &d.slices["llm-v4-40001-0"];
        let mut have = want.clone();
        have.metadata.resource_version = Some("9".into());
        have.metadata
            .labels
            .get_or_insert_default()
            .insert("extra".into(), "x".into());
        assert!(slice_matches(&KeptSlice::of(&have), want));
        have.endpoints[0].conditions = Some(EndpointConditions {
            ready: Some(false),
            serving: Some(false),
            terminating: Some(false),
        });
        assert!(!slice_matches(&KeptSlice::of(&have), want));

        let mut svc = d.service.clone();
        svc.spec.get_or_insert_default().cluster_ip = Some("10.0.0.7".into());
        assert!(service_matches(&svc, &d.service));
        assert!(!needs_recreate(&svc, &d.service));
        svc.spec.get_or_insert_default().cluster_ip = Some("None".into());
        assert!(needs_recreate(&svc, &d.service));
    }

    #[test]
    fn objects_are_named_placed_labelled_and_owned_by_the_workergroup() {
        let mut g = wg();
        g.spec.discovery.headless = true;
        let d = desired(
            &g,
            &[w(1001, "idle", Some("http://203.0.113.1:40001"))],
            false,
            &EndpointPolicy::default(),
        );
        let owner = |m: &ObjectMeta| -> Vec<(String, String, String, Option<bool>)> {
            m.owner_references
                .iter()
                .flatten()
                .map(|o| (o.kind.clone(), o.name.clone(), o.uid.clone(), o.controller))
                .collect()
        };
        let ours = [(
            "WorkerGroup".to_string(),
            "llm".to_string(),
            "u-1".to_string(),
            Some(true),
        )];
        let svc = &d.service.metadata;
        assert_eq!(svc.name.as_deref(), Some("llm"));
        assert_eq!(svc.namespace.as_deref(), Some("ai"));
        assert_eq!(owner(svc), ours);
        let labels = svc.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(LABEL_WORKERGROUP).map(String::as_str),
            Some("llm")
        );
        assert_eq!(
            labels.get(LABEL_MANAGED_BY_APP).map(String::as_str),
            Some(APP_MANAGER)
        );
        let spec = d.service.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless");
        assert!(owned_by(&d.service, &g));

        let slice = &d.slices["llm-v4-40001-0"];
        assert_eq!(slice.metadata.name.as_deref(), Some("llm-v4-40001-0"));
        assert_eq!(slice.metadata.namespace.as_deref(), Some("ai"));
        assert_eq!(owner(&slice.metadata), ours);
        assert!(owned_by(slice, &g));
        assert_eq!(slice.endpoints[0].hostname.as_deref(), Some("w1001"));
        let headless_label = |s: &EndpointSlice| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HEADLESS_LABEL))
                .cloned()
        };
        assert_eq!(
            headless_label(slice),
            Some(String::new()),
            "kube-proxy skips it"
        );
        let headless_slice = slice.clone();

        // Not headless: the cluster assigns an address, and endpoints have no hostname.
        let d = desired(
            &wg(),
            &[w(1001, "idle", Some("http://203.0.113.1:40001"))],
            false,
            &EndpointPolicy::default(),
        );
        assert_eq!(d.service.spec.as_ref().expect("spec").cluster_ip, None);
        assert_eq!(d.slices["llm-v4-40001-0"].endpoints[0].hostname, None);
        let slice = &d.slices["llm-v4-40001-0"];
        assert_eq!(headless_label(slice), None, "kube-proxy programs it");
        // A slice left labelled headless is rewritten, even with the same endpoints.
        let mut left = headless_slice;
        left.endpoints = slice.endpoints.clone();
        assert!(!slice_matches(&KeptSlice::of(&left), slice));
        assert!(slice_matches(&KeptSlice::of(slice), slice));
        let mut unlabelled = slice.clone();
        unlabelled.endpoints[0].hostname = Some("w1001".into());
        let mut want_headless = unlabelled.clone();
        want_headless
            .metadata
            .labels
            .get_or_insert_default()
            .insert(HEADLESS_LABEL.into(), String::new());
        assert!(
            !slice_matches(&KeptSlice::of(&unlabelled), &want_headless),
            "a headless slice without the label gets it"
        );
    }

    #[test]
    fn worker_hostnames_are_dns_labels() {
        assert_eq!(worker_hostname(1001), "w1001");
        assert_eq!(worker_hostname(0), "w0");
        assert_eq!(worker_hostname(-7), "wm7");
    }

    #[test]
    fn ownership_is_by_uid_and_needs_one() {
        let g = wg();
        let d = desired(&g, &[], false, &EndpointPolicy::default());
        assert!(owned_by(&d.service, &g));
        let mut other = d.service.clone();
        for o in other.metadata.owner_references.iter_mut().flatten() {
            o.uid = "u-2".into();
        }
        assert!(
            !owned_by(&other, &g),
            "another WorkerGroup's (same name, new uid)"
        );
        let mut unowned = d.service.clone();
        unowned.metadata.owner_references = None;
        assert!(!owned_by(&unowned, &g));
        // A WorkerGroup without a uid (not yet stored) owns nothing, not even an object
        // whose owner reference has an empty uid.
        let mut no_uid = wg();
        no_uid.metadata.uid = None;
        let mut blank = d.service.clone();
        for o in blank.metadata.owner_references.iter_mut().flatten() {
            o.uid = String::new();
        }
        assert!(!owned_by(&blank, &no_uid));
        assert!(!owned_by(&d.service, &no_uid));
    }

    #[test]
    fn only_objects_whose_owners_are_all_an_earlier_workergroup_of_the_name_are_left_by_it() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let at = |t: &str| Some(Time(t.parse().expect("a timestamp")));
        let mut g = wg();
        g.metadata.creation_timestamp = at("2026-12-03T18:34:20Z");
        let d = desired(&g, &[], false, &EndpointPolicy::default());
        let with_owners = |edit: &dyn Fn(&mut Vec<OwnerReference>)| {
            let mut s = d.service.clone();
            s.metadata.creation_timestamp = at("2026-12-03T18:28:38Z");
            let mut refs = s.metadata.owner_references.clone().unwrap_or_default();
            edit(&mut refs);
            s.metadata.owner_references = Some(refs);
            s
        };
        let earlier = with_owners(&|r| r[0].uid = "u-earlier".into());
        assert!(left_by_earlier(&earlier, &g));
        assert!(!left_by_earlier(&d.service, &g), "its own: not left");
        let other_name = with_owners(&|r| {
            r[0].uid = "u-earlier".into();
            r[0].name = "another".into();
        });
        assert!(!left_by_earlier(&other_name, &g), "another WorkerGroup's");
        let other_kind = with_owners(&|r| {
            r[0].uid = "u-earlier".into();
            r[0].kind = "Deployment".into();
            r[0].api_version = "apps/v1".into();
        });
        assert!(!left_by_earlier(&other_kind, &g));
        let other_group = with_owners(&|r| {
            r[0].uid = "u-earlier".into();
            r[0].api_version = "example.com/v1".into();
        });
        assert!(
            !left_by_earlier(&other_group, &g),
            "a WorkerGroup of another API"
        );
        let shared = with_owners(&|r| {
            r[0].uid = "u-earlier".into();
            r.push(OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "keep".into(),
                uid: "u-cm".into(),
                ..Default::default()
            });
        });
        assert!(!left_by_earlier(&shared, &g), "someone else owns it too");
        let mut unowned = d.service.clone();
        unowned.metadata.owner_references = None;
        assert!(!left_by_earlier(&unowned, &g));
        let mut no_uid = g.clone();
        no_uid.metadata.uid = None;
        assert!(!left_by_earlier(&earlier, &no_uid));
        // A stale view: the WorkerGroup at hand is the earlier one, the object is the
        // new one's (made after it), or made within the same second, or without a time.
        let mut stale = g.clone();
        stale.metadata.creation_timestamp = at("2026-12-03T18:20:00Z");
        assert!(
            !left_by_earlier(&earlier, &stale),
            "younger than the WorkerGroup"
        );
        let mut same_second = earlier.clone();
        same_second.metadata.creation_timestamp = g.metadata.creation_timestamp.clone();
        assert!(!left_by_earlier(&same_second, &g));
        let mut untimed = earlier.clone();
        untimed.metadata.creation_timestamp = None;
        assert!(!left_by_earlier(&untimed, &g));
    }

    #[test]
    fn a_service_matches_only_with_our_labels_mode_ports_and_no_selector() {
        let d = desired(&wg(), &[], false, &EndpointPolicy::default());
        let want = &d.service;
        assert!(service_matches(want, want));
        let mut no_label = want.clone();
        no_label
            .metadata
            .labels
            .get_or_insert_default()
            .remove(LABEL_WORKERGROUP);
        assert!(!service_matches(&no_label, want), "label missing");
        let mut headless = want.clone();
        headless.spec.get_or_insert_default().cluster_ip = Some("None".into());
        assert!(
            !service_matches(&headless, want),
            "headless, ClusterIP wanted"
        );
        assert!(
            !service_matches(want, &headless),
            "ClusterIP, headless wanted"
        );
        let mut selector = want.clone();
        selector.spec.get_or_insert_default().selector =
            Some(BTreeMap::from([("app".into(), "llm".into())]));
        assert!(
            !service_matches(&selector, want),
            "a selector is someone else's"
        );
        let mut port = want.clone();
        for p in port.spec.get_or_insert_default().ports.iter_mut().flatten() {
            p.port = 9090;
        }
        assert!(!service_matches(&port, want), "another port");
        let mut no_spec = want.clone();
        no_spec.spec = None;
        assert!(!service_matches(&no_spec, want));
        // Slices too need our labels.
        let want = &one_ready_slice();
        let mut no_label = want.clone();
        no_label.metadata.labels = None;
        assert!(!slice_matches(&KeptSlice::of(&no_label), want));
    }

    #[test]
    fn the_reason_lists_skips_then_refusals_and_nothing_else() {
        let skipped_only = select(&[w(1, "idle", None)], &EndpointPolicy::default());
        assert_eq!(skipped_reason(&skipped_only), "1 worker without URL");
        let both = select(
            &[
                w(1, "idle", None),
                w(2, "idle", None),
                w(3, "idle", Some("http://10.96.0.1:443")),
            ],
            &EndpointPolicy::default(),
        );
        assert_eq!(
            skipped_reason(&both),
            format!("2 workers without URL; {}", refused_summary(&both))
        );
        assert!(!refused_summary(&both).is_empty());
    }
}
