//! Whether a watch has filled its store with a first full list, for any number of
//! waiters.
//!
//! kube-runtime's `Store::wait_until_ready` is not safe for more than one waiter at a
//! time: its `DelayedInit` shares one oneshot receiver between all of them, and a
//! oneshot receiver keeps only the waker of the last poll, so when the store becomes
//! ready only the most recent waiter is woken; the others stay pending until something
//! else happens to poll them, which may be never. (The controller's initial "reconcile
//! everything" waited that way beside the controller's own runner and the pruner, and was
//! lost whenever a term began during the first list: issue 15, and the unit test below.)
//! The watches here set a [`Listed`] themselves when they see the list's `InitDone`,
//! after the reflector has swapped the list into the store.

use std::sync::Arc;

use tokio::sync::watch;

/// Set once, when a watch has listed; waited for by any number of tasks.
#[derive(Clone, Debug)]
pub struct Listed(Arc<watch::Sender<bool>>);

impl Default for Listed {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

impl Listed {
    /// The watch has listed (idempotent).
    pub fn set(&self) {
        self.0.send_if_modified(|v| !std::mem::replace(v, true));
    }

    /// Whether it has.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the watch has listed.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in self: the wait cannot end in an error while self lives.
        let _ = rx.wait_for(|v| *v).await;
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    use super::*;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn woken(c: &Arc<Count>) -> usize {
        c.0.load(Ordering::SeqCst)
    }

    /// Two waiters, each polled once with a waker of its own (as two tasks, or two
    /// streams of one `SelectAll`, are) before the store is ready.
    fn wake_two<F: Future>(a: F, b: F, ready: impl FnOnce()) -> (usize, usize) {
        let (wa, wb) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (mut a, mut b) = (pin!(a), pin!(b));
        let waker_a = Waker::from(wa.clone());
        let waker_b = Waker::from(wb.clone());
        assert!(
            a.as_mut()
                .poll(&mut Context::from_waker(&waker_a))
                .is_pending()
        );
        assert!(
            b.as_mut()
                .poll(&mut Context::from_waker(&waker_b))
                .is_pending()
        );
        ready();
        (woken(&wa), woken(&wb))
    }

    #[test]
    fn every_waiter_is_woken() {
        let listed = Listed::default();
        let (a, b) = wake_two(listed.wait(), listed.wait(), || listed.set());
        assert!(a >= 1 && b >= 1, "woken: {a}, {b}");
        assert!(listed.is_set());
        let mut again = pin!(listed.wait());
        let waker = Waker::from(Arc::new(Count::default()));
        assert_eq!(
            again.as_mut().poll(&mut Context::from_waker(&waker)),
            Poll::Ready(())
        );
    }

    /// Why this module exists: kube-runtime's store readiness wakes only the last of
    /// two waiters. Should this start failing, kube-runtime has fixed it (and
    /// `Store::wait_until_ready` could be used by several waiters again).
    #[test]
    fn kube_store_readiness_wakes_only_the_last_waiter() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let (a, b) = wake_two(store.wait_until_ready(), store.wait_until_ready(), || {
            writer.apply_watcher_event(&Event::Init);
            writer.apply_watcher_event(&Event::InitDone);
        });
        assert_eq!((a, b), (0, 1), "the first waiter was not woken");
    }
}
