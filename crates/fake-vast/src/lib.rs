//! A fake Vast serverless API for tests, the demo and trials (the `fake-vast` binary).
//!
//! It reproduces the quirks of the real service listed in `vast-api.md`: the four
//! response shapes on HTTP 200, `error_msg` and bare-string errors, the authentication
//! error string, worker objects with extra, missing and float-typed fields, float-epoch
//! timestamps, lowercase states, and HTTP 429 with a plain-text body and no Retry-After.
//! It binds 127.0.0.1 only.
//!
//! Served (the key as `Authorization: Bearer <key>`, or `api_key` in the body of the POSTs):
//! - `POST /get_workergroup_workers/` and `POST /get_autogroup_workers/` `{"id": <workergroup>}`:
//!   the workergroup's workers, checked against its key.
//! - `POST /get_endpoint_workers/` `{"id": <endpoint>}`: the workers of every workergroup whose
//!   settings have `endpoint_id` equal to the id, concatenated in ascending workergroup id
//!   order, checked against the endpoint's key (the `object` shape adds `"endpoint_id"`). A
//!   wrong key or an unknown endpoint is HTTP 200 with the string
//!   `authenticate_endpoint_apikey: invalid api_key or endpoint <id> not found`.
//! - `GET /api/v0/workergroups/` and `GET /api/v0/endptjobs/`, the console listings (Bearer key
//!   only): `{"success": true, "results": [row, ...]}`, one row per workergroup (endpoint) of
//!   the key in ascending id order: its settings (fields) plus `id`, `api_key` (the real service
//!   sends the key back, so the operator's tests can check it never leaks), `user_id` and
//!   `created_at`; a workergroup row also gets its endpoint's `endpoint_name`. A missing key is
//!   HTTP 401 `{"detail": "Authentication credentials were not provided."}`, a key no
//!   workergroup or endpoint has HTTP 401 `{"detail": "Invalid token."}`. Each key may call a
//!   listing once per 2 s (workergroups) or 3 s (endptjobs), counted from its last HTTP 200;
//!   sooner is HTTP 429 `{"detail": "API requests too frequent endpoint threshold=2.0"}` (3.0)
//!   without Retry-After (see [`FakeState::set_console_thresholds`]).
//!
//! Control API (JSON), for scripts:
//! - `PUT /_fake/workergroups/{id}` `{"api_key": "...", "shape": "array"|"object", "workers": [...]}`
//! - `PUT /_fake/workergroups/{id}/workers` `[worker, ...]` (replaces the list)
//! - `PATCH /_fake/workergroups/{id}/workers/{worker}` `{"status": "idle", ...}` (upsert fields)
//! - `DELETE /_fake/workergroups/{id}/workers/{worker}`
//! - `PUT /_fake/workergroups/{id}/fault` a [`Fault`]; `DELETE` clears it
//! - `GET /_fake/workergroups/{id}/calls` `{"calls": n}`
//! - `PATCH /_fake/workergroups/{id}/settings` `{...fields}` (merged into its console row,
//!   e.g. `endpoint_id`, `min_load`, `test_workers`)
//! - `PUT /_fake/endpoints/{id}` `{"api_key": "...", "shape": "array"|"object", "fields": {...}}`
//!   (`shape` and `fields` optional)
//! - `PATCH /_fake/endpoints/{id}` `{...fields}` (merged into its console row)
//! - `PUT /_fake/endpoints/{id}/fault` a [`Fault`]; `DELETE` clears it
//! - `GET /_fake/endpoints/{id}/calls` `{"calls": n}`
//! - `PUT /_fake/console/{listing}/fault` a [`Fault`]; `DELETE` clears it (`listing` is
//!   `workergroups` or `endptjobs`; another value is HTTP 404)
//! - `GET /_fake/console/{listing}/calls` `{"calls": n}`

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

/// How a successful answer is shaped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// A bare JSON array (what the official SDK expects).
    #[default]
    Array,
    /// `{"workers": [...]}` (what the OpenAPI page documents).
    Object,
}

/// What a fault replaces the answer with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultBody {
    /// The normal body.
    #[default]
    Normal,
    /// An HTML page with HTTP 200.
    Malformed,
    /// A 20 MiB body, larger than the client's cap.
    Huge,
    /// A body of this many MiB, streamed.
    HugeMib(u32),
    /// The start of the body, then the connection is dropped.
    ResetMidBody,
    /// The normal body, one byte every `ms` milliseconds.
    Trickle {
        /// Milliseconds between bytes.
        ms: u64,
    },
    /// This text as the HTTP 200 body (for wrongly typed answers).
    Raw(String),
    /// A bare JSON string error.
    StringError(String),
    /// `{"error_msg": ...}` with HTTP 200.
    ErrorMsg(String),
    /// `{"error": ...}` with HTTP 200 (the alias some of Vast's endpoints use).
    Error(String),
    /// With a 5xx `status`: the HTML error page of a proxy in front of Vast.
    HtmlPage,
}

/// A fault injected into the answers for one workergroup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// HTTP status to answer with (429 gets Vast's plain-text body, no Retry-After).
    #[serde(default)]
    pub status: Option<u16>,
    /// Delay before answering, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Body replacement.
    #[serde(default)]
    pub body: FaultBody,
    /// Apply to this many calls only (then clear); unlimited when absent.
    #[serde(default)]
    pub times: Option<u32>,
}

#[derive(Default)]
struct Group {
    api_key: String,
    shape: Shape,
    workers: Vec<Value>,
    fault: Option<Fault>,
    calls: u64,
    /// When the last calls came (at most [`KEPT_CALL_TIMES`]).
    call_times: VecDeque<Instant>,
    /// Its console row fields (among them, optionally, `endpoint_id`).
    settings: Map<String, Value>,
}

/// A Vast endpoint: its console row and the key `get_endpoint_workers` accepts.
#[derive(Default)]
struct Endpoint {
    api_key: String,
    /// Its console row fields (`endpoint_name`, `max_workers`, ...).
    fields: Map<String, Value>,
    shape: Shape,
    fault: Option<Fault>,
    calls: u64,
    /// When the last calls came (at most [`KEPT_CALL_TIMES`]).
    call_times: VecDeque<Instant>,
}

/// How many call times are kept per workergroup, endpoint and console listing.
pub const KEPT_CALL_TIMES: usize = 64;

/// A console listing of the fake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Listing {
    /// `GET /api/v0/workergroups/`.
    Workergroups,
    /// `GET /api/v0/endptjobs/`.
    Endptjobs,
}

