//! Test support: a real kube-apiserver + etcd (started once per test binary with
//! `hack/cluster.sh`, or the running one that `KUBECONFIG` points at), a fresh namespace
//! per test, polling helpers with deadlines, and apiserver metrics.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
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
    let script = repo_root().join("hack/cluster.sh");
    let out = Command::new(&script)
        .arg("up")
        .env("VAST_CLUSTER_DIR", &dir)
        .env(
            "VAST_APISERVER_FLAGS",
            APISERVER_FLAGS.get().copied().unwrap_or(""),
        )
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

/// Extra kube-apiserver flags for this process's own control plane.
static APISERVER_FLAGS: OnceLock<&'static str> = OnceLock::new();

/// Starts this process's control plane with extra kube-apiserver `flags`; must come
/// before anything else uses the cluster (a test binary of its own).
pub fn kubeconfig_with_apiserver_flags(flags: &'static str) -> &'static Path {
    assert!(
        APISERVER_FLAGS.set(flags).is_ok(),
        "apiserver flags given twice"
    );
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
    let script = repo_root().join("hack/cluster.sh");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(script)
            .arg(cmd)
            .env("VAST_CLUSTER_DIR", &dir)
            .output()
    })
    .await
    .expect("join")
    .expect("run hack/cluster.sh");
    assert!(
        out.status.success(),
        "hack/cluster.sh {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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

    /// Deletes the namespace (the namespace controller of kube-controller-manager empties
    /// and removes it).
    pub async fn cleanup(self) {
        if let Some(dir) = std::env::var_os("VAST_LEAK_DUMP") {
            self.dump(std::path::Path::new(&dir)).await;
        }
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await;
    }

    /// Writes the namespace's events, WorkerGroups, Services and EndpointSlices as JSON
    /// into `dir` (for `make leak-check`, which searches them for keys).
    async fn dump(&self, dir: &Path) {
        use k8s_openapi::api::core::v1::Service;
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        use k8s_openapi::api::events::v1::Event;
        let lp = Default::default();
        let objects = serde_json::json!({
            "events": self.api::<Event>().list(&lp).await.map(|l| l.items).unwrap_or_default(),
            "workergroups": self.api::<WorkerGroup>().list(&lp).await.map(|l| l.items).unwrap_or_default(),
            "services": self.api::<Service>().list(&lp).await.map(|l| l.items).unwrap_or_default(),
            "endpointslices": self.api::<EndpointSlice>().list(&lp).await.map(|l| l.items).unwrap_or_default(),
        });
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(
            dir.join(format!("{}-objects.json", self.name)),
            serde_json::to_string_pretty(&objects).unwrap_or_default(),
        );
    }

    /// An Api of `K` in this namespace.
    /// Applies the Secret `name` holding `value` under `key`.
    pub async fn secret(&self, name: &str, key: &str, value: &str) {
        let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "stringData": {key: value}
        }))
        .expect("secret");
        self.api::<k8s_openapi::api::core::v1::Secret>()
            .patch(
                name,
                &PatchParams::apply("tests").force(),
                &Patch::Apply(&s),
            )
            .await
            .expect("apply secret");
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

/// Deletes the WorkerGroup CRD (`make cluster` installs it) and waits until it is gone;
/// for tests on a control plane of their own that need it absent.
pub async fn delete_workergroup_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let _ = crds
        .delete("workergroups.vast.ai", &DeleteParams::default())
        .await;
    eventually("the CRD is gone", Duration::from_secs(30), || async {
        matches!(crds.get_opt("workergroups.vast.ai").await, Ok(None)).then_some(())
    })
    .await;
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

