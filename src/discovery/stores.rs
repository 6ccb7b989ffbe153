//! Watches of the Services and EndpointSlices the operator manages, so that publishing
//! reads what exists without a request per poll.
//!
//! The caches keep only what publishing reads, indexed by the uid of the owning
//! WorkerGroup (no scan per reconcile). A Service is kept without its status, annotations
//! and `managedFields`. An EndpointSlice, of which there is about one per worker, is kept
//! as a [`KeptSlice`]: its name, uid, resourceVersion and the [`slice_fingerprint`] of
//! its content; its endpoints, ports and labels are dropped as each watch event arrives.
//! Both watches stream their initial lists where the apiserver can ([`streamed`]).
//!
//! [`slice_fingerprint`]: super::desired::slice_fingerprint

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use parking_lot::RwLock;

use super::desired::KeptSlice;
use super::{APP_MANAGER, LABEL_MANAGED_BY_APP, MANAGED_BY, SLICE_MANAGED_BY_LABEL};
use crate::crd::WorkerGroup;
use crate::runtime::listed::Listed;
use crate::runtime::metrics::Metrics;
use crate::runtime::watch::streamed;

/// Watches of the Services and EndpointSlices the operator manages.
#[derive(Clone)]
pub struct Stores {
    services: Cache<Service>,
    slices: Cache<KeptSlice>,
    services_listed: Listed,
    slices_listed: Listed,
}

impl Stores {
    /// Starts watches of our Services and slices (in `namespace`, or everywhere). Returns
    /// at once; [`Stores::wait_ready`] tells when both have listed. The handles end the
    /// watches when aborted.
    pub fn start(
        client: Client,
        namespace: Option<&str>,
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (svc_api, slice_api) = match namespace {
            Some(ns) => (
                Api::<Service>::namespaced(client.clone(), ns),
                Api::<EndpointSlice>::namespaced(client, ns),
            ),
            None => (Api::all(client.clone()), Api::all(client)),
        };
        let svc_cfg =
            watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY_APP}={APP_MANAGER}"));
        let slice_cfg =
            watcher::Config::default().labels(&format!("{SLICE_MANAGED_BY_LABEL}={MANAGED_BY}"));
        let (services_listed, slices_listed) = (Listed::default(), Listed::default());
        let (services, slices) = (Cache::default(), Cache::default());
        let handles = vec![
            tokio::spawn(
                streamed(svc_api, svc_cfg, "Services")
                    .backoff(crate::runtime::watch::WatchBackoff::default())
                    .for_each(services.clone().updater(
                        "Services",
                        services_listed.clone(),
                        |mut s: Service| {
                            s.metadata.managed_fields = None;
                            s.metadata.annotations = None;
                            s.status = None;
                            s
                        },
                    )),
            ),
            tokio::spawn(
                streamed(slice_api, slice_cfg, "EndpointSlices")
                    .backoff(crate::runtime::watch::WatchBackoff::default())
                    .for_each(slices.clone().updater(
                        "EndpointSlices",
                        slices_listed.clone(),
                        |s: EndpointSlice| KeptSlice::of(&s),
                    )),
            ),
        ];
        (
            Self {
                services,
                slices,
                services_listed,
                slices_listed,
            },
            handles,
        )
    }

    /// Has `metrics` count the objects of both caches at every scrape.
    pub fn count_in(&self, metrics: &Metrics) {
        let services = self.services.clone();
        metrics.count_cache("Service", move || services.len());
        let slices = self.slices.clone();
        metrics.count_cache("EndpointSlice", move || slices.len());
    }

    /// Waits up to `timeout` until both watches have listed, so the stores can be trusted
    /// to hold our objects; false when they have not.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let both = async {
            self.services_listed.wait().await;
            self.slices_listed.wait().await;
        };
        tokio::time::timeout(timeout, both).await.is_ok()
    }

    /// Our Services owned by `wg` (in its namespace), found through the owner index.
    pub fn ours_services(&self, wg: &WorkerGroup) -> Vec<Arc<Service>> {
        self.services.owned(wg)
    }

    /// What is kept of our EndpointSlices owned by `wg`, likewise.
    pub fn ours_slices(&self, wg: &WorkerGroup) -> Vec<Arc<KeptSlice>> {
        self.slices.owned(wg)
    }

    /// Whether some of our EndpointSlices in `wg`'s namespace are owned by another
    /// WorkerGroup of `wg`'s name: publishing then looks for those its earlier self left.
    pub fn namesake_slices(&self, wg: &WorkerGroup) -> bool {
        self.slices.owned_by_namesake(wg)
    }
}

