//! Unit tests of [`super::plan`]: each rule of the plan, with its own example.

use super::*;
use crate::crd::Condition;
use crate::crd::DiscoveryStatus;
use crate::crd::Scope;
use crate::reasons::Reason;
use crate::vast::Worker;
use jiff::Timestamp;
use std::time::Duration;

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
        scope: Scope::Workergroup(1),
        discovery: DiscoveryUpdate::Disabled,
        resync: None,
        quiet_failure: false,
        endpoints: default_policy(),
        settings: SettingsUpdate::Disabled,
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
        reason: Reason::AuthenticationFailed,
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
    i.scope = Scope::Workergroup(2);
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
    i.scope = Scope::Workergroup(2);
    i.generation = Some(2);
    let p = plan(i);
    assert_eq!(p.events[0].note, "+1 (ids 5)");
}

/// An endpoint with the same number as the workergroup before is another scope: its
/// workers replace the old ones, and the status records the endpoint, not the group.
#[test]
fn a_switch_to_an_endpoint_of_the_same_number_drops_the_old_workers() {
    let first = plan(input(None, synced(vec![w(1, "idle")]), t(0))).status;
    let mut i = input(
        Some(&first),
        PollOutcome::Transient("timeout".into()),
        t(30),
    );
    i.scope = Scope::Endpoint(1);
    i.generation = Some(2);
    let p = plan(i);
    assert!(p.status.workers.is_empty(), "{:?}", p.status.workers);
    assert_eq!(
        (p.status.workergroup_id, p.status.endpoint_id),
        (None, Some(1))
    );
    assert_eq!(p.status.scope(), Some(Scope::Endpoint(1)));
    let mut i = input(Some(&p.status), synced(vec![w(1, "idle")]), t(60));
    i.scope = Scope::Endpoint(1);
    i.generation = Some(2);
    let p = plan(i);
    assert_eq!(p.events[0].note, "+1 (ids 1)", "{:?}", p.events);
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
        problem: Some((Reason::DiscoveryConflict, "Service svc exists".into())),
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
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", Reason::Stale.as_str())
    );
    assert!(c.message.contains(&t(0).to_string()), "{}", c.message);
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == Reason::Stale && e.warning)
    );
    // Still stale later, with another error text: no new event; the condition holds.
    let mut i = input(Some(&p.status), failing(), t(400));
    i.discovery = published(Some(stale));
    let again = plan(i);
    assert!(again.events.iter().all(|e| e.reason != Reason::Stale));
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
        reason: Reason::AuthenticationFailed,
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
    let refused_event = |reason: Reason| {
        let mut i = input(None, synced(ws.clone()), t(0));
        i.discovery = DiscoveryUpdate::Published(Discovery {
            problem: Some((reason, "a problem".into())),
            ..Discovery::default()
        });
        plan(i).events.iter().any(|e| e.reason == "EndpointRefused")
    };
    assert!(refused_event(Reason::DiscoveryConflict));
    assert!(refused_event(Reason::DiscoveryFailed));
    assert!(
        !refused_event(Reason::InvalidServiceName),
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
    let after_restart = |workers: Vec<Worker>, recorded: DiscoveryStatus| -> Vec<&'static str> {
        let mut i = input(None, synced(workers.clone()), t(0));
        i.max_workers = 2;
        let mut prev = plan(i).status;
        assert!(prev.workers_truncated);
        prev.discovery = Some(recorded);
        let mut i = input(Some(&prev), synced(workers), t(30));
        i.max_workers = 2;
        i.endpoints = &CAP;
        i.discovery = DiscoveryUpdate::Published(Discovery::default());
        plan(i).events.iter().map(|e| e.reason.as_str()).collect()
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

fn settings(max: i64, state: &str) -> crate::crd::SettingsStatus {
    crate::crd::SettingsStatus {
        endpoint_id: Some(3),
        endpoint_name: Some("llama".into()),
        endpoint_state: Some(state.into()),
        max_workers: Some(max),
        ..Default::default()
    }
}

fn with_settings(prev: Option<&WorkerGroupStatus>, update: SettingsUpdate, now: Timestamp) -> Plan {
    let mut i = input(prev, synced(vec![w(1, "idle")]), now);
    i.settings = update;
    plan(i)
}

/// Settings read: shown with the condition; a change names each field once, and an
/// endpoint that stops being active is told and shown in readySummary.
#[test]
fn settings_are_shown_and_each_change_is_told_once() {
    let first = with_settings(
        None,
        SettingsUpdate::Read(Box::new(settings(20, "active"))),
        t(0),
    );
    assert_eq!(first.status.settings, Some(settings(20, "active")));
    let c = cond(&first.status, crate::sync::SETTINGS_SYNCED);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "SettingsRead")
    );
    assert!(
        !first
            .events
            .iter()
            .any(|e| e.reason == Reason::SettingsChanged)
    );
    assert_eq!(first.status.ready_summary.as_deref(), Some("1/1"));

    let same = with_settings(
        Some(&first.status),
        SettingsUpdate::Read(Box::new(settings(20, "active"))),
        t(30),
    );
    assert!(!same.write, "nothing changed: nothing written");

    let changed = with_settings(
        Some(&first.status),
        SettingsUpdate::Read(Box::new(settings(40, "suspended"))),
        t(60),
    );
    assert!(changed.write);
    let notes: Vec<(Reason, &str)> = changed
        .events
        .iter()
        .map(|e| (e.reason, e.note.as_str()))
        .collect();
    assert!(
        notes.contains(&(
            Reason::SettingsChanged,
            "endpointState active -> suspended, maxWorkers 20 -> 40"
        )),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|(r, n)| *r == Reason::EndpointNotActive && n.contains("suspended"))
    );
    assert_eq!(
        changed.status.ready_summary.as_deref(),
        Some("1/1 (suspended)")
    );
    assert_eq!(
        cond(&changed.status, READY).status,
        "True",
        "settings do not change Ready"
    );
    // Still suspended: not told again.
    let again = with_settings(
        Some(&changed.status),
        SettingsUpdate::Read(Box::new(settings(40, "suspended"))),
        t(90),
    );
    assert!(
        again
            .events
            .iter()
            .all(|e| e.reason != Reason::EndpointNotActive)
    );
}

