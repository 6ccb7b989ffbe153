//! Fair sharing of a scarce resource between tenants (namespaces): reconcile slots
//! (`--concurrency`) and Vast calls (`--vast-max-rps`).
//!
//! Waiters queue per tenant; a dispatcher takes one unit of the resource at a time (a
//! semaphore permit, a rate-limiter token) and hands it to the next tenant in round
//! robin, first come first served within a tenant. A tenant with 80 WorkerGroups waiting
//! therefore gets one unit in turn with a tenant that has one: it cannot push the other's
//! polls back by more than one turn per tenant waiting. A waiter that gives up (its
//! reconcile was cancelled) is skipped, and the unit goes to the next.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

struct Queues<T> {
    /// Waiters by tenant, oldest first.
    waiting: HashMap<String, VecDeque<oneshot::Sender<T>>>,
    /// Tenants with waiters, in the order they are served.
    ring: VecDeque<String>,
}

/// Fair queues in front of one resource of units `T`.
pub struct Fair<T> {
    queues: Mutex<Queues<T>>,
    arrived: Notify,
}

impl<T: Send + 'static> Default for Fair<T> {
    fn default() -> Self {
        Self {
            queues: Mutex::new(Queues {
                waiting: HashMap::new(),
                ring: VecDeque::new(),
            }),
            arrived: Notify::new(),
        }
    }
}

impl<T: Send + 'static> Fair<T> {
    /// Waits for a unit in `tenant`'s turn; returns it and how long it took. None when the
    /// dispatcher is gone.
    pub async fn acquire(&self, tenant: &str) -> Option<(T, Duration)> {
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        {
            let mut guard = self.queues.lock();
            let q = &mut *guard;
            let mine = q.waiting.entry(tenant.to_string()).or_default();
            if mine.is_empty() {
                q.ring.push_back(tenant.to_string());
            }
            mine.push_back(tx);
        }
        self.arrived.notify_one();
        rx.await.ok().map(|unit| (unit, started.elapsed()))
    }

    /// The next waiter still waiting, in round robin; None when nobody waits.
    fn next(&self) -> Option<oneshot::Sender<T>> {
        let mut q = self.queues.lock();
        while let Some(tenant) = q.ring.pop_front() {
            let Some(mut mine) = q.waiting.remove(&tenant) else {
                continue;
            };
            while let Some(tx) = mine.pop_front() {
                if tx.is_closed() {
                    continue;
                }
                if !mine.is_empty() {
                    q.waiting.insert(tenant.clone(), mine);
                    q.ring.push_back(tenant);
                }
                return Some(tx);
            }
        }
        None
    }

    /// Whether a tenant has waiters (some may have given up: [`Fair::next`] skips them).
    fn anyone_waiting(&self) -> bool {
        let q = self.queues.lock();
        !q.ring.is_empty()
    }

    /// Hands out units made by `take` (one at a time, only while someone waits), forever.
    pub async fn dispatch<F, Fut>(self: Arc<Self>, mut take: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = T>,
    {
        let mut held: Option<T> = None;
        loop {
            while !self.anyone_waiting() {
                self.arrived.notified().await;
            }
            let mut unit = match held.take() {
                Some(unit) => unit,
                None => take().await,
            };
            loop {
                match self.next() {
                    Some(tx) => match tx.send(unit) {
                        Ok(()) => break,
                        // Gave up meanwhile: the next one gets it.
                        Err(back) => unit = back,
                    },
                    None => {
                        held = Some(unit);
                        break;
                    }
                }
            }
        }
    }
}

/// A gate in front of a reconcile's writes to the apiserver, asked before each one.
/// `false`: this write, and every later one of the same publish, is not made (the gate
/// only finds out whether a write is needed, or writes may not be made now).
pub trait WriteGate: Sync {
    /// Waits for the gate; whether the write may go ahead.
    fn enter(&self) -> impl Future<Output = bool> + Send;

    /// Whether the gate only finds out if writes are needed (a refusal is then no
    /// problem to report).
    fn probing(&self) -> bool {
        false
    }
}

/// No gate: every write goes ahead at once.
impl WriteGate for () {
    fn enter(&self) -> impl Future<Output = bool> + Send {
        std::future::ready(true)
    }
}

