//! Settings from Vast's console, read at most once per key per `--settings-interval` and
//! shared by every WorkerGroup of that key. Entries are keyed by a keyed hash of the API
//! key; the key itself is held only by the read in flight.
//!
//! A read runs in a task of its own: a poll of the workers never waits for the console,
//! except the first polls of a key with nothing on record yet, which wait for the read in
//! flight at most [`FIRST_READ_WAIT`] (so that a first status has its settings). When a
//! read brings a different listing (or works again after failures), the WorkerGroups of
//! that key are woken to show it. A 429 waits the whole interval; another failure is
//! retried after the usual backoff (at least the listings' threshold, at most the
//! interval); the last good listing stays meanwhile.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::runtime::reflector::ObjectRef;
use parking_lot::Mutex;

use super::requeue::backoff;
use super::triggers::Triggers;
use crate::crd::WorkerGroup;
use crate::vast::{Account, ConsoleClient, Listing, VastError};

/// The longest a poll waits for the first read of its key.
pub const FIRST_READ_WAIT: Duration = Duration::from_secs(2);

/// How settings are read.
#[derive(Clone, Debug)]
pub struct SettingsConfig {
    /// The console API client.
    pub console: ConsoleClient,
    /// How often each key's listings are read.
    pub interval: Duration,
}

type Done = Shared<BoxFuture<'static, ()>>;

#[derive(Default)]
struct Entry {
    /// The last good listing.
    good: Option<Arc<Account>>,
    /// The error of the last try, when it failed.
    error: Option<VastError>,
    /// Consecutive failed tries.
    failures: u32,
    /// No read before this.
    next_try: Option<Instant>,
    /// When a WorkerGroup last asked (entries nobody asks for are forgotten).
    asked: Option<Instant>,
    /// The WorkerGroups that asked, woken when the listing changes.
    askers: HashSet<ObjectRef<WorkerGroup>>,
    /// The read in flight: resolves once it has recorded its answer.
    in_flight: Option<Done>,
}

/// What is known of one key's settings.
#[derive(Clone, Debug, Default)]
pub struct Read {
    /// The last good listing, if any.
    pub account: Option<Arc<Account>>,
    /// Why the last try failed, when it did.
    pub error: Option<VastError>,
    /// Consecutive failed tries.
    pub failures: u32,
}

type Entries = Arc<Mutex<HashMap<u64, Entry>>>;

/// The settings reader of one operator.
pub struct Settings {
    config: SettingsConfig,
    backoff_base: Duration,
    hasher: RandomState,
    entries: Entries,
    wake: Triggers,
}

impl Settings {
    /// A reader with `config`; failures back off from `backoff_base`; changed listings
    /// wake their WorkerGroups through `wake`.
    pub fn new(config: SettingsConfig, backoff_base: Duration, wake: Triggers) -> Self {
        Self {
            config,
            backoff_base,
            hasher: RandomState::new(),
            entries: Arc::default(),
            wake,
        }
    }

    /// The settings of `api_key` as `asker` sees them now. Starts a read (in `tenant`'s
    /// turn under the rate limit) when one is due; waits for it only while nothing is on
    /// record for the key, and at most [`FIRST_READ_WAIT`].
    pub async fn read(&self, api_key: &str, tenant: &str, asker: &ObjectRef<WorkerGroup>) -> Read {
        let key = self.hasher.hash_one(api_key);
        let wait = {
            let mut entries = self.entries.lock();
            let entry = entries.entry(key).or_default();
            entry.asked = Some(Instant::now());
            if !entry.askers.contains(asker) {
                entry.askers.insert(asker.clone());
            }
            let due = entry.next_try.is_none_or(|at| Instant::now() >= at);
            if entry.in_flight.is_none() && due {
                entry.in_flight = Some(self.start(key, api_key, tenant));
            }
            let nothing_yet = entry.good.is_none() && entry.error.is_none();
            match &entry.in_flight {
                Some(done) if nothing_yet => Some(done.clone()),
                _ => return snapshot(entry),
            }
        };
        if let Some(done) = wait {
            let _ = tokio::time::timeout(FIRST_READ_WAIT, done).await;
        }
        self.entries
            .lock()
            .get(&key)
            .map(snapshot)
            .unwrap_or_default()
    }

