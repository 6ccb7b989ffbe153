//! Publishing: brings the Service and slices of a WorkerGroup to what [`desired`] says,
//! with the fewest writes.
//!
//! [`desired`]: super::desired()

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};

use super::Stores;
use super::desired::{
    Desired, desired, needs_recreate, owned_by, service_matches, service_name, skipped_reason,
    slice_matches,
};
use crate::crd::{DiscoveryStatus, WorkerGroup, WorkerStatus};
use crate::text::cut;

/// What publishing did for one WorkerGroup.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// `status.discovery` (None when disabled).
    pub status: Option<DiscoveryStatus>,
    /// A conflict or failure message, when publishing did not fully succeed.
    pub problem: Option<(&'static str, String)>,
    /// Writes made (creates, applies, deletes).
    pub writes: u32,
}

/// Brings the Service and slices of `wg` to match `workers` (all not ready when
/// `stale`), with the fewest writes.
pub async fn publish(
    client: &Client,
    stores: &Stores,
    wg: &WorkerGroup,
    workers: &[WorkerStatus],
    stale: bool,
) -> Published {
    let mut w = Writer::new(client, wg);
    let services = stores.ours_services(wg);
    let slices = stores.ours_slices(wg);
    if !wg.spec.discovery.enabled {
        w.remove_all(&services, &slices).await;
        return w.finish(None);
    }
    let want = desired(wg, workers, stale);
    let service_ok = w.ensure_service(&services, &want).await;
    w.ensure_slices(&slices, &want, service_ok).await;
    w.finish(Some((&want, service_ok)))
}

/// The kinds published (Services and EndpointSlices).
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

/// The writes of one publish, and what went wrong.
struct Writer<'a> {
    wg: &'a WorkerGroup,
    services: Api<Service>,
    slices: Api<EndpointSlice>,
    apply: PatchParams,
    writes: u32,
    problems: Vec<String>,
    conflict: bool,
}

impl<'a> Writer<'a> {
    fn new(client: &Client, wg: &'a WorkerGroup) -> Self {
        let ns = wg.namespace().unwrap_or_default();
        Self {
            wg,
            services: Api::namespaced(client.clone(), &ns),
            slices: Api::namespaced(client.clone(), &ns),
            apply: PatchParams::apply(crate::FIELD_MANAGER).force(),
            writes: 0,
            problems: Vec::new(),
            conflict: false,
        }
    }

    /// Discovery is off: everything of ours goes.
    async fn remove_all(&mut self, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) {
        let (svc_api, slice_api) = (self.services.clone(), self.slices.clone());
        for s in services {
            self.delete(&svc_api, &s.name_any()).await;
        }
        for s in slices {
            self.delete(&slice_api, &s.name_any()).await;
        }
    }

    /// Deletes our Services under other names (a rename), then creates, updates or
    /// recreates (headless switch) the wanted one; returns whether it is in place.
    async fn ensure_service(&mut self, ours: &[Arc<Service>], want: &Desired) -> bool {
        let api = self.services.clone();
        let name = service_name(self.wg);
        for s in ours.iter().filter(|s| s.name_any() != name) {
            self.delete(&api, &s.name_any()).await;
        }
        match ours.iter().find(|s| s.name_any() == name) {
            Some(cur) if service_matches(cur, &want.service) => true,
            Some(cur) if !needs_recreate(cur, &want.service) => {
                self.apply(&api, &want.service).await
            }
            found => {
                if found.is_some() {
                    self.delete(&api, &name).await;
                }
                self.create(&api, &want.service).await
            }
        }
    }

    /// Deletes our slices that are not wanted (whatever happened to the Service: a slice
    /// left labelled with an old Service name would route that name's traffic to the
    /// workers); creates or updates the wanted ones once the Service is in place.
    async fn ensure_slices(
        &mut self,
        ours: &[Arc<EndpointSlice>],
        want: &Desired,
        service_ok: bool,
    ) {
        let api = self.slices.clone();
        let existing: BTreeMap<String, &Arc<EndpointSlice>> =
            ours.iter().map(|s| (s.name_any(), s)).collect();
        let wanted: BTreeSet<&String> = want.slices.keys().collect();
        for name in existing.keys().filter(|n| !wanted.contains(n)) {
            self.delete(&api, name).await;
        }
        if !service_ok {
            return;
        }
        for (name, slice) in &want.slices {
            match existing.get(name) {
                Some(cur) if slice_matches(cur, slice) => {}
                Some(_) => {
                    self.apply(&api, slice).await;
                }
                None => {
                    self.create(&api, slice).await;
                }
            }
        }
    }

    /// The result: `status.discovery` (for `Some(desired, service in place)`) and the
    /// problem, if any.
    fn finish(self, published: Option<(&Desired, bool)>) -> Published {
        let problem = (!self.problems.is_empty()).then(|| {
            let reason = if self.conflict {
                "DiscoveryConflict"
            } else {
                "DiscoveryFailed"
            };
            (reason, self.problems.join("; "))
        });
        let status = published.map(|(want, service_ok)| {
            let skipped = skipped_reason(&want.skipped);
            let reason = match (&problem, skipped.is_empty()) {
                (None, _) => skipped,
                (Some((_, text)), true) => text.clone(),
                (Some((_, text)), false) => format!("{text}; {skipped}"),
            };
            DiscoveryStatus {
                service_name: service_name(self.wg),
                endpoints: if service_ok { want.endpoints } else { 0 },
                skipped: want.skipped.values().sum(),
                reason: cut(reason, 1024),
            }
        });
        Published {
            status,
            problem,
            writes: self.writes,
        }
    }

    /// Creates `obj` with server-side apply (so that later applies own, and can remove,
    /// every field) unless the name is taken: an object of ours that the store has not
    /// caught up with is updated, anyone else's is a conflict and left alone. Returns
    /// whether `obj` is in place.
    async fn create<K: Object>(&mut self, api: &Api<K>, obj: &K) -> bool {
        let name = obj.meta().name.clone().unwrap_or_default();
        let kind = K::kind(&());
        match api.get_opt(&name).await {
            Ok(Some(cur)) if !owned_by(&cur, self.wg) => {
                self.conflict = true;
                self.problems.push(format!(
                    "{kind} {name} exists and is not managed by this WorkerGroup"
                ));
                return false;
            }
            Ok(_) => {}
            Err(e) => {
                self.problems
                    .push(format!("cannot read {kind} {name}: {e}"));
                return false;
            }
        }
        self.apply(api, obj).await
    }

    /// Applies `obj` (server-side, forced, our field manager); returns whether it worked.
    async fn apply<K: Object>(&mut self, api: &Api<K>, obj: &K) -> bool {
        let name = obj.meta().name.clone().unwrap_or_default();
        match api
            .patch(&name, &self.apply, &Patch::Apply(&with_kind(obj)))
            .await
        {
            Ok(_) => {
                self.writes += 1;
                true
            }
            Err(e) => {
                self.problems
                    .push(format!("cannot write {} {name}: {e}", K::kind(&())));
                false
            }
        }
    }

    async fn delete<K: Object>(&mut self, api: &Api<K>, name: &str) {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => self.writes += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => self
                .problems
                .push(format!("cannot delete {} {name}: {e}", K::kind(&()))),
        }
    }
}

fn with_kind<K: Resource<DynamicType = ()> + serde::Serialize>(obj: &K) -> serde_json::Value {
    let mut v = serde_json::to_value(obj).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("apiVersion".into(), K::api_version(&()).into());
        o.insert("kind".into(), K::kind(&()).into());
    }
    v
}
