//! Settings from Vast's console, read at most once per key per `--settings-interval` and
//! shared by every WorkerGroup of that key. Entries are keyed by a keyed hash of the API
//! key; the key itself is held only by the read in flight.
//!
//! A read runs in a task of its own: a poll of the workers never waits for the console,
//! except the polls of a key with nothing on record yet, which wait for the read in
//! flight until it is [`FIRST_READ_WAIT`] old (so that a first status has its settings).
//! What a read brings shows at each WorkerGroup's next poll; nobody is woken for it (a
//! wake-up would poll Vast off the WorkerGroup's own schedule). A 429 waits the whole
//! interval; another failure is retried after the usual backoff (at least the listings'
//! threshold, at most the interval); the last good listing stays meanwhile. A new term
//! aborts the reads of the last one.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;

use super::requeue::backoff;
use crate::vast::{Account, ConsoleClient, Listing, VastError};

/// How long the polls of a key with nothing on record wait for its first read.
pub const FIRST_READ_WAIT: Duration = Duration::from_secs(2);

/// The longest `--settings-interval`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// How settings are read.
#[derive(Clone, Debug)]
pub struct SettingsConfig {
    /// The console API client.
    pub console: ConsoleClient,
    /// How often each key's listings are read.
    pub interval: Duration,
}

type Done = Shared<BoxFuture<'static, ()>>;

/// A read in flight.
struct InFlight {
    /// Which read it is: only this one may record its answer.
    id: u64,
    started: Instant,
    done: Done,
    abort: tokio::task::AbortHandle,
}

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
    in_flight: Option<InFlight>,
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
    next_id: std::sync::atomic::AtomicU64,
}

impl Settings {
    /// A reader with `config` (its interval capped at [`MAX_INTERVAL`]); failures back
    /// off from `backoff_base`.
    pub fn new(mut config: SettingsConfig, backoff_base: Duration) -> Self {
        config.interval = config.interval.min(MAX_INTERVAL);
        Self {
            config,
            backoff_base,
            hasher: RandomState::new(),
            entries: Arc::default(),
            next_id: Default::default(),
        }
    }

    /// The settings of `api_key` now. Starts a read (in `tenant`'s turn under the rate
    /// limit) when one is due; waits for it only while nothing is on record for the key,
    /// and only until the read is [`FIRST_READ_WAIT`] old.
    pub async fn read(&self, api_key: &str, tenant: &str) -> Read {
        let key = self.hasher.hash_one(api_key);
        let wait = {
            let mut entries = self.entries.lock();
            let entry = entries.entry(key).or_default();
            entry.asked = Some(Instant::now());
            let due = entry.next_try.is_none_or(|at| Instant::now() >= at);
            if entry.in_flight.is_none() && due {
                entry.in_flight = Some(self.start(key, api_key, tenant));
            }
            let nothing_yet = entry.good.is_none() && entry.error.is_none();
            match &entry.in_flight {
                Some(f) if nothing_yet => {
                    let left = FIRST_READ_WAIT.saturating_sub(f.started.elapsed());
                    (!left.is_zero()).then(|| (f.done.clone(), left))
                }
                _ => None,
            }
        };
        if let Some((done, left)) = wait {
            let _ = tokio::time::timeout(left, done).await;
        }
        self.entries
            .lock()
            .get(&key)
            .map(snapshot)
            .unwrap_or_default()
    }

    /// Spawns read `id` of `key`'s listings, which records its answer; if it ends
    /// without one (a panic, an abort), the entry is freed for the next read all the
    /// same.
    fn start(&self, key: u64, api_key: &str, tenant: &str) -> InFlight {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let console = self.config.console.clone();
        let (api_key, tenant) = (api_key.to_string(), tenant.to_string());
        let entries = self.entries.clone();
        let (interval, base) = (self.config.interval, self.backoff_base);
        let task = tokio::spawn(async move {
            let mut guard = Unfinished {
                entries: entries.clone(),
                key,
                id,
                recorded: false,
            };
            let answer = console.account(&api_key, &tenant).await;
            drop(api_key);
            record(&entries, key, id, answer, interval, base);
            guard.recorded = true;
        });
        let abort = task.abort_handle();
        let done = async move {
            let _ = task.await;
        }
        .boxed()
        .shared();
        InFlight {
            id,
            started: Instant::now(),
            done,
            abort,
        }
    }

    /// Aborts every read and forgets every entry (a new leadership term: no key is held
    /// past it, and no answer of the last term lands in this one).
    pub fn clear(&self) {
        for (_, e) in self.entries.lock().drain() {
            if let Some(f) = e.in_flight {
                f.abort.abort();
            }
        }
    }

    /// Forgets the entries nobody asked for within `age`.
    pub fn retain(&self, age: Duration) {
        self.entries
            .lock()
            .retain(|_, e| e.in_flight.is_some() || e.asked.is_some_and(|at| at.elapsed() < age));
    }
}

