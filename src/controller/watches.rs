//! The watches of WorkerGroups and Secrets. They run for the whole life of the process,
//! on the leader and on a standby alike, so that a standby that takes over has warm
//! caches. While a controller runs (on the leader), they forward what should wake a
//! WorkerGroup to it; on a standby nothing is forwarded.
//!
//! - A WorkerGroup wakes when its uid, generation (spec) or resync annotation changes;
//!   the operator's own status writes do not wake it.
//! - A Secret (watched as metadata only: no Secret data is held) wakes the WorkerGroups
//!   that reference it when it is created, changed or deleted.
//! - A deleted WorkerGroup's memory and metrics are dropped at once; after every full
//!   list, those of WorkerGroups no longer listed are dropped too.
//!
//! The rule that keeps every WorkerGroup reconciled, whatever the order of its creation,
//! the watch's start and a term's start: a wake-up is sent only once the store holds what
//! it is about. A watch event is applied to the store before this code sees it, but
//! during a (re)list kube-runtime builds the new store aside and swaps it in at
//! `InitDone`: wake-ups found during a list are therefore held until then (sent earlier,
//! the controller would look the object up in the old store, not find it, and drop the
//! request). A term starts by reconciling everything in the store once the first list
//! is in ([`Watches::listed`]); what reaches the store after that point is woken here. A
//! wake-up found while no term runs is dropped, which is safe because the next term
//! starts with everything in the store.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use super::context::Context;
use super::triggers::Triggers;
use crate::crd::{RESYNC_ANNOTATION, WorkerGroup};
use crate::discovery;
use crate::runtime::listed::Listed;