/// Namespace and name.
type Key = (String, String);

/// The kept form of each watched object, by key and by the uid of each WorkerGroup
/// owning it, kept from the watch events. During a (re)list the new contents are built
/// aside and swapped in at its end, as kube-runtime's reflector does.
struct Cache<V>(Arc<RwLock<Index<V>>>);

impl<V> Clone for Cache<V> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(Index {
            live: Objects::default(),
            relist: None,
        })))
    }
}

struct Index<V> {
    live: Objects<V>,
    /// During a (re)list: the contents being built.
    relist: Option<Objects<V>>,
}

struct Entry<V> {
    /// The uids of the WorkerGroups in its ownerReferences (each shared with the
    /// owner index).
    owners: Vec<Arc<str>>,
    kept: Arc<V>,
}

/// Key -> kept object; owner uid -> keys; namespace and owner name -> owner uids. A key
/// and an owner's uid are held once and shared between the maps: with some 20 slices per
/// WorkerGroup, copies of them were a quarter of what the slice cache held.
struct Objects<V> {
    by_key: HashMap<Arc<Key>, Entry<V>>,
    by_owner: HashMap<Arc<str>, Owned>,
    /// The uids of the owners of each name in a namespace: two (or more) when a
    /// WorkerGroup was deleted and created again and the garbage collector has not yet
    /// taken what the earlier one owned. One entry per owner, not per object.
    by_owner_name: HashMap<Key, HashSet<Arc<str>>>,
}

/// The objects of one owner.
struct Owned {
    /// The owner's namespace and name, as the first object to name it gave them.
    named: Key,
    keys: HashSet<Arc<Key>>,
}

impl<V> Default for Objects<V> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            by_owner: HashMap::new(),
            by_owner_name: HashMap::new(),
        }
    }
}

fn key_of<K: Resource>(obj: &K) -> Key {
    (
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default(),
    )
}

impl<V> Objects<V> {
    fn put(&mut self, key: Key, owners: Vec<(String, String)>, kept: V) {
        self.remove(&key);
        let key = Arc::new(key);
        let mut uids = Vec::with_capacity(owners.len());
        for (uid, name) in owners {
            let uid = match self.by_owner.get_key_value(uid.as_str()) {
                Some((shared, _)) => shared.clone(),
                None => Arc::from(uid),
            };
            let by_owner_name = &mut self.by_owner_name;
            self.by_owner
                .entry(uid.clone())
                .or_insert_with(|| {
                    let named = (key.0.clone(), name);
                    by_owner_name
                        .entry(named.clone())
                        .or_default()
                        .insert(uid.clone());
                    Owned {
                        named,
                        keys: HashSet::new(),
                    }
                })
                .keys
                .insert(key.clone());
            uids.push(uid);
        }
        self.by_key.insert(
            key,
            Entry {
                owners: uids,
                kept: Arc::new(kept),
            },
        );
    }

    fn remove(&mut self, key: &Key) {
        let Some(old) = self.by_key.remove(key) else {
            return;
        };
        for uid in old.owners {
            let Some(owned) = self.by_owner.get_mut(&*uid) else {
                continue;
            };
            owned.keys.remove(key);
            if !owned.keys.is_empty() {
                continue;
            }
            let Some(gone) = self.by_owner.remove(&*uid) else {
                continue;
            };
            if let Some(uids) = self.by_owner_name.get_mut(&gone.named) {
                uids.remove(&*uid);
                if uids.is_empty() {
                    self.by_owner_name.remove(&gone.named);
                }
            }
        }
    }
}

/// The uids and names of the WorkerGroups among the owners of `obj`.
fn owner_uids<K: Resource>(obj: &K) -> Vec<(String, String)> {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.kind == "WorkerGroup")
        .map(|r| (r.uid.clone(), r.name.clone()))
        .collect()
}

