//! The operator's small HTTP server: `/metrics` on `--metrics-addr`, `/healthz` and
//! `/readyz` on `--health-addr` (one listener when both addresses are the same). Built on
//! hyper directly: no web framework in the product.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::metrics::{CONTENT_TYPE, Metrics};

/// What the probes report.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    heartbeat: AtomicU64,
}

/// The heartbeat must be younger than this for `/healthz` to pass.
const STALE_HEARTBEAT: Duration = Duration::from_secs(10);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Health {
    /// Marks the process ready (the WorkerGroup watch has listed).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether `/readyz` passes.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Whether `/healthz` passes: the runtime ran the heartbeat task recently.
    pub fn is_alive(&self) -> bool {
        unix_now().saturating_sub(self.heartbeat.load(Ordering::Acquire))
            <= STALE_HEARTBEAT.as_secs()
    }

    /// Ticks the heartbeat every second, forever: a runtime too busy or blocked to run
    /// this task fails `/healthz`.
    pub async fn beat(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            self.heartbeat.store(unix_now(), Ordering::Release);
        }
    }
}

/// A path the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/metrics`.
    Metrics,
    /// `/healthz` and `/readyz`.
    Probes,
}

/// Binds every address (merging routes of equal addresses). Fails with the address in
/// the message when one cannot be bound.
pub async fn bind(
    wanted: &[(SocketAddr, Route)],
) -> Result<Vec<(TcpListener, Vec<Route>)>, crate::Error> {
    let mut by_addr: BTreeMap<SocketAddr, Vec<Route>> = BTreeMap::new();
    for (addr, route) in wanted {
        by_addr.entry(*addr).or_default().push(*route);
    }
    let mut out = Vec::new();
    for (addr, routes) in by_addr {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| crate::Error::Config(format!("cannot listen on {addr}: {e}")))?;
        out.push((listener, routes));
    }
    Ok(out)
}

/// Serves `routes` on `listener` until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    routes: Vec<Route>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (routes, metrics, health) = (routes.clone(), metrics.clone(), health.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let resp = answer(req.uri().path(), &routes, &metrics, &health);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

fn answer(
    path: &str,
    routes: &[Route],
    metrics: &Metrics,
    health: &Health,
) -> Response<Full<Bytes>> {
    let plain = "text/plain; charset=utf-8";
    let probe = |ok: bool, what: &str| {
        if ok {
            text(StatusCode::OK, plain, "ok\n".into())
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, plain, format!("{what}\n"))
        }
    };
    match path {
        "/metrics" if routes.contains(&Route::Metrics) => {
            text(StatusCode::OK, CONTENT_TYPE, metrics.encode())
        }
        "/healthz" | "/livez" if routes.contains(&Route::Probes) => {
            probe(health.is_alive(), "the runtime has not ticked for 10s")
        }
        "/readyz" if routes.contains(&Route::Probes) => probe(
            health.is_ready(),
            "the WorkerGroup watch has not listed yet",
        ),
        _ => text(StatusCode::NOT_FOUND, plain, "not found\n".into()),
    }
}