/// The process-long watches.
pub struct Watches {
    /// Every WorkerGroup in scope.
    pub groups: Store<WorkerGroup>,
    /// Set once `groups` holds a first full list.
    pub listed: Listed,
    triggers: Triggers,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watches {
    /// Starts the watches of WorkerGroups, Secrets and our discovery objects.
    /// `on_listed` runs once, when the WorkerGroups have been listed.
    pub fn start(ctx: &Arc<Context>, on_listed: impl FnOnce() + Send + 'static) -> Self {
        let client = ctx.client.clone();
        let ns = ctx.config.namespace.as_deref();
        let (groups_api, secrets_api) = match ns {
            Some(ns) => (
                Api::<WorkerGroup>::namespaced(client.clone(), ns),
                Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        let (stores, mut tasks) = discovery::Stores::start(client, ns);
        stores.count_in(&ctx.metrics);
        let _ = ctx.stores.set(stores);
        let (groups, writer) = reflector::store::<WorkerGroup>();
        let _ = ctx.groups.set(groups.clone());
        ctx.metrics.count_cache("WorkerGroup", {
            let groups = groups.clone();
            move || groups.len()
        });
        // Weak: the metrics live in the context, which would then never be dropped.
        ctx.metrics.count_cache("WorkerList", {
            let ctx = Arc::downgrade(ctx);
            move || ctx.upgrade().map_or(0, |c| c.memory.lists())
        });
        ctx.metrics.count_cache("VastAnswer", {
            let ctx = Arc::downgrade(ctx);
            move || ctx.upgrade().map_or(0, |c| c.vast.answers())
        });
        let triggers = ctx.triggers.clone();
        let listed = Listed::default();
        tasks.push(tokio::spawn(watch_groups(
            groups_api,
            writer,
            ctx.clone(),
            listed.clone(),
            on_listed,
        )));
        let (secrets, secrets_writer) = reflector::store::<PartialObjectMeta<Secret>>();
        ctx.metrics.count_cache("Secret", {
            let secrets = secrets.clone();
            move || secrets.len()
        });
        let _ = ctx.secrets.set(secrets);
        let mut secrets_config = watcher::Config::default();
        if let Some(selector) = &ctx.config.secret_selector {
            secrets_config = secrets_config.labels(selector);
        }
        tasks.push(tokio::spawn(watch_secrets(
            secrets_api,
            secrets_config,
            secrets_writer,
            groups.clone(),
            ctx.clone(),
        )));
        Self {
            groups,
            listed,
            triggers,
            tasks,
        }
    }

    /// Forwards wake-ups to `tx` (a running controller), or to nobody.
    pub fn forward_to(&self, tx: Option<UnboundedSender<ObjectRef<WorkerGroup>>>) {
        self.triggers.forward_to(tx);
    }

    /// Stops every watch.
    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        self.abort();
    }
}

/// What of a WorkerGroup wakes it: uid, generation and the resync annotation.
fn wake_key(wg: &WorkerGroup) -> u64 {
    let mut h = DefaultHasher::new();
    wg.meta().uid.hash(&mut h);
    wg.meta().generation.hash(&mut h);
    wg.annotations().get(RESYNC_ANNOTATION).hash(&mut h);
    h.finish()
}

async fn watch_groups(
    api: Api<WorkerGroup>,
    writer: reflector::store::Writer<WorkerGroup>,
    ctx: Arc<Context>,
    listed: Listed,
    on_listed: impl FnOnce() + Send + 'static,
) {
    let store = writer.as_reader();
    let triggers = &ctx.triggers;
    let mut on_listed = Some(on_listed);
    let mut seen: HashMap<ObjectRef<WorkerGroup>, u64> = HashMap::new();
    // Wake-ups found during a (re)list, sent once it is in the store.
    let mut held: Vec<ObjectRef<WorkerGroup>> = Vec::new();
    // A consistent list (the default), not `any_semantic()`: a list at
    // resourceVersion=0 may be served from a watch cache that lags behind what was
    // written, and after a relist on another apiserver it can even go back in time. The
    // apiserver serves consistent lists from its cache too (ConsistentListFromCache,
    // on by default since Kubernetes 1.31), so the cheap semantics would save little.
    let start = move || watcher::watcher(api.clone(), watcher::Config::default());
    let mut events = crate::runtime::watch::relisting(start)
        .backoff(crate::runtime::watch::WatchBackoff::default())
        .modify(|wg| {
            // Only the resync annotation is read; kubectl's last-applied copy of the
            // object, for one, is not.
            wg.metadata.managed_fields = None;
            if let Some(a) = wg.metadata.annotations.as_mut() {
                a.retain(|k, _| k == RESYNC_ANNOTATION);
            }
        })
        .reflect(writer)
        .boxed();
    while let Some(event) = events.next().await {
        crate::runtime::failpoints::hold_watch().await;
        match event {
            Ok(Event::Apply(wg)) => {
                ctx.memory.settle(&wg);
                let key = ObjectRef::from_obj(&wg);
                if changed(&mut seen, &key, &wg) {
                    tracing::debug!(workergroup = %key, "woken by a change of spec, uid or resync annotation");
                    triggers.send(key);
                }
            }
            Ok(Event::InitApply(wg)) => {
                // Not settled yet: the store serves the copies of before the list until
                // InitDone, and discovery reads the status's list once the memory's
                // copy is gone.
                let key = ObjectRef::from_obj(&wg);
                if changed(&mut seen, &key, &wg) {
                    held.push(key);
                }
            }
            Ok(Event::Delete(wg)) => {
                let key = ObjectRef::from_obj(&wg);
                seen.remove(&key);
                ctx.memory.forget(&key);
                ctx.metrics
                    .forget_group(&wg.namespace().unwrap_or_default(), &wg.name_any());
            }
            Ok(Event::InitDone) => {
                let live = ctx.keep_only(&store);
                // The list is in the store: what it shows may settle the memory.
                for wg in store.state() {
                    ctx.memory.settle(&wg);
                }
                seen.retain(|k, _| live.contains(k));
                // The list is in the store now: what it changed can be reconciled.
                for key in held.drain(..).filter(|k| live.contains(k)) {
                    tracing::debug!(workergroup = %key, "woken by a (re)list");
                    triggers.send(key);
                }
                listed.set();
                if let Some(f) = on_listed.take() {
                    f();
                }
            }
            // Kept across an Init: a list cut off half-way has recorded its changes in
            // `seen` already, and they are sent at the next InitDone.
            Ok(Event::Init) => {}
            Err(e) => {
                warn!(error = %e, "watch of WorkerGroups failed (is the CRD installed, may the operator list and watch workergroups.vast.ai?); retrying")
            }
        }
    }
}

/// Records what of `wg` wakes it; true when that changed (or `wg` is new).
fn changed(
    seen: &mut HashMap<ObjectRef<WorkerGroup>, u64>,
    key: &ObjectRef<WorkerGroup>,
    wg: &WorkerGroup,
) -> bool {
    let wake = wake_key(wg);
    seen.insert(key.clone(), wake) != Some(wake)
}

async fn watch_secrets(
    api: Api<PartialObjectMeta<Secret>>,
    config: watcher::Config,
    writer: reflector::store::Writer<PartialObjectMeta<Secret>>,
    groups: Store<WorkerGroup>,
    ctx: Arc<Context>,
) {
    type Key = (Option<String>, String);
    // The WorkerGroups that reference each Secret, from one pass over the store.
    let referencing = || {
        let mut by_secret: HashMap<Key, Vec<Arc<WorkerGroup>>> = HashMap::new();
        for wg in groups.state() {
            let key = (wg.namespace(), wg.spec.api_key_secret_ref.name.clone());
            by_secret.entry(key).or_default().push(wg);
        }
        by_secret
    };
    let wake_in =
        |by_secret: &HashMap<Key, Vec<Arc<WorkerGroup>>>, key: &Key, only_unread: Option<&str>| {
            for wg in by_secret.get(key).into_iter().flatten() {
                if only_unread.is_none_or(|version| !ctx.keys.holds(wg, version)) {
                    ctx.triggers.send(ObjectRef::from_obj(&**wg));
                }
            }
        };
    let wake = |key: &Key| wake_in(&referencing(), key, None);
    let mut listed = false;
    let mut versions: HashMap<Key, Option<String>> = HashMap::new();
    // During a (re)list: what it has shown so far. Secrets deleted while the watch was
    // down get no delete event; they are the ones the list no longer shows. Wake-ups
    // wait for the list's end, when the store (which the key reader consults) holds it.
    let mut relist: Option<HashMap<Key, Option<String>>> = None;
    // The store keeps names and resourceVersions: annotations (kubectl's
    // last-applied copy may hold the data) and managedFields are dropped.
    let start = move || watcher::watcher(api.clone(), config.clone());
    let mut events = crate::runtime::watch::relisting(start)
        .backoff(crate::runtime::watch::WatchBackoff::default())
        .modify(|s| {
            s.metadata.annotations = None;
            s.metadata.managed_fields = None;
        })
        .reflect(writer)
        .boxed();
    while let Some(event) = events.next().await {
        crate::runtime::failpoints::hold_watch().await;
        match event {
            Ok(Event::Init) => relist = Some(HashMap::new()),
            Ok(Event::InitApply(s)) => {
                let key = (s.namespace(), s.name_any());
                relist
                    .get_or_insert_default()
                    .insert(key, s.resource_version());
            }
            Ok(Event::InitDone) => {
                let fresh = relist.take().unwrap_or_default();
                let by_secret = referencing();
                if listed {
                    // Changed, created or deleted while the watch was down.
                    fresh
                        .iter()
                        .filter(|(k, v)| versions.get(*k) != Some(*v))
                        .for_each(|(k, _)| wake_in(&by_secret, k, None));
                    versions
                        .keys()
                        .filter(|k| !fresh.contains_key(*k))
                        .for_each(|k| wake_in(&by_secret, k, None));
                } else {
                    // The first list has no earlier view to compare with: wake those
                    // WorkerGroups whose key was not read from this very version (a
                    // reconcile that ran before the list found the Secret missing, or
                    // read an older one).
                    for (k, v) in &fresh {
                        if let Some(v) = v {
                            wake_in(&by_secret, k, Some(v));
                        }
                    }
                }
                versions = fresh;
                listed = true;
                ctx.secrets_listed.set();
            }
            Ok(Event::Apply(s)) => {
                let key = (s.namespace(), s.name_any());
                let version = s.resource_version();
                if versions.insert(key.clone(), version.clone()) != Some(version) {
                    wake(&key);
                }
            }
            Ok(Event::Delete(s)) => {
                let key = (s.namespace(), s.name_any());
                if versions.remove(&key).is_some() {
                    wake(&key);
                }
            }
            Err(e) => {
                warn!(error = %e, "watch of Secrets failed (may the operator list and watch Secrets?); retrying");
            }
        }
    }
}