impl<V> Cache<V> {
    fn apply<K: Resource>(&self, event: watcher::Event<K>, keep: impl Fn(K) -> V) {
        // What is kept is made before the lock is taken: a fingerprint serializes a
        // whole slice, and readers (reconciles) should not wait for that.
        let kept = |obj: K| (key_of(&obj), owner_uids(&obj), keep(obj));
        match event {
            watcher::Event::Init => self.0.write().relist = Some(Objects::default()),
            watcher::Event::InitApply(obj) => {
                let (key, owners, kept) = kept(obj);
                let mut o = self.0.write();
                o.relist.get_or_insert_default().put(key, owners, kept);
            }
            watcher::Event::InitDone => {
                let mut o = self.0.write();
                let old = o
                    .relist
                    .take()
                    .map(|fresh| std::mem::replace(&mut o.live, fresh));
                drop(o);
                // The old contents (every object of a relist) are freed after the lock.
                drop(old);
            }
            watcher::Event::Apply(obj) => {
                let (key, owners, kept) = kept(obj);
                self.0.write().live.put(key, owners, kept);
            }
            watcher::Event::Delete(obj) => self.0.write().live.remove(&key_of(&obj)),
        }
    }

    fn len(&self) -> usize {
        self.0.read().live.by_key.len()
    }

    /// What is kept of the objects in `wg`'s namespace that `wg` owns (by its uid).
    fn owned(&self, wg: &WorkerGroup) -> Vec<Arc<V>> {
        let Some(uid) = wg.meta().uid.as_deref() else {
            return Vec::new();
        };
        let ns = wg.namespace().unwrap_or_default();
        let o = self.0.read();
        o.live
            .by_owner
            .get(uid)
            .into_iter()
            .flat_map(|owned| &owned.keys)
            .filter(|key| key.0 == ns)
            .filter_map(|key| o.live.by_key.get(&**key))
            .map(|e| e.kept.clone())
            .collect()
    }

    /// Whether objects in `wg`'s namespace are owned by another WorkerGroup of `wg`'s
    /// name (another uid): left by an earlier one that the garbage collector has not yet
    /// taken, or, in a stale view, made by a later one. [`left_by_earlier`] tells which.
    ///
    /// [`left_by_earlier`]: super::desired::left_by_earlier
    fn owned_by_namesake(&self, wg: &WorkerGroup) -> bool {
        let (Some(uid), Some(name)) = (wg.meta().uid.as_deref(), wg.meta().name.clone()) else {
            return false;
        };
        let named = (wg.namespace().unwrap_or_default(), name);
        self.0
            .read()
            .live
            .by_owner_name
            .get(&named)
            .is_some_and(|uids| uids.iter().any(|u| &**u != uid))
    }

