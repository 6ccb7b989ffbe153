//! Test plumbing shared by `tests/` and `crates/bench`: the local control plane of
//! `hack/cluster.sh` ([`cluster`]), `vast-operator run` as a child process with its log
//! in a file ([`operator`], [`logs`]), CRD installation and apiserver request counts
//! ([`apiserver`]), samples of a Prometheus text ([`metrics`]), and waiting with a
//! deadline ([`eventually`]).
//!
//! Nothing here knows the operator's types: it is plumbing, and the tests and the bench
//! say what they check.

pub mod apiserver;
pub mod cluster;
pub mod logs;
pub mod metrics;
pub mod operator;

use std::future::Future;
use std::time::Duration;

/// What the kit's fallible calls return.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Installs the ring crypto provider for rustls (kube and reqwest both use rustls); safe
/// to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A free port on 127.0.0.1 (bound and released: good enough for tests).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what` after
/// `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_until(timeout, &mut f).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for: {what}"),
    }
}

/// Polls `f` every 100 ms until it returns `Some` (returned), or `timeout` passes
/// (`None`).
pub async fn poll_until<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
