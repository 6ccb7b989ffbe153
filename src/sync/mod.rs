//! The pure core: from the previous status and the outcome of one poll, compute the next
//! status, whether it must be written, and which events to emit. No I/O here (a test
//! checks that this module names no I/O crate).
//!
//! [`plan`] reads as its steps: take the baseline from the previous status, compare what
//! a successful poll found, judge the outcome into the kstatus conditions, add the
//! discovery condition, record the workers, and decide whether anything changed.

pub mod conditions;
pub mod diff;
pub mod endpoints;
pub mod events;
pub mod freshness;
pub mod schedule;
pub mod workers;

use std::time::Duration;

use jiff::Timestamp;

use crate::crd::{DiscoveryStatus, WorkerGroupStatus, WorkerStatus};
use crate::vast::{VastError, Worker};

pub use conditions::{DISCOVERY_READY, READY, RECONCILING, STALLED, Verdict};
pub use diff::{ChangeSet, MAX_NOTE, diff};
pub use endpoints::EndpointPolicy;
pub use events::EventSpec;
pub use freshness::{Freshness, Stale, stale_after};
pub use workers::{is_ready_state, to_status_workers};

use conditions::{condition, find, is_false};

/// What one poll found out.
#[derive(Debug, Clone)]
pub enum PollOutcome {
    /// Vast answered with these workers (as status entries, sorted by id).
    Synced(Vec<WorkerStatus>),
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

impl PollOutcome {
    /// The outcome of a Vast call.
    pub fn from_vast(result: Result<Vec<Worker>, VastError>) -> Self {
        match result {
            Ok(found) => PollOutcome::Synced(to_status_workers(&found)),
            Err(e) => e.into(),
        }
    }
}

impl PollOutcome {
    /// The `result` label of `vast_operator_reconciles_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            PollOutcome::Synced(_) => "synced",
            PollOutcome::Suspended => "suspended",
            PollOutcome::Transient(_) => "poll_failed",
            PollOutcome::Terminal { .. } => "terminal_error",
        }
    }
}

