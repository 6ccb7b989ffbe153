//! The reconcile loop: read the Secret, poll Vast, plan (pure, in [`crate::sync`]), then
//! write status (server-side apply, only when its content changed) and emit events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::utils::PredicateConfig;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use rand::Rng;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::crd::{WorkerGroup, WorkerGroupStatus, WorkerStatus};
use crate::sync::{self, Outcome};
use crate::vast::{VastClient, VastError};
use crate::{Error, discovery, duration};

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "vast-operator";

/// Tunables of the controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// Cap on `status.workers`.
    pub max_workers: usize,
    /// Refresh `lastSyncTime` at least this often (None: only on changes).
    pub status_heartbeat: Option<Duration>,
    /// How often an object with a terminal error is retried.
    pub terminal_retry: Duration,
    /// First delay after a transient error; doubles per failure.
    pub backoff_base: Duration,
    /// Longest delay after transient errors.
    pub backoff_max: Duration,
    /// Name of this instance for events (pod name).
    pub instance: Option<String>,
    /// Watch only this namespace (None: all namespaces).
    pub namespace: Option<String>,
    /// How often Services and EndpointSlices of deleted WorkerGroups are looked for.
    pub orphan_sweep: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_workers: 500,
            status_heartbeat: Some(Duration::from_secs(600)),
            terminal_retry: Duration::from_secs(300),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            instance: None,
            namespace: None,
            orphan_sweep: Duration::from_secs(60),
        }
    }
}

/// What the operator remembers of one WorkerGroup between reconciles.
#[derive(Default)]
struct ObjectMemory {
    /// The object it belongs to: a recreated object with the same name starts afresh.
    uid: Option<String>,
    /// The workergroup the workers came from: a new id starts afresh.
    workergroup_id: i64,
    failures: u32,
    full_workers: Option<Vec<WorkerStatus>>,
}

/// Shared state of the reconcilers.
pub struct Context {
    client: Client,
    vast: VastClient,
    recorder: Recorder,
    config: Config,
    memory: Mutex<HashMap<ObjectRef<WorkerGroup>, ObjectMemory>>,
    stores: tokio::sync::OnceCell<discovery::Stores>,
}

impl Context {
    /// A context for [`run`].
    pub fn new(client: Client, vast: VastClient, config: Config) -> Arc<Self> {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: config.instance.clone(),
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            vast,
            config,
            memory: Mutex::new(HashMap::new()),
            stores: tokio::sync::OnceCell::new(),
        })
    }

    fn remember<T>(&self, wg: &WorkerGroup, f: impl FnOnce(&mut ObjectMemory) -> T) -> T {
        let mut map = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(ObjectRef::from_obj(wg)).or_default();
        if entry.uid != wg.metadata.uid || entry.workergroup_id != wg.spec.workergroup_id {
            *entry = ObjectMemory {
                uid: wg.metadata.uid.clone(),
                workergroup_id: wg.spec.workergroup_id,
                ..Default::default()
            };
        }
        f(entry)
    }

    /// Counts one more consecutive failure; returns the count and the delay before the
    /// next try (exponential backoff, +-20 % jitter).
    fn failed(&self, wg: &WorkerGroup) -> (u32, Duration) {
        let n = self.remember(wg, |m| {
            m.failures = m.failures.saturating_add(1);
            m.failures
        });
        let delay = backoff(n, self.config.backoff_base, self.config.backoff_max);
        (n, jitter(delay, 0.2))
    }

    fn forget(&self, key: &ObjectRef<WorkerGroup>) {
        let mut map = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

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
        .run(reconcile, error_policy, ctx)
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
async fn prune_memory(ctx: Arc<Context>, store: kube::runtime::reflector::Store<WorkerGroup>) {
    let mut tick = tokio::time::interval(ctx.config.orphan_sweep);
    loop {
        tick.tick().await;
        let live: std::collections::HashSet<ObjectRef<WorkerGroup>> = store
            .state()
            .iter()
            .map(|wg| ObjectRef::from_obj(&**wg))
            .collect();
        if live.is_empty() {
            // Possibly a store that has not listed yet: forget nothing.
            continue;
        }
        let mut map = ctx.memory.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|k, _| live.contains(k));
    }
}