/// A namespace, a fake Vast server and the operator running in-process, watching only
/// that namespace.
pub struct Harness {
    /// The namespace.
    pub ns: TestNs,
    /// The fake Vast server.
    pub vast: fake_vast::FakeVast,
    /// What the operator asked the apiserver (client side).
    pub requests: Requests,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The config tests run the operator with: quick retries.
pub fn test_config(ns: &str) -> vast_operator::controller::Config {
    vast_operator::controller::Config {
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        terminal_retry: Duration::from_secs(60),
        status_heartbeat: None,
        namespace: Some(ns.to_string()),
        prune_interval: Duration::from_secs(1),
        // Report the first transient failure: most tests are about what it shows.
        failure_threshold: 1,
        ..Default::default()
    }
}

/// Requests the in-process operator sent to the apiserver: (verb, resource) counts, read
/// on the client side, so that other clients of the cluster (kube-controller-manager's
/// garbage collector looks owners up) do not count.
#[derive(Clone, Default)]
pub struct Requests(Arc<Mutex<std::collections::BTreeMap<(String, String), u64>>>);

impl Requests {
    /// The counts so far.
    pub fn snapshot(&self) -> std::collections::BTreeMap<(String, String), u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record<B>(&self, req: &http::Request<B>) {
        let path = req.uri().path();
        // /api/v1/namespaces/ns/secrets/x, /apis/g/v/namespaces/ns/workergroups/x/status
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let at = parts
            .iter()
            .position(|p| *p == "namespaces")
            .map(|i| i + 2)
            .filter(|i| *i < parts.len())
            .unwrap_or(if parts.first() == Some(&"api") { 2 } else { 3 });
        let resource = parts.get(at).map_or("?", |r| r).to_string();
        // A GET without an object name is a LIST.
        let named = parts.len() > at + 1;
        let sub = if parts.last() == Some(&"status") {
            "/status"
        } else {
            ""
        };
        let watch = req.uri().query().is_some_and(|q| q.contains("watch=true"));
        let verb = match (req.method().as_str(), watch) {
            (_, true) => "WATCH".to_string(),
            ("PATCH", _)
                if req
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch")) =>
            {
                "APPLY".to_string()
            }
            ("GET", _) if !named => "LIST".to_string(),
            (m, _) => m.to_string(),
        };
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((verb, format!("{resource}{sub}")))
            .or_default() += 1;
    }
}

/// A tower layer that records every request in [`Requests`].
#[derive(Clone)]
struct CountLayer(Requests);

impl<S> tower::Layer<S> for CountLayer {
    type Service = Count<S>;
    fn layer(&self, inner: S) -> Count<S> {
        Count(inner, self.0.clone())
    }
}

#[derive(Clone)]
struct Count<S>(S, Requests);

impl<S, B> tower::Service<http::Request<B>> for Count<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.1.record(&req);
        self.0.call(req)
    }
}

/// A client of the test cluster whose requests are counted in the returned [`Requests`].
pub async fn counted_client() -> (Client, Requests) {
    let requests = Requests::default();
    let client = kube::client::ClientBuilder::try_from(admin_config().await)
        .expect("client builder")
        .with_layer(&CountLayer(requests.clone()))
        .build();
    (client, requests)
}

impl Harness {
    /// Starts everything with [`test_config`].
    pub async fn start(test: &str) -> Self {
        Self::start_with(test, |c| c).await
    }

    /// Starts everything with a config changed by `f`.
    pub async fn start_with(
        test: &str,
        f: impl FnOnce(vast_operator::controller::Config) -> vast_operator::controller::Config,
    ) -> Self {
        Self::start_full(test, f, |c| c).await
    }