impl Listing {
    /// The listing a control-API path segment names.
    fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "workergroups" => Some(Self::Workergroups),
            "endptjobs" => Some(Self::Endptjobs),
            _ => None,
        }
    }

    /// The real service's threshold between two calls of one key.
    fn default_threshold(self) -> Duration {
        match self {
            Self::Workergroups => Duration::from_secs(2),
            Self::Endptjobs => Duration::from_secs(3),
        }
    }

    /// The threshold as the real service's 429 body spells it.
    fn threshold_text(self) -> &'static str {
        match self {
            Self::Workergroups => "2.0",
            Self::Endptjobs => "3.0",
        }
    }
}

/// The state of one console listing.
struct ConsoleListing {
    /// Least time between two answered calls of one key (zero: no limit).
    threshold: Duration,
    fault: Option<Fault>,
    calls: u64,
    call_times: VecDeque<Instant>,
    calls_by_key: HashMap<String, u64>,
    /// When each key was last answered HTTP 200.
    last_answered: HashMap<String, Instant>,
}

impl ConsoleListing {
    fn new(listing: Listing) -> Self {
        Self {
            threshold: listing.default_threshold(),
            fault: None,
            calls: 0,
            call_times: VecDeque::new(),
            calls_by_key: HashMap::new(),
            last_answered: HashMap::new(),
        }
    }
}

/// Both console listings.
struct Console {
    workergroups: ConsoleListing,
    endptjobs: ConsoleListing,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            workergroups: ConsoleListing::new(Listing::Workergroups),
            endptjobs: ConsoleListing::new(Listing::Endptjobs),
        }
    }
}

impl Console {
    fn get(&self, listing: Listing) -> &ConsoleListing {
        match listing {
            Listing::Workergroups => &self.workergroups,
            Listing::Endptjobs => &self.endptjobs,
        }
    }

    fn get_mut(&mut self, listing: Listing) -> &mut ConsoleListing {
        match listing {
            Listing::Workergroups => &mut self.workergroups,
            Listing::Endptjobs => &mut self.endptjobs,
        }
    }
}

#[derive(Default)]
struct Inner {
    groups: HashMap<i64, Group>,
    endpoints: HashMap<i64, Endpoint>,
    console: Console,
    unknown_calls: u64,
}

/// Notes a call's time, keeping the last [`KEPT_CALL_TIMES`].
fn record_call(times: &mut VecDeque<Instant>) {
    if times.len() == KEPT_CALL_TIMES {
        times.pop_front();
    }
    times.push_back(Instant::now());
}

/// The fault to serve a call; an authorised call uses one of its `times` up (a call
/// refused for its key is not served the fault).
fn take_fault(slot: &mut Option<Fault>, authorised: bool) -> Option<Fault> {
    let fault = slot.clone();
    if authorised
        && let Some(f) = slot.as_mut()
        && let Some(t) = f.times.as_mut()
    {
        *t = t.saturating_sub(1);
        if *t == 0 {
            *slot = None;
        }
    }
    fault
}