/// Reads the API key from the referenced Secret.
async fn read_api_key(client: &Client, wg: &WorkerGroup) -> Result<String, Outcome> {
    let ns = wg.namespace().unwrap_or_default();
    let r = &wg.spec.api_key_secret_ref;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let secret = match secrets.get_opt(&r.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(Outcome::Terminal {
                reason: "SecretNotFound",
                message: format!("Secret {ns}/{} does not exist", r.name),
            });
        }
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(Outcome::Terminal {
                reason: "SecretForbidden",
                message: format!("the operator may not read Secret {ns}/{}", r.name),
            });
        }
        Err(e) => {
            return Err(Outcome::Transient(format!(
                "cannot read Secret {ns}/{}: {e}",
                r.name
            )));
        }
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|s| s.trim().to_string())
        });
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(Outcome::Terminal {
            reason: "SecretKeyMissing",
            message: format!("key {:?} of Secret {ns}/{} is empty", r.key, r.name),
        }),
        None => Err(Outcome::Terminal {
            reason: "SecretKeyMissing",
            message: format!("Secret {ns}/{} has no key {:?}", r.name, r.key),
        }),
    }
}

fn jitter(d: Duration, fraction: f64) -> Duration {
    let f = rand::rng().random_range((1.0 - fraction)..=(1.0 + fraction));
    d.mul_f64(f)
}

/// Delay before retry number `failures` (1-based) of a transient error.
pub fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(20)));
    exp.min(max)
}

async fn reconcile(wg: Arc<WorkerGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(&*wg);
    let span = info_span!("reconcile", workergroup = %key, id = wg.spec.workergroup_id);
    reconcile_inner(wg, ctx, key).instrument(span).await
}

async fn reconcile_inner(
    wg: Arc<WorkerGroup>,
    ctx: Arc<Context>,
    key: ObjectRef<WorkerGroup>,
) -> Result<Action, Error> {
    if wg.meta().deletion_timestamp.is_some() {
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    let interval = duration::parse(&wg.spec.poll_interval).ok();
    let mut rate_limited = false;
    let outcome = if let Some(interval) = interval {
        if interval < Duration::from_secs(5) || interval > Duration::from_secs(86_400) {
            Outcome::Terminal {
                reason: "InvalidSpec",
                message: format!(
                    "pollInterval {:?} is outside 5s..24h",
                    wg.spec.poll_interval
                ),
            }
        } else if wg.spec.suspend {
            Outcome::Suspended
        } else {
            match read_api_key(&ctx.client, &wg).await {
                Ok(api_key) => match ctx
                    .vast
                    .workergroup_workers(wg.spec.workergroup_id, &api_key)
                    .await
                {
                    Ok(workers) => Outcome::Synced(workers),
                    Err(e) => {
                        rate_limited = matches!(e, VastError::RateLimited(_));
                        Outcome::from(e)
                    }
                },
                Err(outcome) => outcome,
            }
        }
    } else {
        Outcome::Terminal {
            reason: "InvalidSpec",
            message: format!("pollInterval {:?} is not a duration", wg.spec.poll_interval),
        }
    };

    let now = Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| Timestamp::now());
    let remembered = ctx.remember(&wg, |m| m.full_workers.clone());

    let discovered = publish(&ctx, &wg, &outcome, remembered.as_deref()).await;
    let plan = sync::plan(sync::Input {
        previous: wg.status.as_ref(),
        previous_full: remembered.as_deref(),
        generation: wg.meta().generation,
        outcome: outcome.clone(),
        now,
        max_workers: ctx.config.max_workers,
        heartbeat: ctx.config.status_heartbeat,
        workergroup_id: wg.spec.workergroup_id,
        discovery: discovered,
    });

    let mut object_ref = wg.object_ref(&());
    if plan.write {
        let updated = patch_status(&ctx.client, &wg, &plan.status).await?;
        object_ref = updated.object_ref(&());
        object_ref.resource_version = updated.metadata.resource_version.clone();
        if !plan.changes.is_empty() {
            info!(note = %plan.changes.note(), "workers changed");
        }
    }
    // Each event names the object at the resourceVersion written with it, so the
    // Recorder never folds two different changes into one series with the first note.
    for ev in &plan.events {
        let event = Event {
            type_: if ev.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: ev.reason.into(),
            note: Some(ev.note.clone()),
            action: ev.action.into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &object_ref).await {
            warn!(error = %e, reason = ev.reason, "could not publish event");
        }
    }

    let interval = interval.unwrap_or(Duration::from_secs(30));
    let next = match &outcome {
        Outcome::Synced(_) => {
            ctx.remember(&wg, |m| {
                m.failures = 0;
                m.full_workers = Some(plan.workers.clone());
            });
            jitter(interval, 0.1)
        }
        Outcome::Suspended => {
            ctx.remember(&wg, |m| m.failures = 0);
            return Ok(Action::await_change());
        }
        Outcome::Transient(err) => {
            let (n, delay) = ctx.failed(&wg);
            // Rate limits are not retried faster than the normal interval.
            let delay = if rate_limited {
                delay.max(interval)
            } else {
                delay
            };
            warn!(error = %err, failures = n, retry_in = ?delay, "poll failed");
            delay
        }
        Outcome::Terminal { reason, message } => {
            warn!(reason, message = %message, "terminal error; retrying slowly");
            jitter(ctx.config.terminal_retry, 0.1)
        }
    };
    Ok(Action::requeue(next))
}

