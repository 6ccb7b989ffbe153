//! Settings from Vast's console, read once per key per `--settings-interval` and shared
//! by every WorkerGroup of that key (single flight, like the worker polls). Entries are
//! keyed by a keyed hash of the API key; the key itself is held only by the call in
//! flight. A 429 waits the whole interval; another failure is retried after the usual
//! backoff (at most the interval); the last good listing stays meanwhile.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;

use super::requeue::backoff;
use crate::vast::{Account, ConsoleClient, VastError};

/// How settings are read.
#[derive(Clone, Debug)]
pub struct SettingsConfig {
    /// The console API client.
    pub console: ConsoleClient,
    /// How often each key's listings are read.
    pub interval: Duration,
}

type Answer = Result<Arc<Account>, VastError>;

#[derive(Default)]
struct Entry {
    /// The last good listing.
    good: Option<Arc<Account>>,
    /// The error of the last try, when it failed.
    error: Option<VastError>,
    /// Consecutive failed tries.
    failures: u32,
    /// No call before this.
    next_try: Option<Instant>,
    /// When a WorkerGroup last asked (entries nobody asks for are forgotten).
    asked: Option<Instant>,
    in_flight: Option<Shared<BoxFuture<'static, Answer>>>,
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

/// The settings reader of one operator.
pub struct Settings {
    config: SettingsConfig,
    backoff_base: Duration,
    hasher: RandomState,
    entries: Mutex<HashMap<u64, Entry>>,
}

impl Settings {
    /// A reader with `config`; failures back off from `backoff_base`.
    pub fn new(config: SettingsConfig, backoff_base: Duration) -> Self {
        Self {
            config,
            backoff_base,
            hasher: RandomState::new(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The settings of `api_key`: what is on record while it is fresh (or while a failed
    /// try waits out its backoff), else a new read (or the one in flight), made in the
    /// turn of `tenant`.
    pub async fn read(&self, api_key: &str, tenant: &str) -> Read {
        let key = self.hasher.hash_one(api_key);
        let call = {
            let mut entries = self.entries.lock();
            let entry = entries.entry(key).or_default();
            entry.asked = Some(Instant::now());
            let due = entry.next_try.is_none_or(|at| Instant::now() >= at);
            match &entry.in_flight {
                Some(call) => call.clone(),
                None if !due => return snapshot(entry),
                None => {
                    let console = self.config.console.clone();
                    let api_key = api_key.to_string();
                    let tenant = tenant.to_string();
                    let call =
                        async move { console.account(&api_key, &tenant).await.map(Arc::new) }
                            .boxed()
                            .shared();
                    entry.in_flight = Some(call.clone());
                    call
                }
            }
        };
        let answer = call.clone().await;
        let mut entries = self.entries.lock();
        let entry = entries.entry(key).or_default();
        if entry.in_flight.as_ref().is_some_and(|f| f.ptr_eq(&call)) {
            entry.in_flight = None;
            let wait = match &answer {
                Ok(account) => {
                    entry.good = Some(account.clone());
                    entry.error = None;
                    entry.failures = 0;
                    self.config.interval
                }
                Err(e) => {
                    entry.failures = entry.failures.saturating_add(1);
                    entry.error = Some(e.clone());
                    match e {
                        // Vast asks for fewer calls: wait the interval.
                        VastError::RateLimited(_) => self.config.interval,
                        _ => backoff(entry.failures, self.backoff_base, self.config.interval),
                    }
                }
            };
            entry.next_try = Some(Instant::now() + wait);
        }
        snapshot(entry)
    }

    /// Forgets every entry (a new leadership term).
    pub fn clear(&self) {
        self.entries.lock().clear();
    }

    /// Forgets the entries nobody asked for within `age`.
    pub fn forget_older_than(&self, age: Duration) {
        self.entries
            .lock()
            .retain(|_, e| e.in_flight.is_some() || e.asked.is_some_and(|at| at.elapsed() < age));
    }

    /// How many keys are on record.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether no key is on record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    use fake_vast::{FakeVast, Fault, Listing};

    async fn reader(interval: Duration) -> (FakeVast, Settings) {
        let vast = FakeVast::start(0).await.expect("fake vast");
        vast.state
            .set_console_thresholds(Duration::ZERO, Duration::ZERO);
        vast.state
            .put_group(7, "vk1-settings-unit-1a2b", Default::default(), vec![]);
        vast.state
            .set_group_settings(7, serde_json::json!({"endpoint_id": 3, "min_load": 1.0}));
        vast.state.put_endpoint(
            3,
            "vk1-settings-unit-1a2b",
            serde_json::json!({"endpoint_name": "llama", "max_workers": 20}),
        );
        let client =
            crate::vast::VastClient::new(&vast.url(), Duration::from_secs(5)).expect("client");
        let console = client.console(&vast.url(), false).expect("console");
        let settings = Settings::new(
            SettingsConfig { console, interval },
            Duration::from_millis(100),
        );
        (vast, settings)
    }

    /// Ten readers of one key within the interval make one call per listing.
    #[tokio::test]
    async fn one_read_per_key_per_interval() {
        let (vast, s) = reader(Duration::from_secs(3600)).await;
        let s = Arc::new(s);
        let reads: Vec<_> = (0..10)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(
                    async move { s.read("vk1-settings-unit-1a2b", &format!("ns{i}")).await },
                )
            })
            .collect();
        for r in reads {
            let r = r.await.expect("join");
            let account = r.account.expect("read");
            assert_eq!(account.endpoints[0].max_workers, Some(20));
        }
        assert_eq!(vast.state.console_calls(Listing::Workergroups), 1);
        assert_eq!(vast.state.console_calls(Listing::Endptjobs), 1);
    }

    /// A 429 keeps the last listing and is not retried within the interval; another
    /// error is, after the backoff.
    #[tokio::test]
    async fn a_429_waits_the_interval_other_errors_back_off() {
        let (vast, s) = reader(Duration::from_millis(400)).await;
        let key = "vk1-settings-unit-1a2b";
        assert!(s.read(key, "a").await.account.is_some());
        tokio::time::sleep(Duration::from_millis(450)).await;
        vast.state.set_console_fault(
            Listing::Workergroups,
            Some(Fault {
                status: Some(429),
                ..Default::default()
            }),
        );
        let limited = s.read(key, "a").await;
        assert!(matches!(limited.error, Some(VastError::RateLimited(_))));
        assert!(limited.account.is_some(), "the last listing stays");
        assert_eq!(limited.failures, 1);
        // Within the interval: no call.
        let again = s.read(key, "a").await;
        assert_eq!(again.failures, 1);
        assert_eq!(vast.state.console_calls(Listing::Workergroups), 2);
        // A 503 after the interval: retried after the backoff (100 ms doubling), before
        // the interval.
        tokio::time::sleep(Duration::from_millis(450)).await;
        vast.state.set_console_fault(
            Listing::Workergroups,
            Some(Fault {
                status: Some(503),
                ..Default::default()
            }),
        );
        assert_eq!(s.read(key, "a").await.failures, 2);
        let deadline = Instant::now() + Duration::from_secs(5);
        while vast.state.console_calls(Listing::Workergroups) < 4 {
            assert!(Instant::now() < deadline, "not retried");
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.read(key, "a").await;
        }
        vast.state.set_console_fault(Listing::Workergroups, None);
        tokio::time::sleep(Duration::from_millis(450)).await;
        let healed = s.read(key, "a").await;
        assert!(healed.error.is_none() && healed.failures == 0, "{healed:?}");
    }
}