/// Frees the entry of a read that ended without recording (dropped unfinished).
struct Unfinished {
    entries: Entries,
    key: u64,
    id: u64,
    recorded: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        if let Some(e) = self.entries.lock().get_mut(&self.key)
            && e.in_flight.as_ref().is_some_and(|f| f.id == self.id)
        {
            e.in_flight = None;
        }
    }
}

/// Records the answer of read `id` of `key`, if it is still the one in flight.
fn record(
    entries: &Mutex<HashMap<u64, Entry>>,
    key: u64,
    id: u64,
    answer: Result<Account, VastError>,
    interval: Duration,
    base: Duration,
) {
    let mut entries = entries.lock();
    let Some(entry) = entries.get_mut(&key) else {
        return;
    };
    if entry.in_flight.as_ref().is_none_or(|f| f.id != id) {
        return;
    }
    entry.in_flight = None;
    let wait = match answer {
        Ok(account) => {
            entry.good = Some(Arc::new(account));
            entry.error = None;
            entry.failures = 0;
            interval
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
            wait
        }
    };
    entry.next_try = Instant::now().checked_add(wait);
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

    async fn reader(interval: Duration) -> (FakeVast, Arc<Settings>) {
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
        let settings = Settings::new(
            SettingsConfig { console, interval },
            Duration::from_millis(100),
        );
        (vast, Arc::new(settings))
    }

    /// Reads until `done` holds of what is on record (10 s at most).
    async fn read_until(s: &Settings, done: impl Fn(&Read) -> bool) -> Read {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = s.read(KEY, "a").await;
            if done(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "never: {r:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn max_workers(r: &Read) -> Option<i64> {
        r.account.as_ref()?.endpoints.first()?.max_workers
    }

    /// Ten readers of one key within the interval make one call per listing.
    #[tokio::test]
    async fn one_read_per_key_per_interval() {
        let (vast, s) = reader(Duration::from_secs(3600)).await;
        let reads: Vec<_> = (0..10)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.read(KEY, &format!("ns{i}")).await })
            })
            .collect();
        for r in reads {
            r.await.expect("join");
        }
        let r = read_until(&s, |r| r.account.is_some()).await;
        assert_eq!(max_workers(&r), Some(20));
        assert_eq!(vast.state.console_calls(FakeListing::Workergroups), 1);
        assert_eq!(vast.state.console_calls(FakeListing::Endptjobs), 1);
    }

    /// With a listing on record, a due read runs aside: a slow console holds up no read,
    /// and what it brings is there afterwards.
    #[tokio::test]
    async fn a_due_read_runs_aside() {
        let (vast, s) = reader(Duration::from_millis(300)).await;
        read_until(&s, |r| r.account.is_some()).await;
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
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let started = Instant::now();
            let r = s.read(KEY, "a").await;
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "a read with a listing on record waited {:?}",
                started.elapsed()
            );
            if max_workers(&r) == Some(40) {
                break;
            }
            assert!(Instant::now() < deadline, "the new listing never came");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(vast.state.console_calls(FakeListing::Workergroups), 2);
    }

    /// A 429 keeps the last listing and is not retried within the interval; a read that
    /// works again clears the failures.
    #[tokio::test]
    async fn a_429_waits_the_interval() {
        let (vast, s) = reader(Duration::from_millis(500)).await;
        read_until(&s, |r| r.account.is_some()).await;
        vast.state.set_console_fault(
            FakeListing::Workergroups,
            Some(Fault {
                status: Some(429),
                ..Default::default()
            }),
        );
        let limited = read_until(&s, |r| r.error.is_some()).await;
        assert!(matches!(limited.error, Some(VastError::RateLimited(_))));
        assert!(limited.account.is_some(), "the last listing stays");
        assert_eq!(limited.failures, 1);
        // At once again: within the interval, no call.
        assert_eq!(s.read(KEY, "a").await.failures, 1);
        assert_eq!(vast.state.console_calls(FakeListing::Workergroups), 2);
        vast.state
            .set_console_fault(FakeListing::Workergroups, None);
        let healed = read_until(&s, |r| r.error.is_none()).await;
        assert_eq!(healed.failures, 0);
    }

    /// A new term aborts the reads in flight: the key goes with them, and nothing of the
    /// old term's lands in the new one.
    #[tokio::test]
    async fn clear_aborts_the_reads_in_flight() {
        let (vast, s) = reader(Duration::from_secs(3600)).await;
        vast.state.set_console_fault(
            FakeListing::Workergroups,
            Some(Fault {
                delay_ms: 3000,
                times: Some(1),
                ..Default::default()
            }),
        );
        // The first read waits at most FIRST_READ_WAIT, then the call goes on.
        let r = s.read(KEY, "a").await;
        assert!(r.account.is_none() && r.error.is_none());
        s.clear();
        // A new read of the new term: its own call, which gets the listing.
        let r = read_until(&s, |r| r.account.is_some()).await;
        assert_eq!(max_workers(&r), Some(20));
        assert_eq!(vast.state.console_calls(FakeListing::Workergroups), 2);
        // The old call was cut off: no endptjobs call of its own ever comes.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(vast.state.console_calls(FakeListing::Endptjobs), 1);
    }
}
