//! The pure core: from the previous status and the outcome of one poll, compute the next
//! status, whether it must be written, and which events to emit. No I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;

use crate::crd::{Condition, DiscoveryStatus, WorkerGroupStatus, WorkerStatus};
use crate::vast::{VastError, Worker};

/// Condition types.
pub const READY: &str = "Ready";
/// Condition types.
pub const RECONCILING: &str = "Reconciling";
/// Condition types.
pub const STALLED: &str = "Stalled";
/// Condition types: the Service and EndpointSlices are published.
pub const DISCOVERY_READY: &str = "DiscoveryReady";

/// Largest event note, in bytes.
pub const MAX_NOTE: usize = 1024;

/// Whether a Vast state means the worker serves requests.
pub fn is_ready_state(status: &str) -> bool {
    matches!(status, "idle" | "running")
}

/// What one reconcile found out.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Vast answered with this list of workers.
    Synced(Vec<Worker>),
    /// `spec.suspend` is true: nothing was asked.
    Suspended,
    /// An error that retrying may fix.
    Transient(String),
    /// An error that retrying will not fix (reason, message).
    Terminal {
        /// CamelCase reason, e.g. `SecretNotFound`.
        reason: &'static str,
        /// Message for the condition and the event.
        message: String,
    },
}

impl From<VastError> for Outcome {
    fn from(e: VastError) -> Self {
        if e.is_terminal() {
            Outcome::Terminal {
                reason: e.reason(),
                message: e.to_string(),
            }
        } else {
            Outcome::Transient(e.to_string())
        }
    }
}

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
    pub outcome: Outcome,
    /// Now, in whole seconds.
    pub now: Timestamp,
    /// Cap on `status.workers`.
    pub max_workers: usize,
    /// Refresh `lastSyncTime` at least this often when nothing changed (`None`: never).
    pub heartbeat: Option<Duration>,
    /// The workergroup polled (`spec.workergroupId`).
    pub workergroup_id: i64,
    /// What discovery did.
    pub discovery: DiscoveryUpdate,
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
    pub problem: Option<(&'static str, String)>,
}

/// One event to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// PascalCase reason.
    pub reason: &'static str,
    /// What the controller did: PascalCase.
    pub action: &'static str,
    /// Human-readable note, at most 1 KiB.
    pub note: String,
}

/// What changed in the worker set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Workers that appeared.
    pub added: Vec<i64>,
    /// Workers that went away.
    pub removed: Vec<i64>,
    /// Workers whose state changed: (id, old, new).
    pub changed: Vec<(i64, String, String)>,
}

impl ChangeSet {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// `+2 (ids 1, 2) -1 (ids 3) ~1 (4: loading->idle)`, cut to [`MAX_NOTE`] bytes.
    pub fn note(&self) -> String {
        let mut s = String::new();
        let ids = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        if !self.added.is_empty() {
            let _ = write!(s, "+{} (ids {}) ", self.added.len(), ids(&self.added));
        }
        if !self.removed.is_empty() {
            let _ = write!(s, "-{} (ids {}) ", self.removed.len(), ids(&self.removed));
        }
        if !self.changed.is_empty() {
            let parts: Vec<String> = self
                .changed
                .iter()
                .map(|(id, a, b)| format!("{id}: {a}->{b}"))
                .collect();
            let _ = write!(s, "~{} ({})", self.changed.len(), parts.join(", "));
        }
        cut(s.trim_end().to_string(), MAX_NOTE)
    }
}

