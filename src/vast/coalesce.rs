//! Coalescing: WorkerGroups that name the same workergroup (or endpoint) with the same key
//! share one Vast call. Calls are keyed by (scope, keyed hash of the API key); keys
//! themselves are held only by the request in flight. A call in flight is joined (single
//! flight); a finished one (workers, or a 429) is kept for half the interval of the poll
//! that made it and reused by a caller while younger than half the caller's own
//! interval, so sharers whose polls fall close together make one call, and no caller
//! reuses an answer older than half its own interval. An answer is dropped once its time
//! is up (swept at every call), not held until the next poll replaces it. The controller wakes the sharers of a fresh
//! answer, which keeps their polls in step: one call per interval for all of them.

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::{VastClient, VastError, Worker};
use crate::crd::Scope;
use crate::runtime::metrics::Metrics;

/// What identifies a shared call: the scope and a keyed hash of the API key.
pub type ShareKey = (Scope, u64);

type Answer = Result<Vec<Worker>, VastError>;

#[derive(Default)]
struct Entry {
    /// The last answer: when it came, and until when it is kept.
    answered: Option<(Instant, Instant, Answer)>,
    in_flight: Option<Shared<BoxFuture<'static, Answer>>>,
    /// How long the answer of the call in flight is kept: half the interval of the
    /// poll that made it.
    keep: Duration,
}

/// The entries as the calls left them, and when each answer's time is up.
#[derive(Default)]
struct Entries {
    map: HashMap<ShareKey, Entry>,
    /// (until, key) of every answer kept, soonest first; an item whose entry has a newer
    /// answer since is skipped.
    expiry: BinaryHeap<Reverse<(Instant, ShareKey)>>,
}

impl Entries {
    /// Drops the answers whose time is up, and entries with nothing left.
    fn sweep(&mut self, now: Instant) {
        while let Some(Reverse((until, key))) = self.expiry.peek().cloned() {
            if until > now {
                break;
            }
            self.expiry.pop();
            if let Some(e) = self.map.get_mut(&key) {
                if e.answered.as_ref().is_some_and(|(_, u, _)| *u <= now) {
                    e.answered = None;
                }
                if e.answered.is_none() && e.in_flight.is_none() {
                    self.map.remove(&key);
                }
            }
        }
    }
}

/// One poll's answer.
#[derive(Debug)]
pub struct Fetched {
    /// Vast's answer.
    pub answer: Answer,
    /// Whether this poll made the call (false: it shared another's).
    pub called: bool,
    /// How old the answer is (zero unless reused).
    pub age: Duration,
}

/// Vast calls shared by identical polls.
pub struct Coalescer {
    client: VastClient,
    hasher: RandomState,
    entries: Mutex<Entries>,
    metrics: Option<Arc<Metrics>>,
}

impl Coalescer {
    /// Shares the calls of `client`.
    pub fn new(client: VastClient) -> Self {
        Self {
            client,
            hasher: RandomState::new(),
            entries: Mutex::new(Entries::default()),
            metrics: None,
        }
    }

    /// Counts shared answers in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The share key of a poll.
    pub fn share_key(&self, scope: Scope, api_key: &str) -> ShareKey {
        (scope, self.hasher.hash_one(api_key))
    }

