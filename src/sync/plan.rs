//! Plans one reconcile ([`plan`]): from what it takes ([`Input`]), the next status,
//! whether it must be written, and the events ([`Plan`]).

use std::time::Duration;

use jiff::Timestamp;

use crate::crd::{DiscoveryStatus, Scope, WorkerGroupStatus, WorkerStatus};
use crate::reasons::Reason;

use super::conditions::{
    self, DISCOVERY_READY, READY, RECONCILING, SETTINGS_SYNCED, STALLED, Verdict, condition, find,
    is_false,
};
use super::diff::{ChangeSet, diff};
use super::endpoints::{self, EndpointPolicy};
use super::events::EventSpec;
use super::freshness::Stale;
use super::outcome::PollOutcome;
use super::settings::{self, SettingsUpdate};
use super::workers;

/// Everything `plan` needs.
#[derive(Debug)]
pub struct Input<'a> {
    /// The status as last read from the apiserver.
    pub previous: Option<&'a WorkerGroupStatus>,
    /// The full worker list of the last successful poll, when the operator remembers it
    /// (the status list may be truncated); falls back to `previous.workers`.
    pub previous_full: Option<&'a [WorkerStatus]>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The poll's result.
    pub outcome: PollOutcome,
    /// Now, in whole seconds.
    pub now: Timestamp,
    /// Cap on `status.workers`.
    pub max_workers: usize,
    /// Refresh `lastSyncTime` at least this often when nothing changed (`None`: never).
    pub heartbeat: Option<Duration>,
    /// What was polled (`spec.workergroupId` or `spec.endpointId`).
    pub scope: Scope,
    /// What discovery did.
    pub discovery: DiscoveryUpdate,
    /// The value of the resync annotation this poll answers, if any.
    pub resync: Option<String>,
    /// A transient failure below the failure threshold: nothing changes yet.
    pub quiet_failure: bool,
    /// Which worker addresses may be published (also keeps refused ones out of
    /// `readyUrls`).
    pub endpoints: &'a EndpointPolicy,
    /// What the console's settings read gave.
    pub settings: SettingsUpdate,
}

/// What discovery did in this reconcile.
#[derive(Debug, Clone, Default)]
pub enum DiscoveryUpdate {
    /// Disabled: no discovery status, no condition.
    #[default]
    Disabled,
    /// Not attempted (for example the watches have not listed yet): keep what status says.
    Unchanged,
    /// Published, with this result.
    Published(Discovery),
}

/// What publishing the workers for discovery gave.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// `status.discovery`.
    pub status: DiscoveryStatus,
    /// A problem (reason, message): `DiscoveryConflict` or `DiscoveryFailed`.
    pub problem: Option<(Reason, String)>,
    /// The endpoints were published not ready because the data is stale.
    pub stale: Option<Stale>,
}

/// The result of planning one reconcile.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The status to hold after this reconcile.
    pub status: WorkerGroupStatus,
    /// The full, untruncated worker list the status stands for.
    pub workers: Vec<WorkerStatus>,
    /// Whether `status` differs from the previous one and must be written.
    pub write: bool,
    /// Events to emit after the write.
    pub events: Vec<EventSpec>,
    /// What changed in the worker set.
    pub changes: ChangeSet,
}

/// Plans one reconcile: the next status, whether to write it, and the events.
pub fn plan(input: Input<'_>) -> Plan {
    let empty = WorkerGroupStatus::default();
    if input.quiet_failure && matches!(input.outcome, PollOutcome::Transient(_)) {
        return unchanged(&input, &empty);
    }
    let base = Baseline::new(&input, &empty);
    let (mut judged, found) = judge(&input, &base);

    let mut next = base.prev.clone();
    next.observed_generation = input.generation;
    if input.resync.is_some() {
        next.last_handled_resync_at = input.resync.clone();
    }
    next.conditions = kstatus_conditions(&judged, &base, &input);
    add_discovery(&mut next, &input, base.prev, &mut judged.events);
    add_settings(&mut next, &input, &base, &mut judged.events);
    // Only when the endpoints were published (not, say, under an unusable Service name).
    if let (DiscoveryUpdate::Published(d), Some(found)) = (&input.discovery, &found)
        && d.problem
            .as_ref()
            .is_none_or(|(reason, _)| *reason != Reason::InvalidServiceName)
    {
        endpoint_events(&base, found, &input, &mut judged.events);
    }
    let (workers, changes, heartbeat_due) = record_workers(&mut next, base, found, &input);
    next.ready_summary = Some(settings::ready_summary(
        next.ready_workers,
        next.worker_count,
        next.settings.as_ref(),
    ));

    let prev = input.previous.unwrap_or(&empty);
    let write = input.previous.is_none() || !same_content(prev, &next) || heartbeat_due;
    if !write {
        next = prev.clone();
    } else if matches!(input.outcome, PollOutcome::Synced(_)) {
        next.last_sync_time = Some(input.now);
    }
    Plan {
        status: next,
        workers,
        write,
        events: judged.events,
        changes,
    }
}