/// The keys of a JSON object (nothing for another value).
fn object(fields: Value) -> Map<String, Value> {
    match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Shared state of a fake server; cheap to clone.
#[derive(Clone, Default)]
pub struct FakeState(Arc<Mutex<Inner>>);

impl FakeState {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Creates or replaces a workergroup (its settings are kept).
    pub fn put_group(&self, id: i64, api_key: &str, shape: Shape, workers: Vec<Value>) {
        self.with(|s| {
            let old = s.groups.remove(&id);
            let calls = old.as_ref().map_or(0, |g| g.calls);
            let settings = old.map(|g| g.settings).unwrap_or_default();
            s.groups.insert(
                id,
                Group {
                    api_key: api_key.into(),
                    shape,
                    workers,
                    fault: None,
                    calls,
                    call_times: Default::default(),
                    settings,
                },
            );
        });
    }

    /// Replaces the worker list.
    pub fn set_workers(&self, id: i64, workers: Vec<Value>) {
        self.with(|s| s.groups.entry(id).or_default().workers = workers);
    }

    /// Upserts fields of one worker (creating it when absent).
    pub fn upsert_worker(&self, id: i64, worker_id: i64, fields: Value) {
        self.with(|s| {
            let g = s.groups.entry(id).or_default();
            let pos = g
                .workers
                .iter()
                .position(|w| w.get("id").and_then(Value::as_i64) == Some(worker_id));
            let target = match pos {
                Some(i) => &mut g.workers[i],
                None => {
                    g.workers.push(json!({ "id": worker_id }));
                    let last = g.workers.len() - 1;
                    &mut g.workers[last]
                }
            };
            if let (Some(t), Value::Object(f)) = (target.as_object_mut(), fields) {
                t.extend(f);
            }
        });
    }

    /// Removes one worker.
    pub fn remove_worker(&self, id: i64, worker_id: i64) {
        self.with(|s| {
            if let Some(g) = s.groups.get_mut(&id) {
                g.workers
                    .retain(|w| w.get("id").and_then(Value::as_i64) != Some(worker_id));
            }
        });
    }

    /// Sets the response shape.
    pub fn set_shape(&self, id: i64, shape: Shape) {
        self.with(|s| s.groups.entry(id).or_default().shape = shape);
    }

    /// Sets or clears a fault.
    pub fn set_fault(&self, id: i64, fault: Option<Fault>) {
        self.with(|s| s.groups.entry(id).or_default().fault = fault);
    }

    /// Changes the API key a workergroup accepts.
    pub fn set_api_key(&self, id: i64, api_key: &str) {
        self.with(|s| s.groups.entry(id).or_default().api_key = api_key.into());
    }

    /// When the last calls for a workergroup id came, oldest first.
    pub fn call_times(&self, id: i64) -> Vec<std::time::Instant> {
        self.with(|s| {
            s.groups
                .get(&id)
                .map(|g| g.call_times.iter().copied().collect())
                .unwrap_or_default()
        })
    }

    /// Calls received for a workergroup id (authenticated or not).
    pub fn calls(&self, id: i64) -> u64 {
        self.with(|s| s.groups.get(&id).map_or(0, |g| g.calls))
    }

    /// Merges the keys of the JSON object `fields` into a workergroup's settings, its
    /// console row (creating the workergroup when absent). `endpoint_id` ties it to an
    /// endpoint.
    pub fn set_group_settings(&self, id: i64, fields: Value) {
        self.with(|s| {
            let settings = &mut s.groups.entry(id).or_default().settings;
            settings.extend(object(fields));
        });
    }

    /// Creates or replaces an endpoint (array shape, no fault; its call count is kept).
    /// `fields` is a JSON object, its console row (`endpoint_name`, `max_workers`, ...).
    pub fn put_endpoint(&self, id: i64, api_key: &str, fields: Value) {
        self.put_endpoint_shaped(id, api_key, Shape::Array, object(fields));
    }

    fn put_endpoint_shaped(
        &self,
        id: i64,
        api_key: &str,
        shape: Shape,
        fields: Map<String, Value>,
    ) {
        self.with(|s| {
            let calls = s.endpoints.get(&id).map_or(0, |e| e.calls);
            s.endpoints.insert(
                id,
                Endpoint {
                    api_key: api_key.into(),
                    fields,
                    shape,
                    fault: None,
                    calls,
                    call_times: Default::default(),
                },
            );
        });
    }

    /// Merges the keys of the JSON object `fields` into an endpoint's fields (creating
    /// the endpoint, with an empty key, when absent).
    pub fn set_endpoint_fields(&self, id: i64, fields: Value) {
        self.with(|s| {
            let e = s.endpoints.entry(id).or_default();
            e.fields.extend(object(fields));
        });
    }

    /// Sets the shape of an endpoint's `get_endpoint_workers` answers.
    pub fn set_endpoint_shape(&self, id: i64, shape: Shape) {
        self.with(|s| s.endpoints.entry(id).or_default().shape = shape);
    }

    /// Sets or clears the fault of an endpoint's `get_endpoint_workers` answers.
    pub fn set_endpoint_fault(&self, id: i64, fault: Option<Fault>) {
        self.with(|s| s.endpoints.entry(id).or_default().fault = fault);
    }

    /// Changes the API key an endpoint accepts.
    pub fn set_endpoint_api_key(&self, id: i64, api_key: &str) {
        self.with(|s| s.endpoints.entry(id).or_default().api_key = api_key.into());
    }

    /// `get_endpoint_workers` calls received for an endpoint id (authenticated or not).
    pub fn endpoint_calls(&self, id: i64) -> u64 {
        self.with(|s| s.endpoints.get(&id).map_or(0, |e| e.calls))
    }

    /// When the last `get_endpoint_workers` calls for an endpoint id came, oldest first.
    pub fn endpoint_call_times(&self, id: i64) -> Vec<Instant> {
        self.with(|s| {
            s.endpoints
                .get(&id)
                .map(|e| e.call_times.iter().copied().collect())
                .unwrap_or_default()
        })
    }

    /// Sets the least time between two answered calls of one key to each console listing
    /// (2 s and 3 s by default, as the real service; `Duration::ZERO` disables the limit).
    pub fn set_console_thresholds(&self, workergroups: Duration, endptjobs: Duration) {
        self.with(|s| {
            s.console.workergroups.threshold = workergroups;
            s.console.endptjobs.threshold = endptjobs;
        });
    }

    /// Sets or clears the fault of a console listing (served to authorised calls only).
    pub fn set_console_fault(&self, listing: Listing, fault: Option<Fault>) {
        self.with(|s| s.console.get_mut(listing).fault = fault);
    }

    /// Calls received for a console listing (authorised or not).
    pub fn console_calls(&self, listing: Listing) -> u64 {
        self.with(|s| s.console.get(listing).calls)
    }

    /// When the last calls for a console listing came, oldest first.
    pub fn console_call_times(&self, listing: Listing) -> Vec<Instant> {
        self.with(|s| s.console.get(listing).call_times.iter().copied().collect())
    }

    /// Calls received for a console listing with this key (authorised or not).
    pub fn console_calls_for_key(&self, listing: Listing, key: &str) -> u64 {
        self.with(|s| {
            let c = s.console.get(listing);
            c.calls_by_key.get(key).copied().unwrap_or(0)
        })
    }
}

/// A realistic worker object as the real service sends it: extra fields, float epochs,
/// integers where floats are documented.
pub fn worker_json(id: i64, status: &str, url: Option<&str>) -> Value {
    let mut w = json!({
        "id": id,
        "status": status,
        "created_at": 1_764_000_000.25 + id as f64,
        "cur_load": 0,
        "cur_load_rolling_avg": 0.0,
        "cur_perf": 0.0,
        "measured_perf": 100.0,
        "perf": 97.5,
        "dlperf": 120.3,
        "reliability": 0.975,
        "reqs_working": 0,
        "disk_usage": 31.5,
        "loaded_at": 0.0,
        "started_at": 1_764_000_010.0,
        "gpu_name": "RTX 4090",
    });
    if let (Some(u), Some(o)) = (url, w.as_object_mut()) {
        o.insert("url".into(), json!(u));
    }
    w
}

/// A running fake server.
pub struct FakeVast {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state, to script changes.
    pub state: FakeState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    tls: bool,
}

/// Serves the routes over `state` on `listener` until the sender fires.
fn serve_plain(
    listener: tokio::net::TcpListener,
    state: FakeState,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    (tx, task)
}

impl FakeVast {
    /// Starts on 127.0.0.1 (`port` 0 picks a free one).
    pub async fn start(port: u16) -> std::io::Result<Self> {
        Self::start_with_state(port, FakeState::default()).await
    }

    /// Starts on 127.0.0.1 serving `state` (a restart that keeps the script).
    pub async fn start_with_state(port: u16, state: FakeState) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let (tx, task) = serve_plain(listener, state.clone());
        Ok(Self {
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
            tls: false,
        })
    }

    /// Stops listening (connections are refused) until [`FakeVast::resume`].
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Listens again on the same address with the same state (plain HTTP).
    pub async fn resume(&mut self) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        let (tx, task) = serve_plain(listener, self.state.clone());
        self.shutdown = Some(tx);
        self.task = Some(task);
        Ok(())
    }

    /// Starts on 127.0.0.1 serving HTTPS with the certificate chain and private key
    /// given in PEM (`port` 0 picks a free one).
    pub async fn start_tls(port: u16, cert_pem: &str, key_pem: &str) -> std::io::Result<Self> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("certificate PEM: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| invalid(format!("key PEM: {e}")))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(e.to_string()))?;
        let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = tcp.local_addr()?;
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        };
        let state = FakeState::default();
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
            tls: true,
        })
    }

    /// `http://127.0.0.1:<port>`, or `https://` when serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// TCP plus a TLS handshake per connection; failed handshakes (a client that does not
