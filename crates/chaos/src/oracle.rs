//! The oracle: what must always hold, checked against the record of what really happened
//! (the fake's truth timeline and the watched objects). Pure: it reads a [`Record`] and
//! returns the checks it evaluated and the violations it found.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Seconds since the start of the run.
pub type At = f64;

/// One worker as Vast reported it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TruthWorker {
    /// The worker id.
    pub id: i64,
    /// Vast's state.
    pub status: String,
    /// Its address (`ip`).
    pub addr: String,
}

impl TruthWorker {
    /// Whether the operator counts it ready.
    pub fn ready(&self) -> bool {
        self.status == "idle" || self.status == "running"
    }
}

/// What a WorkerGroup mirrors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// One workergroup.
    Group(i64),
    /// Every workergroup of an endpoint.
    Endpoint(i64),
}

/// An EndpointSlice as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceSeen {
    /// When.
    pub at: At,
    /// `namespace/name` of the slice.
    pub slice: String,
    /// `namespace/service`.
    pub service: String,
    /// (address, ready); empty once deleted.
    pub endpoints: Vec<(String, bool)>,
}

/// A WorkerGroup as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSeen {
    /// When.
    pub at: At,
    /// `namespace/name`.
    pub key: String,
    /// Its scope (None: deleted, or no usable scope).
    pub scope: Option<Scope>,
    /// Its status workers: (id, state).
    pub workers: Vec<(i64, String)>,
    /// Whether it is suspended.
    pub suspended: bool,
}

/// Everything the run recorded.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// Per workergroup: (time, its workers from then on), in time order.
    pub truth: BTreeMap<i64, Vec<(At, Vec<TruthWorker>)>>,
    /// Per endpoint: its workergroups.
    pub endpoints: BTreeMap<i64, Vec<i64>>,
    /// Slice observations, in time order.
    pub slices: Vec<SliceSeen>,
    /// WorkerGroup observations, in time order.
    pub groups: Vec<GroupSeen>,
    /// When the control plane's apiserver was down: (from, to).
    pub apiserver_down: Vec<(At, At)>,
    /// When the last fault ended (the world is still from then on).
    pub quiet_from: At,
    /// When the record ends.
    pub end: At,
}

/// How long each invariant allows.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// `--stale-after`.
    pub stale_after: Duration,
    /// The WorkerGroups' `pollInterval`.
    pub interval: Duration,
    /// `--status-heartbeat` (a restarted replica judges freshness from status, which
    /// lags by up to it).
    pub heartbeat: Duration,
    /// `--lease-duration`.
    pub lease: Duration,
    /// Room for scheduling, jitter and the observer's own lag.
    pub slack: Duration,
}

impl Bounds {
    /// How long after Vast last reported a worker ready an endpoint may still say so.
    pub fn ready_window(&self) -> f64 {
        (self.stale_after + self.interval + self.heartbeat + self.lease * 2 + self.slack)
            .as_secs_f64()
    }

    /// How long after the last fault every WorkerGroup must equal the truth.
    pub fn convergence(&self) -> f64 {
        (self.interval * 2 + self.lease + self.slack).as_secs_f64()
    }
}

/// One violation: which invariant, when, what.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// The invariant's name.
    pub invariant: &'static str,
    /// When it was seen.
    pub at: At,
    /// What was wrong.
    pub what: String,
}

/// What the oracle found.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Checks evaluated, by invariant.
    pub checks: BTreeMap<&'static str, u64>,
    /// What did not hold.
    pub violations: Vec<Violation>,
    /// Per WorkerGroup, seconds from the quiet point until its status and slices equal
    /// the truth for good (None: never).
    pub convergence: BTreeMap<String, Option<f64>>,
}

/// The groups of a scope.
fn groups_of(record: &Record, scope: Scope) -> Vec<i64> {
    match scope {
        Scope::Group(g) => vec![g],
        Scope::Endpoint(e) => record.endpoints.get(&e).cloned().unwrap_or_default(),
    }
}

