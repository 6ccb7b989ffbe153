//! Publishing: brings the Service and slices of a WorkerGroup to what [`desired`] says,
//! with the fewest writes.
//!
//! [`desired`]: super::desired()

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::{Client, Resource, ResourceExt};

use super::desired::{
    Desired, KeptSlice, Seen, desired, left_by_earlier, needs_recreate, owned_by,
    replaced_by_another, service_matches, service_name, service_name_problem, skipped_reason,
    slice_matches, workergroup_label,
};
use super::{LABEL_WORKERGROUP, MANAGED_BY, SLICE_MANAGED_BY_LABEL, Stores};
use crate::crd::{DiscoveryStatus, WorkerGroup, WorkerStatus};
use crate::reasons::Reason;
use crate::runtime::fair::WriteGate;
use crate::sync::EndpointPolicy;
use crate::text::cut;

/// What publishing did for one WorkerGroup.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// `status.discovery` (None when disabled).
    pub status: Option<DiscoveryStatus>,
    /// A conflict or failure message, when publishing did not fully succeed.
    pub problem: Option<(Reason, String)>,
    /// Writes made (creates, applies, deletes).
    pub writes: u32,
}

/// Brings the Service and slices of `wg` to match the `workers` that `policy` lets
/// through (all not ready when `stale`), with the fewest writes. Every request waits at
/// `gate` first (a publish that finds everything in place makes none, and never waits);
/// once the gate refuses, nothing more is written.
pub async fn publish(
    gate: &impl WriteGate,
    client: &Client,
    stores: &Stores,
    wg: &WorkerGroup,
    workers: &[WorkerStatus],
    stale: bool,
    policy: &EndpointPolicy,
) -> Published {
    let mut w = Writer::new(client, wg, gate);
    let services = stores.ours_services(wg);
    let slices = stores.ours_slices(wg);
    if !wg.spec.discovery.enabled {
        w.remove_all(&services, &slices).await;
        return w.finish(None);
    }
    if let Some(problem) = service_name_problem(wg) {
        // Nothing can be created under that name: say so once, write nothing.
        return Published {
            status: Some(DiscoveryStatus {
                service_name: service_name(wg),
                endpoints: 0,
                skipped: 0,
                refused: 0,
                reason: cut(problem.clone(), 1024),
            }),
            problem: Some((Reason::InvalidServiceName, problem)),
            writes: w.writes,
        };
    }
    let want = desired(wg, workers, stale, policy);
    let service_ok = w.ensure_service(&services, &want).await;
    if w.writes > 0 {
        crate::runtime::failpoints::crash_point!("crash-after-service");
    }
    let before = w.writes;
    if w.replaced_earlier || stores.namesake_slices(wg) {
        w.remove_earlier_slices().await;
    }
    w.ensure_slices(&slices, &want, service_ok).await;
    if w.writes > before {
        crate::runtime::failpoints::crash_point!("crash-after-slices");
    }
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
struct Writer<'a, G> {
    wg: &'a WorkerGroup,
    gate: &'a G,
    /// The gate refused: nothing more is written (and the status is not either).
    refused: bool,
    services: Api<Service>,
    slices: Api<EndpointSlice>,
    post: PostParams,
    writes: u32,
    problems: Vec<String>,
    conflict: bool,
    /// Whether a Service left by an earlier WorkerGroup of this name was replaced: its
    /// slices go too (the slice cache may not hold them yet).
    replaced_earlier: bool,
}

impl<'a, G: WriteGate> Writer<'a, G> {
    fn new(client: &Client, wg: &'a WorkerGroup, gate: &'a G) -> Self {
        let ns = wg.namespace().unwrap_or_default();
        Self {
            wg,
            gate,
            refused: false,
            services: Api::namespaced(client.clone(), &ns),
            slices: Api::namespaced(client.clone(), &ns),
            post: PostParams {
                field_manager: Some(crate::shared::FIELD_MANAGER.into()),
                ..Default::default()
            },
            writes: 0,
            problems: Vec::new(),
            conflict: false,
            replaced_earlier: false,
        }
    }

    /// Waits at the gate before a request; false (and everything after it refused too)
    /// when it refuses.
    async fn may_write(&mut self) -> bool {
        if !self.refused && !self.gate.enter().await {
            self.refused = true;
            self.problems.push("not written: the gate refused".into());
        }
        !self.refused
    }

    /// Discovery is off: everything of ours goes.
    async fn remove_all(&mut self, services: &[Arc<Service>], slices: &[Arc<KeptSlice>]) {
        let (svc_api, slice_api) = (self.services.clone(), self.slices.clone());
        for s in services {
            self.delete(&svc_api, &Seen::of(&**s)).await;
        }
        for s in slices {
            self.delete(&slice_api, &s.seen).await;
        }
    }