/// Cuts `s` to at most `max` bytes on a char boundary, ending with `…` when cut.
pub fn cut(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

/// Compares two worker lists by id and state.
pub fn diff(old: &[WorkerStatus], new: &[WorkerStatus]) -> ChangeSet {
    let old_map: BTreeMap<i64, &str> = old.iter().map(|w| (w.id, w.status.as_str())).collect();
    let new_map: BTreeMap<i64, &str> = new.iter().map(|w| (w.id, w.status.as_str())).collect();
    let mut cs = ChangeSet::default();
    for (id, state) in &new_map {
        match old_map.get(id) {
            None => cs.added.push(*id),
            Some(old_state) if old_state != state => {
                cs.changed
                    .push((*id, (*old_state).to_string(), (*state).to_string()))
            }
            Some(_) => {}
        }
    }
    cs.removed = old_map
        .keys()
        .filter(|id| !new_map.contains_key(id))
        .copied()
        .collect();
    cs
}

/// Converts Vast workers to status entries, sorted by id.
pub fn to_status_workers(workers: &[Worker]) -> Vec<WorkerStatus> {
    let mut out: Vec<WorkerStatus> = workers
        .iter()
        .map(|w| WorkerStatus {
            id: w.id,
            status: w.status.clone(),
            ready: is_ready_state(&w.status),
            url: w.url.clone(),
            created_at: w.created_at,
            cur_load: w.cur_load,
            reqs_working: w.reqs_working,
            perf: w.perf,
        })
        .collect();
    out.sort_by_key(|w| w.id);
    out.dedup_by_key(|w| w.id);
    out
}

/// Keeps at most `max` workers, ready ones first, and returns them sorted by id.
fn truncate_workers(all: &[WorkerStatus], max: usize) -> Vec<WorkerStatus> {
    if all.len() <= max {
        return all.to_vec();
    }
    let mut keep: Vec<&WorkerStatus> = all.iter().filter(|w| w.ready).take(max).collect();
    let room = max - keep.len();
    keep.extend(all.iter().filter(|w| !w.ready).take(room));
    let mut out: Vec<WorkerStatus> = keep.into_iter().cloned().collect();
    out.sort_by_key(|w| w.id);
    out
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

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time)
        .unwrap_or(now);
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: cut(message, 32768),
        last_transition_time,
        observed_generation: generation,
    }
}

fn find<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
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