/// A failure below the threshold: the status and the last data stay as they were.
fn unchanged(input: &Input<'_>, empty: &WorkerGroupStatus) -> Plan {
    let base = Baseline::new(input, empty);
    Plan {
        status: base.prev.clone(),
        workers: base.full,
        write: false,
        events: Vec::new(),
        changes: ChangeSet::default(),
    }
}

/// What the previous status offers to compare with.
struct Baseline<'a> {
    prev: &'a WorkerGroupStatus,
    /// The previous full worker list of this workergroup.
    full: Vec<WorkerStatus>,
    /// The status list was truncated and nothing fuller is remembered (after a restart).
    partial: bool,
    /// The status describes the workergroup polled now (not one before an id change).
    same_group: bool,
    /// The current generation has been synced: its last reconcile ended with neither a
    /// pending first sync nor a stall.
    synced_current: bool,
}

impl<'a> Baseline<'a> {
    fn new(input: &Input<'a>, empty: &'a WorkerGroupStatus) -> Self {
        let prev = input.previous.unwrap_or(empty);
        let same_group = prev.is_of(input.scope);
        let full = match input.previous_full {
            Some(full) => full.to_vec(),
            None if same_group => prev.workers.clone(),
            None => Vec::new(),
        };
        let gen_ = input.generation;
        Self {
            prev,
            full,
            partial: input.previous_full.is_none() && same_group && prev.workers_truncated,
            same_group,
            synced_current: prev.observed_generation == gen_
                && gen_.is_some()
                && prev.last_sync_time.is_some()
                && is_false(&prev.conditions, RECONCILING)
                && is_false(&prev.conditions, STALLED),
        }
    }

    fn ready_reason(&self) -> Option<&str> {
        find(&self.prev.conditions, READY).map(|c| c.reason.as_str())
    }
}

/// What a successful poll found, against the baseline.
struct Found {
    workers: Vec<WorkerStatus>,
    changes: ChangeSet,
    heartbeat_due: bool,
}

fn compare(base: &Baseline<'_>, workers: &[WorkerStatus], input: &Input<'_>) -> Found {
    let mut changes = diff(&base.full, workers);
    // After a restart a truncated status list is all there is to compare with: ids beyond
    // it may be old, so they are not announced as added.
    if base.partial {
        changes.added.clear();
    }
    let heartbeat_due = match (base.prev.last_sync_time, input.heartbeat) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(last), Some(every)) => input.now.duration_since(last).unsigned_abs() >= every,
    };
    Found {
        workers: workers.to_vec(),
        changes,
        heartbeat_due,
    }
}

/// The outcome judged: the three kstatus conditions and the events of the transition.
struct Judged {
    ready: Verdict,
    reconciling: Verdict,
    stalled: Verdict,
    events: Vec<EventSpec>,
}

