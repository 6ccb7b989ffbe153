//! What the operator remembers of each WorkerGroup between reconciles: the full worker
//! list of the last successful poll (status may hold a truncated one) and the count of
//! consecutive failures. Memory belongs to one object (uid) and one scope (workergroup or
//! endpoint id): a recreated object or a new scope starts afresh.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;

use crate::crd::{Scope, WorkerGroup, WorkerStatus};

#[derive(Default)]
struct Entry {
    uid: Option<String>,
    scope: Option<Scope>,
    failures: u32,
    api_failures: u32,
    full_workers: Option<Vec<WorkerStatus>>,
    last_success: Option<Timestamp>,
    last_poll: Option<Instant>,
    status_write_failing: bool,
    share: Option<crate::vast::ShareKey>,
    looked_at: bool,
    /// The start-up spread of this term: polled not before this, unless the spec (its
    /// generation) changes or a resync is asked for.
    start_up_until: Option<(Instant, Option<i64>)>,
    reconciled: bool,
}

impl Entry {
    fn belongs_to(&self, wg: &WorkerGroup) -> bool {
        self.uid == wg.meta().uid && self.scope == wg.spec.scope().ok()
    }
}

/// Per-object memory, shared by the reconcilers.
#[derive(Default)]
pub struct Memory(Mutex<HashMap<ObjectRef<WorkerGroup>, Entry>>);