    /// Spawns the read of `key`'s listings; it records its answer and wakes the askers of
    /// a changed listing.
    fn start(&self, key: u64, api_key: &str, tenant: &str) -> Done {
        let console = self.config.console.clone();
        let (api_key, tenant) = (api_key.to_string(), tenant.to_string());
        let entries = self.entries.clone();
        let (interval, base, wake) = (self.config.interval, self.backoff_base, self.wake.clone());
        let task = tokio::spawn(async move {
            let answer = console.account(&api_key, &tenant).await;
            drop(api_key);
            let woken = record(&entries, key, answer, interval, base);
            for asker in woken {
                wake.send(asker);
            }
        });
        async move {
            let _ = task.await;
        }
        .boxed()
        .shared()
    }

    /// Forgets every entry (a new leadership term).
    pub fn clear(&self) {
        self.entries.lock().clear();
    }

    /// Forgets the entries nobody asked for within `age`, and askers not in `live`.
    pub fn retain(&self, live: &HashSet<ObjectRef<WorkerGroup>>, age: Duration) {
        self.entries.lock().retain(|_, e| {
            e.askers.retain(|a| live.contains(a));
            e.in_flight.is_some() || e.asked.is_some_and(|at| at.elapsed() < age)
        });
    }
}

/// Records the answer of a read of `key`; returns the WorkerGroups to wake: those of a
/// listing that changed, or works again.
fn record(
    entries: &Mutex<HashMap<u64, Entry>>,
    key: u64,
    answer: Result<Account, VastError>,
    interval: Duration,
    base: Duration,
) -> Vec<ObjectRef<WorkerGroup>> {
    let mut entries = entries.lock();
    // Cleared meanwhile (a new term): the answer belongs to nobody.
    let Some(entry) = entries.get_mut(&key) else {
        return Vec::new();
    };
    entry.in_flight = None;
    let (wait, changed) = match answer {
        Ok(account) => {
            let changed = entry.good.as_deref() != Some(&account) || entry.error.is_some();
            entry.good = Some(Arc::new(account));
            entry.error = None;
            entry.failures = 0;
            (interval, changed)
        }
        Err(e) => {
            entry.failures = entry.failures.saturating_add(1);
            // Vast asks for fewer calls: wait the interval. Otherwise back off, never
            // sooner than the listings' threshold.
            let wait = match e {
                VastError::RateLimited(_) => interval,
                _ => backoff(entry.failures, base, interval).max(Listing::Endptjobs.threshold()),
            };
            entry.error = Some(e);
            (wait, false)
        }
    };
    entry.next_try = Some(Instant::now() + wait);
    if changed {
        entry.askers.iter().cloned().collect()
    } else {
        Vec::new()
    }
}

