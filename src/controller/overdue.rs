//! The safety net under the wake-ups: WorkerGroups in the store that the current term
//! has not reconciled in the time it should have taken. Every WorkerGroup is reconciled
//! at the start of a term (or when it reaches the store later) and polled within its
//! interval after that first look (the start-up spread); one still waiting after its
//! interval twice over, plus [`GRACE`], is overdue. They are counted in
//! `vast_operator_workergroups_overdue` and named in a warning, so that a lost wake-up
//! (issue 15) shows on a dashboard instead of silently.
//!
//! Overdue also counts WorkerGroups that are late for other reasons: a `--vast-max-rps`
//! or `--concurrency` too small for the fleet, or an apiserver that cannot take the
//! writes of a first sync of thousands at once. It covers the first reconcile of a term
//! (and of an object that arrives, or is recreated, or names a new workergroup, during
//! one), not later polls.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::warn;

use super::context::Context;
use super::reconcile::{DEFAULT_INTERVAL, poll_interval};
use crate::crd::WorkerGroup;

/// Slack beyond the interval and the spread: queueing behind the concurrency limit and
/// the Vast rate limit, a slow apiserver.
pub const GRACE: Duration = Duration::from_secs(30);

/// How often the store is checked.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Most names one warning lists.
const NAMES_SHOWN: usize = 10;

/// Whether a WorkerGroup in the store since `since` (or since the term began, if later)
/// and not reconciled yet is overdue at `now`: its interval, the start-up spread (at most
/// one interval more) and [`GRACE`] have passed.
pub fn is_overdue(since: Instant, now: Instant, interval: Duration) -> bool {
    now.saturating_duration_since(since) > interval.saturating_mul(2) + GRACE
}

/// Counts overdue WorkerGroups every few seconds while a term runs (the first list is in
/// when it starts). The gauge goes back to 0 when the term ends.
pub async fn watch(ctx: Arc<Context>, store: Store<WorkerGroup>) {
    let started = Instant::now();
    // The gauge goes back to 0 however the task ends (a term's end aborts it, maybe in
    // the middle of a check that would set it after the term's own reset).
    let _zero = Zero(ctx.clone());
    // When each object was first seen, with what makes it new to memory (its uid and
    // workergroup id: a recreated one, or one with a new id, starts afresh).
    type Identity = (Option<String>, Option<crate::crd::Scope>);
    let mut first_seen: HashMap<ObjectRef<WorkerGroup>, (Identity, Instant)> = HashMap::new();
    let mut reported: HashSet<ObjectRef<WorkerGroup>> = HashSet::new();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    for check in 0u64.. {
        tick.tick().await;
        let now = Instant::now();
        // What is there at the first check has waited since the term began.
        let arrived = if check == 0 { started } else { now };
        let state = store.state();
        let mut live = HashSet::with_capacity(state.len());
        let mut overdue = Vec::new();
        for wg in &state {
            let key = ObjectRef::from_obj(&**wg);
            let identity = (wg.meta().uid.clone(), wg.spec.scope().ok());
            let seen = first_seen
                .entry(key.clone())
                .or_insert_with(|| (identity.clone(), arrived));
            if seen.0 != identity {
                *seen = (identity, now);
            }
            let since = seen.1;
            live.insert(key.clone());
            if wg.meta().deletion_timestamp.is_some() || ctx.memory.was_reconciled(wg) {
                continue;
            }
            let interval = poll_interval(wg).unwrap_or(DEFAULT_INTERVAL);
            if is_overdue(since, now, interval) {
                overdue.push(key);
            }
        }
        first_seen.retain(|k, _| live.contains(k));
        ctx.metrics.set_overdue(overdue.len());
        let new: Vec<_> = overdue.iter().filter(|k| !reported.contains(*k)).collect();
        if !new.is_empty() {
            let names: Vec<String> = new
                .iter()
                .take(NAMES_SHOWN)
                .map(|k| k.to_string())
                .collect();
            warn!(
                overdue = overdue.len(),
                newly = new.len(),
                examples = %names.join(", "),
                "WorkerGroups not reconciled within their interval plus the start-up spread (a --vast-max-rps or --concurrency too small for the fleet, an apiserver slow to take a first sync of many, or a bug: please report it if it lasts)"
            );
        }
        reported = overdue.into_iter().collect();
    }
}

/// Sets the gauge to 0 when dropped.
struct Zero(Arc<Context>);

impl Drop for Zero {
    fn drop(&mut self) {
        self.0.metrics.set_overdue(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overdue_after_twice_the_interval_and_the_grace() {
        let t0 = Instant::now();
        let i = Duration::from_secs(10);
        assert!(!is_overdue(t0, t0, i));
        assert!(!is_overdue(t0, t0 + 2 * i + GRACE, i));
        assert!(is_overdue(
            t0,
            t0 + 2 * i + GRACE + Duration::from_millis(1),
            i
        ));
        // A clock that seems to go back is not overdue.
        assert!(!is_overdue(t0 + i, t0, i));
    }
}
