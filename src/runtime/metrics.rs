//! Prometheus metrics (OpenMetrics text), with `prometheus-client`.
//!
//! Process-wide figures (reconciles, Vast requests, leadership) and per-WorkerGroup
//! series labelled `namespace` and `name`. A WorkerGroup's series are removed when it is
//! deleted ([`Metrics::forget_group`]). Nothing here knows the WorkerGroup type; no label
//! or value ever holds a key. The sizes of the watch caches and the resident memory are
//! read at every scrape ([`Metrics::count_cache`]), so an alert can come before the
//! memory limit does.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::reasons::ConditionStatus;

/// `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// How many objects one cache holds, read at a scrape.
type CacheSize = Box<dyn Fn() -> usize + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VastLabels {
    outcome: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    namespace: String,
    name: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    namespace: String,
    name: String,
    #[prometheus(flatten)]
    condition: ConditionKey,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionKey {
    r#type: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SettingsLabels {
    listing: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
    namespace: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

type QueueWait = Family<QueueLabels, Histogram, fn() -> Histogram>;

fn queue_wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

/// What status says of one WorkerGroup, as metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupSnapshot {
    /// Workers per Vast state.
    pub states: BTreeMap<String, i64>,
    /// Ready workers.
    pub ready: i64,
    /// Unix time of the last successful poll written.
    pub last_sync: Option<f64>,
    /// Conditions: (type, status).
    pub conditions: Vec<(String, String)>,
    /// Sum of the workers' `cur_load`, when this reconcile polled successfully.
    pub load: Option<f64>,
    /// Sum of the workers' `reqs_working`, likewise.
    pub reqs_working: Option<i64>,
    /// The endpoint's `max_workers` from `status.settings`, when known.
    pub max_workers: Option<i64>,
}

/// The label sets a WorkerGroup has, so that they can be removed.
#[derive(Default)]
struct GroupSeries {
    states: HashSet<String>,
    conditions: HashSet<ConditionKey>,
}

/// Every metric of the operator.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    vast_requests: Family<VastLabels, Counter>,
    vast_request_duration: Histogram,
    vast_shared: Counter,
    leader: Gauge,
    overdue: Gauge,
    workers: Family<StateLabels, Gauge>,
    ready_workers: Family<GroupLabels, Gauge>,
    last_sync: Family<GroupLabels, FloatGauge>,
    condition: Family<ConditionLabels, Gauge>,
    load: Family<GroupLabels, FloatGauge>,
    reqs_working: Family<GroupLabels, Gauge>,
    max_workers: Family<GroupLabels, Gauge>,
    settings_requests: Family<SettingsLabels, Counter>,
    queue_wait: QueueWait,
    queues: Mutex<HashSet<QueueLabels>>,
    groups: Mutex<HashMap<(String, String), GroupSeries>>,
    cache_objects: Family<KindLabels, Gauge>,
    caches: Mutex<Vec<(&'static str, CacheSize)>>,
    resident: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `vast_operator_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vast_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of WorkerGroups, by result",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        let vast_requests = Family::<VastLabels, Counter>::default();
        registry.register(
            "vast_requests",
            "Calls to the Vast API, by outcome and HTTP status code (none: no answer)",
            vast_requests.clone(),
        );
        let vast_request_duration = Histogram::new(exponential_buckets(0.01, 2.0, 13));
        registry.register(
            "vast_request_duration_seconds",
            "Duration of one call to the Vast API",
            vast_request_duration.clone(),
        );
        let vast_shared = Counter::default();
        registry.register(
            "vast_shared_answers",
            "Polls answered by another poll's Vast call (in flight or just made) instead of a call of their own",
            vast_shared.clone(),
        );
        let cache_objects = Family::<KindLabels, Gauge>::default();
        registry.register(
            "cache_objects",
            "Objects held in this process's watch caches, by kind (WorkerGroup, Secret metadata, Service, EndpointSlice), and what it holds beside them (WorkerList: worker lists apart from the statuses; VastAnswer: Vast's answers kept for sharers)",
            cache_objects.clone(),
        );
        let resident = Gauge::default();
        registry.register(
            "resident_memory_bytes",
            "Resident memory of this process (VmRSS of /proc/self/status; 0 where that cannot be read)",
            resident.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process holds the leader Lease (or runs without election), else 0",
            leader.clone(),
        );
        let overdue = Gauge::default();
        registry.register(
            "workergroups_overdue",
            "WorkerGroups the current term has not reconciled within their interval plus the start-up spread (0 on a standby)",
            overdue.clone(),
        );
        let workers = Family::<StateLabels, Gauge>::default();
        registry.register(
            "workergroup_workers",
            "Workers of a WorkerGroup, by Vast state",
            workers.clone(),
        );
        let ready_workers = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "workergroup_ready_workers",
            "Ready workers (idle or running) of a WorkerGroup",
            ready_workers.clone(),
        );
        let last_sync = Family::<GroupLabels, FloatGauge>::default();
        registry.register(
            "workergroup_last_sync_timestamp_seconds",
            "Unix time of the last successful poll written to status",
            last_sync.clone(),
        );
        let condition = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "workergroup_condition",
            "1 for the current status of each condition of a WorkerGroup, 0 for the others",
            condition.clone(),
        );
        let load = Family::<GroupLabels, FloatGauge>::default();
        registry.register(
            "workergroup_load",
            "Sum of the workers' cur_load at the last successful poll",
            load.clone(),
        );
        let reqs_working = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "workergroup_reqs_working",
            "Sum of the workers' requests in flight at the last successful poll",
            reqs_working.clone(),
        );
        let max_workers = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "workergroup_max_workers",
            "The endpoint's max_workers as Vast's console lists it (status.settings.maxWorkers)",
            max_workers.clone(),
        );
        let settings_requests = Family::<SettingsLabels, Counter>::default();
        registry.register(
            "settings_requests",
            "Calls to Vast's console API for settings, by listing (workergroups, endptjobs) and outcome",
            settings_requests.clone(),
        );
        let queue_wait: QueueWait = Family::new_with_constructor(queue_wait_histogram);
        registry.register(
            "queue_wait_seconds",
            "Time a namespace's reconciles waited for a poll slot (queue=reconcile, --concurrency), for a write slot (queue=write, --concurrency) and its Vast calls for their turn (queue=vast, --vast-max-rps); namespaces share both fairly",
            queue_wait.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            vast_requests,
            vast_request_duration,
            vast_shared,
            leader,
            overdue,
            workers,
            ready_workers,
            last_sync,
            condition,
            load,
            reqs_working,
            max_workers,
            settings_requests,
            queue_wait,
            queues: Mutex::new(HashSet::new()),
            groups: Mutex::new(HashMap::new()),
            cache_objects,
            caches: Mutex::new(Vec::new()),
            resident,
        }
    }

    /// Counts the objects of the cache of `kind` (`size`) at every scrape, as
    /// `vast_operator_cache_objects{kind}`.
    pub fn count_cache(
        &self,
        kind: &'static str,
        size: impl Fn() -> usize + Send + Sync + 'static,
    ) {
        self.caches.lock().push((kind, Box::new(size)));
    }

    /// Reads what is read at a scrape: the caches' sizes and the resident memory.
    fn refresh(&self) {
        for (kind, size) in self.caches.lock().iter() {
            let n = i64::try_from(size()).unwrap_or(i64::MAX);
            self.cache_objects
                .get_or_create(&KindLabels {
                    kind: (*kind).to_string(),
                })
                .set(n);
        }
        if let Some(bytes) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .as_deref()
            .and_then(resident_bytes)
        {
            self.resident.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        self.refresh();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out = "# EOF\n".into();
        }
        out
    }

    /// One reconcile ended with `result`, after `seconds`.
    pub fn reconciled(&self, result: &str, seconds: f64) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        self.reconcile_duration.observe(seconds);
    }

    /// One Vast call ended with `outcome` (HTTP `code`, if any answer came), after `seconds`.
    pub fn vast_request(&self, outcome: &str, code: Option<u16>, seconds: f64) {
        let code = code.map_or_else(|| "none".to_string(), |c| c.to_string());
        self.vast_requests
            .get_or_create(&VastLabels {
                outcome: outcome.into(),
                code,
            })
            .inc();
        self.vast_request_duration.observe(seconds);
    }

    /// One call to a console `listing` ended with `outcome` (the labels of
    /// `vast_operator_vast_requests_total`'s outcome).
    pub fn settings_request(&self, listing: &str, outcome: &str) {
        self.settings_requests
            .get_or_create(&SettingsLabels {
                listing: listing.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// One poll shared another's Vast call.
    pub fn vast_shared(&self) {
        self.vast_shared.inc();
    }

    /// A reconcile of `namespace` waited `seconds` for a slot (`queue` = `reconcile`), or
    /// a Vast call for its turn (`vast`).
    pub fn queue_waited(&self, queue: &str, namespace: &str, seconds: f64) {
        let labels = QueueLabels {
            queue: queue.into(),
            namespace: namespace.into(),
        };
        self.queue_wait.get_or_create(&labels).observe(seconds);
        self.queues.lock().insert(labels);
    }

    /// Whether this process leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// How many WorkerGroups are overdue (see `controller::overdue`).
    pub fn set_overdue(&self, n: usize) {
        self.overdue.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the series of one WorkerGroup; states and conditions that went away are
    /// removed.
    pub fn set_group(&self, namespace: &str, name: &str, snap: &GroupSnapshot) {
        let g = GroupLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        let mut groups = self.groups.lock();
        let series = groups.entry((namespace.into(), name.into())).or_default();
        let state = |s: &str| StateLabels {
            namespace: namespace.into(),
            name: name.into(),
            state: s.into(),
        };
        for gone in series
            .states
            .iter()
            .filter(|s| !snap.states.contains_key(*s))
        {
            self.workers.remove(&state(gone));
        }
        series.states = snap.states.keys().cloned().collect();
        for (s, n) in &snap.states {
            self.workers.get_or_create(&state(s)).set(*n);
        }
        self.ready_workers.get_or_create(&g).set(snap.ready);
        match snap.max_workers {
            Some(n) => {
                self.max_workers.get_or_create(&g).set(n);
            }
            None => {
                self.max_workers.remove(&g);
            }
        }
        // No successful poll on record (a new workergroup id, a status reset): the last
        // sync and the load figures are unknown, and their series go rather than show an
        // old value as current.
        match snap.last_sync {
            Some(t) => {
                self.last_sync.get_or_create(&g).set(t);
            }
            None => {
                self.last_sync.remove(&g);
                self.load.remove(&g);
                self.reqs_working.remove(&g);
            }
        }
        let mut keys = HashSet::new();
        for (type_, status) in &snap.conditions {
            for s in [
                ConditionStatus::True,
                ConditionStatus::False,
                ConditionStatus::Unknown,
            ]
            .map(ConditionStatus::as_str)
            {
                let key = ConditionKey {
                    r#type: type_.clone(),
                    status: s.into(),
                };
                let labels = ConditionLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                    condition: key.clone(),
                };
                self.condition
                    .get_or_create(&labels)
                    .set(i64::from(s == status));
                keys.insert(key);
            }
        }
        for gone in series.conditions.difference(&keys) {
            self.condition.remove(&ConditionLabels {
                namespace: namespace.into(),
                name: name.into(),
                condition: gone.clone(),
            });
        }
        series.conditions = keys;
        if snap.last_sync.is_some() {
            if let Some(load) = snap.load {
                self.load.get_or_create(&g).set(load);
            }
            if let Some(n) = snap.reqs_working {
                self.reqs_working.get_or_create(&g).set(n);
            }
        }
    }

    /// Removes every series of one WorkerGroup.
    pub fn forget_group(&self, namespace: &str, name: &str) {
        let mut groups = self.groups.lock();
        let series = groups
            .remove(&(namespace.to_string(), name.to_string()))
            .unwrap_or_default();
        self.remove_series(namespace, name, &series);
    }

    /// Removes the series of every WorkerGroup not in `live` ((namespace, name) pairs).
    pub fn retain_groups(&self, live: &HashSet<(String, String)>) {
        let mut groups = self.groups.lock();
        let gone: Vec<(String, String)> = groups
            .keys()
            .filter(|k| !live.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(series) = groups.remove(&key) {
                self.remove_series(&key.0, &key.1, &series);
            }
        }
        drop(groups);
        let namespaces: HashSet<&str> = live.iter().map(|(ns, _)| ns.as_str()).collect();
        let mut queues = self.queues.lock();
        queues.retain(|q| {
            let keep = namespaces.contains(q.namespace.as_str());
            if !keep {
                self.queue_wait.remove(q);
            }
            keep
        });
    }

    fn remove_series(&self, namespace: &str, name: &str, series: &GroupSeries) {
        let g = GroupLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        for s in &series.states {
            self.workers.remove(&StateLabels {
                namespace: namespace.into(),
                name: name.into(),
                state: s.clone(),
            });
        }
        for c in &series.conditions {
            self.condition.remove(&ConditionLabels {
                namespace: namespace.into(),
                name: name.into(),
                condition: c.clone(),
            });
        }
        self.ready_workers.remove(&g);
        self.max_workers.remove(&g);
        self.last_sync.remove(&g);
        self.load.remove(&g);
        self.reqs_working.remove(&g);
    }
}

/// The resident memory in a `/proc/<pid>/status` text: its `VmRSS:` line, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => n.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_are_read_at_every_scrape() {
        let m = Metrics::new();
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(3));
        let seen = n.clone();
        m.count_cache("EndpointSlice", move || {
            seen.load(std::sync::atomic::Ordering::Relaxed)
        });
        m.count_cache("WorkerGroup", || 7);
        let text = m.encode();
        assert!(
            text.contains("vast_operator_cache_objects{kind=\"EndpointSlice\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("vast_operator_cache_objects{kind=\"WorkerGroup\"} 7\n"),
            "{text}"
        );
        n.store(5, std::sync::atomic::Ordering::Relaxed);
        assert!(
            m.encode()
                .contains("vast_operator_cache_objects{kind=\"EndpointSlice\"} 5\n")
        );
        // This process's own resident memory, on Linux.
        let rss = m
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix("vast_operator_resident_memory_bytes "))
            .and_then(|v| v.parse::<u64>().ok());
        assert!(rss.is_some_and(|b| b > 1 << 20), "{rss:?}");
    }

    #[test]
    fn resident_memory_is_the_vmrss_line() {
        let status = "Name:\tvast-operator\nVmHWM:\t  90000 kB\nVmRSS:\t   51234 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes(status), Some(51234 * 1024));
        assert_eq!(resident_bytes("VmRSS: 12 MB\n"), None, "an unknown unit");
        assert_eq!(resident_bytes("VmRSS: many kB\n"), None);
        assert_eq!(resident_bytes("Name: x\n"), None);
    }

    #[test]
    fn queue_waits_are_per_namespace_and_go_with_it() {
        let m = Metrics::new();
        m.queue_waited("vast", "team-a", 0.5);
        m.queue_waited("reconcile", "team-b", 0.002);
        let text = m.encode();
        assert!(
            text.contains(
                r#"vast_operator_queue_wait_seconds_count{queue="vast",namespace="team-a"} 1"#
            ),
            "{text}"
        );
        let live = HashSet::from([("team-b".to_string(), "g".to_string())]);
        m.retain_groups(&live);
        let text = m.encode();
        assert!(!text.contains(r#"namespace="team-a""#), "{text}");
        assert!(
            text.contains(r#"queue="reconcile",namespace="team-b""#),
            "{text}"
        );
    }

    fn snap() -> GroupSnapshot {
        GroupSnapshot {
            states: BTreeMap::from([("idle".into(), 2), ("loading".into(), 1)]),
            ready: 2,
            last_sync: Some(1_800_000_000.0),
            conditions: vec![("Ready".into(), "True".into())],
            load: Some(1.5),
            reqs_working: Some(3),
            max_workers: Some(20),
        }
    }

    #[test]
    fn group_series_appear_move_and_vanish() {
        let m = Metrics::new();
        m.set_group("ns", "llama", &snap());
        let text = m.encode();
        assert!(text.contains(
            r#"vast_operator_workergroup_workers{namespace="ns",name="llama",state="idle"} 2"#
        ));
        assert!(text.contains(r#"vast_operator_workergroup_condition{namespace="ns",name="llama",type="Ready",status="True"} 1"#));
        assert!(
            text.contains(r#"vast_operator_workergroup_load{namespace="ns",name="llama"} 1.5"#)
        );
        assert!(
            text.contains(
                r#"vast_operator_workergroup_max_workers{namespace="ns",name="llama"} 20"#
            )
        );
        let mut s = snap();
        s.states.remove("loading");
        m.set_group("ns", "llama", &s);
        assert!(!m.encode().contains(r#"state="loading""#));
        m.forget_group("ns", "llama");
        let text = m.encode();
        assert!(!text.contains("llama"), "{text}");
        m.set_group("ns", "a", &snap());
        m.set_group("ns", "b", &snap());
        m.retain_groups(&HashSet::from([("ns".to_string(), "b".to_string())]));
        let text = m.encode();
        assert!(!text.contains(r#"name="a""#) && text.contains(r#"name="b""#));
    }

    #[test]
    fn figures_that_become_unknown_are_removed_not_kept() {
        let m = Metrics::new();
        m.set_group("ns", "llama", &snap());
        // A failed poll: the load stays that of the last successful one.
        let failed = GroupSnapshot {
            load: None,
            reqs_working: None,
            max_workers: None,
            ..snap()
        };
        m.set_group("ns", "llama", &failed);
        let text = m.encode();
        assert!(
            text.contains(r#"vast_operator_workergroup_load{namespace="ns",name="llama"} 1.5"#),
            "{text}"
        );
        // Settings no longer known (settings switched off): the series goes.
        assert!(
            !text.contains("vast_operator_workergroup_max_workers{"),
            "{text}"
        );
        // No successful poll on record any more (a new workergroup id): unknown.
        let reset = GroupSnapshot {
            last_sync: None,
            ..snap()
        };
        m.set_group("ns", "llama", &reset);
        let text = m.encode();
        for gone in [
            "vast_operator_workergroup_last_sync_timestamp_seconds{",
            "vast_operator_workergroup_load{",
            "vast_operator_workergroup_reqs_working{",
        ] {
            assert!(!text.contains(gone), "{gone} kept in\n{text}");
        }
        assert!(
            text.contains(
                r#"vast_operator_workergroup_ready_workers{namespace="ns",name="llama"} 2"#
            )
        );
    }

    #[test]
    fn counters_and_histograms_are_named_as_documented() {
        let m = Metrics::new();
        m.reconciled("synced", 0.1);
        m.vast_request("ok", Some(200), 0.05);
        m.vast_request("transport_error", None, 1.0);
        m.settings_request("endptjobs", "rate_limited");
        m.set_leader(true);
        let text = m.encode();
        for want in [
            r#"vast_operator_reconciles_total{result="synced"} 1"#,
            r#"vast_operator_settings_requests_total{listing="endptjobs",outcome="rate_limited"} 1"#,
            "vast_operator_reconcile_duration_seconds_count 1",
            r#"vast_operator_vast_requests_total{outcome="ok",code="200"} 1"#,
            r#"vast_operator_vast_requests_total{outcome="transport_error",code="none"} 1"#,
            "vast_operator_vast_request_duration_seconds_count 2",
            "vast_operator_leader 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