fn snapshot(entry: &Entry) -> Read {
    Read {
        account: entry.good.clone(),
        error: entry.error.clone(),
        failures: entry.failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake_vast::{FakeVast, Fault, Listing as FakeListing};

    const KEY: &str = "vk1-settings-unit-1a2b";

    async fn reader(interval: Duration) -> (FakeVast, Arc<Settings>, Triggers) {
        let vast = FakeVast::start(0).await.expect("fake vast");
        vast.state
            .set_console_thresholds(Duration::ZERO, Duration::ZERO);
        vast.state.put_group(7, KEY, Default::default(), vec![]);
        vast.state
            .set_group_settings(7, serde_json::json!({"endpoint_id": 3, "min_load": 1.0}));
        vast.state.put_endpoint(
            3,
            KEY,
            serde_json::json!({"endpoint_name": "llama", "max_workers": 20}),
        );
        let client =
            crate::vast::VastClient::new(&vast.url(), Duration::from_secs(5)).expect("client");
        let console = client.console(&vast.url(), false).expect("console");
        let wake = Triggers::default();
        let settings = Settings::new(
            SettingsConfig { console, interval },
            Duration::from_millis(100),
            wake.clone(),
        );
        (vast, Arc::new(settings), wake)
    }

    fn asker(n: usize) -> ObjectRef<WorkerGroup> {
        ObjectRef::new(&format!("wg{n}")).within("ns")
    }

    /// Ten readers of one key within the interval make one call per listing, and the
    /// first ones get the listing (they wait for the first read).
    #[tokio::test]
    async fn one_read_per_key_per_interval() {
        let (vast, s, _) = reader(Duration::from_secs(3600)).await;
        let reads: Vec<_> = (0..10)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.read(KEY, &format!("ns{i}"), &asker(i)).await })
            })
            .collect();
        for r in reads {
            let r = r.await.expect("join");
            let account = r.account.expect("read");
            assert_eq!(account.endpoints[0].max_workers, Some(20));
        }
        assert_eq!(vast.state.console_calls(FakeListing::Workergroups), 1);
        assert_eq!(vast.state.console_calls(FakeListing::Endptjobs), 1);
    }

    /// A slow console holds up nobody once a listing is on record: the read is due, but
    /// the answer on record comes back at once while the new read runs; a changed
    /// listing then wakes the askers.
    #[tokio::test]
    async fn a_due_read_runs_aside_and_a_change_wakes_the_askers() {
        let (vast, s, wake) = reader(Duration::from_millis(300)).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        wake.forward_to(Some(tx));
        assert!(s.read(KEY, "a", &asker(1)).await.account.is_some());
        // The first read woke its asker (a new listing).
        assert_eq!(rx.recv().await, Some(asker(1)));
        vast.state
            .set_endpoint_fields(3, serde_json::json!({"max_workers": 40}));
        vast.state.set_console_fault(
            FakeListing::Workergroups,
            Some(Fault {
                delay_ms: 1500,
                times: Some(1),
                ..Default::default()
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let started = Instant::now();
            let r = s.read(KEY, "a", &asker(1)).await;
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "a read with a listing on record waited {:?}",
                started.elapsed()
            );
            if vast.state.console_calls(FakeListing::Workergroups) >= 2 {
                assert_eq!(
                    r.account.expect("on record").endpoints[0].max_workers,
                    Some(20)
                );
                break;
            }
            assert!(Instant::now() < deadline, "the read never became due");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let woken = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(
            woken.ok().flatten(),
            Some(asker(1)),
            "the change woke the asker"
        );
        let r = s.read(KEY, "a", &asker(1)).await;
        assert_eq!(r.account.expect("read").endpoints[0].max_workers, Some(40));
    }

    /// A 429 keeps the last listing and is not retried within the interval; another
    /// error is, after the backoff.
    #[tokio::test]
    async fn a_429_waits_the_interval_other_errors_back_off() {
        let (vast, s, _) = reader(Duration::from_millis(400)).await;
        let me = asker(1);
        // Reads until the listing's call count reaches `n`, then gives what is on record.
        let read_until = |n: u64| {
            let (s, vast, me) = (s.clone(), &vast, me.clone());
            async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let r = s.read(KEY, "a", &me).await;
                    if vast.state.console_calls(FakeListing::Workergroups) >= n {
                        // The answer is recorded just after the call is counted.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        return s.read(KEY, "a", &me).await;
                    }
                    drop(r);
                    assert!(Instant::now() < deadline, "no call {n}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert!(read_until(1).await.account.is_some());
        vast.state.set_console_fault(
            FakeListing::Workergroups,
            Some(Fault {
                status: Some(429),
                ..Default::default()
            }),
        );
        let limited = read_until(2).await;
        assert!(matches!(limited.error, Some(VastError::RateLimited(_))));
        assert!(limited.account.is_some(), "the last listing stays");
        assert_eq!(limited.failures, 1);
        // Within the interval: no call.
        assert_eq!(s.read(KEY, "a", &me).await.failures, 1);
        assert_eq!(vast.state.console_calls(FakeListing::Workergroups), 2);
        // Healed: the next due read clears the failures.
        vast.state
            .set_console_fault(FakeListing::Workergroups, None);
        let healed = read_until(3).await;
        assert!(healed.error.is_none() && healed.failures == 0, "{healed:?}");
    }
}