/// Publishes the freshest worker list there is (this poll's, else the last known of the
/// same workergroup) as a Service and EndpointSlices.
async fn publish(
    ctx: &Context,
    wg: &WorkerGroup,
    outcome: &Outcome,
    remembered: Option<&[WorkerStatus]>,
) -> sync::DiscoveryUpdate {
    let Some(stores) = ctx.stores.get() else {
        return sync::DiscoveryUpdate::Unchanged;
    };
    if !stores.wait_ready(Duration::from_secs(10)).await {
        warn!(
            "the watches of our Services and EndpointSlices have not listed; discovery left as it is"
        );
        return sync::DiscoveryUpdate::Unchanged;
    }
    let status = wg.status.as_ref();
    let status_is_this_group = status.is_some_and(|s| {
        s.workergroup_id
            .is_none_or(|id| id == wg.spec.workergroup_id)
    });
    let workers = match (outcome, remembered) {
        (Outcome::Synced(found), _) => sync::to_status_workers(found),
        (_, Some(full)) => full.to_vec(),
        // After a restart a truncated status list is not the whole truth: leave the
        // published endpoints alone until a poll succeeds.
        (_, None) if status_is_this_group && status.is_some_and(|s| s.workers_truncated) => {
            return sync::DiscoveryUpdate::Unchanged;
        }
        (_, None) if status_is_this_group => status.map(|s| s.workers.clone()).unwrap_or_default(),
        (_, None) => Vec::new(),
    };
    let d = discovery::reconcile(&ctx.client, stores, wg, &workers).await;
    if d.writes > 0 {
        debug!(writes = d.writes, "discovery objects written");
    }
    match d.status {
        Some(status) => sync::DiscoveryUpdate::Published(sync::Discovery {
            status,
            problem: d.problem,
        }),
        None => {
            if let Some((reason, msg)) = d.problem {
                warn!(reason, message = %msg, "could not remove discovery objects; retrying next poll");
            }
            sync::DiscoveryUpdate::Disabled
        }
    }
}

/// Writes status with server-side apply under [`FIELD_MANAGER`].
async fn patch_status(
    client: &Client,
    wg: &WorkerGroup,
    status: &WorkerGroupStatus,
) -> Result<WorkerGroup, Error> {
    let api = Api::<WorkerGroup>::namespaced(client.clone(), &wg.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": "vast.ai/v1alpha1",
        "kind": "WorkerGroup",
        "status": status,
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api
        .patch_status(&wg.name_any(), &pp, &Patch::Apply(&body))
        .await?)
}

fn error_policy(wg: Arc<WorkerGroup>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*wg);
    let (_, delay) = ctx.failed(&wg);
    warn!(workergroup = %key, error = %err, category = err.category(), retry_in = ?delay, "reconcile error");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_secs(5);
        let m = Duration::from_secs(300);
        assert_eq!(backoff(1, b, m), Duration::from_secs(5));
        assert_eq!(backoff(2, b, m), Duration::from_secs(10));
        assert_eq!(backoff(4, b, m), Duration::from_secs(40));
        assert_eq!(backoff(7, b, m), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX, b, m), Duration::from_secs(300));
    }

    #[test]
    fn jitter_stays_in_band() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(100), 0.1);
            assert!(d >= Duration::from_secs(90) && d <= Duration::from_secs(110));
        }
    }
}