    /// The workers of `scope`: a fresh call, the call in flight, or an answer
    /// younger than half of `interval`. `fresh` asks for a call of its own (neither a
    /// reused answer nor one already under way, which may predate the request). A call
    /// made waits under the rate limit in the turn of `tenant`, the caller's namespace.
    pub async fn workers(
        &self,
        scope: Scope,
        api_key: &str,
        interval: Duration,
        fresh: bool,
        tenant: &str,
    ) -> Fetched {
        let key = self.share_key(scope, api_key);
        let max_age = interval / 2;
        let (call, called) = {
            let mut entries = self.entries.lock();
            entries.sweep(Instant::now());
            let entry = entries.map.entry(key).or_default();
            if let Some((at, _, answer)) = &entry.answered
                && !fresh
                && at.elapsed() < max_age
            {
                self.shared();
                return Fetched {
                    answer: answer.clone(),
                    called: false,
                    age: at.elapsed(),
                };
            }
            match &entry.in_flight {
                Some(call) if !fresh => (call.clone(), false),
                _ => {
                    let client = self.client.clone();
                    let api_key = api_key.to_string();
                    let tenant = tenant.to_string();
                    let call = async move { client.workers_for(scope, &api_key, &tenant).await }
                        .boxed()
                        .shared();
                    entry.in_flight = Some(call.clone());
                    entry.keep = max_age;
                    (call, true)
                }
            }
        };
        let answer = call.clone().await;
        {
            // Whoever finishes first records the answer (the caller that started the call
            // may have been cancelled meanwhile).
            // (No entry: another sharer recorded this call's error, or a new term
            // cleared everything; nothing to record.)
            let mut entries = self.entries.lock();
            if let Some(entry) = entries.map.get_mut(&key)
                && entry.in_flight.as_ref().is_some_and(|f| f.ptr_eq(&call))
            {
                entry.in_flight = None;
                // Workers and 429s are reused; other errors are not, so that a retry
                // after backoff asks again.
                let reuse = matches!(answer, Ok(_) | Err(VastError::RateLimited(_)));
                let now = Instant::now();
                let until = now + entry.keep;
                entry.answered = reuse.then(|| (now, until, answer.clone()));
                if reuse {
                    entries.expiry.push(Reverse((until, key)));
                } else if entry.answered.is_none() {
                    entries.map.remove(&key);
                }
            }
        }
        if !called {
            self.shared();
        }
        Fetched {
            answer,
            called,
            age: Duration::ZERO,
        }
    }

    /// Forgets every answer and call (a new leadership term: another process may have
    /// polled since, and calls cut off by the end of a term are dropped with the keys
    /// they hold).
    pub fn clear(&self) {
        *self.entries.lock() = Entries::default();
    }

    /// Drops the answers whose time is up (calls do it too; this is for a quiet time).
    pub fn sweep(&self) {
        self.entries.lock().sweep(Instant::now());
    }

    /// Answers kept now (for tests and the cache metrics).
    pub fn answers(&self) -> usize {
        let now = Instant::now();
        self.entries
            .lock()
            .map
            .values()
            .filter(|e| {
                e.answered
                    .as_ref()
                    .is_some_and(|(_, until, _)| *until > now)
            })
            .count()
    }

