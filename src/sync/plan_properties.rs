//! Property tests of the pure core: no panic on any input; the plan is idempotent
//! (planning again from what it produced, with the same outcome, writes nothing and
//! tells nothing); the diff accounts for every worker.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::crd::Scope;
use crate::reasons::Reason;
use crate::sync::*;
use crate::vast::Worker;
use jiff::Timestamp;

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
            prop::sample::select(vec![
                Reason::AuthenticationFailed,
                Reason::WorkergroupNotFound,
                Reason::SecretNotFound,
            ]),
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
        scope: Scope::Workergroup(1),
        discovery: DiscoveryUpdate::Disabled,
        resync: None,
        quiet_failure: false,
        endpoints: super::tests::default_policy(),
        settings: SettingsUpdate::Disabled,
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

    /// A remembered full list that the status lists too (the same workers, load figures
    /// aside, not truncated) plans exactly as no remembered list: the operator's memory
    /// drops such a copy and lets the plan read the status's.
    #[test]
    fn a_remembered_list_the_status_holds_plans_as_none(
        first in outcome(),
        second in outcome(),
        max_workers in 1usize..40,
        load in 0.0f64..10.0,
    ) {
        let p0 = plan(input_of(None, first, 0, max_workers));
        prop_assume!(!p0.status.workers_truncated);
        let full: Vec<WorkerStatus> = p0
            .status
            .workers
            .iter()
            .cloned()
            .map(|mut w| {
                w.cur_load = Some(load);
                w
            })
            .collect();
        let without = plan(input_of(Some(&p0.status), second.clone(), 10, max_workers));
        let with = plan(Input {
            previous_full: Some(&full),
            ..input_of(Some(&p0.status), second, 10, max_workers)
        });
        prop_assert_eq!(with.write, without.write);
        prop_assert_eq!(&with.events, &without.events);
        prop_assert_eq!(&with.status, &without.status);
    }
}
