//! One reconcile, as a sequence of named steps: poll Vast, publish for discovery, plan
//! (pure, in [`crate::sync`]), write the status, emit the events, choose the requeue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{Instrument, debug, info, info_span, warn};

use super::api_key;
use super::context::Context;
use super::requeue::{backoff, jitter, spread};
use crate::crd::{Scope, WorkerGroup, WorkerGroupStatus, WorkerStatus};
use crate::discovery;
use crate::error::Error;
use crate::reasons::Reason;
use crate::runtime::fair::WriteGate;
use crate::runtime::metrics::GroupSnapshot;
use crate::sync::schedule::{self, Next, Outcome};
use crate::sync::{self, DiscoveryUpdate, EventSpec, Freshness, Plan, PollOutcome, SettingsUpdate};
use crate::vast::VastError;

/// Reconciles one WorkerGroup, and counts it in the metrics.
///
/// Polls and writes take slots of their own (`--concurrency` of each), so that polls
/// that find nothing to write never wait behind writes to a busy apiserver. A
/// WorkerGroup whose status does not describe its spec yet (new, or pointed at another
/// workergroup) surely writes: it waits for a write slot and polls under it. Any other
/// polls under a poll slot, gives it back, and plans without writing; only if that plan
/// writes does it wait for a write slot, then plans again from the store's newer copy.
/// An answer of Vast's, or a terminal outcome, is asked for again (an answer younger
/// than half the interval is reused, so this costs no call unless the wait was long,
/// and what is written is never older than that); a failure or a suspension is carried
/// over, and so asked once, unless the spec changed meanwhile. A reconcile waiting for
/// either slot holds no answer of Vast's.
pub async fn reconcile(wg: Arc<WorkerGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(&*wg);
    let scope = wg.spec.scope().map(|s| s.to_string()).unwrap_or_default();
    let span = info_span!("reconcile", workergroup = %key, scope = %scope);
    ctx.watches_listed().instrument(span.clone()).await;
    // A slot in the namespace's turn; none once the term is shutting down (the next
    // term reconciles everything anyway).
    let writes_surely = status_of_spec(&wg).is_none();
    let slot = if writes_surely {
        ctx.write_slot(&key, wg.meta().uid.as_deref())
            .instrument(span.clone())
            .await
            .map(Slot::Write)
    } else {
        ctx.slot(key.namespace.as_deref().unwrap_or_default())
            .instrument(span.clone())
            .await
            .map(Slot::Poll)
    };
    let Ok(slot) = slot else {
        return Ok(Action::await_change());
    };
    // The copy handed over may be older by the wait: act on the store's, and on nothing
    // if the object is gone.
    let Some(wg) = from_store(&ctx, &key, wg) else {
        return Ok(Action::await_change());
    };
    let started = Instant::now();
    // Boxed: every WorkerGroup due has a reconcile waiting for a slot (all of them in a
    // first sync), and a waiting one should not hold the room of all the steps.
    let (result, label) = Box::pin(steps(wg, &ctx, slot)).instrument(span).await;
    ctx.metrics
        .reconciled(label, started.elapsed().as_secs_f64());
    result
}

/// The slot a reconcile holds (a permit of `--concurrency`; None without a dispatcher).
enum Slot {
    /// To poll: given back once the poll has answered.
    Poll(Option<tokio::sync::OwnedSemaphorePermit>),
    /// To write (and poll first): held until the reconcile ends.
    Write(Option<tokio::sync::OwnedSemaphorePermit>),
}

/// The store's copy of `key` (`handed` when there is no store), None when it is gone.
fn from_store(
    ctx: &Context,
    key: &ObjectRef<WorkerGroup>,
    handed: Arc<WorkerGroup>,
) -> Option<Arc<WorkerGroup>> {
    match ctx.groups.get() {
        Some(store) => store.get(key),
        None => Some(handed),
    }
}

/// A gate that lets no write through and remembers being asked: a plan made behind it
/// that never asked, and plans no write, is the whole reconcile.
#[derive(Default)]
struct Probe(std::sync::atomic::AtomicBool);