/// Judges the outcome; a successful poll is also compared with the baseline.
fn judge(input: &Input<'_>, base: &Baseline<'_>) -> (Judged, Option<Found>) {
    let prev_reason = base.ready_reason();
    let judged = match &input.outcome {
        PollOutcome::Synced(workers) => {
            let found = compare(base, workers, input);
            let ready_n = found.workers.iter().filter(|w| w.ready).count();
            let msg = format!("{ready_n}/{} workers ready", found.workers.len());
            let mut events = Vec::new();
            if !found.changes.is_empty() {
                events.push(EventSpec::normal(
                    Reason::WorkersChanged,
                    "Sync",
                    found.changes.note(),
                ));
            }
            if prev_reason.is_some_and(|r| r != Reason::Synced && r != Reason::Suspended) {
                let note = format!("polling Vast works again; {msg}");
                events.push(EventSpec::normal(Reason::SyncRecovered, "Sync", note));
            }
            let judged = Judged {
                ready: Verdict::new(true, Reason::Synced, msg),
                reconciling: Verdict::new(false, Reason::Synced, ""),
                stalled: Verdict::new(false, Reason::Synced, ""),
                events,
            };
            return (judged, Some(found));
        }
        PollOutcome::Suspended => {
            let was_ready = conditions::is_true(&base.prev.conditions, READY);
            let msg = match base.prev.last_sync_time {
                Some(t) => format!("polling is suspended; workers as of {t}"),
                None => "polling is suspended; Vast was never polled".to_string(),
            };
            let mut events = Vec::new();
            if prev_reason.is_none_or(|r| r != Reason::Suspended) {
                let note = "spec.suspend is true: Vast is no longer polled";
                events.push(EventSpec::normal(Reason::Suspended, "Suspend", note));
            }
            Judged {
                ready: Verdict::new(was_ready, Reason::Suspended, msg),
                reconciling: Verdict::new(false, Reason::Suspended, ""),
                stalled: Verdict::new(false, Reason::Suspended, ""),
                events,
            }
        }
        PollOutcome::Transient(err) => {
            let prev_ready = find(&base.prev.conditions, READY);
            // The message keeps the time of the first failure and changes only when the
            // error text does, so a repeating error writes nothing.
            let msg = match prev_ready {
                Some(c) if c.reason == Reason::PollFailed && same_error(&c.message, err) => {
                    c.message.clone()
                }
                Some(c) if c.reason == Reason::PollFailed => {
                    format!("{err} (failing since {})", c.last_transition_time)
                }
                _ => format!("{err} (failing since {})", input.now),
            };
            let mut events = Vec::new();
            if prev_reason.is_none_or(|r| r != Reason::PollFailed) {
                let note = format!("{err}; retrying with backoff");
                events.push(EventSpec::warning(Reason::SyncFailed, "Sync", note));
            }
            let reconciling = if base.synced_current {
                Verdict::new(false, Reason::Retrying, "")
            } else {
                Verdict::new(true, Reason::Progressing, PENDING)
            };
            Judged {
                ready: Verdict::new(false, Reason::PollFailed, msg),
                reconciling,
                stalled: Verdict::new(false, Reason::Retrying, ""),
                events,
            }
        }
        PollOutcome::Terminal { reason, message } => {
            let reason = *reason;
            let mut events = Vec::new();
            if prev_reason.is_none_or(|r| r != reason) {
                events.push(EventSpec::warning(reason, "Sync", message.clone()));
            }
            Judged {
                ready: Verdict::new(false, reason, message.clone()),
                reconciling: Verdict::new(false, reason, ""),
                stalled: Verdict::new(true, reason, message.clone()),
                events,
            }
        }
    };
    (judged, None)
}

/// Whether a `PollFailed` message (`<error> (failing since <time>)`) tells the same error
/// as `err`, apart from what differs on every try: any word with a digit in it (request
/// ids, timestamps, byte counts, ports). Otherwise a 5xx body with a request id would
/// write the status on every retry.
fn same_error(message: &str, err: &str) -> bool {
    let before = message
        .rsplit_once(" (failing since ")
        .map_or(message, |(e, _)| e);
    fn words(s: &str) -> Vec<&str> {
        s.split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '"')
            .filter(|w| !w.is_empty())
            .map(|w| {
                if w.contains(|c: char| c.is_ascii_digit()) {
                    "#"
                } else {
                    w
                }
            })
            .collect()
    }
    words(before) == words(err)
}

/// The message of `Reconciling=True`.
const PENDING: &str = "the current spec has not been synced yet";

fn kstatus_conditions(
    judged: &Judged,
    base: &Baseline<'_>,
    input: &Input<'_>,
) -> Vec<crate::crd::Condition> {
    let prev = &base.prev.conditions;
    let (gen_, now) = (input.generation, input.now);
    vec![
        condition(READY, judged.ready.clone(), gen_, prev, now),
        condition(RECONCILING, judged.reconciling.clone(), gen_, prev, now),
        condition(STALLED, judged.stalled.clone(), gen_, prev, now),
    ]
}