impl From<VastError> for PollOutcome {
    fn from(e: VastError) -> Self {
        if e.is_terminal() {
            PollOutcome::Terminal {
                reason: e.reason(),
                message: e.to_string(),
            }
        } else {
            PollOutcome::Transient(e.to_string())
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
    pub outcome: PollOutcome,
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
    /// The value of the resync annotation this poll answers, if any.
    pub resync: Option<String>,
    /// A transient failure below the failure threshold: nothing changes yet.
    pub quiet_failure: bool,
    /// Which worker addresses may be published (also keeps refused ones out of
    /// `readyUrls`).
    pub endpoints: &'a EndpointPolicy,
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
    // Only when the endpoints were published (not, say, under an unusable Service name).
    if let (DiscoveryUpdate::Published(d), Some(found)) = (&input.discovery, &found)
        && d.problem
            .as_ref()
            .is_none_or(|(reason, _)| *reason != "InvalidServiceName")
    {
        endpoint_events(&base, found, &input, &mut judged.events);
    }
    let (workers, changes, heartbeat_due) = record_workers(&mut next, base, found, &input);

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
        let same_group = prev
            .workergroup_id
            .is_none_or(|id| id == input.workergroup_id);
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
                    "WorkersChanged",
                    "Sync",
                    found.changes.note(),
                ));
            }
            if prev_reason.is_some_and(|r| r != "Synced" && r != "Suspended") {
                let note = format!("polling Vast works again; {msg}");
                events.push(EventSpec::normal("SyncRecovered", "Sync", note));
            }
            let judged = Judged {
                ready: Verdict::new(true, "Synced", msg),
                reconciling: Verdict::new(false, "Synced", ""),
                stalled: Verdict::new(false, "Synced", ""),
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
            if prev_reason != Some("Suspended") {
                let note = "spec.suspend is true: Vast is no longer polled";
                events.push(EventSpec::normal("Suspended", "Suspend", note));
            }
            Judged {
                ready: Verdict::new(was_ready, "Suspended", msg),
                reconciling: Verdict::new(false, "Suspended", ""),
                stalled: Verdict::new(false, "Suspended", ""),
                events,
            }
        }
        PollOutcome::Transient(err) => {
            let prev_ready = find(&base.prev.conditions, READY);
            // The message keeps the time of the first failure and changes only when the
            // error text does, so a repeating error writes nothing.
            let msg = match prev_ready {
                Some(c) if c.reason == "PollFailed" && same_error(&c.message, err) => {
                    c.message.clone()
                }
                Some(c) if c.reason == "PollFailed" => {
                    format!("{err} (failing since {})", c.last_transition_time)
                }
                _ => format!("{err} (failing since {})", input.now),
            };
            let mut events = Vec::new();
            if prev_reason != Some("PollFailed") {
                let note = format!("{err}; retrying with backoff");
                events.push(EventSpec::warning("SyncFailed", "Sync", note));
            }
            let reconciling = if base.synced_current {
                Verdict::new(false, "Retrying", "")
            } else {
                Verdict::new(true, "Progressing", PENDING)
            };
            Judged {
                ready: Verdict::new(false, "PollFailed", msg),
                reconciling,
                stalled: Verdict::new(false, "Retrying", ""),
                events,
            }
        }
        PollOutcome::Terminal { reason, message } => {
            let mut events = Vec::new();
            if prev_reason != Some(*reason) {
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

/// `DiscoveryReady` reason: the endpoints are published not ready, the data being stale.
pub const STALE: &str = "Stale";

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
        (Some((reason, msg)), _) => Verdict::new(false, reason, msg.clone()),
        (None, Some(stale)) => Verdict::new(false, STALE, stale.message()),
        (None, None) => Verdict::new(
            true,
            "Published",
            format!(
                "{} endpoints published under Service {}",
                d.status.endpoints, d.status.service_name
            ),
        ),
    };
    let prev_reason = find(prev_conds, DISCOVERY_READY).map(|c| c.reason.as_str());
    if !verdict.status && prev_reason != Some(verdict.reason) {
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
        events.push(EventSpec::warning("EndpointRefused", "Publish", note));
    }
    if now.over_limit() > 0 && !over_before {
        let note = endpoints::over_limit_note(&now, policy.max_endpoints);
        events.push(EventSpec::warning("TooManyEndpoints", "Publish", note));
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
            input.workergroup_id,
            input.max_workers,
            input.endpoints,
        );
    } else if next.ready_summary.is_none() {
        next.ready_summary = Some(format!("{}/{}", next.ready_workers, next.worker_count));
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
mod tests {
    use super::*;
    use crate::crd::Condition;

    fn w(id: i64, status: &str) -> Worker {
        Worker {
            id,
            status: status.into(),
            url: Some(format!("http://203.0.113.{id}:8000")),
            created_at: None,
            cur_load: Some(id as f64),
            reqs_working: None,
            perf: None,
        }
    }

    pub(super) fn default_policy() -> &'static EndpointPolicy {
        static POLICY: std::sync::LazyLock<EndpointPolicy> =
            std::sync::LazyLock::new(EndpointPolicy::default);
        &POLICY
    }

    fn synced(workers: Vec<Worker>) -> PollOutcome {
        PollOutcome::from_vast(Ok(workers))
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("ts")
    }

    fn input(prev: Option<&WorkerGroupStatus>, outcome: PollOutcome, now: Timestamp) -> Input<'_> {
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
            resync: None,
            quiet_failure: false,
            endpoints: default_policy(),
        }
    }

    fn cond<'a>(s: &'a WorkerGroupStatus, t: &str) -> &'a Condition {
        find(&s.conditions, t).expect("condition present")
    }

    #[test]
    fn first_sync_writes_and_announces() {
        let p = plan(input(
            None,
            synced(vec![w(2, "idle"), w(1, "loading")]),
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
        let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
        let mut moved = w(1, "idle");
        moved.cur_load = Some(99.0);
        let p = plan(input(Some(&first), synced(vec![moved]), t(30)));
        assert!(!p.write);
        assert!(p.events.is_empty());
        assert_eq!(p.status, first);
    }

    #[test]
    fn heartbeat_refreshes_last_sync_time() {
        let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
        let p = plan(input(Some(&first), synced(vec![w(1, "idle")]), t(601)));
        assert!(p.write);
        assert_eq!(p.status.last_sync_time, Some(t(601)));
        assert_eq!(p.status.last_change_time, Some(t(0)));
        assert!(p.events.is_empty());
        let mut i = input(Some(&first), synced(vec![w(1, "idle")]), t(601));
        i.heartbeat = None;
        assert!(!plan(i).write);
    }

    #[test]
    fn changes_make_one_event_with_a_true_note() {
        let first = plan(input(
            None,
            synced(vec![w(1, "loading"), w(2, "idle"), w(3, "idle")]),
            t(0),
        ))
        .status;
        let p = plan(input(
            Some(&first),
            synced(vec![w(1, "idle"), w(3, "idle"), w(4, "creating")]),
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
        let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
        let p1 = plan(input(
            Some(&first),
            PollOutcome::Transient("HTTP 503".into()),
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
            PollOutcome::Transient("HTTP 503".into()),
            t(60),
        ));
        assert!(!p2.write, "a repeating error writes nothing");
        assert!(p2.events.is_empty());

        let p3 = plan(input(Some(&p1.status), synced(vec![w(1, "idle")]), t(90)));
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
        let p = plan(input(None, PollOutcome::Transient("timeout".into()), t(0)));
        assert_eq!(cond(&p.status, RECONCILING).status, "True");
        assert_eq!(cond(&p.status, READY).status, "False");
        assert_eq!(p.status.ready_summary.as_deref(), Some("0/0"));
    }

    #[test]
    fn terminal_error_stalls_once() {
        let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
        let terminal = || PollOutcome::Terminal {
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
        let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
        let p = plan(input(Some(&first), PollOutcome::Suspended, t(30)));
        assert!(p.write);
        let ready = cond(&p.status, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Suspended")
        );
        assert_eq!(ready.last_transition_time, t(0));
        assert_eq!(p.status.workers, first.workers);
        let again = plan(input(Some(&p.status), PollOutcome::Suspended, t(60)));
        assert!(!again.write);
    }

    #[test]
    fn generation_change_is_written() {
        let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
        let mut i = input(Some(&first), synced(vec![w(1, "idle")]), t(30));
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
        let mut i = input(None, synced(ws), t(0));
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
        let p = plan(input(None, synced(vec![w(1, "quantum_flux")]), t(0)));
        assert_eq!(p.status.workers[0].status, "quantum_flux");
        assert!(!p.status.workers[0].ready);
    }

    #[test]
    fn a_new_workergroup_id_drops_the_old_workers() {
        let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
        assert_eq!(first.workergroup_id, Some(1));
        let mut i = input(
            Some(&first),
            PollOutcome::Transient("timeout".into()),
            t(30),
        );
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
        let mut i = input(Some(&p.status), synced(vec![w(5, "idle")]), t(60));
        i.workergroup_id = 2;
        i.generation = Some(2);
        let p = plan(i);
        assert_eq!(p.events[0].note, "+1 (ids 5)");
    }

    #[test]
    fn a_truncated_baseline_announces_no_unknown_additions() {
        let mut i = input(None, synced((1..=5).map(|n| w(n, "idle")).collect()), t(0));
        i.max_workers = 2;
        let first = plan(i).status;
        assert!(first.workers_truncated);
        // After a restart (no memory): ids 3..5 are not new, 2 changed state.
        let mut ws: Vec<Worker> = (1..=5).map(|n| w(n, "idle")).collect();
        ws[1].status = "error".into();
        let mut i = input(Some(&first), synced(ws), t(30));
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
        let mut i = input(None, synced(vec![w(1, "idle")]), t(0));
        i.discovery = DiscoveryUpdate::Published(Discovery {
            status: DiscoveryStatus {
                service_name: "svc".into(),
                endpoints: 1,
                skipped: 0,
                refused: 0,
                reason: String::new(),
            },
            problem: Some(("DiscoveryConflict", "Service svc exists".into())),
            stale: None,
        });
        let p = plan(i);
        assert_eq!(cond(&p.status, DISCOVERY_READY).reason, "DiscoveryConflict");
        assert!(
            p.events
                .iter()
                .any(|e| e.reason == "DiscoveryConflict" && e.warning)
        );
        let mut i = input(Some(&p.status), synced(vec![w(1, "idle")]), t(30));
        i.discovery = DiscoveryUpdate::Unchanged;
        let again = plan(i);
        assert!(!again.write, "nothing changed");
        assert_eq!(
            cond(&again.status, DISCOVERY_READY).reason,
            "DiscoveryConflict"
        );
        let mut i = input(Some(&p.status), synced(vec![w(1, "idle")]), t(60));
        i.discovery = DiscoveryUpdate::Disabled;
        let off = plan(i);
        assert!(off.write);
        assert!(off.status.discovery.is_none());
        assert!(find(&off.status.conditions, DISCOVERY_READY).is_none());
    }

    #[test]
    fn refused_addresses_warn_once_per_change_and_never_reach_ready_urls() {
        let published = |refused: i64| {
            DiscoveryUpdate::Published(Discovery {
                status: DiscoveryStatus {
                    service_name: "svc".into(),
                    endpoints: 1,
                    skipped: 0,
                    refused,
                    reason: String::new(),
                },
                problem: None,
                stale: None,
            })
        };
        let at = |id: i64, url: &str| Worker {
            url: Some(url.into()),
            ..w(id, "idle")
        };
        let ws = vec![
            at(1, "http://203.0.113.1:8000"),
            at(2, "http://10.96.0.1:443"),
        ];
        let mut i = input(None, synced(ws.clone()), t(0));
        i.discovery = published(1);
        let first = plan(i);
        assert_eq!(first.status.ready_urls, ["http://203.0.113.1:8000"]);
        assert_eq!(
            first.status.workers.len(),
            2,
            "the refused worker is listed"
        );
        let refused: Vec<&EventSpec> = first
            .events
            .iter()
            .filter(|e| e.reason == "EndpointRefused")
            .collect();
        assert_eq!(refused.len(), 1, "{:?}", first.events);
        assert!(refused[0].warning);
        assert!(
            refused[0].note.contains("worker 2 by 10.0.0.0/8"),
            "{}",
            refused[0].note
        );
        assert!(!refused[0].note.contains("10.96.0.1"));

        // The same refusal again: no event.
        let mut i = input(Some(&first.status), synced(ws.clone()), t(30));
        i.previous_full = Some(&first.workers);
        i.discovery = published(1);
        let again = plan(i);
        assert!(!again.events.iter().any(|e| e.reason == "EndpointRefused"));

        // A second worker refused by another rule: one event naming only it.
        let mut more = ws.clone();
        more.push(at(3, "http://[fd00::3]:8000"));
        let mut i = input(Some(&again.status), synced(more), t(60));
        i.previous_full = Some(&again.workers);
        i.discovery = published(2);
        let third = plan(i);
        let notes: Vec<&str> = third
            .events
            .iter()
            .filter(|e| e.reason == "EndpointRefused")
            .map(|e| e.note.as_str())
            .collect();
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("worker 3 by fc00::/7"), "{}", notes[0]);
        assert!(!notes[0].contains("worker 2"), "{}", notes[0]);

        // Discovery off: refusals are not told, and readyUrls still leave them out.
        let i = input(None, synced(ws), t(0));
        let off = plan(i);
        assert!(!off.events.iter().any(|e| e.reason == "EndpointRefused"));
        assert_eq!(off.status.ready_urls, ["http://203.0.113.1:8000"]);
    }

    #[test]
    fn too_many_endpoints_warns_once() {
        static CAP: std::sync::LazyLock<EndpointPolicy> =
            std::sync::LazyLock::new(|| EndpointPolicy::new(Vec::new(), Vec::new(), 2));
        let published = DiscoveryUpdate::Published(Discovery::default());
        let mut i = input(None, synced((1..=2).map(|n| w(n, "idle")).collect()), t(0));
        i.endpoints = &CAP;
        i.discovery = published.clone();
        let under = plan(i);
        assert!(!under.events.iter().any(|e| e.reason == "TooManyEndpoints"));
        let mut i = input(
            Some(&under.status),
            synced((1..=4).map(|n| w(n, "idle")).collect()),
            t(30),
        );
        i.previous_full = Some(&under.workers);
        i.endpoints = &CAP;
        i.discovery = published.clone();
        let over = plan(i);
        assert_eq!(
            over.events
                .iter()
                .filter(|e| e.reason == "TooManyEndpoints")
                .count(),
            1,
            "{:?}",
            over.events
        );
        let mut i = input(
            Some(&over.status),
            synced((1..=5).map(|n| w(n, "idle")).collect()),
            t(60),
        );
        i.previous_full = Some(&over.workers);
        i.endpoints = &CAP;
        i.discovery = published;
        let still = plan(i);
        assert!(!still.events.iter().any(|e| e.reason == "TooManyEndpoints"));
    }

    #[test]
    fn stale_endpoints_say_so_once_and_recover() {
        let published = |stale: Option<Stale>| {
            DiscoveryUpdate::Published(Discovery {
                status: DiscoveryStatus {
                    service_name: "svc".into(),
                    endpoints: 1,
                    skipped: 0,
                    refused: 0,
                    reason: String::new(),
                },
                problem: None,
                stale,
            })
        };
        let mut i = input(None, synced(vec![w(1, "idle")]), t(0));
        i.discovery = published(None);
        let fresh = plan(i).status;
        assert_eq!(cond(&fresh, DISCOVERY_READY).reason, "Published");
        let stale = Stale {
            last_success: Some(t(0)),
            terminal: None,
        };
        let failing = || PollOutcome::Transient("HTTP 503".into());
        let mut i = input(Some(&fresh), failing(), t(200));
        i.discovery = published(Some(stale.clone()));
        let p = plan(i);
        let c = cond(&p.status, DISCOVERY_READY);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", STALE));
        assert!(c.message.contains(&t(0).to_string()), "{}", c.message);
        assert!(p.events.iter().any(|e| e.reason == STALE && e.warning));
        // Still stale later, with another error text: no new event; the condition holds.
        let mut i = input(Some(&p.status), failing(), t(400));
        i.discovery = published(Some(stale));
        let again = plan(i);
        assert!(again.events.iter().all(|e| e.reason != STALE));
        assert_eq!(
            cond(&again.status, DISCOVERY_READY),
            cond(&p.status, DISCOVERY_READY)
        );
        // A successful poll makes them fresh again.
        let mut i = input(Some(&again.status), synced(vec![w(1, "idle")]), t(500));
        i.discovery = published(None);
        let back = plan(i);
        assert!(back.write);
        assert_eq!(cond(&back.status, DISCOVERY_READY).reason, "Published");
    }

    #[test]
    fn an_error_that_differs_only_in_request_ids_writes_once() {
        let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
        let e = |id: &str| PollOutcome::Transient(format!("HTTP 502: bad gateway (request {id})"));
        let p1 = plan(input(Some(&first), e("a1b2c3"), t(10)));
        assert!(p1.write);
        let p2 = plan(input(Some(&p1.status), e("9f8e7d"), t(20)));
        assert!(!p2.write, "a new request id wrote the status");
        assert!(p2.events.is_empty());
        // A different error is news.
        let other = PollOutcome::Transient("cannot connect to vast".into());
        let p3 = plan(input(Some(&p2.status), other, t(30)));
        assert!(p3.write);
        assert!(
            cond(&p3.status, READY)
                .message
                .starts_with("cannot connect")
        );
    }

    #[test]
    fn a_resync_request_is_recorded_and_written_once() {
        let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
        let mut i = input(Some(&first), synced(vec![w(1, "idle")]), t(30));
        i.resync = Some("v1".into());
        let p = plan(i);
        assert!(p.write, "the answer to a request is written");
        assert_eq!(p.status.last_handled_resync_at.as_deref(), Some("v1"));
        let again = plan(input(Some(&p.status), synced(vec![w(1, "idle")]), t(60)));
        assert!(!again.write);
        assert_eq!(again.status.last_handled_resync_at.as_deref(), Some("v1"));
    }

    #[test]
    fn a_failure_below_the_threshold_changes_nothing() {
        let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
        let mut i = input(
            Some(&first),
            PollOutcome::Transient("HTTP 503".into()),
            t(30),
        );
        i.quiet_failure = true;
        let p = plan(i);
        assert!(!p.write);
        assert!(p.events.is_empty());
        assert_eq!(p.status, first);
        assert_eq!(p.workers.len(), 1, "the last data stays");
    }

    #[test]
    fn each_outcome_has_its_metric_label() {
        let terminal = PollOutcome::Terminal {
            reason: "AuthenticationFailed",
            message: String::new(),
        };
        let labels: Vec<&str> = [
            synced(vec![]),
            PollOutcome::Suspended,
            PollOutcome::Transient("HTTP 503".into()),
            terminal,
        ]
        .iter()
        .map(PollOutcome::metric_label)
        .collect();
        assert_eq!(
            labels,
            ["synced", "suspended", "poll_failed", "terminal_error"]
        );
    }

    #[test]
    fn refusals_are_told_under_any_discovery_problem_but_an_unusable_service_name() {
        let ws = vec![Worker {
            url: Some("http://10.96.0.1:443".into()),
            ..w(2, "idle")
        }];
        let refused_event = |reason: &'static str| {
            let mut i = input(None, synced(ws.clone()), t(0));
            i.discovery = DiscoveryUpdate::Published(Discovery {
                problem: Some((reason, "a problem".into())),
                ..Discovery::default()
            });
            plan(i).events.iter().any(|e| e.reason == "EndpointRefused")
        };
        assert!(refused_event("DiscoveryConflict"));
        assert!(refused_event("DiscoveryFailed"));
        assert!(
            !refused_event("InvalidServiceName"),
            "nothing was published"
        );
    }

    #[test]
    fn a_new_error_keeps_the_time_of_the_first_failure() {
        let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
        let p1 = plan(input(
            Some(&first),
            PollOutcome::Transient("HTTP 503".into()),
            t(30),
        ));
        let since = |s: &WorkerGroupStatus| cond(s, READY).message.clone();
        assert_eq!(
            since(&p1.status),
            format!("HTTP 503 (failing since {})", t(30))
        );
        let p2 = plan(input(
            Some(&p1.status),
            PollOutcome::Transient("connection refused".into()),
            t(60),
        ));
        assert!(p2.write);
        assert_eq!(
            since(&p2.status),
            format!("connection refused (failing since {})", t(30))
        );
    }

    #[test]
    fn errors_that_differ_in_a_word_are_news_even_with_digits_in_them() {
        let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
        let e = |s: &str| PollOutcome::Transient(s.into());
        let p1 = plan(input(Some(&first), e("upstream 502 bad gateway"), t(10)));
        let p2 = plan(input(Some(&p1.status), e("upstream 502 timed out"), t(20)));
        assert!(p2.write, "another error is written");
        assert!(
            cond(&p2.status, READY)
                .message
                .starts_with("upstream 502 timed out")
        );
        // Commas, semicolons and quotes separate words too: only a number changed.
        let p3 = plan(input(
            Some(&p2.status),
            e("upstream,503;\"timed\"out"),
            t(30),
        ));
        assert!(!p3.write, "{}", cond(&p3.status, READY).message);
    }

    #[test]
    fn after_a_restart_on_a_truncated_list_the_recorded_counts_say_what_was_told() {
        static CAP: std::sync::LazyLock<EndpointPolicy> =
            std::sync::LazyLock::new(|| EndpointPolicy::new(Vec::new(), Vec::new(), 3));
        // Five workers, the status keeps two: a restart finds only a truncated baseline.
        let ws = |refused: bool| -> Vec<Worker> {
            (1..=5)
                .map(|n| Worker {
                    url: Some(if refused && n == 5 {
                        "http://10.96.0.1:443".to_string()
                    } else {
                        format!("http://203.0.113.{n}:8000")
                    }),
                    ..w(n, "idle")
                })
                .collect()
        };
        let after_restart =
            |workers: Vec<Worker>, recorded: DiscoveryStatus| -> Vec<&'static str> {
                let mut i = input(None, synced(workers.clone()), t(0));
                i.max_workers = 2;
                let mut prev = plan(i).status;
                assert!(prev.workers_truncated);
                prev.discovery = Some(recorded);
                let mut i = input(Some(&prev), synced(workers), t(30));
                i.max_workers = 2;
                i.endpoints = &CAP;
                i.discovery = DiscoveryUpdate::Published(Discovery::default());
                plan(i).events.iter().map(|e| e.reason).collect()
            };
        let recorded = |endpoints: i64, skipped: i64, refused: i64| DiscoveryStatus {
            service_name: "svc".into(),
            endpoints,
            skipped,
            refused,
            reason: String::new(),
        };
        let refused = |events: &[&str]| events.contains(&"EndpointRefused");
        let too_many = |events: &[&str]| events.contains(&"TooManyEndpoints");
        // One refusal: told if status recorded none, not again if it recorded one.
        assert!(refused(&after_restart(ws(true), recorded(3, 1, 0))));
        assert!(!refused(&after_restart(ws(true), recorded(3, 1, 1))));
        // Five publishable, three allowed: already told when the cap was filled with
        // workers left out; news when the cap was not filled, or nothing was left out.
        assert!(!too_many(&after_restart(ws(false), recorded(3, 2, 0))));
        assert!(too_many(&after_restart(ws(false), recorded(2, 1, 0))));
        assert!(too_many(&after_restart(ws(false), recorded(3, 0, 0))));
    }
}

#[cfg(test)]
mod properties {
    //! Property tests of the pure core: no panic on any input; the plan is idempotent
    //! (planning again from what it produced, with the same outcome, writes nothing and
    //! tells nothing); the diff accounts for every worker.

    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn worker() -> impl Strategy<Value = Worker> {
        let state = prop::sample::select(vec![
            "idle",
            "running",
            "loading",
            "error",
            "stopping",
            "destroying",
            "weird_state",
        ]);
        (1i64..40, state, prop::option::of(0u8..4)).prop_map(|(id, st, url)| Worker {
            id,
            status: st.to_string(),
            url: url.map(|n| format!("http://198.51.100.{n}:400{n}")),
            created_at: None,
            cur_load: None,
            reqs_working: None,
            perf: None,
        })
    }

    fn outcome() -> impl Strategy<Value = PollOutcome> {
        prop_oneof![
            prop::collection::vec(worker(), 0..30).prop_map(|ws| PollOutcome::from_vast(Ok(ws))),
            Just(PollOutcome::Suspended),
            "[a-z0-9 ]{0,40}".prop_map(PollOutcome::Transient),
            (
                prop::sample::select(vec!["AuthenticationFailed", "NotFound", "SecretNotFound"]),
                "[a-z ]{0,30}"
            )
                .prop_map(|(reason, message)| PollOutcome::Terminal { reason, message }),
        ]
    }

    fn input_of(
        prev: Option<&WorkerGroupStatus>,
        outcome: PollOutcome,
        now: i64,
        max_workers: usize,
    ) -> Input<'_> {
        Input {
            previous: prev,
            previous_full: None,
            generation: Some(3),
            outcome,
            now: Timestamp::from_second(1_800_000_000 + now).expect("ts"),
            max_workers,
            heartbeat: None,
            workergroup_id: 1,
            discovery: DiscoveryUpdate::Disabled,
            resync: None,
            quiet_failure: false,
            endpoints: super::tests::default_policy(),
        }
    }

    proptest! {
        #[test]
        fn planning_twice_writes_once(
            first in outcome(),
            second in outcome(),
            max_workers in 1usize..40,
        ) {
            // Any history, then the same outcome twice.
            let p0 = plan(input_of(None, first, 0, max_workers));
            let p1 = plan(input_of(Some(&p0.status), second.clone(), 10, max_workers));
            let p2 = plan(input_of(Some(&p1.status), second, 20, max_workers));
            prop_assert!(!p2.write, "a repeated outcome wrote: {:?}", p2.status);
            prop_assert!(p2.events.is_empty(), "a repeated outcome told: {:?}", p2.events);
            prop_assert!(p2.status.workers.len() <= max_workers);
            prop_assert_eq!(
                p2.status.ready_workers,
                p1.status.ready_workers
            );
        }

        #[test]
        fn the_diff_accounts_for_every_worker(
            old in prop::collection::vec(worker(), 0..30),
            new in prop::collection::vec(worker(), 0..30),
        ) {
            let (old, new) = (to_status_workers(&old), to_status_workers(&new));
            let cs = diff(&old, &new);
            let old_ids: BTreeSet<i64> = old.iter().map(|w| w.id).collect();
            let new_ids: BTreeSet<i64> = new.iter().map(|w| w.id).collect();
            let added: BTreeSet<i64> = cs.added.iter().copied().collect();
            let removed: BTreeSet<i64> = cs.removed.iter().copied().collect();
            prop_assert_eq!(&added, &(&new_ids - &old_ids));
            prop_assert_eq!(&removed, &(&old_ids - &new_ids));
            // Every state change of the input, and nothing else, from a model of the input.
            let state = |ws: &[WorkerStatus]| -> std::collections::BTreeMap<i64, String> {
                ws.iter().map(|w| (w.id, w.status.clone())).collect()
            };
            let (before, after) = (state(&old), state(&new));
            let expected: BTreeSet<(i64, String, String)> = before
                .iter()
                .filter_map(|(id, a)| {
                    let b = after.get(id)?;
                    (a != b).then(|| (*id, a.clone(), b.clone()))
                })
                .collect();
            let reported: BTreeSet<(i64, String, String)> = cs.changed.iter().cloned().collect();
            prop_assert_eq!(reported, expected);
            prop_assert_eq!(cs.changed.len(), cs.changed.iter().map(|c| c.0).collect::<BTreeSet<_>>().len());
            prop_assert_eq!(cs.is_empty(), old_ids == new_ids && cs.changed.is_empty());
            prop_assert!(cs.note().len() <= MAX_NOTE + 4);
        }

        #[test]
        fn status_counts_agree_with_the_list(
            ws in prop::collection::vec(worker(), 0..60),
            max_workers in 1usize..80,
        ) {
            let p = plan(input_of(None, PollOutcome::from_vast(Ok(ws)), 0, max_workers));
            let st = &p.status;
            prop_assert_eq!(st.worker_count as usize, p.workers.len());
            prop_assert_eq!(
                st.ready_workers as usize,
                p.workers.iter().filter(|w| w.ready).count()
            );
            prop_assert_eq!(st.workers_truncated, p.workers.len() > max_workers);
            prop_assert!(st.workers.len() <= max_workers);
            prop_assert_eq!(
                st.status_counts.values().sum::<i64>() as usize,
                p.workers.len()
            );
        }
    }
}