    /// Starts everything with a config changed by `f` and a Vast client changed by `g`.
    pub async fn start_full(
        test: &str,
        f: impl FnOnce(vast_operator::controller::Config) -> vast_operator::controller::Config,
        g: impl FnOnce(vast::VastClient) -> vast::VastClient,
    ) -> Self {
        if std::env::var_os("VAST_TEST_LOG").is_some() {
            // Debugging aid: the in-process operator's log on stderr (with --nocapture).
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_env("VAST_TEST_LOG"))
                .with_writer(std::io::stderr)
                .try_init();
        }
        let ns = TestNs::new(test).await;
        install_workergroup_crd(&ns.client).await;
        let vast = fake_vast::FakeVast::start(0).await.expect("fake vast");
        let client =
            g(vast::VastClient::new(&vast.url(), Duration::from_secs(3)).expect("vast client"));
        let (op_client, requests) = counted_client().await;
        let ctx =
            vast_operator::controller::Context::new(op_client, client, f(test_config(&ns.name)));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(vast_operator::controller::run(ctx, async {
            let _ = rx.await;
        }));
        Self {
            ns,
            vast,
            requests,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Whether the in-process operator is still running (has not ended or panicked).
    pub fn running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the operator, leaving namespace and fake Vast as they are.
    pub async fn pause(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Stops the operator and starts a new one (config changed by `f`) on the same
    /// namespace and fake Vast: a restart, with nothing remembered but what the cluster
    /// holds.
    pub async fn restart(
        &mut self,
        f: impl FnOnce(vast_operator::controller::Config) -> vast_operator::controller::Config,
    ) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let client =
            vast::VastClient::new(&self.vast.url(), Duration::from_secs(3)).expect("vast client");
        let (op_client, requests) = counted_client().await;
        self.requests = requests;
        let ctx = vast_operator::controller::Context::new(
            op_client,
            client,
            f(test_config(&self.ns.name)),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.task = Some(tokio::spawn(vast_operator::controller::run(ctx, async {
            let _ = rx.await;
        })));
        self.stop = Some(tx);
    }

    /// Stops the operator and deletes the namespace.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let Harness { ns, .. } = self;
        ns.cleanup().await;
    }

    /// Creates a Secret `name` with `key: value`.
    pub async fn secret(&self, name: &str, key: &str, value: &str) {
        self.ns.secret(name, key, value).await;
    }

    /// Applies a WorkerGroup with the given spec.
    pub async fn apply_group(&self, name: &str, spec: serde_json::Value) -> WorkerGroup {
        let wg = serde_json::json!({
            "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
            "metadata": {"name": name}, "spec": spec
        });
        self.ns
            .api::<WorkerGroup>()
            .patch(
                name,
                &PatchParams::apply("tests").force(),
                &Patch::Apply(&wg),
            )
            .await
            .expect("apply workergroup")
    }

    /// Waits until the WorkerGroup satisfies `pred`, and returns it.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&WorkerGroup) -> bool,
    ) -> WorkerGroup {
        let api = self.ns.api::<WorkerGroup>();
        eventually(what, Duration::from_secs(40), || {
            let api = api.clone();
            let ok = &pred;
            async move { api.get(name).await.ok().filter(|wg| ok(wg)) }
        })
        .await
    }

    /// Events about `name`, oldest first: (type, reason, note, series count).
    /// Waits (30 s at most) until the WorkerGroup's events satisfy `pred`, and returns
    /// them. Events are emitted after the status write a test usually waits for, so a
    /// check of events right after it races the operator.
    pub async fn wait_events(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&[(String, String, String, i32)]) -> bool,
    ) -> Vec<(String, String, String, i32)> {
        let pred = &pred;
        eventually(what, Duration::from_secs(30), || async move {
            let events = self.events(name).await;
            pred(&events).then_some(events)
        })
        .await
    }

    /// The WorkerGroup's events, oldest first: (type, reason, note, series count).
    pub async fn events(&self, name: &str) -> Vec<(String, String, String, i32)> {
        let api: Api<k8s_openapi::api::events::v1::Event> = self.ns.api();
        let mut list: Vec<_> = api
            .list(&Default::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            // The WorkerGroup's own: its Service shares the name and gets the apiserver's
            // events (ClusterIP repairs).
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.name.as_deref() == Some(name) && r.kind.as_deref() == Some("WorkerGroup")
                })
            })
            .collect();
        list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        list.into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                    e.series.map_or(1, |s| s.count),
                )
            })
            .collect()
    }
}

/// Lets `d` of wall time pass in which nothing is expected to happen; the caller then
/// checks that nothing did. Not a synchronisation: a wait for something uses
/// [`eventually`] with a deadline.
pub async fn quiet_for(d: Duration) {
    tokio::time::sleep(d).await;
}

