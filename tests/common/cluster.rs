//! The test control plane: started once per test binary (or the one of `make cluster`),
//! its faults, clients of it, and its request counts.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kube::{Client, Config};

use super::repo_root;

fn start_cluster() -> PathBuf {
    // Use the cluster of `make cluster` when KUBECONFIG points at it, and never any
    // other: tests create and delete namespaces and CRDs. Never for a test that needs
    // kube-apiserver flags of its own: the shared one does not have them.
    let ours = std::env::var_os("VAST_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cluster"))
        .join("kubeconfig");
    if let Some(path) = std::env::var_os("KUBECONFIG").map(PathBuf::from)
        && APISERVER_FLAGS.get().is_none()
        && NO_GC.get().is_none()
        && path.exists()
        && path.canonicalize().ok() == ours.canonicalize().ok()
    {
        return path;
    }
    // No cluster given: start one for this test process, and a watchdog that stops it
    // when this process exits, however it exits. The directory names the process, so a
    // run started right after another never meets the previous watchdog's teardown.
    let exe = std::env::current_exe().expect("current exe");
    let name = exe
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("tests")
        .to_string();
    let dir = repo_root()
        .join("target")
        .join("test-clusters")
        .join(format!("{name}-{}", std::process::id()));
    let options = vast_testkit::cluster::Options {
        apiserver_flags: APISERVER_FLAGS
            .get()
            .copied()
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect(),
        no_dns: false,
        no_gc: NO_GC.get().copied().unwrap_or(false),
    };
    vast_testkit::cluster::Cluster::up(&repo_root(), &dir, &options)
        .and_then(|c| c.stop_when_process_exits())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The kubeconfig of the test control plane (starting it on first use).
pub fn kubeconfig() -> &'static Path {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG.get_or_init(start_cluster)
}

/// Extra kube-apiserver flags for this process's own control plane.
static APISERVER_FLAGS: OnceLock<&'static str> = OnceLock::new();

/// Starts this process's control plane with extra kube-apiserver `flags` (separated by
/// whitespace; none holds a space); must come
/// before anything else uses the cluster (a test binary of its own).
pub fn kubeconfig_with_apiserver_flags(flags: &'static str) -> &'static Path {
    assert!(
        APISERVER_FLAGS.set(flags).is_ok(),
        "apiserver flags given twice"
    );
    kubeconfig()
}

/// Whether this process's control plane runs without the garbage collector.
static NO_GC: OnceLock<bool> = OnceLock::new();

/// Starts this process's control plane without the garbage collector (owned objects
/// outlive their owners); must come before anything else uses the cluster (a test
/// binary of its own, each of whose tests calls this first).
#[allow(dead_code)]
pub fn kubeconfig_without_garbage_collector() -> &'static Path {
    NO_GC.get_or_init(|| true);
    kubeconfig()
}

/// Runs a fault command of `hack/cluster.sh` (`apiserver-stop`, `apiserver-start`,
/// `etcd-restart`) on this process's own control plane; refuses a shared one.
pub async fn cluster_fault(cmd: &'static str) {
    let dir = kubeconfig().parent().expect("cluster dir").to_path_buf();
    assert!(
        dir.to_string_lossy()
            .ends_with(&format!("-{}", std::process::id())),
        "control-plane faults need a cluster of this test process, not {}; unset KUBECONFIG",
        dir.display()
    );
    tokio::task::spawn_blocking(move || vast_testkit::cluster::fault(&repo_root(), &dir, cmd))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Where the test control plane's CoreDNS answers (`hack/cluster.sh` writes it beside
/// the kubeconfig).
pub fn cluster_dns() -> std::net::SocketAddr {
    let file = kubeconfig().parent().expect("cluster dir").join("dns-addr");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (is CoreDNS part of this cluster?)", file.display()))
        .trim()
        .parse()
        .expect("dns-addr")
}

/// A kube Config for the admin user.
pub async fn admin_config() -> Config {
    vast_operator::install_crypto_provider();
    vast_testkit::cluster::config_for(kubeconfig())
        .await
        .expect("kube config")
}

/// A client for the admin user (made per test: a client belongs to its runtime).
pub async fn client() -> Client {
    Client::try_from(admin_config().await).expect("client")
}

/// Sum of `apiserver_request_total` over the series whose labels contain every
/// `key="value"` pair given.
pub async fn apiserver_requests(client: &Client, labels: &[(&str, &str)]) -> u64 {
    let text = vast_testkit::apiserver::metrics_text(client)
        .await
        .expect("GET /metrics");
    vast_testkit::apiserver::requests(&text, labels)
}