/// trust the certificate) are dropped and the next connection is accepted.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, peer)) = self.tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let handshake = self.acceptor.accept(stream);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl Drop for FakeVast {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The HTTP routes over `state`.
pub fn router(state: FakeState) -> Router {
    Router::new()
        .route("/get_workergroup_workers/", post(get_workers))
        .route("/get_endpoint_workers/", post(get_endpoint_workers))
        .route("/get_autogroup_workers/", post(get_workers))
        .route("/api/v0/workergroups/", get(list_workergroups))
        .route("/api/v0/endptjobs/", get(list_endptjobs))
        .route("/_fake/workergroups/{id}", put(ctl_put_group))
        .route("/_fake/workergroups/{id}/workers", put(ctl_set_workers))
        .route(
            "/_fake/workergroups/{id}/workers/{wid}",
            patch(ctl_upsert_worker).delete(ctl_remove_worker),
        )
        .route(
            "/_fake/workergroups/{id}/fault",
            put(ctl_set_fault).delete(ctl_clear_fault),
        )
        .route("/_fake/workergroups/{id}/calls", get(ctl_calls))
        .route(
            "/_fake/workergroups/{id}/settings",
            patch(ctl_group_settings),
        )
        .route(
            "/_fake/endpoints/{id}",
            put(ctl_put_endpoint).patch(ctl_endpoint_fields),
        )
        .route(
            "/_fake/endpoints/{id}/fault",
            put(ctl_set_endpoint_fault).delete(ctl_clear_endpoint_fault),
        )
        .route("/_fake/endpoints/{id}/calls", get(ctl_endpoint_calls))
        .route(
            "/_fake/console/{listing}/fault",
            put(ctl_set_console_fault).delete(ctl_clear_console_fault),
        )
        .route("/_fake/console/{listing}/calls", get(ctl_console_calls))
        .with_state(state)
}

/// The key of `Authorization: Bearer <key>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
}

/// A `get_*_workers` call: the id asked for and the key presented.
struct WorkersCall {
    id: i64,
    key: Option<String>,
}

/// Reads a `get_*_workers` call: `{"id": n}` and the key, Bearer or `api_key` in the body;
/// the error is the message of the HTTP 400 (see [`bad_request`]).
fn parse_workers_call(headers: &HeaderMap, body: &Bytes) -> Result<WorkersCall, &'static str> {
    let req: Value = serde_json::from_slice(body).map_err(|_| "invalid JSON body")?;
    let id = req
        .get("id")
        .and_then(Value::as_i64)
        .ok_or("id is required")?;
    let key = bearer(headers).map(str::to_string).or_else(|| {
        req.get("api_key")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    Ok(WorkersCall { id, key })
}

/// HTTP 400 `{"error_msg": msg}`.
fn bad_request(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error_msg": msg }))).into_response()
}

/// What the state decided for a `get_*_workers` call of a known id (under the lock).
struct Decided {
    fault: Option<Fault>,
    authorised: bool,
    shape: Shape,
    workers: Vec<Value>,
}

/// Whose workers an answer carries; names the extra key of the `Object` shape.
#[derive(Clone, Copy)]
enum Owner {
    Workergroup(i64),
    Endpoint(i64),
}

impl Owner {
    /// The answer body in `shape`.
    fn shaped(self, shape: Shape, workers: Vec<Value>) -> Value {
        let (key, id) = match self {
            Self::Workergroup(id) => ("workergroup_id", id),
            Self::Endpoint(id) => ("endpoint_id", id),
        };
        match shape {
            Shape::Array => Value::Array(workers),
            Shape::Object => {
                let mut o = Map::new();
                o.insert("workers".into(), Value::Array(workers));
                o.insert(key.into(), json!(id));
                Value::Object(o)
            }
        }
    }

    /// The string Vast answers (HTTP 200) for a wrong key or an unknown id.
    fn auth_error(self) -> String {
        match self {
            Self::Workergroup(id) => format!(
                "authenticate_workergroup_apikey: invalid api_key or workergroup {id} not found"
            ),
            Self::Endpoint(id) => {
                format!("authenticate_endpoint_apikey: invalid api_key or endpoint {id} not found")
            }
        }
    }
}

/// Counts a call to workergroup `id` and decides its answer; `None` for an unknown id.
fn decide_group(s: &mut Inner, id: i64, key: Option<&str>) -> Option<Decided> {
    let Some(g) = s.groups.get_mut(&id) else {
        s.unknown_calls += 1;
        return None;
    };
    g.calls += 1;
    record_call(&mut g.call_times);
    let authorised = key == Some(g.api_key.as_str());
    Some(Decided {
        fault: take_fault(&mut g.fault, authorised),
        authorised,
        shape: g.shape,
        workers: g.workers.clone(),
    })
}

/// Counts a call to endpoint `id` and decides its answer; `None` for an unknown id.
fn decide_endpoint(s: &mut Inner, id: i64, key: Option<&str>) -> Option<Decided> {
    let Some(e) = s.endpoints.get_mut(&id) else {
        s.unknown_calls += 1;
        return None;
    };
    e.calls += 1;
    record_call(&mut e.call_times);
    let authorised = key == Some(e.api_key.as_str());
    Some(Decided {
        fault: take_fault(&mut e.fault, authorised),
        authorised,
        shape: e.shape,
        workers: endpoint_workers(&s.groups, id),
    })
}

/// The workers of every workergroup of endpoint `id`, in ascending workergroup id order.
fn endpoint_workers(groups: &HashMap<i64, Group>, id: i64) -> Vec<Value> {
    let mut members: Vec<(&i64, &Group)> = groups
        .iter()
        .filter(|(_, g)| g.settings.get("endpoint_id").and_then(Value::as_i64) == Some(id))
        .collect();
    members.sort_by_key(|(gid, _)| **gid);
    members
        .into_iter()
        .flat_map(|(_, g)| g.workers.iter().cloned())
        .collect()
}

async fn get_workers(State(state): State<FakeState>, headers: HeaderMap, body: Bytes) -> Response {
    let call = match parse_workers_call(&headers, &body) {
        Ok(c) => c,
        Err(msg) => return bad_request(msg),
    };
    // Count first, then decide, all under the lock; sleep outside it.
    let decided = state.with(|s| decide_group(s, call.id, call.key.as_deref()));
    answer_workers(decided, call.key.is_none(), Owner::Workergroup(call.id)).await
}

async fn get_endpoint_workers(
    State(state): State<FakeState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = match parse_workers_call(&headers, &body) {
        Ok(c) => c,
        Err(msg) => return bad_request(msg),
    };
    let decided = state.with(|s| decide_endpoint(s, call.id, call.key.as_deref()));
    answer_workers(decided, call.key.is_none(), Owner::Endpoint(call.id)).await
}

/// Answers a decided `get_*_workers` call: the missing key, the auth error, the fault.
async fn answer_workers(decided: Option<Decided>, key_missing: bool, owner: Owner) -> Response {
    if key_missing {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error_msg": "missing api key"})),
        )
            .into_response();
    }
    let auth_error = || (StatusCode::OK, Json(json!(owner.auth_error()))).into_response();
    let Some(d) = decided else {
        return auth_error();
    };
    let fault = d.fault.unwrap_or_default();
    delay(&fault).await;
    // Vast checks the key before anything else can go wrong: a wrong key is refused
    // whatever fault is set.
    if !d.authorised {
        return auth_error();
    }
    answer(fault, owner.shaped(d.shape, d.workers), Flavour::Workers)
}