/// Plans one reconcile: the next status, whether to write it, and the events.
pub fn plan(input: Input<'_>) -> Plan {
    let empty = WorkerGroupStatus::default();
    let prev = input.previous.unwrap_or(&empty);
    let prev_conds = prev.conditions.as_slice();
    let gen_ = input.generation;
    let now = input.now;
    let prev_ready = find(prev_conds, READY);
    let prev_reason = prev_ready.map(|c| c.reason.as_str());
    // Workers of another workergroup (the id changed) are no baseline at all.
    let same_group = prev
        .workergroup_id
        .is_none_or(|id| id == input.workergroup_id);
    let prev_full: Vec<WorkerStatus> = match input.previous_full {
        Some(full) => full.to_vec(),
        None if same_group => prev.workers.clone(),
        None => Vec::new(),
    };
    // After a restart, a truncated status list is all there is to compare with: ids
    // beyond it may be old, so they are not announced as added.
    let partial_baseline = input.previous_full.is_none() && same_group && prev.workers_truncated;
    // The current generation has been synced when the last reconcile of this generation
    // ended with neither a pending first sync nor a stall.
    let synced_current = prev.observed_generation == gen_
        && gen_.is_some()
        && prev.last_sync_time.is_some()
        && find(prev_conds, RECONCILING).is_some_and(|c| c.status == "False")
        && find(prev_conds, STALLED).is_some_and(|c| c.status == "False");

    let mut next = prev.clone();
    next.observed_generation = gen_;
    let mut events = Vec::new();
    let mut changes = ChangeSet::default();
    let mut workers = prev_full.clone();
    let mut heartbeat_due = false;

    let (ready, reason, message, reconciling, stalled) = match &input.outcome {
        Outcome::Synced(found) => {
            workers = to_status_workers(found);
            changes = diff(&prev_full, &workers);
            if partial_baseline {
                changes.added.clear();
            }
            let ready_n = workers.iter().filter(|w| w.ready).count();
            let msg = format!("{ready_n}/{} workers ready", workers.len());
            if !changes.is_empty() || prev.last_change_time.is_none() {
                next.last_change_time = Some(now);
            }
            heartbeat_due = match (prev.last_sync_time, input.heartbeat) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(last), Some(every)) => now.duration_since(last).unsigned_abs().ge(&every),
            };
            if !changes.is_empty() {
                events.push(EventSpec {
                    warning: false,
                    reason: "WorkersChanged",
                    action: "Sync",
                    note: changes.note(),
                });
            }
            if prev_reason.is_some_and(|r| r != "Synced" && r != "Suspended") {
                events.push(EventSpec {
                    warning: false,
                    reason: "SyncRecovered",
                    action: "Sync",
                    note: format!("polling Vast works again; {msg}"),
                });
            }
            (true, "Synced", msg, (false, "Synced"), (false, "Synced"))
        }
        Outcome::Suspended => {
            let was_ready = prev_ready.is_some_and(|c| c.status == "True");
            let msg = match prev.last_sync_time {
                Some(t) => format!("polling is suspended; workers as of {t}"),
                None => "polling is suspended; Vast was never polled".to_string(),
            };
            if prev_reason != Some("Suspended") {
                events.push(EventSpec {
                    warning: false,
                    reason: "Suspended",
                    action: "Suspend",
                    note: "spec.suspend is true: Vast is no longer polled".into(),
                });
            }
            (
                was_ready,
                "Suspended",
                msg,
                (false, "Suspended"),
                (false, "Suspended"),
            )
        }
        Outcome::Transient(err) => {
            // The message keeps the time of the first failure; it changes only when the
            // error text does, so a repeating error writes nothing.
            let since = match prev_ready {
                Some(c) if c.reason == "PollFailed" => c.last_transition_time,
                _ => now,
            };
            let msg = format!("{err} (failing since {since})");
            if prev_reason != Some("PollFailed") {
                events.push(EventSpec {
                    warning: true,
                    reason: "SyncFailed",
                    action: "Sync",
                    note: cut(format!("{err}; retrying with backoff"), MAX_NOTE),
                });
            }
            let pending = if synced_current {
                (false, "Retrying")
            } else {
                (true, "Progressing")
            };
            (false, "PollFailed", msg, pending, (false, "Retrying"))
        }
        Outcome::Terminal { reason, message } => {
            if prev_reason != Some(*reason) {
                events.push(EventSpec {
                    warning: true,
                    reason,
                    action: "Sync",
                    note: cut(message.clone(), MAX_NOTE),
                });
            }
            (
                false,
                *reason,
                message.clone(),
                (false, *reason),
                (true, *reason),
            )
        }
    };

    // A transient error keeps the message of its first occurrence unless the error text
    // itself changed.
    let message = match (&input.outcome, prev_ready) {
        (Outcome::Transient(err), Some(c))
            if c.reason == "PollFailed" && c.message.starts_with(err.as_str()) =>
        {
            c.message.clone()
        }
        _ => message,
    };

    let reconciling_msg = if reconciling.0 {
        "the current spec has not been synced yet".to_string()
    } else {
        String::new()
    };
    let stalled_msg = if stalled.0 {
        message.clone()
    } else {
        String::new()
    };
    next.conditions = vec![
        condition(READY, ready, reason, message, gen_, prev_conds, now),
        condition(
            RECONCILING,
            reconciling.0,
            reconciling.1,
            reconciling_msg,
            gen_,
            prev_conds,
            now,
        ),
        condition(
            STALLED,
            stalled.0,
            stalled.1,
            stalled_msg,
            gen_,
            prev_conds,
            now,
        ),
    ];
    let discovery = match &input.discovery {
        DiscoveryUpdate::Disabled => None,
        DiscoveryUpdate::Unchanged => {
            if let Some(c) = find(prev_conds, DISCOVERY_READY) {
                next.conditions.push(c.clone());
            }
            None
        }
        DiscoveryUpdate::Published(d) => {
            next.discovery = Some(d.status.clone());
            Some(d)
        }
    };
    if matches!(input.discovery, DiscoveryUpdate::Disabled) {
        next.discovery = None;
    }
    if let Some(d) = discovery {
        let (ok, reason, msg) = match &d.problem {
            None => (
                true,
                "Published",
                format!(
                    "{} endpoints published under Service {}",
                    d.status.endpoints, d.status.service_name
                ),
            ),
            Some((reason, msg)) => (false, *reason, msg.clone()),
        };
        let prev_reason = find(prev_conds, DISCOVERY_READY).map(|c| c.reason.as_str());
        if let Some((reason, msg)) = &d.problem
            && prev_reason != Some(*reason)
        {
            events.push(EventSpec {
                warning: true,
                reason,
                action: "Publish",
                note: cut(msg.clone(), MAX_NOTE),
            });
        }
        next.conditions.push(condition(
            DISCOVERY_READY,
            ok,
            reason,
            msg,
            gen_,
            prev_conds,
            now,
        ));
    }

    let synced = matches!(input.outcome, Outcome::Synced(_));
    if !synced && !same_group {
        // The workers on record belong to another workergroup: they are gone.
        next.last_change_time = Some(now);
    }
    if synced || !same_group {
        next.workergroup_id = Some(input.workergroup_id);
        let status_counts = workers.iter().fold(BTreeMap::new(), |mut m, w| {
            *m.entry(w.status.clone()).or_insert(0) += 1;
            m
        });
        let ready_n = workers.iter().filter(|w| w.ready).count() as i64;
        next.workers = truncate_workers(&workers, input.max_workers);
        next.worker_count = workers.len() as i64;
        next.ready_workers = ready_n;
        next.ready_summary = Some(format!("{ready_n}/{}", workers.len()));
        next.status_counts = status_counts;
        next.workers_truncated = next.workers.len() < workers.len();
        let mut urls: Vec<String> = workers
            .iter()
            .filter(|w| w.ready)
            .filter_map(|w| w.url.clone())
            .collect();
        urls.sort();
        urls.dedup();
        urls.truncate(input.max_workers);
        next.ready_urls = urls;
    } else if next.ready_summary.is_none() {
        next.ready_summary = Some(format!("{}/{}", next.ready_workers, next.worker_count));
    }

    let changed = !same_content(prev, &next) || input.previous.is_none();
    let write = changed || heartbeat_due;
    if write {
        if matches!(input.outcome, Outcome::Synced(_)) {
            next.last_sync_time = Some(now);
        }
    } else {
        next = prev.clone();
    }
    Plan {
        status: next,
        workers,
        write,
        events,
        changes,
    }
}