/// The workers of `group` at `at`.
fn truth_at(record: &Record, group: i64, at: At) -> Vec<TruthWorker> {
    record
        .truth
        .get(&group)
        .and_then(|tl| tl.iter().rev().find(|(t, _)| *t <= at))
        .map(|(_, ws)| ws.clone())
        .unwrap_or_default()
}

/// Whether Vast reported a ready worker at `addr` in one of `groups` at some time in
/// `[from, to]`.
fn ready_within(record: &Record, groups: &[i64], addr: &str, from: At, to: At) -> bool {
    groups.iter().any(|g| {
        let Some(tl) = record.truth.get(g) else {
            return false;
        };
        // The state in force at `from`, and every change up to `to`.
        let start = tl.iter().rposition(|(t, _)| *t <= from).unwrap_or(0);
        tl[start..]
            .iter()
            .take_while(|(t, _)| *t <= to)
            .any(|(_, ws)| ws.iter().any(|w| w.addr == addr && w.ready()))
    })
}

/// The scopes `key` had at some time in `[from, to]` (the two watches are separate
/// streams: a slice may be seen before the WorkerGroup change that led to it, so `to`
/// is taken a little later by the caller).
fn scopes_within(record: &Record, key: &str, from: At, to: At) -> BTreeSet<Scope> {
    let seen: Vec<&GroupSeen> = record.groups.iter().filter(|g| g.key == key).collect();
    let start = seen.iter().rposition(|g| g.at <= from).unwrap_or(0);
    seen.get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|g| g.at <= to)
        .filter_map(|g| g.scope)
        .collect()
}

/// Extra room for an apiserver outage that overlaps `[from, to]` (nobody can write then),
/// plus the time to catch up after it.
fn outage_room(record: &Record, from: At, to: At) -> f64 {
    record
        .apiserver_down
        .iter()
        .filter(|(a, b)| *a <= to && *b >= from)
        .map(|(a, b)| b - a + 15.0)
        .sum()
}

/// Runs every invariant over `record`.
pub fn judge(record: &Record, bounds: &Bounds) -> Verdict {
    let mut v = Verdict::default();
    never_ready_without_vast(record, bounds, &mut v);
    converges(record, bounds, &mut v);
    v
}

/// No endpoint is ready for a worker Vast has not reported ready within the ready
/// window (longer by any apiserver outage in it), at any time while the slice says so:
/// an observation holds until the slice's next one (or the end), and is judged every
/// second of that.
fn never_ready_without_vast(record: &Record, bounds: &Bounds, v: &mut Verdict) {
    const NAME: &str = "ready-only-if-vast-said-so";
    let window = bounds.ready_window();
    let lookahead = bounds.slack.as_secs_f64();
    for (i, s) in record.slices.iter().enumerate() {
        let until = record.slices[i + 1..]
            .iter()
            .find(|n| n.slice == s.slice)
            .map_or(record.end, |n| n.at);
        for (addr, ready) in &s.endpoints {
            if !ready {
                continue;
            }
            *v.checks.entry(NAME).or_default() += 1;
            let mut t = s.at;
            while t <= until {
                let mut from = t - window;
                from -= outage_room(record, from, t);
                let groups: Vec<i64> = scopes_within(record, &s.service, from, t + lookahead)
                    .into_iter()
                    .flat_map(|sc| groups_of(record, sc))
                    .collect();
                if !ready_within(record, &groups, addr, from, t) {
                    v.violations.push(Violation {
                        invariant: NAME,
                        at: t,
                        what: format!(
                            "slice {} of {} had {addr} ready (seen at {:.1} s, held until {until:.1} s), which Vast did not report ready in the {:.0} s before {t:.1} s (groups {groups:?})",
                            s.slice,
                            s.service,
                            s.at,
                            t - from
                        ),
                    });
                    break;
                }
                t += 1.0;
            }
        }
    }
}

/// What `key` should show at the end: its workers (id, state) and its ready addresses.
fn expected(record: &Record, scope: Scope) -> (Vec<(i64, String)>, BTreeSet<String>) {
    let mut workers: Vec<TruthWorker> = groups_of(record, scope)
        .into_iter()
        .flat_map(|g| truth_at(record, g, record.end))
        .collect();
    workers.sort();
    let ids = workers.iter().map(|w| (w.id, w.status.clone())).collect();
    let ready = workers
        .iter()
        .filter(|w| w.ready())
        .map(|w| w.addr.clone())
        .collect();
    (ids, ready)
}