/// Sleeps for the fault's delay.
async fn delay(fault: &Fault) {
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
    }
}

/// Which API an answer is for: its 429 body and the start of its broken bodies differ.
#[derive(Clone, Copy)]
enum Flavour {
    /// `get_*_workers`.
    Workers,
    /// A console listing.
    Console(Listing),
}

impl Flavour {
    /// HTTP 429 as the real service sends it (never a Retry-After).
    fn too_frequent(self) -> Response {
        match self {
            Self::Workers => (
                StatusCode::TOO_MANY_REQUESTS,
                "API requests too frequent endpoint threshold=2.0",
            )
                .into_response(),
            Self::Console(listing) => console_too_frequent(listing),
        }
    }

    /// The start of a body, up to the colon of a string field's value.
    fn partial(self) -> &'static [u8] {
        match self {
            Self::Workers => b"[{\"id\":1,\"status\":",
            Self::Console(_) => b"{\"success\":true,\"results\":[{\"id\":1,\"endpoint_name\":",
        }
    }

    /// What closes a body started by [`Flavour::partial`] and a string value.
    fn tail(self) -> &'static [u8] {
        match self {
            Self::Workers => b"\"}]",
            Self::Console(_) => b"\"}]}",
        }
    }
}

/// Answers an authorised call whose normal answer is `body`, with `fault` applied.
fn answer(fault: Fault, body: Value, flavour: Flavour) -> Response {
    if let Some(r) = fault_status(fault.status, &fault.body, flavour) {
        return r;
    }
    let json_ok = |text: String| {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response()
    };
    match fault.body {
        // HtmlPage only with a 5xx status (above); alone it is the normal answer.
        FaultBody::Normal | FaultBody::HtmlPage => json_ok(body.to_string()),
        FaultBody::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        FaultBody::Huge => huge(20, flavour),
        FaultBody::HugeMib(mib) => huge(mib as usize, flavour),
        FaultBody::ResetMidBody => reset_mid_body(flavour),
        FaultBody::Trickle { ms } => trickle(body.to_string().into_bytes(), ms),
        FaultBody::Raw(text) => json_ok(text),
        FaultBody::StringError(s) => json_ok(json!(s).to_string()),
        FaultBody::ErrorMsg(s) => json_ok(json!({ "error_msg": s }).to_string()),
        FaultBody::Error(s) => json_ok(json!({ "error": s }).to_string()),
    }
}

/// The answer a fault's non-200 status makes (`None`: no status, or 200).
fn fault_status(status: Option<u16>, body: &FaultBody, flavour: Flavour) -> Option<Response> {
    let code = StatusCode::from_u16(status?).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code == StatusCode::TOO_MANY_REQUESTS {
        return Some(flavour.too_frequent());
    }
    if code == StatusCode::OK {
        return None;
    }
    if *body == FaultBody::HtmlPage {
        return Some(html_page(code));
    }
    Some((code, format!("{} error", code.as_u16())).into_response())
}

/// The HTML error page of a proxy in front of Vast.
fn html_page(code: StatusCode) -> Response {
    let page = format!(
        "<html>\r\n<head><title>{c} {r}</title></head>\r\n<body>\r\n<center><h1>{c} {r}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
        c = code.as_u16(),
        r = code.canonical_reason().unwrap_or("Error")
    );
    (code, [(header::CONTENT_TYPE, "text/html")], page).into_response()
}

/// A JSON body of about `mib` MiB, streamed in 64 KiB chunks.
fn huge(mib: usize, flavour: Flavour) -> Response {
    use futures::StreamExt;
    let head = futures::stream::iter([
        Ok::<_, std::io::Error>(Bytes::from_static(flavour.partial())),
        Ok(Bytes::from_static(b"\"")),
    ]);
    let filler = Bytes::from(vec![b'x'; 64 * 1024]);
    let body = futures::stream::iter((0..mib * 16).map(move |_| Ok(filler.clone())));
    let tail = futures::stream::once(async move { Ok(Bytes::from_static(flavour.tail())) });
    streamed(axum::body::Body::from_stream(head.chain(body).chain(tail)))
}

/// The start of a body, then the connection is reset.
fn reset_mid_body(flavour: Flavour) -> Response {
    use futures::StreamExt;
    let start = futures::stream::once(async move {
        Ok::<_, std::io::Error>(Bytes::from_static(flavour.partial()))
    });
    let broken = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset mid-body",
        ))
    });
    streamed(axum::body::Body::from_stream(start.chain(broken)))
}

/// `body`, one byte every `ms` milliseconds.
fn trickle(body: Vec<u8>, ms: u64) -> Response {
    let stream = futures::stream::unfold(0usize, move |i| {
        let byte = body.get(i).copied();
        async move {
            let b = byte?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from(vec![b])), i + 1))
        }
    });
    streamed(axum::body::Body::from_stream(stream))
}

/// A streamed JSON answer with HTTP 200.
fn streamed(body: axum::body::Body) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// `user_id` of every console row.
const CONSOLE_USER_ID: i64 = 4242;
/// `created_at` of every console row (a float epoch, as the real service sends).
const CONSOLE_CREATED_AT: f64 = 1_764_000_000.5;

/// What the state decided for a console call (under the lock).
enum ConsoleDecision {
    /// No Bearer key.
    Missing,
    /// A key no workergroup or endpoint has.
    Unknown,
    /// Sooner than the threshold after the key's last answered call.
    TooFrequent,
    /// Answer `rows`, with the fault applied.
    Serve {
        fault: Option<Fault>,
        rows: Vec<Value>,
    },
}

async fn list_workergroups(State(state): State<FakeState>, headers: HeaderMap) -> Response {
    console(&state, Listing::Workergroups, &headers).await
}

async fn list_endptjobs(State(state): State<FakeState>, headers: HeaderMap) -> Response {
    console(&state, Listing::Endptjobs, &headers).await
}

/// Answers a console listing call.
async fn console(state: &FakeState, listing: Listing, headers: &HeaderMap) -> Response {
    let key = bearer(headers).filter(|k| !k.is_empty());
    let unauthorised = |detail: &str| {
        (StatusCode::UNAUTHORIZED, Json(json!({ "detail": detail }))).into_response()
    };
    match state.with(|s| decide_console(s, listing, key)) {
        ConsoleDecision::Missing => unauthorised("Authentication credentials were not provided."),
        ConsoleDecision::Unknown => unauthorised("Invalid token."),
        ConsoleDecision::TooFrequent => console_too_frequent(listing),
        ConsoleDecision::Serve { fault, rows } => {
            let fault = fault.unwrap_or_default();
            delay(&fault).await;
            let body = json!({ "success": true, "results": rows });
            answer(fault, body, Flavour::Console(listing))
        }
    }
}

