//! The operator in-process beside a fake Vast, scoped to a namespace of its own: what it
//! asked the apiserver, and waits on its WorkerGroups and their events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::api::Api;
use vast_operator::crd::WorkerGroup;
use vast_operator::vast;

use super::{TestNs, admin_config, eventually, group_spec, install_workergroup_crd, ready_is};

/// Sends the in-process operators' log to the test output at the level of
/// `VAST_TEST_LOG` (what `make leak-check` searches); every test that runs the operator
/// in-process calls it before starting it.
pub fn log_in_process() {
    vast_testkit::logs::in_process("VAST_TEST_LOG");
}

/// The context of an operator started in-process by a test: a counted client, the Vast
/// client of `vast_url`, `config`; with its log set up ([`log_in_process`]).
pub async fn in_process_context(
    vast_url: &str,
    config: vast_operator::controller::Config,
) -> (std::sync::Arc<vast_operator::controller::Context>, Requests) {
    log_in_process();
    let vast = vast::VastClient::new(vast_url, Duration::from_secs(3)).expect("vast client");
    let (client, requests) = counted_client().await;
    (
        vast_operator::controller::Context::new(client, vast, config),
        requests,
    )
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
    /// The in-process operator's metrics (those of the latest start).
    pub metrics: Arc<vast_operator::runtime::metrics::Metrics>,
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

/// Requests the in-process operator sent to the apiserver: (verb, resource) counts (verb
/// WATCHLIST: a watch streaming its initial list), read
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
        let query = req.uri().query().unwrap_or_default();
        let watch = query.contains("watch=true");
        let verb = match (req.method().as_str(), watch) {
            // A watch whose initial list is streamed (WatchList).
            (_, true) if query.contains("sendInitialEvents=true") => "WATCHLIST".to_string(),
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
    counted_client_holding(Hold::default()).await
}

/// A counted client whose writes `hold` holds back (see [`Hold`]).
pub async fn counted_client_holding(hold: Hold) -> (Client, Requests) {
    let requests = Requests::default();
    let client = kube::client::ClientBuilder::try_from(admin_config().await)
        .expect("client builder")
        .with_layer(&CountLayer(requests.clone()))
        .with_layer(&hold)
        .build();
    (client, requests)
}

/// A slow apiserver, as the operator sees it: while on, the answer to every write (not a
/// GET) whose path contains the set text is held back until [`Hold::release`]. The
/// request itself reaches the apiserver ([`Hold::set`]), or is itself held back and
/// sent once released ([`Hold::set_before`]: a write that a change made meanwhile
/// makes stale).
#[derive(Clone, Default)]
pub struct Hold {
    /// The path text held, and whether the request itself waits.
    on: Arc<Mutex<Option<(String, bool)>>>,
    released: Arc<tokio::sync::Notify>,
    held: Arc<std::sync::atomic::AtomicUsize>,
}

impl Hold {
    /// Holds the answers to writes whose path contains `path`.
    pub fn set(&self, path: &str) {
        *self.on.lock().unwrap_or_else(|p| p.into_inner()) = Some((path.to_string(), false));
    }

    /// Holds the writes whose path contains `path` themselves: they reach the apiserver
    /// only once released.
    pub fn set_before(&self, path: &str) {
        *self.on.lock().unwrap_or_else(|p| p.into_inner()) = Some((path.to_string(), true));
    }

    /// Lets every held answer through, and holds nothing more.
    pub fn release(&self) {
        *self.on.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.released.notify_waiters();
    }

    /// Answers held back right now.
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// None when `req` is not held; else whether the request itself waits.
    fn holds<B>(&self, req: &http::Request<B>) -> Option<bool> {
        if req.method() == http::Method::GET {
            return None;
        }
        match &*self.on.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((p, before)) if req.uri().path().contains(p.as_str()) => Some(*before),
            _ => None,
        }
    }

    /// Counts one held until the release.
    async fn while_held(&self) {
        self.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.until_released().await;
        self.held.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits until [`Hold::release`].
    async fn until_released(&self) {
        loop {
            let released = self.released.notified();
            if self.on.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
                return;
            }
            released.await;
        }
    }
}

impl<S> tower::Layer<S> for Hold {
    type Service = Holding<S>;
    fn layer(&self, inner: S) -> Holding<S> {
        Holding(Arc::new(tokio::sync::Mutex::new(inner)), self.clone())
    }
}