/// A failure below the threshold changes nothing; at the threshold the condition turns
/// False with one event, the last settings stay, and Ready is untouched.
#[test]
fn a_settings_failure_keeps_the_last_settings_and_not_ready() {
    let first = with_settings(
        None,
        SettingsUpdate::Read(Box::new(settings(20, "active"))),
        t(0),
    );
    let quiet = with_settings(
        Some(&first.status),
        SettingsUpdate::Failed {
            reason: Reason::SettingsUnavailable,
            message: "rate limited".into(),
            report: false,
            fallback: None,
        },
        t(30),
    );
    assert!(
        !quiet.write && quiet.events.is_empty(),
        "{:?}",
        quiet.events
    );
    let failed = SettingsUpdate::Failed {
        reason: Reason::SettingsUnavailable,
        message: "rate limited by Vast (HTTP 429)".into(),
        report: true,
        fallback: None,
    };
    let told = with_settings(Some(&first.status), failed.clone(), t(60));
    assert_eq!(told.status.settings, Some(settings(20, "active")));
    let c = cond(&told.status, crate::sync::SETTINGS_SYNCED);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "SettingsUnavailable")
    );
    assert_eq!(cond(&told.status, READY).status, "True");
    assert_eq!(
        told.events
            .iter()
            .filter(|e| e.reason == Reason::SettingsUnavailable)
            .count(),
        1
    );
    let again = with_settings(Some(&told.status), failed, t(90));
    assert!(
        again
            .events
            .iter()
            .all(|e| e.reason != Reason::SettingsUnavailable)
    );
    // Switched off: settings and condition go.
    let off = with_settings(Some(&again.status), SettingsUpdate::Disabled, t(120));
    assert!(off.status.settings.is_none());
    assert!(find(&off.status.conditions, crate::sync::SETTINGS_SYNCED).is_none());
}

/// Settings and their condition belong to a scope: after a switch, nothing of the old
/// scope's stays, even while the new one is not read (suspended).
#[test]
fn another_scopes_settings_and_condition_go_together() {
    let first = with_settings(
        None,
        SettingsUpdate::Read(Box::new(settings(20, "active"))),
        t(0),
    );
    let mut i = input(Some(&first.status), PollOutcome::Suspended, t(30));
    i.scope = Scope::Endpoint(9);
    i.generation = Some(2);
    i.settings = SettingsUpdate::Unchanged;
    let p = plan(i);
    assert!(p.status.settings.is_none());
    assert!(find(&p.status.conditions, crate::sync::SETTINGS_SYNCED).is_none());
}

/// A failure that repeats with another request id writes nothing; a first status during
/// an outage takes the last good listing.
#[test]
fn a_repeating_settings_failure_writes_once_and_a_new_status_takes_the_last_listing() {
    let failed = |id: u32| SettingsUpdate::Failed {
        reason: Reason::SettingsUnavailable,
        message: format!("the console listing could not be read: HTTP 503 (request {id})"),
        report: true,
        fallback: Some(Box::new(settings(20, "active"))),
    };
    let first = with_settings(None, failed(1), t(0));
    assert_eq!(first.status.settings, Some(settings(20, "active")));
    assert_eq!(
        cond(&first.status, crate::sync::SETTINGS_SYNCED).status,
        "False"
    );
    let again = with_settings(Some(&first.status), failed(2), t(30));
    assert!(!again.write, "{:?}", again.status.conditions);
    assert!(again.events.is_empty(), "{:?}", again.events);
}

/// A first status whose settings come from the last good listing (the console failing
/// now) tells a suspended endpoint too: the read after it sees the same state and
/// would not.
#[test]
fn settings_from_the_last_listing_tell_a_suspended_endpoint() {
    let failed = SettingsUpdate::Failed {
        reason: Reason::SettingsUnavailable,
        message: "the console listing could not be read: HTTP 503".into(),
        report: true,
        fallback: Some(Box::new(settings(20, "suspended"))),
    };
    let first = with_settings(None, failed, t(0));
    assert!(
        first
            .events
            .iter()
            .any(|e| e.reason == Reason::EndpointNotActive),
        "{:?}",
        first.events
    );
    let read = with_settings(
        Some(&first.status),
        SettingsUpdate::Read(Box::new(settings(20, "suspended"))),
        t(30),
    );
    assert!(
        read.events
            .iter()
            .all(|e| e.reason != Reason::EndpointNotActive)
    );
}