/// The console's HTTP 429: a JSON detail, no Retry-After.
fn console_too_frequent(listing: Listing) -> Response {
    let detail = format!(
        "API requests too frequent endpoint threshold={}",
        listing.threshold_text()
    );
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({ "detail": detail })),
    )
        .into_response()
}

/// Counts a console call and decides its answer: key, threshold, then fault.
fn decide_console(s: &mut Inner, listing: Listing, key: Option<&str>) -> ConsoleDecision {
    let known = key.is_some_and(|k| {
        s.groups.values().any(|g| g.api_key == k) || s.endpoints.values().any(|e| e.api_key == k)
    });
    let now = Instant::now();
    let c = s.console.get_mut(listing);
    c.calls += 1;
    record_call(&mut c.call_times);
    let Some(key) = key else {
        return ConsoleDecision::Missing;
    };
    *c.calls_by_key.entry(key.to_string()).or_default() += 1;
    if !known {
        return ConsoleDecision::Unknown;
    }
    if c.last_answered
        .get(key)
        .is_some_and(|last| now.duration_since(*last) < c.threshold)
    {
        return ConsoleDecision::TooFrequent;
    }
    let fault = take_fault(&mut c.fault, true);
    if fault
        .as_ref()
        .is_none_or(|f| f.status.is_none_or(|code| code == 200))
    {
        c.last_answered.insert(key.to_string(), now);
    }
    let rows = match listing {
        Listing::Workergroups => group_rows(s, key),
        Listing::Endptjobs => endpoint_rows(s, key),
    };
    ConsoleDecision::Serve { fault, rows }
}

/// A console row: `user_id` and `created_at` (which `fields` may override), `fields`, then
/// `id` and `api_key`.
fn console_row(id: i64, fields: &Map<String, Value>, api_key: &str) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("user_id".into(), json!(CONSOLE_USER_ID));
    row.insert("created_at".into(), json!(CONSOLE_CREATED_AT));
    row.extend(fields.clone());
    row.insert("id".into(), json!(id));
    row.insert("api_key".into(), json!(api_key));
    row
}

/// The workergroup rows of `key`, in ascending id order, with their endpoint's name.
fn group_rows(s: &Inner, key: &str) -> Vec<Value> {
    let mut groups: Vec<(&i64, &Group)> =
        s.groups.iter().filter(|(_, g)| g.api_key == key).collect();
    groups.sort_by_key(|(id, _)| **id);
    groups
        .into_iter()
        .map(|(id, g)| {
            let mut row = console_row(*id, &g.settings, &g.api_key);
            let name = g
                .settings
                .get("endpoint_id")
                .and_then(Value::as_i64)
                .and_then(|e| s.endpoints.get(&e))
                .and_then(|e| e.fields.get("endpoint_name"));
            if let Some(name) = name {
                row.entry("endpoint_name").or_insert_with(|| name.clone());
            }
            Value::Object(row)
        })
        .collect()
}

/// The endpoint rows of `key`, in ascending id order.
fn endpoint_rows(s: &Inner, key: &str) -> Vec<Value> {
    let mut endpoints: Vec<(&i64, &Endpoint)> = s
        .endpoints
        .iter()
        .filter(|(_, e)| e.api_key == key)
        .collect();
    endpoints.sort_by_key(|(id, _)| **id);
    endpoints
        .into_iter()
        .map(|(id, e)| Value::Object(console_row(*id, &e.fields, &e.api_key)))
        .collect()
}

struct Json(Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, "application/json")],
            self.0.to_string(),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct PutGroup {
    api_key: String,
    #[serde(default)]
    shape: Shape,
    #[serde(default)]
    workers: Vec<Value>,
}

type CtlResult = Result<StatusCode, (StatusCode, String)>;

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, (StatusCode, String)> {
    serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad request body: {e}\n")))
}

async fn ctl_put_group(State(s): State<FakeState>, Path(id): Path<i64>, body: Bytes) -> CtlResult {
    let g: PutGroup = parse(&body)?;
    s.put_group(id, &g.api_key, g.shape, g.workers);
    Ok(StatusCode::NO_CONTENT)
}