/// A fair `--concurrency`: permits of a semaphore shared out by tenant.
pub struct FairSlots {
    fair: Arc<Fair<tokio::sync::OwnedSemaphorePermit>>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl FairSlots {
    /// `n` slots. Needs a Tokio runtime.
    pub fn new(n: usize) -> Self {
        let fair = Arc::new(Fair::default());
        let semaphore = Arc::new(tokio::sync::Semaphore::new(n));
        let dispatcher = tokio::spawn(fair.clone().dispatch(move || {
            let s = semaphore.clone();
            async move {
                match s.acquire_owned().await {
                    Ok(permit) => permit,
                    // The semaphore is never closed.
                    Err(_) => std::future::pending().await,
                }
            }
        }));
        Self { fair, dispatcher }
    }

    /// Waits for a slot in `tenant`'s turn; the slot is held until the permit drops.
    pub async fn acquire(
        &self,
        tenant: &str,
    ) -> Option<(tokio::sync::OwnedSemaphorePermit, Duration)> {
        self.fair.acquire(tenant).await
    }
}

impl Drop for FairSlots {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

/// A fair rate limit: tokens of a `governor` limiter shared out by tenant.
pub struct FairRate {
    fair: Arc<Fair<()>>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl FairRate {
    /// At most `per_second` units per second (bursts of as many). Needs a Tokio runtime.
    pub fn new(per_second: std::num::NonZeroU32) -> Self {
        let limiter = Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
            per_second,
        )));
        let fair = Arc::new(Fair::default());
        let dispatcher = tokio::spawn(fair.clone().dispatch(move || {
            let l = limiter.clone();
            async move { l.until_ready().await }
        }));
        Self { fair, dispatcher }
    }

    /// Waits for a token in `tenant`'s turn; returns how long that took.
    pub async fn acquire(&self, tenant: &str) -> Duration {
        self.fair
            .acquire(tenant)
            .await
            .map_or(Duration::ZERO, |(_, waited)| waited)
    }
}

impl Drop for FairRate {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tenant `a` queues 20 waiters, then `b` one: `b` is served second, not 21st.
    #[tokio::test]
    async fn a_crowded_tenant_cannot_push_another_to_the_back() {
        let fair = Arc::new(Fair::<u32>::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for tenant in std::iter::repeat_n("a", 20).chain(["b"]) {
            let (f, o) = (fair.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                if f.acquire(tenant).await.is_some() {
                    o.lock().push(tenant);
                }
            }));
            // Every waiter is queued before the next one (and before any unit exists).
            while !fair.anyone_waiting() || {
                let q = fair.queues.lock();
                q.waiting.values().map(VecDeque::len).sum::<usize>() < waiters.len()
            } {
                tokio::task::yield_now().await;
            }
        }
        // One unit at a time, each handed out only after the previous one was taken.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
        tokio::spawn(fair.clone().dispatch(move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(0).await;
                0
            }
        }));
        for w in waiters {
            let _ = rx.recv().await;
            w.await.expect("waiter");
        }
        let order = order.lock().clone();
        assert_eq!(order.len(), 21);
        let b = order.iter().position(|t| *t == "b").expect("b served");
        assert!(b <= 1, "b served at {b}: {order:?}");
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_is_skipped() {
        let fair = Arc::new(Fair::<u32>::default());
        let gone = {
            let f = fair.clone();
            tokio::spawn(async move { f.acquire("a").await })
        };
        while !fair.anyone_waiting() {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        let served = {
            let f = fair.clone();
            tokio::spawn(async move { f.acquire("b").await.map(|(u, _)| u) })
        };
        let mut n = 0;
        tokio::spawn(fair.clone().dispatch(move || {
            n += 1;
            std::future::ready(n)
        }));
        assert_eq!(
            served.await.expect("join"),
            Some(1),
            "the first unit went to b"
        );
    }

    #[tokio::test]
    async fn slots_bound_what_runs_at_once() {
        let slots = Arc::new(FairSlots::new(2));
        let (a, _) = slots.acquire("x").await.expect("slot");
        let (_b, _) = slots.acquire("y").await.expect("slot");
        let third = {
            let s = slots.clone();
            tokio::spawn(async move { s.acquire("z").await.map(|_| ()) })
        };
        // Nothing happens for a while: the third waits for a slot.
        let quiet = tokio::time::timeout(Duration::from_millis(300), async {
            while !third.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(quiet.is_err(), "a third ran with two slots taken");
        drop(a);
        assert_eq!(third.await.expect("join"), Some(()));
    }
}