/// The condition of `type_` on a WorkerGroup: (status, reason).
pub fn cond(wg: &WorkerGroup, type_: &str) -> Option<(String, String)> {
    wg.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// True when the Ready condition has `status` and `reason` for the current generation.
pub fn ready_is(wg: &WorkerGroup, status: &str, reason: &str) -> bool {
    let current = wg.status.as_ref().and_then(|s| s.observed_generation) == wg.metadata.generation;
    current && cond(wg, "Ready") == Some((status.into(), reason.into()))
}

/// Worker ids and states in status.
pub fn worker_states(wg: &WorkerGroup) -> Vec<(i64, String)> {
    wg.status
        .as_ref()
        .map(|s| s.workers.iter().map(|w| (w.id, w.status.clone())).collect())
        .unwrap_or_default()
}

use vast_operator::crd::WorkerGroup;
use vast_operator::vast;

/// A free port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `vast-operator run` as a child process, with its own metrics and health ports and its
/// log in a file.
pub struct OperatorProcess {
    /// The process.
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>` of `/metrics`.
    pub metrics: String,
    /// `http://127.0.0.1:<port>` of the probes.
    pub health: String,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts `vast-operator run` with `args` (after `run`), scoped to `ns`.
    pub fn start(name: &str, ns: &str, vast_url: &str, args: &[&str]) -> Self {
        Self::start_with(name, ns, vast_url, args, kubeconfig())
    }

    /// Like [`OperatorProcess::start`], against the cluster of `kubeconfig`.
    pub fn start_with(
        name: &str,
        ns: &str,
        vast_url: &str,
        args: &[&str],
        kubeconfig: &Path,
    ) -> Self {
        let mut all = vec!["--namespace", ns];
        all.extend_from_slice(args);
        Self::spawn(name, ns, vast_url, &all, kubeconfig)
    }

    /// `vast-operator run` for every namespace (its log named after `log_ns`).
    pub fn start_all_namespaces(
        log_ns: &str,
        name: &str,
        vast_url: &str,
        args: &[&str],
        kubeconfig: &Path,
    ) -> Self {
        Self::spawn(name, log_ns, vast_url, args, kubeconfig)
    }

    fn spawn(name: &str, ns: &str, vast_url: &str, args: &[&str], kubeconfig: &Path) -> Self {
        let (m, h) = (free_port(), free_port());
        let dir = repo_root().join("target").join("test-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        let log = dir.join(format!("{ns}-{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_vast-operator"))
            .arg("run")
            .args(["--vast-url", vast_url])
            .args(["--metrics-addr", &format!("127.0.0.1:{m}")])
            .args(["--health-addr", &format!("127.0.0.1:{h}")])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            .env(
                "RUST_LOG",
                std::env::var("VAST_OPERATOR_LOG")
                    .unwrap_or_else(|_| "info,vast_operator=debug".into()),
            )
            .env_remove("LEADER_ELECT")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start vast-operator");
        Self {
            child,
            metrics: format!("http://127.0.0.1:{m}"),
            health: format!("http://127.0.0.1:{h}"),
            log,
        }
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`-9`, `-TERM`).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url`: (status code, body); None when nothing answers.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let resp = reqwest_client().get(url).send().await.ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.ok()?))
}

fn reqwest_client() -> &'static reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| {
        vast_operator::install_crypto_provider();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("http client")
    })
}

/// The value of the sample `series` (full name with labels, as printed) in a metrics
/// text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// GET `url` over HTTPS with a bearer token, accepting any certificate (the operator's
/// self-signed one): (status code, body); None when nothing answers.
pub async fn https_get_insecure(url: &str, token: &str) -> Option<(u16, String)> {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    let client = C.get_or_init(|| {
        vast_operator::install_crypto_provider();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .danger_accept_invalid_certs(true)
            .build()
            .expect("https client")
    });
    let resp = client.get(url).bearer_auth(token).send().await.ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.ok()?))
}

/// A token of the ServiceAccount `sa` in `ns`.
pub async fn service_account_token(admin: &kube::Client, ns: &str, sa: &str) -> String {
    let tr: k8s_openapi::api::authentication::v1::TokenRequest = serde_json::from_value(
        serde_json::json!({"spec": {"audiences": [], "expirationSeconds": 3600}}),
    )
    .expect("token request");
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &tr)
        .await
        .expect("token")
        .status
        .expect("status")
        .token
}

/// A client and a kubeconfig file acting as the chart's ServiceAccount.
pub async fn as_service_account(
    admin: &kube::Client,
    ns: &str,
    sa: &str,
) -> (kube::Client, PathBuf) {
    let token = service_account_token(admin, ns, sa).await;
    let admin_kc = std::fs::read_to_string(kubeconfig()).expect("kubeconfig");
    let server = admin_kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server");
    let ca = admin_kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
        .expect("ca");
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: sa\n    namespace: {ns}\ncurrent-context: c\n"
    );
    let file = repo_root()
        .join("target/test-logs")
        .join(format!("{ns}-{sa}.kubeconfig"));
    std::fs::create_dir_all(file.parent().expect("dir")).expect("dir");
    std::fs::write(&file, kc).expect("write");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&file).expect("read"),
        &Default::default(),
    )
    .await
    .expect("config");
    (kube::Client::try_from(config).expect("client"), file)
}

/// A test CA and a certificate it signed for 127.0.0.1: (CA PEM, leaf PEM, leaf key PEM).
pub fn test_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "vast-operator test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}