    fn shared(&self) {
        if let Some(m) = &self.metrics {
            m.vast_shared();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fake_vast::{FakeVast, Fault, Shape, worker_json};

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    async fn fake() -> (FakeVast, Coalescer) {
        let vast = FakeVast::start(0).await.expect("fake vast");
        let client = VastClient::new(&vast.url(), Duration::from_secs(5)).expect("client");
        (vast, Coalescer::new(client))
    }

    /// A plain poll of workergroup `id` (an hour's interval, not fresh).
    async fn poll(c: &Coalescer, id: i64, key: &str, tenant: &str) -> Fetched {
        c.workers(Scope::Workergroup(id), key, HOUR, false, tenant)
            .await
    }

    fn ids(f: &Fetched) -> Vec<i64> {
        f.answer
            .as_ref()
            .map(|ws| ws.iter().map(|w| w.id).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn different_keys_never_share_an_answer() {
        let (vast, c) = fake().await;
        vast.state.put_group(
            5,
            "vk1-coalesce-right-1",
            Shape::Array,
            vec![worker_json(1, "idle", None)],
        );
        let right = poll(&c, 5, "vk1-coalesce-right-1", "a").await;
        assert!(right.called && ids(&right) == [1]);
        // Same workergroup, another key: its own call, and Vast's refusal, not the
        // answer the right key got.
        let wrong = poll(&c, 5, "vk1-coalesce-wrong-2", "b").await;
        assert!(wrong.called, "a call of its own");
        assert!(
            matches!(wrong.answer, Err(VastError::Authentication(_))),
            "{:?}",
            wrong.answer
        );
        // The right key again: reused (half of an hour has not passed).
        let again = poll(&c, 5, "vk1-coalesce-right-1", "a").await;
        assert!(!again.called && ids(&again) == [1]);
        assert_eq!(vast.state.calls(5), 2);
    }

    #[tokio::test]
    async fn a_call_in_flight_is_joined_and_fresh_bypasses_it() {
        let (vast, c) = fake().await;
        vast.state.put_group(
            6,
            "vk1-coalesce-joined-6f5e",
            Shape::Array,
            vec![worker_json(2, "idle", None)],
        );
        // Both of the next two calls take 800 ms: both are in flight together.
        vast.state.set_fault(
            6,
            Some(Fault {
                delay_ms: 800,
                times: Some(2),
                ..Default::default()
            }),
        );
        let c = std::sync::Arc::new(c);
        let call = |fresh: bool, tenant: &'static str| {
            let c = c.clone();
            tokio::spawn(async move {
                c.workers(
                    Scope::Workergroup(6),
                    "vk1-coalesce-joined-6f5e",
                    HOUR,
                    fresh,
                    tenant,
                )
                .await
            })
        };
        let first = call(false, "a");
        common_wait(|| vast.state.calls(6) == 1).await;
        // A resync does not join the call in flight, which may predate its request.
        let fresh = call(true, "b");
        common_wait(|| vast.state.calls(6) == 2).await;
        // A plain poll joins the call in flight.
        let joined = call(false, "c").await.expect("join");
        let (first, fresh) = (first.await.expect("join"), fresh.await.expect("join"));
        assert!(first.called && fresh.called, "two calls of their own");
        assert!(!joined.called, "the third joined one in flight");
        assert_eq!(ids(&joined), [2]);
        assert_eq!(vast.state.calls(6), 2);
    }

    #[tokio::test]
    async fn a_429_is_reused_other_errors_are_not_and_clear_forgets() {
        let (vast, c) = fake().await;
        vast.state
            .put_group(7, "vk1-coalesce-limited-7a8b", Shape::Array, Vec::new());
        vast.state.set_fault(
            7,
            Some(Fault {
                status: Some(429),
                ..Default::default()
            }),
        );
        let limited = poll(&c, 7, "vk1-coalesce-limited-7a8b", "a").await;
        assert!(matches!(limited.answer, Err(VastError::RateLimited(_))));
        let reused = poll(&c, 7, "vk1-coalesce-limited-7a8b", "b").await;
        assert!(!reused.called, "the 429 is shared: no second call");
        assert!(matches!(reused.answer, Err(VastError::RateLimited(_))));
        assert_eq!(vast.state.calls(7), 1);
        // A 500 is not reused: a retry after backoff asks again.
        c.clear();
        vast.state.set_fault(
            7,
            Some(Fault {
                status: Some(500),
                ..Default::default()
            }),
        );
        let failed = poll(&c, 7, "vk1-coalesce-limited-7a8b", "a").await;
        let retried = poll(&c, 7, "vk1-coalesce-limited-7a8b", "a").await;
        assert!(failed.called && retried.called);
        assert_eq!(vast.state.calls(7), 3);
    }

    #[tokio::test]
    async fn an_answer_is_dropped_once_its_half_interval_is_up() {
        let (vast, c) = fake().await;
        for id in [8, 9] {
            vast.state.put_group(
                id,
                "vk1-coalesce-kept-8c9d",
                Shape::Array,
                vec![worker_json(1, "idle", None)],
            );
        }
        let long = poll(&c, 8, "vk1-coalesce-kept-8c9d", "a").await;
        let short = c
            .workers(
                Scope::Workergroup(9),
                "vk1-coalesce-kept-8c9d",
                Duration::from_millis(400),
                false,
                "a",
            )
            .await;
        assert!(long.called && short.called);
        assert_eq!(c.answers(), 2);
        // The short one's 200 ms pass: it goes; the hour's is kept, and still reused.
        common_wait(|| {
            c.sweep();
            c.answers() == 1
        })
        .await;
        let again = poll(&c, 8, "vk1-coalesce-kept-8c9d", "b").await;
        assert!(!again.called, "the hour's answer was dropped");
        // A call sweeps too: the hour's answer is not due, so it stays.
        let third = poll(&c, 9, "vk1-coalesce-kept-8c9d", "a").await;
        assert!(third.called);
        assert_eq!(c.answers(), 2);
    }

    /// Polls `done` every 10 ms for at most 5 s.
    async fn common_wait(done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