/// Adds `status.discovery` and the `DiscoveryReady` condition (and the event of a new
/// discovery problem).
fn add_discovery(
    next: &mut WorkerGroupStatus,
    input: &Input<'_>,
    prev: &WorkerGroupStatus,
    events: &mut Vec<EventSpec>,
) {
    let prev_conds = &prev.conditions;
    let d = match &input.discovery {
        DiscoveryUpdate::Disabled => {
            next.discovery = None;
            return;
        }
        DiscoveryUpdate::Unchanged => {
            if let Some(c) = find(prev_conds, DISCOVERY_READY) {
                next.conditions.push(c.clone());
            }
            return;
        }
        DiscoveryUpdate::Published(d) => d,
    };
    next.discovery = Some(d.status.clone());
    let verdict = match (&d.problem, &d.stale) {
        (Some((reason, msg)), _) => Verdict::new(false, *reason, msg.clone()),
        (None, Some(stale)) => Verdict::new(false, Reason::Stale, stale.message()),
        (None, None) => Verdict::new(
            true,
            Reason::Published,
            format!(
                "{} endpoints published under Service {}",
                d.status.endpoints, d.status.service_name
            ),
        ),
    };
    let prev_reason = find(prev_conds, DISCOVERY_READY).map(|c| c.reason.as_str());
    if !verdict.status && prev_reason.is_none_or(|r| r != verdict.reason) {
        events.push(EventSpec::warning(
            verdict.reason,
            "Publish",
            verdict.message.clone(),
        ));
    }
    next.conditions.push(condition(
        DISCOVERY_READY,
        verdict,
        input.generation,
        prev_conds,
        input.now,
    ));
}

/// Adds `status.settings` and the `SettingsSynced` condition, and the events of a
/// change: `SettingsChanged` naming each field, `EndpointNotActive` when the endpoint's
/// state turns to anything but `active`, and the warning of a new failure.
fn add_settings(
    next: &mut WorkerGroupStatus,
    input: &Input<'_>,
    base: &Baseline<'_>,
    events: &mut Vec<EventSpec>,
) {
    // Settings and their condition on record are of the scope polled now only if the
    // workers are: those of another scope go (and their times with them).
    let prev_conds: &[crate::crd::Condition] = if base.same_group {
        &base.prev.conditions
    } else {
        &[]
    };
    let previous = base.prev.settings.as_ref().filter(|_| base.same_group);
    let keep = |next: &mut WorkerGroupStatus| {
        next.settings = previous.cloned();
        if let Some(c) = find(prev_conds, SETTINGS_SYNCED) {
            next.conditions.push(c.clone());
        }
    };
    let verdict = match &input.settings {
        SettingsUpdate::Disabled => {
            next.settings = None;
            return;
        }
        SettingsUpdate::Unchanged | SettingsUpdate::Failed { report: false, .. } => {
            keep(next);
            return;
        }
        SettingsUpdate::Failed {
            reason,
            message,
            fallback,
            ..
        } => {
            next.settings = previous.cloned().or_else(|| fallback.as_deref().cloned());
            if previous.is_none() {
                endpoint_not_active(None, next.settings.as_ref(), events);
            }
            let prev = find(prev_conds, SETTINGS_SYNCED);
            if prev.is_none_or(|c| c.reason != *reason) {
                let note = match next.settings {
                    Some(_) => format!("{message}; the last settings stay"),
                    None => message.clone(),
                };
                events.push(EventSpec::warning(*reason, "ReadSettings", note));
            }
            // The same error again (apart from request ids and the like) writes nothing.
            let message = match prev {
                Some(c) if c.reason == *reason && same_error(&c.message, message) => {
                    c.message.clone()
                }
                _ => message.clone(),
            };
            Verdict::new(false, *reason, message)
        }
        SettingsUpdate::Read(read) => {
            if let Some(old) = previous {
                let changed = settings::changes(old, read);
                if !changed.is_empty() {
                    let note = crate::text::cut(changed.join(", "), super::MAX_NOTE);
                    events.push(EventSpec::normal(
                        Reason::SettingsChanged,
                        "ReadSettings",
                        note,
                    ));
                }
            }
            endpoint_not_active(previous, Some(read.as_ref()), events);
            next.settings = Some((**read).clone());
            let what = match (&read.endpoint_name, read.max_workers) {
                (Some(name), Some(max)) => format!("endpoint {name}, at most {max} workers"),
                (Some(name), None) => format!("endpoint {name}"),
                _ => "settings read".to_string(),
            };
            Verdict::new(true, Reason::SettingsRead, what)
        }
    };
    next.conditions.push(condition(
        SETTINGS_SYNCED,
        verdict,
        input.generation,
        prev_conds,
        input.now,
    ));
}