/// After the last fault, every WorkerGroup's status and slices equal the truth within
/// the convergence bound, and stay so.
fn converges(record: &Record, bounds: &Bounds, v: &mut Verdict) {
    const NAME: &str = "converges-after-the-last-fault";
    let keys: BTreeSet<&str> = record.groups.iter().map(|g| g.key.as_str()).collect();
    for key in keys {
        let Some(last) = record.groups.iter().rev().find(|g| g.key == key) else {
            continue;
        };
        let Some(scope) = last.scope else {
            continue; // deleted at the end
        };
        if last.suspended {
            continue;
        }
        *v.checks.entry(NAME).or_default() += 1;
        let (want_workers, want_ready) = expected(record, scope);
        // The last time after the quiet point at which status or slices differed.
        let mut status_ok_since: Option<At> = None;
        for g in record.groups.iter().filter(|g| g.key == key) {
            let ok = g.scope == Some(scope) && g.workers == want_workers;
            match (ok, status_ok_since) {
                (true, None) => status_ok_since = Some(g.at),
                (false, _) => status_ok_since = None,
                _ => {}
            }
        }
        let mut per_slice: BTreeMap<&str, Vec<(String, bool)>> = BTreeMap::new();
        let mut slices_ok_since: Option<At> = None;
        for s in record.slices.iter().filter(|s| s.service == key) {
            per_slice.insert(&s.slice, s.endpoints.clone());
            let ready: BTreeSet<String> = per_slice
                .values()
                .flatten()
                .filter(|(_, r)| *r)
                .map(|(a, _)| a.clone())
                .collect();
            match (ready == want_ready, slices_ok_since) {
                (true, None) => slices_ok_since = Some(s.at),
                (false, _) => slices_ok_since = None,
                _ => {}
            }
        }
        if want_ready.is_empty() && per_slice.is_empty() {
            slices_ok_since = Some(record.quiet_from);
        }
        let since = match (status_ok_since, slices_ok_since) {
            (Some(a), Some(b)) => Some(a.max(b).max(record.quiet_from) - record.quiet_from),
            _ => None,
        };
        v.convergence.insert(key.to_string(), since);
        let current: Vec<String> = per_slice
            .iter()
            .map(|(name, eps)| format!("{name}: {eps:?}"))
            .collect();
        match since {
            Some(s) if s <= bounds.convergence() => {}
            _ => v.violations.push(Violation {
                invariant: NAME,
                at: record.end,
                what: format!(
                    "{key} ({scope:?}) took {} to equal the truth (bound {:.0} s): want workers {want_workers:?} and ready {want_ready:?}, last status {:?} (since {:?}), last slices {current:?} (since {:?})",
                    since.map_or("forever".to_string(), |s| format!("{s:.1} s")),
                    bounds.convergence(),
                    last.workers,
                    status_ok_since,
                    slices_ok_since,
                ),
            }),
        }
    }
}

