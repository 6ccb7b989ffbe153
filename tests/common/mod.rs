//! Test support, by concern:
//! - [`cluster`]: the real control plane (kube-apiserver, etcd, kube-controller-manager
//!   and CoreDNS, started once per test binary with `hack/cluster.sh`, or the running
//!   one of `make cluster` that `KUBECONFIG` points at), clients, apiserver counts;
//! - [`manifests`]: a fresh namespace per test ([`TestNs`]) and what goes in it
//!   (Secrets, WorkerGroups, CRDs, ServiceAccount credentials, a test PKI);
//! - [`harness`]: the operator in-process beside a fake Vast ([`Harness`]), what it asked
//!   the apiserver ([`Requests`]), and waits on its WorkerGroups and events;
//! - [`process`]: the operator as a child process ([`OperatorProcess`]) and HTTP reads of
//!   its ports.
//!
//! The plumbing the bench shares lives in `crates/testkit`. Every operator a test starts
//! logs through `vast_testkit::logs` (in-process: [`harness::log_in_process`]; a child:
//! its log file in `target/test-logs`; a short-lived command: [`process::run_logged`]),
//! which `make leak-check` searches.
#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod harness;
pub mod manifests;
pub mod process;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub use cluster::*;
pub use harness::*;
pub use manifests::*;
pub use process::*;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    vast_testkit::eventually(what, timeout, f).await
}

/// Lets `d` of wall time pass in which nothing is expected to happen; the caller then
/// checks that nothing did. Not a synchronisation: a wait for something uses
/// [`eventually`] with a deadline.
pub async fn quiet_for(d: Duration) {
    tokio::time::sleep(d).await;
}