/// The service under a [`Hold`], shared so that a request held before it is sent can
/// be sent later.
pub struct Holding<S>(Arc<tokio::sync::Mutex<S>>, Hold);

impl<S, B> tower::Service<http::Request<B>> for Holding<S>
where
    S: tower::Service<http::Request<B>> + Send + 'static,
    B: Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Readiness is awaited in `call`, under the lock.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let inner = self.0.clone();
        let hold = self.1.clone();
        let held = self.1.holds(&req);
        Box::pin(async move {
            if held == Some(true) {
                hold.while_held().await;
            }
            let answer = {
                let mut service = inner.lock().await;
                std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                service.call(req)
            };
            let answer = answer.await;
            if held == Some(false) {
                hold.while_held().await;
            }
            answer
        })
    }
}

/// Settings read every `interval` from the console of the fake at `vast_url`, through a
/// client of its own (the harness's Vast client is not at hand in a config closure).
pub fn with_settings(
    mut config: vast_operator::controller::Config,
    vast_url: &str,
    interval: Duration,
) -> vast_operator::controller::Config {
    let client = vast::VastClient::new(vast_url, Duration::from_secs(3)).expect("vast client");
    config.settings = Some(vast_operator::controller::settings::SettingsConfig {
        console: client.console(vast_url, false).expect("console client"),
        interval,
    });
    config
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
        Self::start_at(test, |c, _| f(c), g).await
    }

    /// Starts everything with settings read from the fake's console every `interval`,
    /// and a config changed by `f`.
    pub async fn start_settings(
        test: &str,
        interval: Duration,
        f: impl FnOnce(vast_operator::controller::Config) -> vast_operator::controller::Config,
    ) -> Self {
        Self::start_at(test, |c, url| with_settings(f(c), url, interval), |c| c).await
    }

    /// Starts everything with a config changed by `f`, which also gets the fake's URL,
    /// and a Vast client changed by `g`.
    pub async fn start_at(
        test: &str,
        f: impl FnOnce(vast_operator::controller::Config, &str) -> vast_operator::controller::Config,
        g: impl FnOnce(vast::VastClient) -> vast::VastClient,
    ) -> Self {
        Self::start_holding(test, f, g, Hold::default()).await
    }

    /// [`Harness::start_at`], with the operator's writes held back by `hold`.
    pub async fn start_holding(
        test: &str,
        f: impl FnOnce(vast_operator::controller::Config, &str) -> vast_operator::controller::Config,
        g: impl FnOnce(vast::VastClient) -> vast::VastClient,
        hold: Hold,
    ) -> Self {
        log_in_process();
        let ns = TestNs::new(test).await;
        install_workergroup_crd(&ns.client).await;
        let vast = fake_vast::FakeVast::start(0).await.expect("fake vast");
        let client =
            g(vast::VastClient::new(&vast.url(), Duration::from_secs(3)).expect("vast client"));
        let (op_client, requests) = counted_client_holding(hold).await;
        let metrics = Arc::new(vast_operator::runtime::metrics::Metrics::new());
        let ctx = vast_operator::controller::Context::with_metrics(
            op_client,
            client,
            f(test_config(&ns.name), &vast.url()),
            metrics.clone(),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(vast_operator::controller::run(ctx, async {
            let _ = rx.await;
        }));
        Self {
            ns,
            vast,
            requests,
            metrics,
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
        self.metrics = Arc::new(vast_operator::runtime::metrics::Metrics::new());
        let ctx = vast_operator::controller::Context::with_metrics(
            op_client,
            client,
            f(test_config(&self.ns.name)),
            self.metrics.clone(),
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
        self.ns.apply_group(name, spec).await
    }

    /// Workergroup `id` at the fake with `workers` under `key`, the key in the Secret
    /// `vast`, and the WorkerGroup `name` on it polled every `interval`: returned once it
    /// is Synced with every worker in its status.
    pub async fn synced_group(
        &self,
        name: &str,
        id: i64,
        key: &str,
        workers: Vec<serde_json::Value>,
        interval: &str,
    ) -> WorkerGroup {
        let n = workers.len();
        self.vast
            .state
            .put_group(id, key, fake_vast::Shape::Array, workers);
        self.secret("vast", "api-key", key).await;
        self.apply_group(name, group_spec(id, interval)).await;
        self.wait_for(name, &format!("{name} synced with {n} workers"), |wg| {
            ready_is(wg, "True", "Synced")
                && wg.status.as_ref().is_some_and(|s| s.workers.len() == n)
        })
        .await
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