    /// Deletes our Services under other names (a rename), then creates, updates or
    /// recreates (headless switch) the wanted one; returns whether it is in place.
    async fn ensure_service(&mut self, ours: &[Arc<Service>], want: &Desired) -> bool {
        let api = self.services.clone();
        let name = service_name(self.wg);
        for s in ours.iter().filter(|s| s.name_any() != name) {
            self.delete(&api, &Seen::of(&**s)).await;
        }
        match ours.iter().find(|s| s.name_any() == name) {
            Some(cur) if service_matches(cur, &want.service) => true,
            Some(cur) if !needs_recreate(cur, &want.service) => {
                self.update(&api, &want.service, &Seen::of(&**cur)).await
            }
            found => {
                if let Some(cur) = found {
                    self.delete(&api, &Seen::of(&**cur)).await;
                }
                self.create(&api, &want.service, needs_recreate).await
            }
        }
    }

    /// Deletes the slices an earlier WorkerGroup of this name left ([`left_by_earlier`];
    /// the garbage collector behind): labelled with its Service's name, they would route
    /// that name's traffic to the earlier workers. One list, made only when the slice
    /// cache holds slices of another owner of this name or this poll replaced such a
    /// Service, so the sweep is tried again at every poll until they are gone (a failed
    /// list or delete, a crash after the Service, a collector that took the Service but
    /// not the slices).
    async fn remove_earlier_slices(&mut self) {
        // The list is a read: only the deletes ask the gate.
        let api = self.slices.clone();
        let lp = ListParams::default().labels(&format!(
            "{LABEL_WORKERGROUP}={},{SLICE_MANAGED_BY_LABEL}={MANAGED_BY}",
            workergroup_label(&self.wg.name_any())
        ));
        match api.list(&lp).await {
            Ok(list) => {
                for slice in list.items.iter().filter(|s| left_by_earlier(*s, self.wg)) {
                    self.delete(&api, &Seen::of(slice)).await;
                }
            }
            Err(e) => self.problems.push(format!(
                "cannot list the EndpointSlices an earlier WorkerGroup {} left: {e}",
                self.wg.name_any()
            )),
        }
    }

    /// Deletes our slices that are not wanted (whatever happened to the Service: a slice
    /// left labelled with an old Service name would route that name's traffic to the
    /// workers), and all of them when the Service name is held by someone else; creates
    /// or updates the wanted ones once the Service is in place.
    async fn ensure_slices(&mut self, ours: &[Arc<KeptSlice>], want: &Desired, service_ok: bool) {
        let api = self.slices.clone();
        let existing: BTreeMap<&String, &KeptSlice> =
            ours.iter().map(|s| (&s.seen.name, &**s)).collect();
        let wanted: BTreeSet<&String> = want.slices.keys().collect();
        for (_, cur) in existing.iter().filter(|(n, _)| !wanted.contains(*n)) {
            self.delete(&api, &cur.seen).await;
        }
        if !service_ok {
            if self.conflict {
                // The Service name is someone else's: our slices, labelled with it,
                // would route that Service's traffic to our workers. They all go.
                for (_, cur) in existing.iter().filter(|(n, _)| wanted.contains(*n)) {
                    self.delete(&api, &cur.seen).await;
                }
            }
            return;
        }
        for (name, slice) in &want.slices {
            match existing.get(name) {
                Some(cur) if slice_matches(cur, slice) => {}
                Some(cur) => {
                    self.update(&api, slice, &cur.seen).await;
                }
                None => {
                    self.create(&api, slice, |_, _| false).await;
                }
            }
        }
    }

    /// The result: `status.discovery` (for `Some(desired, service in place)`) and the
    /// problem, if any.
    fn finish(self, published: Option<(&Desired, bool)>) -> Published {
        let problem = (!self.problems.is_empty()).then(|| {
            let reason = if self.conflict {
                Reason::DiscoveryConflict
            } else {
                Reason::DiscoveryFailed
            };
            (reason, self.problems.join("; "))
        });
        let status = published.map(|(want, service_ok)| {
            let skipped = skipped_reason(&want.selection);
            let reason = match (&problem, skipped.is_empty()) {
                (None, _) => skipped,
                (Some((_, text)), true) => text.clone(),
                (Some((_, text)), false) => format!("{text}; {skipped}"),
            };
            DiscoveryStatus {
                service_name: service_name(self.wg),
                endpoints: if service_ok { want.endpoints } else { 0 },
                skipped: want.selection.skipped.values().sum(),
                refused: want.selection.refused.len() as i64,
                reason: cut(reason, 1024),
            }
        });
        Published {
            status,
            problem,
            writes: self.writes,
        }
    }