/// The `EndpointNotActive` event when the endpoint's state, known in `now`, is not
/// `active` and was not so in `before`.
fn endpoint_not_active(
    before: Option<&crate::crd::SettingsStatus>,
    now: Option<&crate::crd::SettingsStatus>,
    events: &mut Vec<EventSpec>,
) {
    let Some(state) = settings::not_active(now) else {
        return;
    };
    if settings::not_active(before) == Some(state) {
        return;
    }
    let name = now
        .and_then(|s| s.endpoint_name.as_deref())
        .unwrap_or("(unnamed)");
    let note = format!("endpoint {name} is {state} at Vast (its endpoint_state is not active)");
    events.push(EventSpec::warning(
        Reason::EndpointNotActive,
        "ReadSettings",
        note,
    ));
}

/// The events of workers newly refused by the address policy or newly beyond
/// `--max-endpoints`: one per change, never one per poll.
fn endpoint_events(
    base: &Baseline<'_>,
    found: &Found,
    input: &Input<'_>,
    events: &mut Vec<EventSpec>,
) {
    let policy = input.endpoints;
    let now = endpoints::select(&found.workers, policy);
    let before = if base.same_group {
        endpoints::select(&base.full, policy)
    } else {
        endpoints::Selection::default()
    };
    let recorded = base.prev.discovery.as_ref();
    let (refused, over_before) = if base.partial {
        // After a restart the baseline may be a truncated list: what status recorded
        // says what was already told. Refusals are new only if their count grew, and
        // the cap was already exceeded if workers were skipped with the cap filled.
        let told = recorded.map_or(0, |d| d.refused);
        let refused = (told < now.refused.len() as i64)
            .then(|| endpoints::newly_refused(&endpoints::Selection::default(), &now))
            .flatten();
        let over =
            recorded.is_some_and(|d| d.skipped > 0 && d.endpoints >= policy.max_endpoints as i64);
        (refused, over)
    } else {
        (
            endpoints::newly_refused(&before, &now),
            before.over_limit() > 0,
        )
    };
    if let Some(note) = refused {
        events.push(EventSpec::warning(Reason::EndpointRefused, "Publish", note));
    }
    if now.over_limit() > 0 && !over_before {
        let note = endpoints::over_limit_note(&now, policy.max_endpoints);
        events.push(EventSpec::warning(
            Reason::TooManyEndpoints,
            "Publish",
            note,
        ));
    }
}

/// Records the workers the status stands for; returns the full list, the changes and
/// whether the heartbeat is due.
fn record_workers(
    next: &mut WorkerGroupStatus,
    base: Baseline<'_>,
    found: Option<Found>,
    input: &Input<'_>,
) -> (Vec<WorkerStatus>, ChangeSet, bool) {
    let (workers, changes, heartbeat_due) = match found {
        Some(f) => {
            if !f.changes.is_empty() || base.prev.last_change_time.is_none() {
                next.last_change_time = Some(input.now);
            }
            (f.workers, f.changes, f.heartbeat_due)
        }
        None => {
            if !base.same_group {
                // The workers on record belong to another workergroup: they are gone.
                next.last_change_time = Some(input.now);
            }
            (base.full, ChangeSet::default(), false)
        }
    };
    if matches!(input.outcome, PollOutcome::Synced(_)) || !base.same_group {
        workers::fill(
            next,
            &workers,
            input.scope,
            input.max_workers,
            input.endpoints,
        );
    }
    (workers, changes, heartbeat_due)
}

/// Compares two statuses, ignoring what refreshes only with a write: `lastSyncTime`
/// and the workers' load figures.
pub fn same_content(a: &WorkerGroupStatus, b: &WorkerGroupStatus) -> bool {
    fn strip(s: &WorkerGroupStatus) -> WorkerGroupStatus {
        let mut s = s.clone();
        s.last_sync_time = None;
        for w in &mut s.workers {
            w.cur_load = None;
            w.reqs_working = None;
            w.perf = None;
        }
        s
    }
    strip(a) == strip(b)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "plan_properties.rs"]
mod properties;
