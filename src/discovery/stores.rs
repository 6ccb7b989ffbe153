//! Watches of the Services and EndpointSlices the operator manages, so that publishing
//! reads what exists without a request per poll.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use super::desired::owned_by;
use super::{APP_MANAGER, LABEL_MANAGED_BY_APP, MANAGED_BY, SLICE_MANAGED_BY_LABEL};
use crate::crd::WorkerGroup;
use crate::runtime::listed::Listed;
use crate::runtime::metrics::Metrics;

/// Watches of the Services and EndpointSlices the operator manages.
#[derive(Clone)]
pub struct Stores {
    pub(super) services: Store<Service>,
    pub(super) slices: Store<EndpointSlice>,
    service_owners: OwnerIndex<Service>,
    slice_owners: OwnerIndex<EndpointSlice>,
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
        let (services_listed, slices_listed) = (Listed::default(), Listed::default());
        let (service_owners, slice_owners) = (OwnerIndex::default(), OwnerIndex::default());
        let handles = vec![
            tokio::spawn(
                watcher(svc_api, svc_cfg)
                    .default_backoff()
                    .modify(|s: &mut Service| {
                        s.metadata.managed_fields = None;
                        s.metadata.annotations = None;
                        s.status = None;
                    })
                    .reflect(svc_writer)
                    .for_each(
                        service_owners
                            .clone()
                            .updater("Services", services_listed.clone()),
                    ),
            ),
            tokio::spawn(
                watcher(slice_api, slice_cfg)
                    .default_backoff()
                    .modify(|s: &mut EndpointSlice| {
                        s.metadata.managed_fields = None;
                        s.metadata.annotations = None;
                    })
                    .reflect(slice_writer)
                    .for_each(
                        slice_owners
                            .clone()
                            .updater("EndpointSlices", slices_listed.clone()),
                    ),
            ),
        ];
        (
            Self {
                services,
                slices,
                service_owners,
                slice_owners,
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

    /// Our Services owned by `wg`, found through the owner index (no scan).
    pub(super) fn ours_services(&self, wg: &WorkerGroup) -> Vec<Arc<Service>> {
        self.service_owners.owned(&self.services, wg)
    }

    /// Our EndpointSlices owned by `wg`, likewise.
    pub(super) fn ours_slices(&self, wg: &WorkerGroup) -> Vec<Arc<EndpointSlice>> {
        self.slice_owners.owned(&self.slices, wg)
    }
}

/// Objects by the uid of the WorkerGroup that owns them, kept from the watch events.
struct OwnerIndex<K: Resource<DynamicType = ()>>(Arc<RwLock<Index<K>>>);

impl<K: Resource<DynamicType = ()>> Clone for OwnerIndex<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: Resource<DynamicType = ()>> Default for OwnerIndex<K> {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(Index {
            live: Owners::default(),
            relist: None,
        })))
    }
}

struct Index<K: Resource<DynamicType = ()>> {
    live: Owners<K>,
    /// During a (re)list: the index being built.
    relist: Option<Owners<K>>,
}

/// Owner uid -> objects, and back.
struct Owners<K: Resource<DynamicType = ()>> {
    by_owner: HashMap<String, HashSet<ObjectRef<K>>>,
    of_object: HashMap<ObjectRef<K>, Vec<String>>,
}

impl<K: Resource<DynamicType = ()>> Default for Owners<K> {
    fn default() -> Self {
        Self {
            by_owner: HashMap::new(),
            of_object: HashMap::new(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Owners<K> {
    fn put(&mut self, obj: &K) {
        let key = ObjectRef::from_obj(obj);
        self.remove(&key);
        let uids: Vec<String> = owner_uids(obj).collect();
        for uid in &uids {
            self.by_owner
                .entry(uid.clone())
                .or_default()
                .insert(key.clone());
        }
        self.of_object.insert(key, uids);
    }

    fn remove(&mut self, key: &ObjectRef<K>) {
        for uid in self.of_object.remove(key).unwrap_or_default() {
            if let Some(set) = self.by_owner.get_mut(&uid) {
                set.remove(key);
                if set.is_empty() {
                    self.by_owner.remove(&uid);
                }
            }
        }
    }
}

fn owner_uids<K: Resource>(obj: &K) -> impl Iterator<Item = String> + '_ {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.kind == "WorkerGroup")
        .map(|r| r.uid.clone())
}

impl<K> OwnerIndex<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn apply(&self, event: &watcher::Event<K>) {
        let mut o = self.0.write();
        match event {
            watcher::Event::Init => o.relist = Some(Owners::default()),
            watcher::Event::InitApply(obj) => o.relist.get_or_insert_default().put(obj),
            watcher::Event::InitDone => {
                if let Some(fresh) = o.relist.take() {
                    o.live = fresh;
                }
            }
            watcher::Event::Apply(obj) => o.live.put(obj),
            watcher::Event::Delete(obj) => o.live.remove(&ObjectRef::from_obj(obj)),
        }
    }

    /// The objects in `store` owned by `wg` (checked again against the object).
    fn owned(&self, store: &Store<K>, wg: &WorkerGroup) -> Vec<Arc<K>> {
        let Some(uid) = wg.meta().uid.as_deref() else {
            return Vec::new();
        };
        let ns = wg.namespace();
        let o = self.0.read();
        o.live
            .by_owner
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|key| store.get(key))
            .filter(|obj| obj.namespace() == ns && owned_by(&**obj, wg))
            .collect()
    }

    /// A `for_each` step: keeps the index, sets `listed` once the store holds a list
    /// (the reflector has applied each event before this step sees it), and logs watch
    /// errors.
    fn updater(
        self,
        what: &'static str,
        listed: Listed,
    ) -> impl FnMut(Result<watcher::Event<K>, watcher::Error>) -> futures::future::Ready<()> {
        move |ev| {
            match &ev {
                Ok(event) => {
                    self.apply(event);
                    if matches!(event, watcher::Event::InitDone) {
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
    use super::*;

    fn slice(name: &str, owners: &[&str]) -> EndpointSlice {
        let refs: Vec<serde_json::Value> = owners
            .iter()
            .map(|u| serde_json::json!({"apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup", "name": "g", "uid": u}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "ownerReferences": refs},
            "addressType": "IPv4", "endpoints": []
        }))
        .expect("slice")
    }

    fn owned(o: &Owners<EndpointSlice>, uid: &str) -> Vec<String> {
        let mut v: Vec<String> = o
            .by_owner
            .get(uid)
            .into_iter()
            .flatten()
            .map(|r| r.name.clone())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_owner_index_follows_applies_moves_and_deletes() {
        let mut o = Owners::<EndpointSlice>::default();
        o.put(&slice("a", &["u1"]));
        o.put(&slice("b", &["u1"]));
        o.put(&slice("c", &["u2"]));
        assert_eq!(owned(&o, "u1"), ["a", "b"]);
        o.put(&slice("b", &["u2"]));
        assert_eq!(owned(&o, "u1"), ["a"]);
        assert_eq!(owned(&o, "u2"), ["b", "c"]);
        o.remove(&ObjectRef::from_obj(&slice("a", &[])));
        assert!(owned(&o, "u1").is_empty());
        assert!(!o.by_owner.contains_key("u1"), "empty owners go");
    }
}