/// The ids of the workers in a list, for logs.
pub fn id_set(workers: &[WorkerStatus]) -> BTreeSet<i64> {
    workers.iter().map(|w| w.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: i64, status: &str) -> Worker {
        Worker {
            id,
            status: status.into(),
            url: Some(format!("http://10.0.0.{id}:8000")),
            created_at: None,
            cur_load: Some(id as f64),
            reqs_working: None,
            perf: None,
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("ts")
    }

    fn input(prev: Option<&WorkerGroupStatus>, outcome: Outcome, now: Timestamp) -> Input<'_> {
        Input {
            previous: prev,
            previous_full: None,
            generation: Some(1),
            outcome,
            now,
            max_workers: 500,
            heartbeat: Some(Duration::from_secs(600)),
            workergroup_id: 1,
            discovery: DiscoveryUpdate::Disabled,
        }
    }

    fn cond<'a>(s: &'a WorkerGroupStatus, t: &str) -> &'a Condition {
        find(&s.conditions, t).expect("condition present")
    }

    #[test]
    fn first_sync_writes_and_announces() {
        let p = plan(input(
            None,
            Outcome::Synced(vec![w(2, "idle"), w(1, "loading")]),
            t(0),
        ));
        assert!(p.write);
        assert_eq!(p.status.worker_count, 2);
        assert_eq!(p.status.ready_workers, 1);
        assert_eq!(p.status.ready_summary.as_deref(), Some("1/2"));
        assert_eq!(
            p.status.workers.iter().map(|w| w.id).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(cond(&p.status, READY).status, "True");
        assert_eq!(cond(&p.status, RECONCILING).status, "False");
        assert_eq!(cond(&p.status, STALLED).status, "False");
        assert_eq!(p.status.last_sync_time, Some(t(0)));
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.events[0].reason, "WorkersChanged");
        assert_eq!(p.events[0].note, "+2 (ids 1, 2)");
    }

    #[test]
    fn unchanged_poll_writes_nothing_even_when_load_moves() {
        let first = plan(input(None, Outcome::Synced(vec![w(1, "idle")]), t(0))).status;
        let mut moved = w(1, "idle");
        moved.cur_load = Some(99.0);
        let p = plan(input(Some(&first), Outcome::Synced(vec![moved]), t(30)));
        assert!(!p.write);
        assert!(p.events.is_empty());
        assert_eq!(p.status, first);
    }

    #[test]
    fn heartbeat_refreshes_last_sync_time() {
        let first = plan(input(None, Outcome::Synced(vec![w(1, "idle")]), t(0))).status;
        let p = plan(input(
            Some(&first),
            Outcome::Synced(vec![w(1, "idle")]),
            t(601),
        ));
        assert!(p.write);
        assert_eq!(p.status.last_sync_time, Some(t(601)));
        assert_eq!(p.status.last_change_time, Some(t(0)));
        assert!(p.events.is_empty());
        let mut i = input(Some(&first), Outcome::Synced(vec![w(1, "idle")]), t(601));
        i.heartbeat = None;
        assert!(!plan(i).write);
    }

    #[test]
    fn changes_make_one_event_with_a_true_note() {
        let first = plan(input(
            None,
            Outcome::Synced(vec![w(1, "loading"), w(2, "idle"), w(3, "idle")]),
            t(0),
        ))
        .status;
        let p = plan(input(
            Some(&first),
            Outcome::Synced(vec![w(1, "idle"), w(3, "idle"), w(4, "creating")]),
            t(30),
        ));
        assert!(p.write);
        assert_eq!(p.events.len(), 1);
        assert_eq!(
            p.events[0].note,
            "+1 (ids 4) -1 (ids 2) ~1 (1: loading->idle)"
        );
        assert_eq!(p.status.last_change_time, Some(t(30)));
        assert_eq!(p.status.status_counts.get("idle"), Some(&2));
        assert_eq!(p.status.status_counts.get("creating"), Some(&1));
        // Ready stayed True: its transition time is kept.
        assert_eq!(cond(&p.status, READY).last_transition_time, t(0));
    }

    #[test]
    fn transient_error_keeps_workers_and_does_not_repeat() {
        let first = plan(input(None, Outcome::Synced(vec![w(1, "idle")]), t(0))).status;
        let p1 = plan(input(
            Some(&first),
            Outcome::Transient("HTTP 503".into()),
            t(30),
        ));
        assert!(p1.write);
        assert_eq!(p1.status.workers, first.workers);
        let ready = cond(&p1.status, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "PollFailed")
        );
        assert!(ready.message.contains("HTTP 503"), "{}", ready.message);
        assert_eq!(cond(&p1.status, RECONCILING).status, "False");
        assert_eq!(cond(&p1.status, STALLED).status, "False");
        assert_eq!(p1.events.len(), 1);
        assert!(p1.events[0].warning);
        assert_eq!(p1.events[0].reason, "SyncFailed");

        let p2 = plan(input(
            Some(&p1.status),
            Outcome::Transient("HTTP 503".into()),
            t(60),
        ));
        assert!(!p2.write, "a repeating error writes nothing");
        assert!(p2.events.is_empty());

        let p3 = plan(input(
            Some(&p1.status),
            Outcome::Synced(vec![w(1, "idle")]),
            t(90),
        ));
        assert!(p3.write);
        assert_eq!(cond(&p3.status, READY).status, "True");
        assert_eq!(cond(&p3.status, READY).last_transition_time, t(90));
        assert_eq!(
            p3.events.iter().map(|e| e.reason).collect::<Vec<_>>(),
            ["SyncRecovered"]
        );
    }

    #[test]
    fn transient_error_before_first_sync_is_reconciling() {
        let p = plan(input(None, Outcome::Transient("timeout".into()), t(0)));
        assert_eq!(cond(&p.status, RECONCILING).status, "True");
        assert_eq!(cond(&p.status, READY).status, "False");
        assert_eq!(p.status.ready_summary.as_deref(), Some("0/0"));
    }

    #[test]
    fn terminal_error_stalls_once() {
        let first = plan(input(None, Outcome::Synced(vec![w(1, "idle")]), t(0))).status;
        let terminal = || Outcome::Terminal {
            reason: "AuthenticationFailed",
            message: "Vast refused the API key".into(),
        };
        let p = plan(input(Some(&first), terminal(), t(30)));
        assert_eq!(cond(&p.status, STALLED).status, "True");
        assert_eq!(cond(&p.status, STALLED).reason, "AuthenticationFailed");
        assert_eq!(cond(&p.status, READY).status, "False");
        assert_eq!(p.events.len(), 1);
        let again = plan(input(Some(&p.status), terminal(), t(330)));
        assert!(!again.write);
        assert!(again.events.is_empty());
    }

    #[test]
    fn suspend_keeps_data_and_ready_state() {
        let first = plan(input(None, Outcome::Synced(vec![w(1, "idle")]), t(0))).status;
        let p = plan(input(Some(&first), Outcome::Suspended, t(30)));
        assert!(p.write);
        let ready = cond(&p.status, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Suspended")
        );
        assert_eq!(ready.last_transition_time, t(0));
        assert_eq!(p.status.workers, first.workers);
        let again = plan(input(Some(&p.status), Outcome::Suspended, t(60)));
        assert!(!again.write);
    }

    #[test]
    fn generation_change_is_written() {
        let first = plan(input(None, Outcome::Synced(vec![w(1, "idle")]), t(0))).status;
        let mut i = input(Some(&first), Outcome::Synced(vec![w(1, "idle")]), t(30));
        i.generation = Some(2);
        let p = plan(i);
        assert!(p.write);
        assert_eq!(p.status.observed_generation, Some(2));
        assert!(
            p.status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(2))
        );
    }

    #[test]
    fn truncation_keeps_counts_exact_and_ready_first() {
        let mut ws: Vec<Worker> = (1..=10).map(|i| w(i, "loading")).collect();
        ws.push(w(11, "idle"));
        let mut i = input(None, Outcome::Synced(ws), t(0));
        i.max_workers = 3;
        let p = plan(i);
        assert_eq!(p.status.workers.len(), 3);
        assert!(p.status.workers_truncated);
        assert_eq!(p.status.worker_count, 11);
        assert_eq!(p.status.status_counts.get("loading"), Some(&10));
        assert_eq!(
            p.status.workers.iter().map(|w| w.id).collect::<Vec<_>>(),
            [1, 2, 11]
        );
        assert_eq!(p.workers.len(), 11);
    }

    #[test]
    fn unknown_states_are_kept_and_not_ready() {
        let p = plan(input(
            None,
            Outcome::Synced(vec![w(1, "quantum_flux")]),
            t(0),
        ));
        assert_eq!(p.status.workers[0].status, "quantum_flux");
        assert!(!p.status.workers[0].ready);
    }

    #[test]
    fn a_new_workergroup_id_drops_the_old_workers() {
        let first = plan(input(None, Outcome::Synced(vec![w(1, "idle")]), t(0))).status;
        assert_eq!(first.workergroup_id, Some(1));
        let mut i = input(Some(&first), Outcome::Transient("timeout".into()), t(30));
        i.workergroup_id = 2;
        i.generation = Some(2);
        let p = plan(i);
        assert!(
            p.status.workers.is_empty(),
            "old group's workers are not this one's"
        );
        assert!(p.status.ready_urls.is_empty());
        assert_eq!(p.status.worker_count, 0);
        assert_eq!(p.status.workergroup_id, Some(2));
        assert_eq!(cond(&p.status, RECONCILING).status, "True");
        let mut i = input(Some(&p.status), Outcome::Synced(vec![w(5, "idle")]), t(60));
        i.workergroup_id = 2;
        i.generation = Some(2);
        let p = plan(i);
        assert_eq!(p.events[0].note, "+1 (ids 5)");
    }

    #[test]
    fn a_truncated_baseline_announces_no_unknown_additions() {
        let mut i = input(
            None,
            Outcome::Synced((1..=5).map(|n| w(n, "idle")).collect()),
            t(0),
        );
        i.max_workers = 2;
        let first = plan(i).status;
        assert!(first.workers_truncated);
        // After a restart (no memory): ids 3..5 are not new, 2 changed state.
        let mut ws: Vec<Worker> = (1..=5).map(|n| w(n, "idle")).collect();
        ws[1].status = "error".into();
        let mut i = input(Some(&first), Outcome::Synced(ws), t(30));
        i.max_workers = 2;
        let p = plan(i);
        assert_eq!(p.changes.added, Vec::<i64>::new());
        assert_eq!(
            p.changes.changed,
            [(2, "idle".to_string(), "error".to_string())]
        );
    }

    #[test]
    fn discovery_results_become_a_condition_and_unchanged_keeps_it() {
        let mut i = input(None, Outcome::Synced(vec![w(1, "idle")]), t(0));
        i.discovery = DiscoveryUpdate::Published(Discovery {
            status: DiscoveryStatus {
                service_name: "svc".into(),
                endpoints: 1,
                skipped: 0,
                reason: String::new(),
            },
            problem: Some(("DiscoveryConflict", "Service svc exists".into())),
        });
        let p = plan(i);
        assert_eq!(cond(&p.status, DISCOVERY_READY).reason, "DiscoveryConflict");
        assert!(
            p.events
                .iter()
                .any(|e| e.reason == "DiscoveryConflict" && e.warning)
        );
        let mut i = input(Some(&p.status), Outcome::Synced(vec![w(1, "idle")]), t(30));
        i.discovery = DiscoveryUpdate::Unchanged;
        let again = plan(i);
        assert!(!again.write, "nothing changed");
        assert_eq!(
            cond(&again.status, DISCOVERY_READY).reason,
            "DiscoveryConflict"
        );
        let mut i = input(Some(&p.status), Outcome::Synced(vec![w(1, "idle")]), t(60));
        i.discovery = DiscoveryUpdate::Disabled;
        let off = plan(i);
        assert!(off.write);
        assert!(off.status.discovery.is_none());
        assert!(find(&off.status.conditions, DISCOVERY_READY).is_none());
    }

    #[test]
    fn note_is_cut_to_one_kib() {
        let cs = ChangeSet {
            added: (1_000_000..1_000_400).collect(),
            ..Default::default()
        };
        let note = cs.note();
        assert!(note.len() <= MAX_NOTE);
        assert!(note.starts_with("+400 (ids 1000000, "));
        assert!(note.ends_with('…'));
    }
}