impl Memory {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<ObjectRef<WorkerGroup>, Entry>) -> T) -> T {
        let mut map = self.0.lock();
        f(&mut map)
    }

    /// The entry of `wg`, emptied first when it belonged to another uid or workergroup.
    fn entry<'m>(
        map: &'m mut HashMap<ObjectRef<WorkerGroup>, Entry>,
        wg: &WorkerGroup,
    ) -> &'m mut Entry {
        let entry = map.entry(ObjectRef::from_obj(wg)).or_default();
        if !entry.belongs_to(wg) {
            *entry = Entry {
                uid: wg.meta().uid.clone(),
                scope: wg.spec.scope().ok(),
                ..Default::default()
            };
        }
        entry
    }

    /// The WorkerGroup as its watch shows it now. When its status lists the full workers
    /// remembered (the same scope, not truncated, the same workers but for their load
    /// figures, which are written only with other changes), the copy here is dropped:
    /// the status holds them, and the plan and discovery read the status's list when
    /// nothing fuller is remembered, to the same effect. So the workers of a synced
    /// WorkerGroup are held once (in the watch cache), not twice.
    pub fn settle(&self, wg: &WorkerGroup) {
        self.with(|map| {
            let Some(e) = map.get_mut(&ObjectRef::from_obj(wg)) else {
                return;
            };
            let (Some(full), Some(status), Some(scope)) = (&e.full_workers, &wg.status, e.scope)
            else {
                return;
            };
            if e.belongs_to(wg)
                && status.is_of(scope)
                && !status.workers_truncated
                && status.workers.len() == full.len()
                && status
                    .workers
                    .iter()
                    .zip(full)
                    .all(|(a, b)| a.same_apart_from_load(b))
            {
                e.full_workers = None;
            }
        })
    }

    /// How many WorkerGroups have a worker list remembered here (not yet, or never, the
    /// status's: a truncated status, or a poll whose change is not in the watch yet).
    pub fn lists(&self) -> usize {
        self.with(|map| map.values().filter(|e| e.full_workers.is_some()).count())
    }

    /// The full worker list of the last successful poll of this object and workergroup,
    /// when it is not the status's ([`Memory::settle`]).
    pub fn full_workers(&self, wg: &WorkerGroup) -> Option<Vec<WorkerStatus>> {
        self.with(|map| {
            map.get(&ObjectRef::from_obj(wg))
                .filter(|e| e.belongs_to(wg))
                .and_then(|e| e.full_workers.clone())
        })
    }

    /// A successful poll (Vast answered at `at`): remembers its full list and clears the
    /// failure count.
    pub fn synced(&self, wg: &WorkerGroup, workers: Vec<WorkerStatus>, at: Timestamp) {
        self.with(|map| {
            let e = Self::entry(map, wg);
            e.failures = 0;
            e.api_failures = 0;
            e.full_workers = Some(workers);
            e.last_success = Some(at);
        });
    }

    /// When Vast last answered a poll of this object and workergroup, if this process
    /// saw it.
    pub fn last_success(&self, wg: &WorkerGroup) -> Option<Timestamp> {
        self.with(|map| {
            map.get(&ObjectRef::from_obj(wg))
                .filter(|e| e.belongs_to(wg))
                .and_then(|e| e.last_success)
        })
    }

    /// Clears the failure count (suspended, or an outcome that is not a failure streak).
    pub fn clear_failures(&self, wg: &WorkerGroup) {
        self.with(|map| Self::entry(map, wg).failures = 0);
    }

    /// Counts one more consecutive Kubernetes API failure of reconcile (kept apart from
    /// Vast failures and their threshold); returns the count. Only an object this term
    /// has looked at has an entry to count in: a failure reported for an object deleted
    /// (and forgotten) meanwhile does not bring its memory back.
    pub fn api_failed(&self, wg: &WorkerGroup) -> u32 {
        self.with(|map| {
            match map
                .get_mut(&ObjectRef::from_obj(wg))
                .filter(|e| e.belongs_to(wg))
            {
                Some(e) => {
                    e.api_failures = e.api_failures.saturating_add(1);
                    e.api_failures
                }
                None => 1,
            }
        })
    }

    /// Consecutive failures so far.
    pub fn failures(&self, wg: &WorkerGroup) -> u32 {
        self.with(|map| {
            map.get(&ObjectRef::from_obj(wg))
                .filter(|e| e.belongs_to(wg))
                .map_or(0, |e| e.failures)
        })
    }

    /// Counts one more consecutive failure; returns the count.
    pub fn failed(&self, wg: &WorkerGroup) -> u32 {
        self.with(|map| {
            let e = Self::entry(map, wg);
            e.failures = e.failures.saturating_add(1);
            e.failures
        })
    }

    /// When Vast was last asked about this object, if this process asked.
    pub fn last_poll(&self, wg: &WorkerGroup) -> Option<Instant> {
        self.with(|map| {
            map.get(&ObjectRef::from_obj(wg))
                .filter(|e| e.belongs_to(wg))
                .and_then(|e| e.last_poll)
        })
    }

    /// Vast is being asked about this object now.
    pub fn polled(&self, wg: &WorkerGroup) {
        self.with(|map| Self::entry(map, wg).last_poll = Some(Instant::now()));
    }

    /// How long this term's first poll of the object still waits (the start-up
    /// spread). The first reconcile of the term takes `delay()`; a reconcile woken before
    /// that has passed (a watch's first list sends every object again) waits for the
    /// rest, so that wake-ups cannot undo the spread. A spec change or `bypass` (a
    /// resync) ends the wait.
    pub fn start_up_wait(
        &self,
        wg: &WorkerGroup,
        bypass: bool,
        delay: impl FnOnce() -> Option<Duration>,
    ) -> Option<Duration> {
        let now = Instant::now();
        let generation = wg.meta().generation;
        self.with(|map| {
            let e = Self::entry(map, wg);
            if !std::mem::replace(&mut e.looked_at, true) {
                let wait = if bypass { None } else { delay() };
                e.start_up_until = wait.map(|d| (now + d, generation));
                return wait;
            }
            match e.start_up_until {
                Some((until, g)) if !bypass && g == generation && until > now => Some(until - now),
                _ => {
                    e.start_up_until = None;
                    None
                }
            }
        })
    }

    /// This term has reconciled the object for real (past the start-up spread): it was
    /// polled, or found suspended or unusable.
    pub fn reconciled(&self, wg: &WorkerGroup) {
        self.with(|map| Self::entry(map, wg).reconciled = true);
    }

    /// Whether this term has reconciled the object for real (see [`Memory::reconciled`]).
    pub fn was_reconciled(&self, wg: &WorkerGroup) -> bool {
        self.with(|map| {
            map.get(&ObjectRef::from_obj(wg))
                .is_some_and(|e| e.belongs_to(wg) && e.reconciled)
        })
    }

    /// The call this object's polls share with others.
    pub fn set_share(&self, wg: &WorkerGroup, share: crate::vast::ShareKey) {
        self.with(|map| Self::entry(map, wg).share = Some(share));
    }

    /// Objects whose polls share `share`.
    pub fn sharers(&self, share: crate::vast::ShareKey) -> Vec<ObjectRef<WorkerGroup>> {
        self.with(|map| {
            map.iter()
                .filter(|(_, e)| e.share == Some(share))
                .map(|(k, _)| k.clone())
                .collect()
        })
    }

    /// Records whether the last status write failed; returns true when a failure starts
    /// a new streak (the first failure after a success).
    pub fn status_write_failed(&self, wg: &WorkerGroup, failed: bool) -> bool {
        self.with(|map| {
            let e = Self::entry(map, wg);
            if !failed {
                e.api_failures = 0;
            }
            let starts = failed && !e.status_write_failing;
            e.status_write_failing = failed;
            starts
        })
    }

    /// Forgets one object (it was deleted).
    pub fn forget(&self, key: &ObjectRef<WorkerGroup>) {
        self.with(|map| map.remove(key));
    }

    /// Forgets everything (a new leadership term: another process may have written
    /// since).
    pub fn clear(&self) {
        self.with(|map| map.clear());
    }

    /// Forgets every object not in `live`.
    pub fn retain(&self, live: &HashSet<ObjectRef<WorkerGroup>>) {
        self.with(|map| map.retain(|k, _| live.contains(k)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wg(name: &str, uid: &str) -> WorkerGroup {
        let mut wg = WorkerGroup::new(
            name,
            serde_json::from_value(serde_json::json!({
                "workergroupId": 1, "apiKeySecretRef": {"name": "s"}
            }))
            .expect("spec"),
        );
        wg.metadata.namespace = Some("ns".into());
        wg.metadata.uid = Some(uid.into());
        wg
    }

    fn len(m: &Memory) -> usize {
        m.with(|map| map.len())
    }

    #[test]
    fn a_wake_up_during_the_start_up_spread_waits_for_the_rest_of_it() {
        let m = Memory::default();
        let g = wg("g", "u1");
        let long = Duration::from_secs(3600);
        assert_eq!(m.start_up_wait(&g, false, || Some(long)), Some(long));
        // Woken again (a watch's first list): the rest of the wait, not a poll now.
        let rest = m
            .start_up_wait(&g, false, || panic!("the first look is over"))
            .expect("still waiting");
        assert!(
            rest <= long && rest > long - Duration::from_secs(60),
            "{rest:?}"
        );
        // A resync ends it, and so does a spec change.
        assert_eq!(m.start_up_wait(&g, true, || None), None);
        assert_eq!(m.start_up_wait(&g, false, || None), None, "over once ended");
        let other = wg("h", "u2");
        assert!(m.start_up_wait(&other, false, || Some(long)).is_some());
        let mut changed = other.clone();
        changed.metadata.generation = Some(2);
        assert_eq!(m.start_up_wait(&changed, false, || None), None);
    }

    #[test]
    fn a_failure_reported_after_deletion_does_not_recreate_memory() {
        let m = Memory::default();
        let g = wg("g", "u1");
        assert_eq!(m.start_up_wait(&g, false, || None), None);
        assert_eq!(m.api_failed(&g), 1);
        assert_eq!(m.api_failed(&g), 2);
        m.forget(&ObjectRef::from_obj(&g));
        assert_eq!(len(&m), 0);
        // The error policy of a reconcile that was still running at the deletion.
        assert_eq!(m.api_failed(&g), 1);
        assert_eq!(len(&m), 0, "memory of a deleted object came back");
    }

    /// The remembered list goes once the status (as the watch shows it, after a trip
    /// through JSON) lists the same workers, load figures aside; it stays while the
    /// status lists others, a truncated list, or another workergroup's.
    #[test]
    fn the_remembered_workers_go_once_the_status_lists_them() {
        let worker = |id: i64, state: &str, load: f64| WorkerStatus {
            cur_load: Some(load),
            created_at: Some(jiff::Timestamp::from_second(1_800_000_000).expect("ts")),
            ..serde_json::from_value(serde_json::json!({
                "id": id, "status": state, "ready": state == "idle",
                "url": format!("http://192.0.2.{id}:4000"),
            }))
            .expect("worker")
        };
        let m = Memory::default();
        let g = wg("g", "u1");
        let full = vec![worker(1, "idle", 0.5), worker(2, "loading", 1.5)];
        let seen = |status: serde_json::Value| {
            let mut w = g.clone();
            w.status = Some(serde_json::from_value(status).expect("status"));
            // As the watch delivers it.
            serde_json::from_value::<WorkerGroup>(serde_json::to_value(&w).expect("json"))
                .expect("wg")
        };
        let listed = |ws: &[WorkerStatus], extra: serde_json::Value| {
            let mut s = serde_json::json!({"workergroupId": 1, "workers": ws});
            if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
                s.extend(extra.clone());
            }
            s
        };
        m.synced(&g, full.clone(), jiff::Timestamp::UNIX_EPOCH);
        let other = [worker(1, "idle", 0.5), worker(2, "idle", 1.5)];
        m.settle(&seen(listed(&other, serde_json::json!({}))));
        assert!(m.full_workers(&g).is_some(), "other workers in the status");
        m.settle(&seen(listed(
            &full[..1],
            serde_json::json!({"workersTruncated": true}),
        )));
        assert!(m.full_workers(&g).is_some(), "a truncated status list");
        let mut elsewhere = listed(&full, serde_json::json!({}));
        elsewhere["workergroupId"] = serde_json::json!(8);
        m.settle(&seen(elsewhere));
        assert!(m.full_workers(&g).is_some(), "another workergroup's list");
        let loads_behind = [worker(1, "idle", 9.0), worker(2, "loading", 9.0)];
        m.settle(&seen(listed(&loads_behind, serde_json::json!({}))));
        assert!(m.full_workers(&g).is_none(), "the status lists them");
        assert!(m.last_success(&g).is_some(), "the rest of the memory stays");
    }

    #[test]
    fn a_new_object_under_the_same_name_starts_afresh() {
        let m = Memory::default();
        let old = wg("g", "u1");
        m.synced(&old, Vec::new(), jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(m.failed(&old), 1);
        let new = wg("g", "u2");
        assert_eq!(m.failures(&new), 0);
        assert_eq!(m.last_success(&new), None);
        assert!(m.full_workers(&new).is_none());
    }
}
