//! The kube-runtime `Controller` of WorkerGroups: its watches and triggers ([`run`]),
//! the reconcile steps ([`reconcile`]), the API-key source ([`api_key`]), per-object
//! memory ([`memory`]) and the requeue policy ([`requeue`]).

pub mod api_key;
pub mod context;
pub mod memory;
pub mod reconcile;
pub mod requeue;

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::PredicateConfig;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use tracing::{debug, warn};

pub use context::{Config, Context};

use crate::crd::WorkerGroup;
use crate::{Error, discovery};

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (groups, secrets) = match &ctx.config.namespace {
        Some(ns) => (
            Api::<WorkerGroup>::namespaced(client.clone(), ns),
            Api::<Secret>::namespaced(client, ns),
        ),
        None => (
            Api::<WorkerGroup>::all(client.clone()),
            Api::<Secret>::all(client),
        ),
    };
    let (stores, watch_tasks) =
        discovery::Stores::start(ctx.client.clone(), ctx.config.namespace.as_deref());
    let _ = ctx.stores.set(stores.clone());
    // Only spec changes (generation) of WorkerGroups trigger a reconcile: our own status
    // writes must not cause another Vast call. Secret changes trigger through `watches`.
    let (store, writer) = reflector::store::<WorkerGroup>();
    let changes = watcher(groups, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default());
    let controller = Controller::for_stream(changes, store.clone());
    let sweeper = tokio::spawn(discovery::sweep_orphans(
        ctx.client.clone(),
        stores,
        store.clone(),
        ctx.config.orphan_sweep,
    ));
    let pruner = tokio::spawn(prune_memory(ctx.clone(), store.clone()));
    controller
        .watches(
            secrets,
            watcher::Config::default().any_semantic(),
            move |secret| {
                let ns = secret.namespace();
                let name = secret.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|wg| wg.namespace() == ns && wg.spec.api_key_secret_ref.name == name)
                    .map(|wg| ObjectRef::from_obj(&*wg))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(object = %obj, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
    sweeper.abort();
    pruner.abort();
    for t in watch_tasks {
        t.abort();
    }
}

/// Forgets what is remembered of deleted WorkerGroups (they get no last reconcile).
async fn prune_memory(ctx: Arc<Context>, store: Store<WorkerGroup>) {
    let mut tick = tokio::time::interval(ctx.config.orphan_sweep);
    loop {
        tick.tick().await;
        let live: HashSet<ObjectRef<WorkerGroup>> = store
            .state()
            .iter()
            .map(|wg| ObjectRef::from_obj(&**wg))
            .collect();
        if live.is_empty() {
            // Possibly a store that has not listed yet: forget nothing.
            continue;
        }
        ctx.memory.retain(&live);
    }
}

fn error_policy(wg: Arc<WorkerGroup>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*wg);
    let (_, delay) = reconcile::failure_delay(&ctx, &wg);
    warn!(workergroup = %key, error = %err, category = err.category(), retry_in = ?delay, "reconcile error");
    Action::requeue(delay)
}