    /// Creates `obj` with a plain POST, so that an object of that name, whoever made it
    /// and whenever, is never taken over: the apiserver answers 409. One left by an
    /// earlier WorkerGroup of this name ([`left_by_earlier`]) is deleted and `obj` created
    /// again. One of ours that
    /// the store has not seen (owned by this WorkerGroup's uid) is updated in place, or,
    /// when `recreate(found, obj)` says an update cannot make it so (a Service of the
    /// other headless kind), deleted and created again; anyone else's is a conflict and
    /// left alone. Returns whether `obj` is in place.
    async fn create<K: Object>(
        &mut self,
        api: &Api<K>,
        obj: &K,
        recreate: fn(&K, &K) -> bool,
    ) -> bool {
        if !self.may_write().await {
            return false;
        }
        let name = obj.meta().name.clone().unwrap_or_default();
        let kind = K::kind(&());
        match api.create(&self.post, obj).await {
            Ok(_) => {
                self.writes += 1;
                true
            }
            Err(kube::Error::Api(s)) if s.code == 409 => match api.get_opt(&name).await {
                Ok(Some(cur))
                    if left_by_earlier(&cur, self.wg)
                        && cur.meta().deletion_timestamp.is_some() =>
                {
                    // Being deleted already (a finalizer holds it): created once it is
                    // gone, at a later poll.
                    self.problems.push(format!(
                        "{kind} {name}, left by an earlier WorkerGroup of this name, is still being deleted"
                    ));
                    false
                }
                Ok(Some(cur))
                    if (owned_by(&cur, self.wg) && recreate(&cur, obj))
                        || left_by_earlier(&cur, self.wg) =>
                {
                    if left_by_earlier(&cur, self.wg) {
                        tracing::info!(kind = %kind, name = %name, "left by an earlier WorkerGroup of this name, not yet collected by the garbage collector: replaced");
                        self.replaced_earlier = true;
                    }
                    self.delete(api, &Seen::of(&cur)).await;
                    match api.create(&self.post, obj).await {
                        Ok(_) => {
                            self.writes += 1;
                            true
                        }
                        // Not gone yet (a finalizer): created again at a later poll.
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            self.problems.push(format!(
                                "{kind} {name} is being deleted to be made again; not gone yet"
                            ));
                            false
                        }
                        Err(e) => {
                            self.problems
                                .push(format!("cannot create {kind} {name}: {e}"));
                            false
                        }
                    }
                }
                Ok(Some(cur)) if owned_by(&cur, self.wg) => {
                    self.update(api, obj, &Seen::of(&cur)).await
                }
                Ok(Some(_)) => {
                    self.conflict = true;
                    self.problems.push(format!(
                        "{kind} {name} exists and is not managed by this WorkerGroup"
                    ));
                    false
                }
                // Deleted meanwhile: created at the next poll.
                Ok(None) => {
                    self.problems.push(format!(
                        "{kind} {name} was deleted while being created; made at the next poll"
                    ));
                    false
                }
                Err(e) => {
                    self.problems
                        .push(format!("cannot read {kind} {name}: {e}"));
                    false
                }
            },
            Err(e) => {
                self.problems
                    .push(format!("cannot create {kind} {name}: {e}"));
                false
            }
        }
    }

    /// Replaces `seen`, an object of ours, with `obj`. The objects are wholly ours, so a
    /// replace (not a merge) leaves nothing behind that is no longer wanted, and its
    /// body carries `seen`'s uid and resourceVersion as preconditions: an object deleted
    /// and recreated by someone else under the same name is refused, never taken over.
    /// Returns whether it worked.
    async fn update<K: Object>(&mut self, api: &Api<K>, obj: &K, seen: &Seen) -> bool {
        if !self.may_write().await {
            return false;
        }
        let name = obj.meta().name.clone().unwrap_or_default();
        let kind = K::kind(&());
        let body = update_body(obj, seen);
        match api.replace(&name, &self.post, &body).await {
            Ok(_) => {
                self.writes += 1;
                true
            }
            // A precondition failed: which one, the object under the name tells.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let now = api.get_opt(&name).await.ok().flatten();
                if replaced_by_another(seen, now.as_ref(), self.wg) {
                    self.conflict = true;
                    self.problems.push(format!(
                        "{kind} {name} was replaced by an object this WorkerGroup does not own"
                    ));
                } else {
                    // Changed since the store saw it (it catches up by the next poll).
                    tracing::debug!(kind = %kind, name = %name, "changed since read; updated at the next poll");
                }
                false
            }
            Err(e) => {
                self.problems
                    .push(format!("cannot write {kind} {name}: {e}"));
                false
            }
        }
    }

    /// Deletes the object seen (uid precondition), not one recreated under its name.
    async fn delete<K: Object>(&mut self, api: &Api<K>, seen: &Seen) {
        if !self.may_write().await {
            return;
        }
        let name = &seen.name;
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: seen.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => self.writes += 1,
            // Gone, or replaced by someone else's: nothing of ours to delete.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => self
                .problems
                .push(format!("cannot delete {} {name}: {e}", K::kind(&()))),
        }
    }
}

/// The replace body of `obj` for the existing object `seen`: its uid and resourceVersion
/// as preconditions (409 when the object is another one, or changed since).
pub fn update_body<K: Resource + Clone>(obj: &K, seen: &Seen) -> K {
    let mut body = obj.clone();
    body.meta_mut().uid = seen.uid.clone();
    body.meta_mut().resource_version = seen.resource_version.clone();
    body
}
