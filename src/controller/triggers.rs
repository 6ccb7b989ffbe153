//! Where wake-ups go: the running controller's queue, or nowhere on a standby. Below
//! both of its users: the watches send into it, and so does the context (a fresh answer
//! wakes the WorkerGroups that share it).

use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;
use parking_lot::Mutex;
use tokio::sync::mpsc::UnboundedSender;

use crate::crd::WorkerGroup;

/// The queue of the running controller, if one runs; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Triggers(Arc<Mutex<Option<UnboundedSender<ObjectRef<WorkerGroup>>>>>);

impl Triggers {
    /// Wakes `key` if a controller runs.
    pub fn send(&self, key: ObjectRef<WorkerGroup>) {
        if let Some(tx) = self.0.lock().as_ref() {
            let _ = tx.send(key);
        }
    }

    /// Forwards wake-ups to `tx` (a running controller), or to nobody.
    pub fn forward_to(&self, tx: Option<UnboundedSender<ObjectRef<WorkerGroup>>>) {
        *self.0.lock() = tx;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_ups_reach_the_running_controller_only() {
        let triggers = Triggers::default();
        let key = ObjectRef::<WorkerGroup>::new("g").within("ns");
        // Nobody runs: dropped.
        triggers.send(key.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        triggers.clone().forward_to(Some(tx));
        triggers.send(key.clone());
        assert_eq!(rx.try_recv().ok(), Some(key.clone()));
        assert!(rx.try_recv().is_err(), "the one before was dropped");
        triggers.forward_to(None);
        triggers.send(key);
        assert!(rx.try_recv().is_err());
    }
}