impl WriteGate for Probe {
    fn enter(&self) -> impl std::future::Future<Output = bool> + Send {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        std::future::ready(false)
    }

    fn probing(&self) -> bool {
        true
    }
}

impl Probe {
    fn asked(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn steps(
    wg: Arc<WorkerGroup>,
    ctx: &Arc<Context>,
    slot: Slot,
) -> (Result<Action, Error>, &'static str) {
    let ctx = &**ctx;
    if wg.meta().deletion_timestamp.is_some() {
        return (Ok(Action::await_change()), "deleting");
    }
    let resync = schedule::resync_request(&wg);
    if resync.is_some()
        && let Some(wait) = resync_too_soon(ctx, &wg)
    {
        // Asked again within the minimum interval: answer once it has passed.
        return (Ok(Action::requeue(wait)), "resync_deferred");
    }
    let interval = poll_interval(&wg);
    if let Some(wait) = ctx.memory.start_up_wait(&wg, resync.is_some(), || {
        let every = interval.as_ref().ok()?;
        schedule::start_up_delay(schedule::synced_at(&wg), *every, Timestamp::now(), spread())
    }) {
        // The series stay on show meanwhile (a new term starts without them).
        if let Some(status) = &wg.status {
            record_status_metrics(ctx, &wg, status, None);
        }
        return (Ok(Action::requeue(wait)), "start_up_deferred");
    }
    ctx.memory.reconciled(&wg);
    // A resync asks Vast itself, not a recent shared answer.
    let polled = Box::pin(poll(ctx, &wg, &interval, resync.is_some())).await;
    let (wg, prepared, _write) = match slot {
        Slot::Write(permit) => {
            let prepared = Box::pin(prepare(ctx, &wg, polled, interval, resync, &())).await;
            (wg, prepared, permit)
        }
        Slot::Poll(permit) => {
            // The poll has answered: its slot goes to the next poll.
            drop(permit);
            let probe = Probe::default();
            let asked = resync.clone();
            let first = Box::pin(prepare(ctx, &wg, polled, interval, resync, &probe)).await;
            if !probe.asked() && !first.writes() {
                let label = first.poll.outcome.metric_label();
                let result = Box::pin(complete(ctx, &wg, first)).await;
                return labelled(result, label);
            }
            // What the write pass carries over: a failure (asking again at once would
            // double the call) or a suspension. An answer of Vast's is asked for again (a
            // newer one may come by the time a slot is free), and so is a terminal
            // outcome (the Secret may be fixed meanwhile). Nothing else of the first
            // pass is held during the wait.
            let first = {
                let p = first;
                p.poll
            };
            let carried = match first.outcome {
                PollOutcome::Transient(_) | PollOutcome::Suspended => Some(first),
                _ => {
                    drop(first);
                    None
                }
            };
            let (generation, uid) = (wg.meta().generation, wg.meta().uid.clone());
            let key = ObjectRef::from_obj(&*wg);
            let Ok(permit) = ctx.write_slot(&key, wg.meta().uid.as_deref()).await else {
                // Shutting down, or the object went while this waited.
                return (Ok(Action::await_change()), "stopped");
            };
            let Some(wg) = from_store(ctx, &key, wg) else {
                return (Ok(Action::await_change()), "stopped");
            };
            if wg.meta().deletion_timestamp.is_some() {
                return (Ok(Action::await_change()), "deleting");
            }
            let interval = poll_interval(&wg);
            // A resync asked while this waited is left to its own reconcile (queued
            // already, and held to the minimum interval): this one answers what it was
            // asked.
            let polled = match carried {
                Some(p) if wg.meta().generation == generation && wg.meta().uid == uid => p,
                _ => Box::pin(poll(ctx, &wg, &interval, false)).await,
            };
            let prepared = Box::pin(prepare(ctx, &wg, polled, interval, asked, &())).await;
            (wg, prepared, permit)
        }
    };
    let label = prepared.poll.outcome.metric_label();
    let result = Box::pin(complete(ctx, &wg, prepared)).await;
    labelled(result, label)
}

/// The metric label of a reconcile's result: "error" for an error, else `label`.
fn labelled(
    result: Result<Action, Error>,
    label: &'static str,
) -> (Result<Action, Error>, &'static str) {
    let label = if result.is_err() { "error" } else { label };
    (result, label)
}

/// The interval assumed when `spec.pollInterval` is unusable.
pub(super) const DEFAULT_INTERVAL: Duration = schedule::DEFAULT_INTERVAL;

/// A poll, published and planned: what is left is to write it and tell.
struct Prepared {
    poll: Poll,
    plan: Plan,
    freshness: Freshness,
    interval: Result<Duration, PollOutcome>,
    answered: Timestamp,
}

impl Prepared {
    /// Whether the plan writes the status or tells anything.
    fn writes(&self) -> bool {
        self.plan.write || !self.plan.events.is_empty()
    }
}

/// After the poll: publish (each write through `gate`), plan.
async fn prepare(
    ctx: &Context,
    wg: &WorkerGroup,
    poll: Poll,
    interval: Result<Duration, PollOutcome>,
    resync: Option<String>,
    gate: &impl WriteGate,
) -> Prepared {
    let remembered = ctx.memory.full_workers(wg);
    // A reused answer is as old as it is: lastSyncTime says when Vast answered.
    let answered = schedule::as_of(poll.age, Timestamp::now());
    let freshness = freshness(ctx, wg, &poll.outcome, interval.as_ref().ok());
    let discovery = publish(
        ctx,
        wg,
        &poll.outcome,
        remembered.as_deref(),
        &freshness,
        gate,
    )
    .await;
    let plan = sync::plan(sync::Input {
        previous: wg.status.as_ref(),
        previous_full: remembered.as_deref(),
        generation: wg.meta().generation,
        outcome: poll.outcome.clone(),
        now: answered,
        max_workers: ctx.config.max_workers,
        heartbeat: ctx.config.status_heartbeat,
        scope: scope_of(wg),
        discovery,
        resync,
        // Below the threshold nothing changes, unless the data has just gone stale.
        quiet_failure: matches!(poll.outcome, PollOutcome::Transient(_))
            && ctx.memory.failures(wg).saturating_add(1) < ctx.config.failure_threshold
            && freshness.stale().is_none(),
        endpoints: &ctx.config.endpoints,
        settings: poll.settings.clone(),
    });
    Prepared {
        poll,
        plan,
        freshness,
        interval,
        answered,
    }
}

/// Writes the planned status, tells the events, records, and chooses the requeue.
async fn complete(ctx: &Context, wg: &WorkerGroup, p: Prepared) -> Result<Action, Error> {
    let Prepared {
        poll,
        mut plan,
        freshness,
        interval,
        answered,
    } = p;
    let Some(written) = write_status(ctx, wg, &plan).await? else {
        // The newer object comes through the watch; until then (a broken watch may
        // take a while) look again with a backoff from one second.
        let n = ctx.memory.api_failed(wg);
        let delay = jitter(
            backoff(n, Duration::from_secs(1), ctx.config.backoff_max),
            0.2,
        );
        debug!(retry_in = ?delay, "the WorkerGroup changed since it was read; planning again from the newer one");
        return Ok(Action::requeue(delay));
    };
    if plan.write && !plan.events.is_empty() {
        crate::runtime::failpoints::crash_point!("crash-after-status");
    }
    record_metrics(ctx, wg, &plan, &poll.outcome);
    if matches!(poll.outcome, PollOutcome::Synced(_)) {
        ctx.memory
            .synced(wg, std::mem::take(&mut plan.workers), answered);
        // Settled against what the store shows now: the copy reconciled when nothing
        // was written; the written one if the watch has brought it already (else the
        // watch settles it when it does).
        match ctx.groups.get() {
            Some(store) => {
                if let Some(now) = store.get(&ObjectRef::from_obj(wg)) {
                    ctx.memory.settle(&now);
                }
            }
            None if !plan.write => ctx.memory.settle(wg),
            None => {}
        }
    }
    emit_events(ctx, &plan.events, &written).await;
    Ok(requeue(ctx, wg, poll, interval.ok(), &freshness))
}

/// Whether the workers on record may still be routed to: the last success is the later
/// of what this process saw and what status records for the same workergroup (after a
/// restart, status is all there is).
fn freshness(
    ctx: &Context,
    wg: &WorkerGroup,
    outcome: &PollOutcome,
    interval: Option<&Duration>,
) -> Freshness {
    let recorded = status_of_spec(wg).and_then(|s| s.last_sync_time);
    let interval = interval.copied().unwrap_or(DEFAULT_INTERVAL);
    let mut window = sync::stale_after(ctx.config.stale_after, interval);
    if crate::runtime::failpoints::failpoint!("skip-stale-rule") {
        // A planted bug (test builds only): nothing ever goes stale.
        window = Duration::from_secs(10 * 365 * 86_400);
    }
    // What this process saw is exact; status.lastSyncTime (all there is after a restart
    // or a failover) lags the last successful poll by up to the heartbeat.
    let (last_success, lag) = match ctx.memory.last_success(wg) {
        Some(seen) if Some(seen) >= recorded => (Some(seen), Duration::ZERO),
        _ => (
            recorded,
            ctx.config.status_heartbeat.unwrap_or(Duration::ZERO),
        ),
    };
    Freshness::judge(outcome, last_success, lag, Timestamp::now(), window)
}

/// What the plan compares the status with: the spec's scope, else (an unusable spec) the
/// one status records, so that the workers on record are kept.
fn scope_of(wg: &WorkerGroup) -> Scope {
    wg.spec
        .scope()
        .ok()
        .or_else(|| wg.status.as_ref().and_then(WorkerGroupStatus::scope))
        .unwrap_or(Scope::Workergroup(0))
}

/// The status, when it describes the scope the spec names (not one before a change).
fn status_of_spec(wg: &WorkerGroup) -> Option<&WorkerGroupStatus> {
    let scope = wg.spec.scope().ok()?;
    wg.status.as_ref().filter(|s| s.is_of(scope))
}

/// How long until a resync may poll, when the last poll was too recent.
fn resync_too_soon(ctx: &Context, wg: &WorkerGroup) -> Option<Duration> {
    let since = ctx.memory.last_poll(wg).map(|last| last.elapsed());
    schedule::resync_wait(since, ctx.config.resync_min_interval)
}

/// Sets the WorkerGroup's series from the planned status.
fn record_metrics(ctx: &Context, wg: &WorkerGroup, plan: &Plan, outcome: &PollOutcome) {
    let synced = matches!(outcome, PollOutcome::Synced(_));
    let workers = synced.then_some(plan.workers.as_slice());
    record_status_metrics(ctx, wg, &plan.status, workers);
}

/// Sets the WorkerGroup's series from `status`; load figures from `polled`, the workers
/// of a successful poll, when there are any.
fn record_status_metrics(
    ctx: &Context,
    wg: &WorkerGroup,
    status: &WorkerGroupStatus,
    polled: Option<&[WorkerStatus]>,
) {
    let snapshot = GroupSnapshot {
        states: status.status_counts.clone(),
        ready: status.ready_workers,
        last_sync: status
            .last_sync_time
            .map(|t| t.as_millisecond() as f64 / 1000.0),
        conditions: status
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect(),
        load: polled.map(|ws| ws.iter().filter_map(|w| w.cur_load).sum()),
        reqs_working: polled.map(reqs_working),
        max_workers: status.settings.as_ref().and_then(|s| s.max_workers),
    };
    ctx.metrics.set_group(
        &wg.namespace().unwrap_or_default(),
        &wg.name_any(),
        &snapshot,
    );
}

/// The requests in flight over `workers`: numbers the workers report, summed without
/// overflow.
fn reqs_working(workers: &[WorkerStatus]) -> i64 {
    workers
        .iter()
        .filter_map(|w| w.reqs_working)
        .fold(0i64, i64::saturating_add)
}

/// `spec.pollInterval`, or the terminal outcome of an unusable one.
pub(super) fn poll_interval(wg: &WorkerGroup) -> Result<Duration, PollOutcome> {
    schedule::poll_interval(&wg.spec.poll_interval).map_err(|message| PollOutcome::Terminal {
        reason: Reason::InvalidSpec,
        message,
    })
}

/// The outcome of one poll, whether Vast rate-limited it, how old the answer is, and
/// what the settings read gave.
struct Poll {
    outcome: PollOutcome,
    rate_limited: bool,
    age: Duration,
    settings: SettingsUpdate,
}

/// Reads the key and calls Vast (the workers, and the settings when due), unless the
/// spec is unusable or suspended.
async fn poll(
    ctx: &Context,
    wg: &WorkerGroup,
    interval: &Result<Duration, PollOutcome>,
    fresh: bool,
) -> Poll {
    let scope = wg.spec.scope().map_err(|message| PollOutcome::Terminal {
        reason: Reason::InvalidSpec,
        message,
    });
    let outcome = match (interval, scope) {
        (Err(invalid), _) => invalid.clone(),
        (_, Err(invalid)) => invalid,
        (Ok(_), Ok(_)) if wg.spec.suspend => PollOutcome::Suspended,
        (Ok(interval), Ok(scope)) => match api_key::read(ctx, wg).await {
            Err(outcome) => outcome,
            Ok(key) => {
                ctx.memory.polled(wg);
                let share = ctx.vast.share_key(scope, &key);
                ctx.memory.set_share(wg, share);
                let tenant = wg.namespace().unwrap_or_default();
                // The settings (one read per key per interval, shared) beside the workers.
                let (fetched, settings) = tokio::join!(
                    ctx.vast.workers(scope, &key, *interval, fresh, &tenant),
                    read_settings(ctx, scope, &key, &tenant),
                );
                // Sharers take a fresh list of workers now; an error they find out
                // themselves, on their own backoff (errors are not reused, so waking
                // them would make them call again and wake this one in turn).
                if fetched.called && fetched.answer.is_ok() {
                    ctx.wake_sharers(share, &ObjectRef::from_obj(wg));
                }
                if matches!(fetched.answer, Err(VastError::Authentication(_))) {
                    // The key may have been rotated while the Secret watch was down.
                    ctx.keys.forget(wg);
                }
                let rate_limited = matches!(fetched.answer, Err(VastError::RateLimited(_)));
                return Poll {
                    outcome: PollOutcome::from_vast(fetched.answer),
                    rate_limited,
                    age: fetched.age,
                    settings,
                };
            }
        },
    };
    Poll {
        outcome,
        rate_limited: false,
        age: Duration::ZERO,
        settings: match ctx.settings {
            Some(_) => SettingsUpdate::Unchanged,
            None => SettingsUpdate::Disabled,
        },
    }
}

/// The settings of `scope` from the console as they stand (shared per key; a due read
/// runs aside), judged against the failure threshold.
async fn read_settings(ctx: &Context, scope: Scope, key: &str, tenant: &str) -> SettingsUpdate {
    let Some(settings) = &ctx.settings else {
        return SettingsUpdate::Disabled;
    };
    let read = settings.read(key, tenant).await;
    if let Some(e) = &read.error {
        debug!(error = %e, failures = read.failures, "the console settings could not be read");
    }
    sync::settings::judge(
        scope,
        read.account.as_deref(),
        read.error.as_ref(),
        read.failures,
        ctx.config.failure_threshold,
    )
}

/// Publishes the freshest worker list there is (this poll's, else the last known of the
/// same workergroup) as a Service and EndpointSlices.
async fn publish(
    ctx: &Context,
    wg: &WorkerGroup,
    outcome: &PollOutcome,
    remembered: Option<&[WorkerStatus]>,
    freshness: &Freshness,
    gate: &impl WriteGate,
) -> DiscoveryUpdate {
    let Some(stores) = ctx.stores.get() else {
        return DiscoveryUpdate::Unchanged;
    };
    if !stores.wait_ready(Duration::from_secs(10)).await {
        warn!(
            "the watches of our Services and EndpointSlices have not listed; discovery left as it is"
        );
        return DiscoveryUpdate::Unchanged;
    }
    let status = wg.status.as_ref();
    let status_is_this_group = status_of_spec(wg).is_some();
    let workers: &[WorkerStatus] = match (outcome, remembered) {
        (PollOutcome::Synced(found), _) => found,
        (_, Some(full)) => full,
        // After a restart a truncated status list is not the whole truth: leave the
        // published endpoints alone until a poll succeeds, unless they are stale (then
        // what status lists goes not ready, and the rest is removed).
        (_, None)
            if status_is_this_group
                && status.is_some_and(|s| s.workers_truncated)
                && freshness.stale().is_none() =>
        {
            return DiscoveryUpdate::Unchanged;
        }
        (_, None) if status_is_this_group => {
            status.map(|s| s.workers.as_slice()).unwrap_or_default()
        }
        (_, None) => &[],
    };
    let stale = freshness.stale();
    let d = discovery::publish(
        gate,
        &ctx.client,
        stores,
        wg,
        workers,
        stale.is_some(),
        &ctx.config.endpoints,
    )
    .await;
    if d.writes > 0 {
        debug!(writes = d.writes, "discovery objects written");
    }
    match d.status {
        Some(status) => DiscoveryUpdate::Published(sync::Discovery {
            status,
            problem: d.problem,
            stale: stale.cloned(),
        }),
        None => {
            if let Some((reason, msg)) = d.problem.filter(|_| !gate.probing()) {
                warn!(reason = reason.as_str(), message = %msg, "could not remove discovery objects; retrying next poll");
            }
            DiscoveryUpdate::Disabled
        }
    }
}

/// Writes the planned status (server-side apply under [`crate::shared::FIELD_MANAGER`]) when it
/// changed; returns the reference events should name: the object at the written
/// resourceVersion (None: the object changed since it was read; nothing was written).
async fn write_status(
    ctx: &Context,
    wg: &WorkerGroup,
    plan: &Plan,
) -> Result<Option<ObjectReference>, Error> {
    if !plan.write {
        return Ok(Some(wg.object_ref(&())));
    }
    let updated = match patch_status(ctx, wg, &plan.status).await {
        Ok(updated) => {
            ctx.memory.status_write_failed(wg, false);
            updated
        }
        // Planned from an object that has changed (or been replaced) since: the newer
        // one is reconciled instead; nothing of this plan is written or told.
        Err(e) if is_conflict(&e) => return Ok(None),
        Err(e) => {
            if ctx.memory.status_write_failed(wg, true) {
                let note = format!("the status could not be written: {e}");
                let warning = EventSpec::warning(Reason::StatusUpdateFailed, "WriteStatus", note);
                emit_events(ctx, &[warning], &wg.object_ref(&())).await;
            }
            return Err(e);
        }
    };
    if !plan.changes.is_empty() {
        info!(note = %plan.changes.note(), "workers changed");
    }
    let mut at = updated.object_ref(&());
    at.resource_version = updated.metadata.resource_version.clone();
    Ok(Some(at))
}

async fn patch_status(
    ctx: &Context,
    wg: &WorkerGroup,
    status: &WorkerGroupStatus,
) -> Result<WorkerGroup, Error> {
    let api =
        Api::<WorkerGroup>::namespaced(ctx.client.clone(), &wg.namespace().unwrap_or_default());
    let pp = PatchParams::apply(crate::shared::FIELD_MANAGER).force();
    Ok(api
        .patch_status(&wg.name_any(), &pp, &Patch::Apply(&status_body(wg, status)))
        .await?)
}

/// The status apply body. It carries the resourceVersion the status was planned from,
/// which the apiserver checks (409 when the object changed since), so a reconcile still
/// running for a deleted WorkerGroup cannot write onto a new object of the same name.
/// (A uid in the body would not do: the status subresource ignores metadata.)
pub fn status_body(wg: &WorkerGroup, status: &WorkerGroupStatus) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "vast.ai/v1alpha1",
        "kind": "WorkerGroup",
        "metadata": {
            "name": wg.name_any(),
            "uid": wg.meta().uid,
            "resourceVersion": wg.meta().resource_version,
        },
        "status": status,
    })
}

