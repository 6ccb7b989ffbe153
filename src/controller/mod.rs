//! The kube-runtime `Controller` of WorkerGroups: the process-long watches
//! ([`watches`]), one term of reconciling ([`run_term`], while leading), the reconcile
//! steps ([`reconcile`]), the API-key source ([`api_key`]), per-object memory
//! ([`memory`]), the requeue policy ([`requeue`]), the overdue check ([`overdue`]) and the
//! console settings shared per key ([`settings`]).

pub mod api_key;
pub mod context;
pub mod key_cache;
pub mod memory;
pub mod overdue;
pub mod reconcile;
pub mod requeue;
pub mod settings;
pub mod triggers;
pub mod watches;

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{self as kcontroller, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::{debug, warn};

pub use context::{Config, Context};
pub use watches::Watches;

use crate::crd::WorkerGroup;
use crate::error::Error;

/// Runs the watches and the controller until `shutdown` resolves: the whole operator
/// without leader election (what the tests run in-process).
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let watches = Watches::start(&ctx, || {});
    run_term(ctx, &watches, shutdown).await;
}

/// Reconciles, with the warm `watches`, until `shutdown` resolves (then in-flight
/// reconciles finish) or the future is dropped (then they are cancelled at once). Every
/// WorkerGroup is reconciled once at the start of a term, as soon as the first list is
/// in the store.
pub async fn run_term(
    ctx: Arc<Context>,
    watches: &Watches,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<WorkerGroup>>();
    // Wake-ups are forwarded from here on; what the store holds now is reconciled below.
    let _term = Term::begin(&ctx, watches, tx);
    let stopping = crate::runtime::listed::Listed::default();
    *ctx.stopping.lock() = stopping.clone();
    let mut shutdown = Box::pin(async move {
        shutdown.await;
        // Reconciles still waiting for a slot end now; those running finish.
        stopping.set();
    });
    // The controller starts once the store has listed, so that the reconcile of
    // everything below reads a full store. (Not through `Store::wait_until_ready`: see
    // `runtime::listed`. The controller's runner waits for the store as well; by now
    // that wait ends at its first poll.)
    tokio::select! {
        _ = watches.listed.wait() => {}
        _ = &mut shutdown => return,
    }
    let store = watches.groups.clone();
    let wakeups =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|key| (key, rx)) },
        );
    Controller::for_stream(
        futures::stream::pending::<Result<WorkerGroup, watcher::Error>>(),
        store,
    )
    // No limit here: `--concurrency` is a fair gate inside the reconcile (see
    // `runtime::fair`), shared out by namespace. The controller's own limit would pick
    // the next of many ready objects in no fair order, and starve some.
    .with_config(kcontroller::Config::default().concurrency(0))
    .reconcile_on(wakeups)
    .reconcile_all_on(futures::stream::once(async {}))
    .graceful_shutdown_on(shutdown)
    .run(reconcile::reconcile, error_policy, ctx)
    .for_each(|res| async move {
        match res {
            Ok((obj, _)) => debug!(object = %obj, "reconciled"),
            // Reconcile errors were logged by error_policy.
            Err(kcontroller::Error::ReconcilerFailed(..)) => {}
            Err(e) => warn!(error = %e, "controller error"),
        }
    })
    .await;
}

/// What runs only during a term (wake-ups, pruning, the overdue check), undone however
/// the term ends.
struct Term<'a> {
    watches: &'a Watches,
    tasks: [tokio::task::JoinHandle<()>; 2],
    ctx: Arc<Context>,
}

impl<'a> Term<'a> {
    fn begin(
        ctx: &Arc<Context>,
        watches: &'a Watches,
        tx: tokio::sync::mpsc::UnboundedSender<ObjectRef<WorkerGroup>>,
    ) -> Self {
        // Another process may have led since this one last did: what it remembers of
        // the workers is no baseline any more.
        ctx.memory.clear();
        ctx.vast.clear();
        if let Some(settings) = &ctx.settings {
            settings.clear();
        }
        watches.forward_to(Some(tx));
        let listed = watches.listed.clone();
        let (store, c) = (watches.groups.clone(), ctx.clone());
        let overdue = tokio::spawn(async move {
            listed.wait().await;
            overdue::watch(c, store).await;
        });
        let listed = watches.listed.clone();
        let (store, c) = (watches.groups.clone(), ctx.clone());
        let pruner = tokio::spawn(async move {
            listed.wait().await;
            prune(c, store).await;
        });
        Self {
            watches,
            tasks: [pruner, overdue],
            ctx: ctx.clone(),
        }
    }
}

impl Drop for Term<'_> {
    fn drop(&mut self) {
        self.watches.forward_to(None);
        for t in &self.tasks {
            t.abort();
        }
        // A standby reports nothing per WorkerGroup: the leader does.
        self.ctx.metrics.retain_groups(&Default::default());
        self.ctx.metrics.set_overdue(0);
        // Nor holds any tenant's key: cached keys go, and so do the coalesced calls
        // (cut off calls still hold theirs until the last sharer lets go); settings
        // reads in flight are aborted.
        self.ctx.keys.clear();
        self.ctx.vast.clear();
        if let Some(settings) = &self.ctx.settings {
            settings.clear();
        }
    }
}

/// Forgets memory and metric series of WorkerGroups that are gone, also those that a
/// reconcile still running at their deletion re-created.
async fn prune(ctx: Arc<Context>, store: kube::runtime::reflector::Store<WorkerGroup>) {
    let mut tick = tokio::time::interval(ctx.config.prune_interval);
    loop {
        tick.tick().await;
        ctx.keep_only(&store);
        // Answers whose time is up, also when no call comes to sweep them.
        ctx.vast.sweep();
    }
}

fn error_policy(wg: Arc<WorkerGroup>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*wg);
    let n = ctx.memory.api_failed(&wg);
    let delay = requeue::jitter(
        requeue::backoff(n, ctx.config.backoff_base, ctx.config.backoff_max),
        0.2,
    );
    warn!(workergroup = %key, error = %err, category = err.category(), retry_in = ?delay, "reconcile error");
    Action::requeue(delay)
}
