//! Test support: a real kube-apiserver + etcd (started once per test binary with
//! `hack/cluster.sh`, or the running one that `KUBECONFIG` points at), a fresh namespace
//! per test, polling helpers with deadlines, and apiserver metrics.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// The watchdog must outlive this process, so it is deliberately never waited for.
#[allow(clippy::zombie_processes)]
fn start_cluster() -> PathBuf {
    // Use the cluster of `make cluster` when KUBECONFIG points at it, and never any
    // other: tests create and delete namespaces and CRDs.
    let ours = std::env::var_os("VAST_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cluster"))
        .join("kubeconfig");
    if let Some(path) = std::env::var_os("KUBECONFIG").map(PathBuf::from)
        && path.exists()
        && path.canonicalize().ok() == ours.canonicalize().ok()
    {
        return path;
    }
    // No cluster given: start one for this test binary, and a watchdog that stops it
    // when this process exits, however it exits.
    let exe = std::env::current_exe().expect("current exe");
    let name = exe
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("tests")
        .to_string();
    let dir = repo_root().join("target").join("test-clusters").join(name);
    let script = repo_root().join("hack/cluster.sh");
    let out = Command::new(&script)
        .arg("up")
        .env("VAST_CLUSTER_DIR", &dir)
        .output()
        .expect("run hack/cluster.sh");
    assert!(
        out.status.success(),
        "hack/cluster.sh up failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; VAST_CLUSTER_DIR='{dir}' '{script}' down",
        pid = std::process::id(),
        dir = dir.display(),
        script = script.display()
    );
    Command::new("bash")
        .arg("-c")
        .arg(watchdog)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn watchdog");
    dir.join("kubeconfig")
}

/// The kubeconfig of the test control plane (starting it on first use).
pub fn kubeconfig() -> &'static Path {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG.get_or_init(start_cluster)
}

/// A kube Config for the admin user.
pub async fn admin_config() -> Config {
    vast_operator::install_crypto_provider();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig()).expect("read kubeconfig");
    Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config")
}

/// A client for the admin user (made per test: a client belongs to its runtime).
pub async fn client() -> Client {
    Client::try_from(admin_config().await).expect("client")
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh namespace for one test.
pub struct TestNs {
    /// The client.
    pub client: Client,
    /// The namespace's name.
    pub name: String,
}

impl TestNs {
    /// Creates a namespace named after the test plus a random suffix.
    pub async fn new(test: &str) -> Self {
        let client = client().await;
        let suffix: u32 = rand::random::<u32>() % 1_000_000;
        let name = format!(
            "{}-{suffix:06}",
            test.replace('_', "-").chars().take(40).collect::<String>()
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))
        .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self { client, name }
    }

    /// Deletes the namespace (it stays Terminating: there is no namespace controller).
    pub async fn cleanup(self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await;
    }

    /// An Api of `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

/// Applies `crds/workergroups.vast.ai.yaml` and waits until it is Established.
pub async fn install_workergroup_crd(client: &Client) {
    let text = std::fs::read_to_string(repo_root().join("crds/workergroups.vast.ai.yaml"))
        .expect("read CRD file");
    let crd: CustomResourceDefinition = serde_norway::from_str(&text).expect("parse CRD");
    install_crd(client, &crd).await;
}

/// Applies a CRD and waits until it is Established.
pub async fn install_crd(client: &Client, crd: &CustomResourceDefinition) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let name = crd.metadata.name.clone().expect("CRD name");
    let mut crd = crd.clone();
    crd.metadata.managed_fields = None;
    api.patch(
        &name,
        &PatchParams::apply("vast-operator-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    eventually("CRD Established", Duration::from_secs(30), || {
        let api = api.clone();
        let name = name.clone();
        async move {
            let crd = api.get(&name).await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
}

/// Sum of `apiserver_request_total` over the series whose labels contain every
/// `key="value"` pair given.
pub async fn apiserver_requests(client: &Client, labels: &[(&str, &str)]) -> u64 {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client.request_text(req).await.expect("GET /metrics");
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