    /// A `for_each` step: keeps `keep(obj)` of each object, sets `listed` once the cache
    /// holds a list, and logs watch errors.
    fn updater<K: Resource>(
        self,
        what: &'static str,
        listed: Listed,
        keep: impl Fn(K) -> V,
    ) -> impl FnMut(Result<watcher::Event<K>, watcher::Error>) -> futures::future::Ready<()> {
        move |ev| {
            match ev {
                Ok(event) => {
                    let done = matches!(event, watcher::Event::InitDone);
                    self.apply(event, &keep);
                    if done {
                        listed.set();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch of our {what} failed (may the operator list and watch them?); retrying")
                }
            }
            futures::future::ready(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::desired::{Seen, slice_fingerprint, slice_matches};
    use super::*;

    fn slice(name: &str, owners: &[&str], ip: &str) -> EndpointSlice {
        let refs: Vec<serde_json::Value> = owners
            .iter()
            .map(|u| serde_json::json!({"apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup", "name": "g", "uid": u}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                         "resourceVersion": "7", "ownerReferences": refs,
                         "labels": {"endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 40001, "protocol": "TCP"}]
        }))
        .expect("slice")
    }

    fn group(uid: &str, ns: &str) -> WorkerGroup {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
            "metadata": {"name": "g", "namespace": ns, "uid": uid},
            "spec": {"workergroupId": 1, "apiKeySecretRef": {"name": "s"}}
        }))
        .expect("wg")
    }

    fn names(c: &Cache<KeptSlice>, uid: &str) -> Vec<String> {
        let mut v: Vec<String> = c
            .owned(&group(uid, "ns"))
            .iter()
            .map(|k| k.seen.name.clone())
            .collect();
        v.sort();
        v
    }

    fn apply(c: &Cache<KeptSlice>, ev: watcher::Event<EndpointSlice>) {
        c.apply(ev, |s: EndpointSlice| KeptSlice::of(&s));
    }

    #[test]
    fn the_owner_index_follows_applies_moves_and_deletes() {
        let c = Cache::<KeptSlice>::default();
        for (n, o) in [("a", "u1"), ("b", "u1"), ("c", "u2")] {
            apply(&c, watcher::Event::Apply(slice(n, &[o], "192.0.2.1")));
        }
        assert_eq!(names(&c, "u1"), ["a", "b"]);
        apply(&c, watcher::Event::Apply(slice("b", &["u2"], "192.0.2.1")));
        assert_eq!(names(&c, "u1"), ["a"]);
        assert_eq!(names(&c, "u2"), ["b", "c"]);
        apply(&c, watcher::Event::Delete(slice("a", &[], "192.0.2.1")));
        assert!(names(&c, "u1").is_empty());
        assert!(
            !c.0.read().live.by_owner.contains_key("u1"),
            "empty owners go"
        );
        assert_eq!(c.len(), 2);
        // Another namespace's WorkerGroup of the same uid owns nothing here.
        assert!(c.owned(&group("u2", "other")).is_empty());
    }

    #[test]
    fn a_relist_is_swapped_in_whole_at_its_end() {
        let c = Cache::<KeptSlice>::default();
        apply(&c, watcher::Event::Apply(slice("a", &["u1"], "192.0.2.1")));
        apply(&c, watcher::Event::Init);
        apply(
            &c,
            watcher::Event::InitApply(slice("b", &["u1"], "192.0.2.1")),
        );
        assert_eq!(names(&c, "u1"), ["a"], "the old contents until InitDone");
        apply(&c, watcher::Event::InitDone);
        assert_eq!(names(&c, "u1"), ["b"], "a is gone: not in the list");
    }

    #[test]
    fn a_slice_is_kept_as_its_identity_and_fingerprint() {
        let c = Cache::<KeptSlice>::default();
        let full = slice("a", &["u1"], "192.0.2.1");
        apply(&c, watcher::Event::Apply(full.clone()));
        let kept = c.owned(&group("u1", "ns"));
        let kept = &*kept[0];
        assert_eq!(
            kept.seen,
            Seen {
                name: "a".into(),
                uid: Some("uid-a".into()),
                resource_version: Some("7".into()),
            }
        );
        assert_eq!(kept.fingerprint, slice_fingerprint(&full));
        assert!(slice_matches(kept, &full));
        assert!(!slice_matches(kept, &slice("a", &["u1"], "192.0.2.2")));
    }

    #[test]
    fn keys_and_owner_uids_are_held_once() {
        let c = Cache::<KeptSlice>::default();
        for n in ["a", "b"] {
            apply(&c, watcher::Event::Apply(slice(n, &["u1"], "192.0.2.1")));
        }
        let o = c.0.read();
        let (uid, owned) = o.live.by_owner.get_key_value("u1").expect("u1");
        // The index's uid, both entries' owners and the name index's are one
        // allocation...
        assert_eq!(Arc::strong_count(uid), 4);
        for key in &owned.keys {
            // ...and each key is shared by the index and the entry.
            assert_eq!(Arc::strong_count(key), 2);
            let (own, entry) = o.live.by_key.get_key_value(&**key).expect("entry");
            assert!(Arc::ptr_eq(own, key));
            assert!(Arc::ptr_eq(&entry.owners[0], uid));
        }
    }

    #[test]
    fn another_owner_of_the_name_is_found_until_its_last_object_goes() {
        let c = Cache::<KeptSlice>::default();
        let (earlier, again) = (group("u1", "ns"), group("u2", "ns"));
        apply(&c, watcher::Event::Apply(slice("a", &["u2"], "192.0.2.1")));
        assert!(!c.owned_by_namesake(&again), "only its own");
        for n in ["b", "c"] {
            apply(&c, watcher::Event::Apply(slice(n, &["u1"], "192.0.2.1")));
        }
        assert!(c.owned_by_namesake(&again), "u1's slices, under the name g");
        assert!(c.owned_by_namesake(&earlier), "and u2's, seen from u1");
        assert!(
            !c.owned_by_namesake(&group("u2", "other")),
            "another namespace's g"
        );
        apply(&c, watcher::Event::Delete(slice("b", &[], "192.0.2.1")));
        assert!(c.owned_by_namesake(&again), "c is still there");
        // Taken over by u2 (as a replace would): u1 owns nothing any more.
        apply(&c, watcher::Event::Apply(slice("c", &["u2"], "192.0.2.1")));
        assert!(!c.owned_by_namesake(&again));
        apply(&c, watcher::Event::Delete(slice("a", &[], "192.0.2.1")));
        apply(&c, watcher::Event::Delete(slice("c", &[], "192.0.2.1")));
        let o = c.0.read();
        assert!(o.live.by_owner.is_empty() && o.live.by_owner_name.is_empty());
    }
}