async fn ctl_set_workers(
    State(s): State<FakeState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> CtlResult {
    s.set_workers(id, parse(&body)?);
    Ok(StatusCode::NO_CONTENT)
}

async fn ctl_upsert_worker(
    State(s): State<FakeState>,
    Path((id, wid)): Path<(i64, i64)>,
    body: Bytes,
) -> CtlResult {
    s.upsert_worker(id, wid, parse(&body)?);
    Ok(StatusCode::NO_CONTENT)
}

async fn ctl_remove_worker(
    State(s): State<FakeState>,
    Path((id, wid)): Path<(i64, i64)>,
) -> StatusCode {
    s.remove_worker(id, wid);
    StatusCode::NO_CONTENT
}

async fn ctl_set_fault(State(s): State<FakeState>, Path(id): Path<i64>, body: Bytes) -> CtlResult {
    s.set_fault(id, Some(parse(&body)?));
    Ok(StatusCode::NO_CONTENT)
}

async fn ctl_clear_fault(State(s): State<FakeState>, Path(id): Path<i64>) -> StatusCode {
    s.set_fault(id, None);
    StatusCode::NO_CONTENT
}

async fn ctl_calls(State(s): State<FakeState>, Path(id): Path<i64>) -> Response {
    Json(json!({ "calls": s.calls(id) })).into_response()
}

async fn ctl_group_settings(
    State(s): State<FakeState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> CtlResult {
    let fields: Map<String, Value> = parse(&body)?;
    s.set_group_settings(id, Value::Object(fields));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct PutEndpoint {
    api_key: String,
    #[serde(default)]
    shape: Shape,
    #[serde(default)]
    fields: Map<String, Value>,
}

async fn ctl_put_endpoint(
    State(s): State<FakeState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> CtlResult {
    let e: PutEndpoint = parse(&body)?;
    s.put_endpoint_shaped(id, &e.api_key, e.shape, e.fields);
    Ok(StatusCode::NO_CONTENT)
}

async fn ctl_endpoint_fields(
    State(s): State<FakeState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> CtlResult {
    let fields: Map<String, Value> = parse(&body)?;
    s.set_endpoint_fields(id, Value::Object(fields));
    Ok(StatusCode::NO_CONTENT)
}

async fn ctl_set_endpoint_fault(
    State(s): State<FakeState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> CtlResult {
    s.set_endpoint_fault(id, Some(parse(&body)?));
    Ok(StatusCode::NO_CONTENT)
}

async fn ctl_clear_endpoint_fault(State(s): State<FakeState>, Path(id): Path<i64>) -> StatusCode {
    s.set_endpoint_fault(id, None);
    StatusCode::NO_CONTENT
}

async fn ctl_endpoint_calls(State(s): State<FakeState>, Path(id): Path<i64>) -> Response {
    Json(json!({ "calls": s.endpoint_calls(id) })).into_response()
}

/// The listing a control-API path names, or HTTP 404.
fn listing(segment: &str) -> Result<Listing, (StatusCode, String)> {
    Listing::from_segment(segment).ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!("unknown console listing {segment:?}: expected workergroups or endptjobs\n"),
        )
    })
}

async fn ctl_set_console_fault(
    State(s): State<FakeState>,
    Path(segment): Path<String>,
    body: Bytes,
) -> CtlResult {
    let l = listing(&segment)?;
    s.set_console_fault(l, Some(parse(&body)?));
    Ok(StatusCode::NO_CONTENT)
}

async fn ctl_clear_console_fault(
    State(s): State<FakeState>,
    Path(segment): Path<String>,
) -> CtlResult {
    s.set_console_fault(listing(&segment)?, None);
    Ok(StatusCode::NO_CONTENT)
}

async fn ctl_console_calls(
    State(s): State<FakeState>,
    Path(segment): Path<String>,
) -> Result<Response, (StatusCode, String)> {
    let calls = s.console_calls(listing(&segment)?);
    Ok(Json(json!({ "calls": calls })).into_response())
}

/// Plays the demo's story on `id`: workers scale up over about a minute
/// (creating -> loading -> model_loading -> idle), one fails and is replaced.
pub async fn demo_scenario(state: FakeState, id: i64, api_key: String, step: Duration) {
    let url = |n: i64| format!("http://192.0.2.{n}:{}", 40000 + n);
    state.put_group(id, &api_key, Shape::Array, vec![]);
    let set = |wid: i64, status: &str| {
        let mut w = worker_json(wid, status, Some(&url(wid - 1000)));
        if status == "creating"
            && let Some(o) = w.as_object_mut()
        {
            o.remove("url");
        }
        state.upsert_worker(id, wid, w);
    };
    let script: &[&[(i64, &str)]] = &[
        &[(1001, "creating"), (1002, "creating")],
        &[(1001, "loading"), (1002, "loading"), (1003, "creating")],
        &[
            (1001, "model_loading"),
            (1002, "model_loading"),
            (1003, "loading"),
        ],
        &[(1001, "idle"), (1002, "error"), (1003, "model_loading")],
        &[(1003, "idle"), (1004, "creating")],
        &[(1004, "loading")],
        &[(1004, "model_loading")],
        &[(1004, "idle")],
    ];
    for (i, stepset) in script.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(step).await;
        }
        for (wid, status) in stepset.iter() {
            set(*wid, status);
        }
        if i == 4 {
            state.remove_worker(id, 1002);
        }
        tracing::info!(step = i, "demo scenario advanced");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_creates_then_updates() {
        let s = FakeState::default();
        s.put_group(1, "k", Shape::Array, vec![]);
        s.upsert_worker(1, 5, json!({"status": "loading"}));
        s.upsert_worker(1, 5, json!({"status": "idle"}));
        let workers = s.with(|i| i.groups[&1].workers.clone());
        assert_eq!(workers, vec![json!({"id": 5, "status": "idle"})]);
        s.remove_worker(1, 5);
        assert!(s.with(|i| i.groups[&1].workers.is_empty()));
    }

    /// An HTTP answer read by [`call`].
    struct Reply {
        status: u16,
        /// Header lines, names lowercased.
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).expect("JSON body")
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// One HTTP/1.1 exchange on a fresh connection (no client crate needed).
    async fn call(
        vast: &FakeVast,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let stream = tokio::net::TcpStream::connect(vast.addr)
            .await
            .expect("connect");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = key
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            vast.addr,
            body.len()
        );
        let mut out = request.as_bytes();
        while !out.is_empty() {
            stream.writable().await.expect("writable");
            match stream.try_write(out) {
                Ok(n) => out = &out[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            stream.readable().await.expect("readable");
            match stream.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        let text = String::from_utf8(raw).expect("UTF-8 answer");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_string(),
        }
    }

    fn ids(workers: &Value) -> Vec<i64> {
        workers
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|w| w.get("id").and_then(Value::as_i64))
            .collect()
    }

    #[tokio::test]
    async fn endpoint_workers_concatenate_its_groups() {
        let vast = FakeVast::start(0).await.expect("start");
        let s = &vast.state;
        s.put_endpoint(3, "ek", json!({"endpoint_name": "llama"}));
        // Settings before the workers: put_group keeps them.
        s.set_group_settings(20, json!({"endpoint_id": 3}));
        s.put_group(20, "gk", Shape::Array, vec![worker_json(201, "idle", None)]);
        s.put_group(10, "gk", Shape::Array, vec![worker_json(101, "idle", None)]);
        s.set_group_settings(10, json!({"endpoint_id": 3, "min_load": 5.0}));
        s.put_group(15, "gk", Shape::Array, vec![worker_json(151, "idle", None)]);
        s.set_group_settings(15, json!({"endpoint_id": 4}));

        let r = call(
            &vast,
            "POST",
            "/get_endpoint_workers/",
            Some("ek"),
            Some(json!({"id": 3})),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(ids(&r.json()), vec![101, 201]);

        s.set_endpoint_shape(3, Shape::Object);
        let body = json!({"id": 3, "api_key": "ek"});
        let r = call(&vast, "POST", "/get_endpoint_workers/", None, Some(body)).await;
        let v = r.json();
        assert_eq!(v["endpoint_id"], json!(3));
        assert_eq!(ids(&v["workers"]), vec![101, 201]);
        assert_eq!(s.endpoint_calls(3), 2);
        assert_eq!(
            s.calls(10),
            0,
            "the workergroups' own counters are untouched"
        );
    }

    #[tokio::test]
    async fn endpoint_wrong_key_is_refused_with_the_string() {
        let vast = FakeVast::start(0).await.expect("start");
        let s = &vast.state;
        s.put_endpoint(3, "ek", json!({}));
        s.set_endpoint_fault(
            3,
            Some(Fault {
                status: Some(503),
                times: Some(1),
                ..Fault::default()
            }),
        );
        let post = |key, id| {
            call(
                &vast,
                "POST",
                "/get_endpoint_workers/",
                key,
                Some(json!({"id": id})),
            )
        };
        let r = post(Some("wrong"), 3).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json(),
            json!("authenticate_endpoint_apikey: invalid api_key or endpoint 3 not found")
        );
        let r = post(Some("ek"), 99).await;
        assert_eq!(
            r.json(),
            json!("authenticate_endpoint_apikey: invalid api_key or endpoint 99 not found")
        );
        assert_eq!(post(None, 3).await.status, 401);
        // The refused calls did not use the fault up.
        assert_eq!(post(Some("ek"), 3).await.status, 503);
        assert_eq!(post(Some("ek"), 3).await.json(), json!([]));
    }

    #[tokio::test]
    async fn workergroups_listing_carries_api_key_and_endpoint_name() {
        let vast = FakeVast::start(0).await.expect("start");
        let s = &vast.state;
        s.put_endpoint(3, "k", json!({"endpoint_name": "llama", "max_workers": 20}));
        s.put_group(10, "k", Shape::Array, vec![]);
        s.set_group_settings(10, json!({"endpoint_id": 3, "min_load": 5.0}));
        s.put_group(7, "k", Shape::Array, vec![]);
        s.put_group(11, "other", Shape::Array, vec![]);

        let r = call(&vast, "GET", "/api/v0/workergroups/", Some("k"), None).await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["success"], json!(true));
        let rows = v["results"].as_array().expect("results");
        assert_eq!(ids(&v["results"]), vec![7, 10]);
        assert_eq!(rows[1]["api_key"], json!("k"));
        assert_eq!(rows[1]["endpoint_name"], json!("llama"));
        assert_eq!(rows[1]["endpoint_id"], json!(3));
        assert_eq!(rows[1]["min_load"], json!(5.0));
        assert_eq!(rows[1]["user_id"], json!(4242));
        assert_eq!(rows[1]["created_at"], json!(1_764_000_000.5));
        assert!(rows[0].get("endpoint_name").is_none());

        let r = call(&vast, "GET", "/api/v0/endptjobs/", Some("k"), None).await;
        let v = r.json();
        assert_eq!(ids(&v["results"]), vec![3]);
        assert_eq!(v["results"][0]["api_key"], json!("k"));
        assert_eq!(v["results"][0]["endpoint_name"], json!("llama"));

        let r = call(&vast, "GET", "/api/v0/workergroups/", None, None).await;
        assert_eq!(r.status, 401);
        assert_eq!(
            r.json(),
            json!({"detail": "Authentication credentials were not provided."})
        );
        let r = call(&vast, "GET", "/api/v0/workergroups/", Some("nobody"), None).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.json(), json!({"detail": "Invalid token."}));
        assert_eq!(s.console_calls(Listing::Workergroups), 3);
        assert_eq!(s.console_calls_for_key(Listing::Workergroups, "nobody"), 1);
    }

    #[tokio::test]
    async fn console_threshold_answers_429_until_disabled() {
        let vast = FakeVast::start(0).await.expect("start");
        let s = &vast.state;
        s.put_group(1, "k", Shape::Array, vec![]);
        let list = || call(&vast, "GET", "/api/v0/workergroups/", Some("k"), None);
        assert_eq!(list().await.status, 200);
        let r = list().await;
        assert_eq!(r.status, 429);
        assert_eq!(
            r.json(),
            json!({"detail": "API requests too frequent endpoint threshold=2.0"})
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("retry-after"), None);
        // The other listing has its own clock.
        let r = call(&vast, "GET", "/api/v0/endptjobs/", Some("k"), None).await;
        assert_eq!(r.status, 200);
        let r = call(&vast, "GET", "/api/v0/endptjobs/", Some("k"), None).await;
        assert_eq!(
            r.json(),
            json!({"detail": "API requests too frequent endpoint threshold=3.0"})
        );
        s.set_console_thresholds(Duration::ZERO, Duration::ZERO);
        assert_eq!(list().await.status, 200);
        assert_eq!(list().await.status, 200);
        assert_eq!(s.console_calls_for_key(Listing::Workergroups, "k"), 4);
        assert_eq!(s.console_call_times(Listing::Workergroups).len(), 4);
    }

    #[tokio::test]
    async fn console_fault_applies_once() {
        let vast = FakeVast::start(0).await.expect("start");
        let s = &vast.state;
        s.put_group(1, "k", Shape::Array, vec![]);
        s.set_console_fault(
            Listing::Workergroups,
            Some(Fault {
                status: Some(503),
                times: Some(1),
                ..Fault::default()
            }),
        );
        let list = || call(&vast, "GET", "/api/v0/workergroups/", Some("k"), None);
        assert_eq!(list().await.status, 503);
        // The 503 was not an answered call: the threshold does not hold the next one back.
        let r = list().await;
        assert_eq!(r.status, 200);
        assert_eq!(ids(&r.json()["results"]), vec![1]);
    }

    #[tokio::test]
    async fn control_api_scripts_endpoints_settings_and_console() {
        let vast = FakeVast::start(0).await.expect("start");
        let ctl = |method, path, body| call(&vast, method, path, None, body);
        let put = json!({"api_key": "k", "shape": "object", "fields": {"endpoint_name": "a"}});
        assert_eq!(
            ctl("PUT", "/_fake/endpoints/3", Some(put)).await.status,
            204
        );
        let patch = json!({"endpoint_name": "b", "cold_workers": 2});
        assert_eq!(
            ctl("PATCH", "/_fake/endpoints/3", Some(patch)).await.status,
            204
        );
        let settings = json!({"endpoint_id": 3});
        let r = ctl("PATCH", "/_fake/workergroups/9/settings", Some(settings)).await;
        assert_eq!(r.status, 204);
        vast.state.set_api_key(9, "k");
        vast.state
            .set_workers(9, vec![worker_json(91, "idle", None)]);
        let fault = json!({"status": 500, "times": 1});
        let r = ctl("PUT", "/_fake/console/endptjobs/fault", Some(fault)).await;
        assert_eq!(r.status, 204);
        assert_eq!(
            ctl("GET", "/_fake/console/bogus/calls", None).await.status,
            404
        );

        let r = call(
            &vast,
            "POST",
            "/get_endpoint_workers/",
            Some("k"),
            Some(json!({"id": 3})),
        )
        .await;
        assert_eq!(ids(&r.json()["workers"]), vec![91]);
        assert_eq!(
            ctl("GET", "/_fake/endpoints/3/calls", None).await.json(),
            json!({"calls": 1})
        );
        let r = call(&vast, "GET", "/api/v0/workergroups/", Some("k"), None).await;
        assert_eq!(r.json()["results"][0]["endpoint_name"], json!("b"));
        let r = call(&vast, "GET", "/api/v0/endptjobs/", Some("k"), None).await;
        assert_eq!(r.status, 500);
        assert_eq!(
            ctl("DELETE", "/_fake/console/endptjobs/fault", None)
                .await
                .status,
            204
        );
        let r = ctl("GET", "/_fake/console/endptjobs/calls", None).await;
        assert_eq!(r.json(), json!({"calls": 1}));
    }
}
