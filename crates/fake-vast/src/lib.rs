//! A fake Vast serverless API for tests, the demo and trials (the `fake-vast` binary).
//!
//! It reproduces the quirks of the real service listed in `vast-api.md`: the four
//! response shapes on HTTP 200, `error_msg` and bare-string errors, the authentication
//! error string, worker objects with extra, missing and float-typed fields, float-epoch
//! timestamps, lowercase states, and HTTP 429 with a plain-text body and no Retry-After.
//! It binds 127.0.0.1 only.
//!
//! Control API (JSON), for scripts:
//! - `PUT /_fake/workergroups/{id}` `{"api_key": "...", "shape": "array"|"object", "workers": [...]}`
//! - `PUT /_fake/workergroups/{id}/workers` `[worker, ...]` (replaces the list)
//! - `PATCH /_fake/workergroups/{id}/workers/{worker}` `{"status": "idle", ...}` (upsert fields)
//! - `DELETE /_fake/workergroups/{id}/workers/{worker}`
//! - `PUT /_fake/workergroups/{id}/fault` a [`Fault`]; `DELETE` clears it
//! - `GET /_fake/workergroups/{id}/calls` `{"calls": n}`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
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
    call_times: std::collections::VecDeque<std::time::Instant>,
}

/// How many call times are kept per workergroup.
pub const KEPT_CALL_TIMES: usize = 64;

#[derive(Default)]
struct Inner {
    groups: HashMap<i64, Group>,
    unknown_calls: u64,
}

/// Shared state of a fake server; cheap to clone.
#[derive(Clone, Default)]
pub struct FakeState(Arc<Mutex<Inner>>);

impl FakeState {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Creates or replaces a workergroup.
    pub fn put_group(&self, id: i64, api_key: &str, shape: Shape, workers: Vec<Value>) {
        self.with(|s| {
            let calls = s.groups.get(&id).map_or(0, |g| g.calls);
            s.groups.insert(
                id,
                Group {
                    api_key: api_key.into(),
                    shape,
                    workers,
                    fault: None,
                    calls,
                    call_times: Default::default(),
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
        .route("/get_endpoint_workers/", post(get_workers))
        .route("/get_autogroup_workers/", post(get_workers))
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
        .with_state(state)
}

async fn get_workers(State(state): State<FakeState>, headers: HeaderMap, body: Bytes) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error_msg": "invalid JSON body"})),
            )
                .into_response();
        }
    };
    let Some(id) = req.get("id").and_then(Value::as_i64) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error_msg": "id is required"})),
        )
            .into_response();
    };
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| {
            req.get("api_key")
                .and_then(Value::as_str)
                .map(str::to_string)
        });

    // Count first, then decide, all under the lock; sleep outside it.
    let decided = state.with(|s| {
        let Some(g) = s.groups.get_mut(&id) else {
            s.unknown_calls += 1;
            return Err(());
        };
        g.calls += 1;
        if g.call_times.len() == KEPT_CALL_TIMES {
            g.call_times.pop_front();
        }
        g.call_times.push_back(std::time::Instant::now());
        let fault = g.fault.clone();
        let authorised = key.as_deref() == Some(g.api_key.as_str());
        // A call refused for its key is not served the fault: it does not use one up.
        if authorised
            && let Some(f) = g.fault.as_mut()
            && let Some(t) = f.times.as_mut()
        {
            *t = t.saturating_sub(1);
            if *t == 0 {
                g.fault = None;
            }
        }
        Ok((fault, authorised, g.shape, g.workers.clone()))
    });
    if key.is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error_msg": "missing api key"})),
        )
            .into_response();
    }
    let auth_error =
        format!("authenticate_workergroup_apikey: invalid api_key or workergroup {id} not found");
    let (fault, authorised, shape, workers) = match decided {
        Ok(d) => d,
        Err(()) => return (StatusCode::OK, Json(json!(auth_error))).into_response(),
    };
    let fault = fault.unwrap_or_default();
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
    }
    // Vast checks the key before anything else can go wrong: a wrong key is refused
    // whatever fault is set.
    if !authorised {
        return (StatusCode::OK, Json(json!(auth_error))).into_response();
    }
    if let Some(code) = fault.status {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code == StatusCode::TOO_MANY_REQUESTS {
            return (code, "API requests too frequent endpoint threshold=2.0").into_response();
        }
        if code != StatusCode::OK && fault.body == FaultBody::HtmlPage {
            let page = format!(
                "<html>\r\n<head><title>{c} {r}</title></head>\r\n<body>\r\n<center><h1>{c} {r}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
                c = code.as_u16(),
                r = code.canonical_reason().unwrap_or("Error")
            );
            return (code, [(header::CONTENT_TYPE, "text/html")], page).into_response();
        }
        if code != StatusCode::OK {
            return (code, format!("{} error", code.as_u16())).into_response();
        }
    }
    match fault.body {
        FaultBody::Normal => {}
        FaultBody::Malformed => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response();
        }
        FaultBody::Huge | FaultBody::HugeMib(_) => {
            let mib = match fault.body {
                FaultBody::HugeMib(n) => n as usize,
                _ => 20,
            };
            // Streamed in 64 KiB chunks.
            let head = futures::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"[{\"id\":1,\"status\":\""))
            });
            let filler = Bytes::from(vec![b'x'; 64 * 1024]);
            let body = futures::stream::iter((0..mib * 16).map(move |_| Ok(filler.clone())));
            let tail = futures::stream::once(async { Ok(Bytes::from_static(b"\"}]")) });
            use futures::StreamExt;
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                axum::body::Body::from_stream(head.chain(body).chain(tail)),
            )
                .into_response();
        }
        FaultBody::ResetMidBody => {
            use futures::StreamExt;
            let start = futures::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"[{\"id\":1,\"status\":"))
            });
            let broken = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset mid-body",
                ))
            });
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                axum::body::Body::from_stream(start.chain(broken)),
            )
                .into_response();
        }
        FaultBody::Trickle { ms } => {
            let body = match shape {
                Shape::Array => Value::Array(workers),
                Shape::Object => json!({"workers": workers, "workergroup_id": id}),
            }
            .to_string()
            .into_bytes();
            let stream = futures::stream::unfold(0usize, move |i| {
                let byte = body.get(i).copied();
                async move {
                    let b = byte?;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Some((Ok::<_, std::io::Error>(Bytes::from(vec![b])), i + 1))
                }
            });
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                axum::body::Body::from_stream(stream),
            )
                .into_response();
        }
        FaultBody::Raw(text) => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                text,
            )
                .into_response();
        }
        FaultBody::StringError(s) => return (StatusCode::OK, Json(json!(s))).into_response(),
        FaultBody::ErrorMsg(s) => {
            return (StatusCode::OK, Json(json!({"error_msg": s}))).into_response();
        }
        FaultBody::Error(s) => {
            return (StatusCode::OK, Json(json!({"error": s}))).into_response();
        }
        // Only with a 5xx status (above); alone it is the normal answer.
        FaultBody::HtmlPage => {}
    }
    let body = match shape {
        Shape::Array => Value::Array(workers),
        Shape::Object => json!({"workers": workers, "workergroup_id": id}),
    };
    (StatusCode::OK, Json(body)).into_response()
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
}
