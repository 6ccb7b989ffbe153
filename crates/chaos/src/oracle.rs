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
    /// The operator's writes, from the apiserver's audit log (None: no audit log).
    pub writes: Option<Vec<Write>>,
    /// What the operator may write: its Lease, and the namespaces and WorkerGroup names
    /// of the run.
    pub own: Own,
    /// When a fault kept the operator from seeing Vast or from writing: (from, to, the
    /// workergroup it kept from view, or None for all of them).
    pub disturbed: Vec<(At, At, Option<i64>)>,
    /// When Vast answered no call of a scope (a fault on its calls, or the leader cut off
    /// from Vast: None, every scope): what the truth says then was never reported.
    pub silent: Vec<(At, At, Option<Scope>)>,
    /// When the last fault ended (the world is still from then on).
    pub quiet_from: At,
    /// When the record ends.
    pub end: At,
}

/// One write of a replica, as the apiserver's audit log has it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Write {
    /// When the apiserver received it.
    pub at: At,
    /// When it was answered.
    pub done: At,
    /// The replica (from the audit user `chaos-op-<i>`).
    pub replica: Option<usize>,
    /// `create`, `update`, `patch`, `delete`.
    pub verb: String,
    /// `services`, `endpointslices`, `events`, `leases`, `workergroups/status`, ...
    pub resource: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name (empty for a create by generateName).
    pub name: String,
    /// The answer's status code.
    pub code: u16,
    /// For a Lease: the `spec.holderIdentity` the body sets (`Some("")` when cleared,
    /// None when the body does not set it).
    pub holder: Option<String>,
    /// The kinds of the owner references the body sets (None: no metadata in the body).
    pub owners: Option<Vec<String>>,
}

/// What the operator may write.
#[derive(Clone, Debug, Default)]
pub struct Own {
    /// The Lease's `namespace/name`.
    pub lease: String,
    /// The WorkerGroups' namespaces.
    pub namespaces: Vec<String>,
    /// The WorkerGroups' names (in every namespace).
    pub names: Vec<String>,
}

