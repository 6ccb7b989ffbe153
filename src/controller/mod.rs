//! The kube-runtime `Controller` of WorkerGroups: the process-long watches
//! ([`watches`]), one term of reconciling ([`run_term`], while leading), the reconcile
//! steps ([`reconcile`]), the API-key source ([`api_key`]), per-object memory
//! ([`memory`]) and the requeue policy ([`requeue`]).

pub mod api_key;
pub mod context;
pub mod memory;
pub mod reconcile;
pub mod requeue;
pub mod watches;

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{self as kcontroller, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::{debug, warn};

pub use context::{Config, Context};
pub use watches::Watches;

use crate::Error;
use crate::crd::WorkerGroup;

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
/// WorkerGroup is reconciled once at the start of a term.
pub async fn run_term(
    ctx: Arc<Context>,
    watches: &Watches,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<WorkerGroup>>();
    let _term = Term::begin(&ctx, watches, tx);
    let store = watches.groups.clone();
    let listed = store.clone();
    let wakeups =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|key| (key, rx)) },
        );
    let everything_once = futures::stream::once(async move {
        let _ = listed.wait_until_ready().await;
    });
    Controller::for_stream(
        futures::stream::pending::<Result<WorkerGroup, watcher::Error>>(),
        store,
    )
    .with_config(kcontroller::Config::default().concurrency(ctx.config.concurrency))
    .reconcile_on(wakeups)
    .reconcile_all_on(everything_once)
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

/// What runs only during a term (wake-ups, pruning), undone however the term ends.
struct Term<'a> {
    watches: &'a Watches,
    pruner: tokio::task::JoinHandle<()>,
    metrics: Arc<crate::runtime::metrics::Metrics>,
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
        watches.forward_to(Some(tx));
        Self {
            watches,
            pruner: tokio::spawn(prune(ctx.clone(), watches.groups.clone())),
            metrics: ctx.metrics.clone(),
        }
    }
}

impl Drop for Term<'_> {
    fn drop(&mut self) {
        self.watches.forward_to(None);
        self.pruner.abort();
        // A standby reports nothing per WorkerGroup: the leader does.
        self.metrics.retain_groups(&Default::default());
    }
}

/// Forgets memory and metric series of WorkerGroups that are gone, also those that a
/// reconcile still running at their deletion re-created.
async fn prune(ctx: Arc<Context>, store: kube::runtime::reflector::Store<WorkerGroup>) {
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(ctx.config.prune_interval);
    loop {
        tick.tick().await;
        ctx.keep_only(&store);
        // No answer is reused after half the longest interval (24h).
        ctx.vast
            .forget_older_than(std::time::Duration::from_secs(12 * 3600));
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