/// Whether the apiserver refused a write because the object changed since it was read.
fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Kube(kube::Error::Api(s)) if s.code == 409)
}

/// Publishes the planned events. Each names the object at the resourceVersion written
/// with it, so the Recorder never folds two different changes into one series with the
/// first note. Such an event can never be folded with a later one either (that names
/// another resourceVersion), so it goes through a recorder of its own that keeps
/// nothing: the shared one keeps every event it published for six minutes to fold
/// repeats into, one entry per event (11,000 and more at 5,000 WorkerGroups in churn),
/// and scans them all at every publish. Events on an unchanged object (no
/// resourceVersion) go through the shared one, whose series fold their repeats.
async fn emit_events(ctx: &Context, events: &[EventSpec], at: &ObjectReference) {
    let own;
    let recorder = if at.resource_version.is_some() {
        own = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
        &own
    } else {
        &ctx.recorder
    };
    for ev in events {
        let event = Event {
            type_: if ev.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: ev.reason.as_str().into(),
            note: Some(ev.note.clone()),
            action: ev.action.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, at).await {
            warn!(error = %e, reason = ev.reason.as_str(), "could not publish event");
        }
    }
}

/// Chooses when to look again ([`schedule::next`]), and logs a failure.
fn requeue(
    ctx: &Context,
    wg: &WorkerGroup,
    poll: Poll,
    interval: Option<Duration>,
    freshness: &Freshness,
) -> Action {
    let goes_stale = match freshness {
        Freshness::Until(left) => Some(*left + Duration::from_secs(1)),
        _ => None,
    };
    let mut inputs = schedule::Inputs {
        interval: interval.unwrap_or(DEFAULT_INTERVAL),
        backoff: Duration::ZERO,
        terminal_retry: jitter(ctx.config.terminal_retry, 0.1),
        goes_stale,
        r: spread(),
    };
    let mut failures = 0;
    let outcome = match poll.outcome {
        PollOutcome::Synced(_) => Outcome::Synced,
        PollOutcome::Suspended => {
            ctx.memory.clear_failures(wg);
            Outcome::Suspended
        }
        PollOutcome::Transient(_) => {
            let (n, delay) = failure_delay(ctx, wg);
            failures = n;
            inputs.backoff = delay;
            Outcome::Transient {
                rate_limited: poll.rate_limited,
            }
        }
        PollOutcome::Terminal { .. } => {
            // A later transient error starts its backoff afresh.
            ctx.memory.clear_failures(wg);
            Outcome::Terminal
        }
    };
    let next = schedule::next(outcome, &inputs);
    match (&poll.outcome, next) {
        (PollOutcome::Transient(err), Next::After(delay)) => {
            warn!(error = %err, failures, retry_in = ?delay, "poll failed");
        }
        (PollOutcome::Terminal { reason, message }, _) => {
            warn!(reason = reason.as_str(), message = %message, "terminal error; retrying slowly");
        }
        _ => {}
    }
    match next {
        Next::After(d) => Action::requeue(d),
        Next::OnChange => Action::await_change(),
    }
}

/// Counts one more consecutive failure; returns the count and the delay before the next
/// try (exponential backoff, +-20 % jitter).
pub(super) fn failure_delay(ctx: &Context, wg: &WorkerGroup) -> (u32, Duration) {
    let n = ctx.memory.failed(wg);
    let delay = backoff(n, ctx.config.backoff_base, ctx.config.backoff_max);
    (n, jitter(delay, 0.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reqs_working_saturates() {
        let w = |n: i64| WorkerStatus {
            reqs_working: Some(n),
            ..serde_json::from_value(serde_json::json!({"id": 1, "status": "idle", "ready": true}))
                .expect("worker")
        };
        assert_eq!(reqs_working(&[w(2), w(3)]), 5);
        assert_eq!(reqs_working(&[w(i64::MAX), w(i64::MAX)]), i64::MAX);
        assert_eq!(reqs_working(&[w(i64::MIN), w(-1)]), i64::MIN);
    }
}