/// The replica of a Lease holder identity or audit user `chaos-op-<i>[-...]`.
pub fn replica_of(who: &str) -> Option<usize> {
    who.strip_prefix("chaos-op-")?
        .split('-')
        .next()?
        .parse()
        .ok()
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

/// Whether Vast reported a ready worker at `addr` to a call of `scope` at some time in
/// `[from, to]`: a time the truth had it ready and Vast was not silent for that scope.
fn ready_within(record: &Record, scope: Scope, addr: &str, from: At, to: At) -> bool {
    let silent: Vec<(At, At)> = record
        .silent
        .iter()
        .filter(|(_, _, sc)| sc.is_none_or(|sc| sc == scope))
        .map(|(a, b, _)| (*a, *b))
        .collect();
    groups_of(record, scope).iter().any(|g| {
        let Some(tl) = record.truth.get(g) else {
            return false;
        };
        // The state in force at `from`, and every change up to `to`, each until the next.
        let start = tl.iter().rposition(|(t, _)| *t <= from).unwrap_or(0);
        tl[start..]
            .iter()
            .enumerate()
            .take_while(|(_, (t, _))| *t <= to)
            .any(|(k, (t, ws))| {
                let next = tl.get(start + k + 1).map_or(f64::INFINITY, |(n, _)| *n);
                ws.iter().any(|w| w.addr == addr && w.ready())
                    && !covered(&silent, t.max(from), next.min(to))
            })
    })
}

/// Whether `[lo, hi]` lies wholly within the union of `windows`.
fn covered(windows: &[(At, At)], lo: At, hi: At) -> bool {
    let mut cursor = lo;
    while let Some((_, end)) = windows.iter().find(|(a, b)| *a <= cursor && *b > cursor) {
        cursor = *end;
        if cursor >= hi {
            break;
        }
    }
    if lo < hi {
        cursor >= hi
    } else {
        windows.iter().any(|(a, b)| *a <= lo && *b >= lo)
    }
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
    lasting_changes_are_seen(record, bounds, &mut v);
    match &record.writes {
        Some(writes) => {
            writes_inside_own_term(writes, &mut v);
            writes_to_own_objects(writes, &record.own, &mut v);
        }
        None => v.violations.push(Violation {
            invariant: "writes-inside-own-lease-term",
            at: record.end,
            what: "no audit log to judge the writes by".into(),
        }),
    }
    v
}

/// Who held the Lease from when: each successful Lease write whose body sets the holder
/// (a take-over, a create, a release that clears it) sets it from when it was answered.
/// A renewal sets only the times, and leaves the holder as it was, whoever sends it
/// (a patch without a precondition lands even after another replica took over).
fn terms(writes: &[Write]) -> Vec<(At, Option<usize>)> {
    let mut changes: Vec<(At, Option<usize>)> = writes
        .iter()
        .filter(|w| w.resource == "leases" && (200..300).contains(&w.code))
        .filter_map(|w| Some((w.done, replica_of(w.holder.as_ref()?))))
        .collect();
    changes.sort_by(|a, b| a.0.total_cmp(&b.0));
    changes
}

/// No replica writes anything but its Lease while another holds the Lease, or nobody
/// does: a write received at a time when the last Lease write answered before it names
/// another holder is a write outside its own term.
fn writes_inside_own_term(writes: &[Write], v: &mut Verdict) {
    const NAME: &str = "writes-inside-own-lease-term";
    let terms = terms(writes);
    if !writes.iter().any(|w| w.resource != "leases") {
        v.violations.push(Violation {
            invariant: NAME,
            at: 0.0,
            what: "the audit log holds no write of the operator's: nothing was judged".into(),
        });
        return;
    }
    for w in writes.iter().filter(|w| w.resource != "leases") {
        *v.checks.entry(NAME).or_default() += 1;
        let holder = terms
            .iter()
            .rev()
            .find(|(t, _)| *t <= w.at)
            .and_then(|(_, h)| *h);
        if holder != w.replica || w.replica.is_none() {
            v.violations.push(Violation {
                invariant: NAME,
                at: w.at,
                what: format!(
                    "replica {:?} wrote ({} {} {}/{}, answered {}) while the Lease was held by {}",
                    w.replica,
                    w.verb,
                    w.resource,
                    w.namespace,
                    w.name,
                    w.code,
                    holder.map_or("nobody".to_string(), |h| format!("replica {h}")),
                ),
            });
        }
    }
}

/// Every write goes to the operator's own objects: its Lease, the status of a
/// WorkerGroup of the run, the Services and slices named after one (with a WorkerGroup
/// as owner in every body that sets metadata), and Events, all in the run's namespaces.
fn writes_to_own_objects(writes: &[Write], own: &Own, v: &mut Verdict) {
    const NAME: &str = "writes-only-to-own-objects";
    for w in writes {
        *v.checks.entry(NAME).or_default() += 1;
        let in_ns = own.namespaces.contains(&w.namespace);
        let named = |exact: bool| {
            own.names.iter().any(|n| {
                if exact {
                    w.name == *n
                } else {
                    w.name
                        .strip_prefix(n.as_str())
                        .is_some_and(|r| r.starts_with('-'))
                }
            })
        };
        let owned = w
            .owners
            .as_ref()
            .is_none_or(|kinds| kinds.iter().any(|k| k == "WorkerGroup"));
        let ok = match w.resource.as_str() {
            "leases" => format!("{}/{}", w.namespace, w.name) == own.lease,
            "workergroups/status" => in_ns && named(true),
            "services" => in_ns && named(true) && owned,
            "endpointslices" => in_ns && (named(false) || w.name.is_empty()) && owned,
            "events" => in_ns,
            _ => false,
        };
        if !ok {
            v.violations.push(Violation {
                invariant: NAME,
                at: w.at,
                what: format!(
                    "replica {:?} wrote {} {} {}/{} (owners {:?}), not an object of its own",
                    w.replica, w.verb, w.resource, w.namespace, w.name, w.owners
                ),
            });
        }
    }
}

/// Every state a worker held at Vast for at least two intervals, undisturbed by a fault
/// that kept the operator from seeing it, shows in the status of a WorkerGroup of its
/// workergroup while it lasts (or within the slack after).
fn lasting_changes_are_seen(record: &Record, bounds: &Bounds, v: &mut Verdict) {
    const NAME: &str = "lasting-changes-are-seen";
    let long = 2.0 * bounds.interval.as_secs_f64();
    let slack = bounds.slack.as_secs_f64();
    for (group, timeline) in &record.truth {
        // Per worker: (state, from, to).
        let mut open: BTreeMap<i64, (String, At)> = BTreeMap::new();
        let mut segments: Vec<(i64, String, At, At)> = Vec::new();
        for (at, workers) in timeline {
            let now: BTreeMap<i64, &str> =
                workers.iter().map(|w| (w.id, w.status.as_str())).collect();
            for (id, (state, from)) in std::mem::take(&mut open) {
                match now.get(&id) {
                    Some(s) if *s == state => {
                        open.insert(id, (state, from));
                    }
                    _ => segments.push((id, state, from, *at)),
                }
            }
            for (id, s) in now {
                open.entry(id).or_insert_with(|| (s.to_string(), *at));
            }
        }
        segments.extend(
            open.into_iter()
                .map(|(id, (state, from))| (id, state, from, record.end)),
        );
        for (id, state, from, to) in segments {
            if to - from < long || to > record.end - slack {
                continue;
            }
            // Judged when two intervals of it in a row were undisturbed.
            let mut hidden: Vec<(At, At)> = record
                .disturbed
                .iter()
                .filter(|(_, _, g)| g.is_none_or(|g| g == *group))
                .map(|(a, b, _)| (*a, *b))
                .chain(record.apiserver_down.iter().map(|(a, b)| (*a, b + 15.0)))
                .filter(|(a, b)| *a <= to && *b >= from)
                .collect();
            hidden.sort_by(|x, y| x.0.total_cmp(&y.0));
            let (mut longest, mut cursor) = (0.0f64, from);
            for (a, b) in hidden {
                longest = longest.max(a - cursor);
                cursor = cursor.max(b);
            }
            longest = longest.max(to - cursor);
            if longest < long {
                continue;
            }
            // A WorkerGroup of this workergroup, not suspended, all along.
            let watchers: BTreeSet<&str> = record
                .groups
                .iter()
                .filter(|g| g.at <= to)
                .filter(|g| {
                    g.scope
                        .is_some_and(|sc| groups_of(record, sc).contains(group))
                        && !g.suspended
                })
                .map(|g| g.key.as_str())
                .collect();
            if watchers.is_empty() {
                continue;
            }
            *v.checks.entry(NAME).or_default() += 1;
            let seen = record.groups.iter().any(|g| {
                g.at >= from
                    && g.at <= to + slack
                    && g.scope
                        .is_some_and(|sc| groups_of(record, sc).contains(group))
                    && g.workers.iter().any(|(i, s)| *i == id && *s == state)
            });
            if !seen {
                v.violations.push(Violation {
                    invariant: NAME,
                    at: from,
                    what: format!(
                        "worker {id} of workergroup {group} was {state} at Vast from {from:.1} s to {to:.1} s, and no status showed it (WorkerGroups {watchers:?})"
                    ),
                });
            }
        }
    }
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
                let scopes = scopes_within(record, &s.service, from, t + lookahead);
                if !scopes
                    .iter()
                    .any(|sc| ready_within(record, *sc, addr, from, t))
                {
                    v.violations.push(Violation {
                        invariant: NAME,
                        at: t,
                        what: format!(
                            "slice {} of {} had {addr} ready (seen at {:.1} s, held until {until:.1} s), which Vast did not report ready in the {:.0} s before {t:.1} s (scopes {scopes:?})",
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
        r.own = Own {
            lease: "sys/l".into(),
            namespaces: vec!["ns".into()],
            names: vec!["a".into()],
        };
        r.writes = Some(vec![
            lease(0.5, 0, Some("chaos-op-0-7-1")),
            write(3.0, 0, "workergroups/status", "a"),
        ]);
        r
    }

    fn lease(at: At, replica: usize, holder: Option<&str>) -> Write {
        Write {
            at,
            done: at,
            replica: Some(replica),
            verb: "patch".into(),
            resource: "leases".into(),
            namespace: "sys".into(),
            name: "l".into(),
            code: 200,
            holder: holder.map(str::to_string),
            owners: None,
        }
    }

    fn write(at: At, replica: usize, resource: &str, name: &str) -> Write {
        Write {
            at,
            done: at + 0.01,
            replica: Some(replica),
            verb: "patch".into(),
            resource: resource.into(),
            namespace: "ns".into(),
            name: name.into(),
            code: 200,
            holder: None,
            owners: None,
        }
    }

    fn violated(r: &Record, name: &str) -> Vec<Violation> {
        judge(r, &bounds())
            .violations
            .into_iter()
            .filter(|v| v.invariant == name)
            .collect()
    }

    #[test]
    fn a_write_after_the_lease_moved_on_is_caught() {
        const NAME: &str = "writes-inside-own-lease-term";
        let mut r = record(15.0);
        taken_out(&mut r, 17.0);
        let w = r.writes.get_or_insert_default();
        w.push(lease(10.0, 0, None)); // a renewal
        w.push(lease(22.0, 0, None)); // a late renewal by the old holder: still replica 1's
        w.push(write(19.0, 0, "endpointslices", "a-v4-4001-0"));
        w.push(lease(20.0, 1, Some("chaos-op-1-7-1"))); // a takeover
        w.push(write(25.0, 1, "events", "a.1"));
        assert!(violated(&r, NAME).is_empty(), "{:?}", violated(&r, NAME));
        // The old holder writes after the takeover was answered.
        r.writes
            .get_or_insert_default()
            .push(write(21.0, 0, "workergroups/status", "a"));
        let v = violated(&r, NAME);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].what.contains("held by replica 1"), "{v:?}");
        // A write after the holder let the Lease go.
        let mut r = record(15.0);
        let w = r.writes.get_or_insert_default();
        w.push(lease(30.0, 0, Some("")));
        w.push(write(31.0, 0, "events", "a.2"));
        let v = violated(&r, NAME);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].what.contains("held by nobody"), "{v:?}");
        // No audit log, or one without a single write: nothing judged is a violation.
        r.writes = None;
        assert_eq!(violated(&r, NAME).len(), 1);
        r.writes = Some(vec![lease(1.0, 0, Some("chaos-op-0-7-1"))]);
        assert_eq!(violated(&r, NAME).len(), 1);
    }

    #[test]
    fn a_write_to_an_object_not_its_own_is_caught() {
        const NAME: &str = "writes-only-to-own-objects";
        let mut r = record(15.0);
        let mut owned = write(4.0, 0, "endpointslices", "a-v4-4001-0");
        owned.owners = Some(vec!["WorkerGroup".into()]);
        r.writes.get_or_insert_default().push(owned);
        assert!(violated(&r, NAME).is_empty(), "{:?}", violated(&r, NAME));
        let mut unowned = write(5.0, 0, "endpointslices", "a-v4-4001-1");
        unowned.owners = Some(vec![]);
        let mut elsewhere = write(6.0, 0, "events", "a.1");
        elsewhere.namespace = "kube-system".into();
        let planted = [
            write(5.0, 0, "services", "b"),
            unowned,
            elsewhere,
            write(7.0, 0, "secrets", "vast"),
            write(8.0, 0, "workergroups", "a"),
            write(9.0, 0, "endpointslices", "ab-v4"),
        ];
        let n = planted.len();
        r.writes.get_or_insert_default().extend(planted);
        assert_eq!(violated(&r, NAME).len(), n, "{:?}", violated(&r, NAME));
    }

    #[test]
    fn a_lasting_state_never_shown_is_caught_unless_a_fault_hid_it() {
        const NAME: &str = "lasting-changes-are-seen";
        let mut r = record(15.0);
        taken_out(&mut r, 17.0);
        r.truth.insert(
            1,
            vec![
                (0.0, vec![w(11, "idle", "198.51.100.1")]),
                (10.0, vec![w(11, "loading", "198.51.100.1")]),
                (13.0, vec![w(11, "model_loading", "198.51.100.1")]),
                (30.0, vec![w(11, "error", "198.51.100.1")]),
            ],
        );
        // loading lasted 3 s (not judged); model_loading 17 s, never shown.
        let v = violated(&r, NAME);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].what.contains("model_loading"), "{v:?}");
        // Shown at 20 s: fine.
        r.groups.push(seen(20.0, "model_loading"));
        assert!(violated(&r, NAME).is_empty());
        r.groups.pop();
        // A Vast fault on this workergroup that leaves no two intervals in a row of it
        // excuses it; one on another workergroup, or a short one, does not.
        r.disturbed.push((14.0, 29.0, Some(2)));
        assert_eq!(violated(&r, NAME).len(), 1);
        r.disturbed.push((14.0, 16.0, Some(1)));
        assert_eq!(violated(&r, NAME).len(), 1);
        r.disturbed.push((20.0, 29.0, Some(1)));
        assert!(violated(&r, NAME).is_empty());
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

    /// Vast silent (a long outage of the workergroup's calls) while the truth says
    /// ready: an endpoint kept ready through it, past the window, is the planted bug of
    /// an operator without the stale rule, and is caught; a silence of another scope is
    /// not an excuse, and the same record without the silence passes.
    #[test]
    fn ready_through_a_long_silence_of_vast_is_a_violation() {
        const NAME: &str = "ready-only-if-vast-said-so";
        let mut r = Record::default();
        r.truth
            .insert(1, vec![(0.0, vec![w(11, "idle", "198.51.100.1")])]);
        r.groups.push(seen(1.0, "idle"));
        r.slices.push(SliceSeen {
            at: 2.0,
            slice: "ns/a-v4-4001-0".into(),
            service: "ns/a".into(),
            endpoints: vec![("198.51.100.1".into(), true)],
        });
        r.end = 100.0;
        r.quiet_from = 100.0;
        let judged = |r: &Record| violated(r, NAME);
        assert!(judged(&r).is_empty());
        r.silent.push((10.0, 90.0, Some(Scope::Group(2))));
        assert!(judged(&r).is_empty(), "another scope's silence");
        r.silent.push((10.0, 90.0, Some(Scope::Group(1))));
        let v = judged(&r);
        assert_eq!(v.len(), 1, "{v:?}");
        // Last reported at 10 s: ready may last the 52 s window, not longer.
        assert!(v[0].at >= 61.5 && v[0].at < 64.0, "{v:?}");
        // Taken out (stale) 30 s into the silence: fine.
        taken_out(&mut r, 40.0);
        assert!(judged(&r).is_empty(), "{:?}", judged(&r));
        assert!(covered(&[(0.0, 2.0), (1.5, 4.0)], 0.5, 3.0));
        assert!(!covered(&[(0.0, 2.0), (2.5, 4.0)], 0.5, 3.0));
        assert!(!covered(&[], 1.0, 1.0));
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.99), Some(3.0));
    }
}