/// The `q` quantile (0..=1) of `xs` (nearest rank), None when empty.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: i64, status: &str, addr: &str) -> TruthWorker {
        TruthWorker {
            id,
            status: status.into(),
            addr: addr.into(),
        }
    }

    /// `ns/a` on workergroup 1 with worker 11 in `state`, as seen at `at`.
    fn seen(at: At, state: &str) -> GroupSeen {
        GroupSeen {
            at,
            key: "ns/a".into(),
            scope: Some(Scope::Group(1)),
            workers: vec![(11, state.into())],
            suspended: false,
        }
    }

    fn bounds() -> Bounds {
        Bounds {
            stale_after: Duration::from_secs(20),
            interval: Duration::from_secs(5),
            heartbeat: Duration::from_secs(10),
            lease: Duration::from_secs(6),
            slack: Duration::from_secs(5),
        }
    }

    /// A worker ready at Vast until 10 s, then in error: its endpoint may say ready a
    /// while after (the window is 52 s), not for ever; the planted bug (an operator that
    /// never takes it out) is caught, the right one is not.
    fn record(ready_until_seen: At) -> Record {
        let mut r = Record::default();
        r.truth.insert(
            1,
            vec![
                (0.0, vec![w(11, "idle", "198.51.100.1")]),
                (10.0, vec![w(11, "error", "198.51.100.1")]),
            ],
        );
        r.groups.push(seen(1.0, "idle"));
        for at in [2.0, ready_until_seen] {
            r.slices.push(SliceSeen {
                at,
                slice: "ns/a-v4-4001-0".into(),
                service: "ns/a".into(),
                endpoints: vec![("198.51.100.1".into(), true)],
            });
        }
        r.groups.push(seen(16.0, "error"));
        r.quiet_from = 10.0;
        r.end = 120.0;
        r
    }

    /// The endpoint taken out (not ready) at `at`.
    fn taken_out(r: &mut Record, at: At) {
        r.slices.push(SliceSeen {
            at,
            slice: "ns/a-v4-4001-0".into(),
            service: "ns/a".into(),
            endpoints: vec![("198.51.100.1".into(), false)],
        });
    }

    #[test]
    fn a_ready_endpoint_long_after_vast_said_otherwise_is_a_violation() {
        let mut right = record(15.0);
        taken_out(&mut right, 40.0);
        let v = judge(&right, &bounds());
        assert!(
            v.violations
                .iter()
                .all(|x| x.invariant != "ready-only-if-vast-said-so"),
            "{:?}",
            v.violations
        );
        let v = judge(&record(100.0), &bounds());
        assert!(
            v.violations
                .iter()
                .any(|x| x.invariant == "ready-only-if-vast-said-so"),
            "{:?}",
            v.violations
        );
    }

    /// The planted bug of an operator that never rewrites the slice: ready seen once at
    /// 2 s and held to the end is caught, though no later observation says ready.
    #[test]
    fn a_ready_endpoint_held_without_a_rewrite_is_judged_all_along() {
        let mut r = record(15.0);
        r.slices.truncate(1);
        let v = judge(&r, &bounds());
        let caught: Vec<&Violation> = v
            .violations
            .iter()
            .filter(|x| x.invariant == "ready-only-if-vast-said-so")
            .collect();
        assert_eq!(caught.len(), 1, "{:?}", v.violations);
        // Vast said error at 10 s: ready is fine until 10 + the 52 s window.
        assert!(
            caught[0].at >= 61.0 && caught[0].at < 64.0,
            "{:?}",
            caught[0]
        );
        // Taken out at 30 s: fine.
        taken_out(&mut r, 30.0);
        let v = judge(&r, &bounds());
        assert!(
            v.violations
                .iter()
                .all(|x| x.invariant != "ready-only-if-vast-said-so"),
            "{:?}",
            v.violations
        );
    }

    #[test]
    fn convergence_needs_both_status_and_slices_and_is_bounded() {
        // The slices still say ready at the end: never converged.
        let v = judge(&record(15.0), &bounds());
        assert_eq!(v.convergence.get("ns/a"), Some(&None));
        assert!(
            v.violations
                .iter()
                .any(|x| x.invariant == "converges-after-the-last-fault")
        );
        // Taken out at 17 s: converged 7 s after the quiet point.
        let mut r = record(15.0);
        taken_out(&mut r, 17.0);
        let v = judge(&r, &bounds());
        assert_eq!(v.convergence.get("ns/a"), Some(&Some(7.0)));
        assert!(v.violations.is_empty(), "{:?}", v.violations);
    }

    #[test]
    fn an_apiserver_outage_widens_the_window() {
        let mut r = record(70.0);
        taken_out(&mut r, 75.0);
        assert!(!judge(&r, &bounds()).violations.is_empty());
        r.apiserver_down.push((20.0, 40.0));
        let v = judge(&r, &bounds());
        assert!(
            v.violations
                .iter()
                .all(|x| x.invariant != "ready-only-if-vast-said-so"),
            "{:?}",
            v.violations
        );
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.99), Some(3.0));
    }
}
