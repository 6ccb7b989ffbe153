//! The operator's small HTTP server: `/metrics` on `--metrics-addr`, `/healthz` and
//! `/readyz` on `--health-addr` (one listener when both addresses are the same). Built on
//! hyper directly: no web framework in the product.
//!
//! With `--metrics-secure`, `/metrics` is [`Route::SecureMetrics`]: served over HTTPS to
//! authorized callers only ([`super::metrics_auth`]), on a listener of its own (the
//! probes stay plain HTTP, as the kubelet calls them).

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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::metrics::{CONTENT_TYPE, Metrics};
use super::metrics_auth::{Guard, Verdict};

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
    /// `/metrics`, plain HTTP, to anyone.
    Metrics,
    /// `/metrics` over HTTPS to callers allowed to `get` it (`--metrics-secure`).
    SecureMetrics,
    /// `/healthz` and `/readyz`.
    Probes,
}

/// Binds every address (merging routes of equal addresses). Fails with the address in
/// the message when one cannot be bound, and before binding anything when
/// [`Route::SecureMetrics`] would share an address with another route (that one would
/// have to be HTTPS too).
pub async fn bind(
    wanted: &[(SocketAddr, Route)],
) -> Result<Vec<(TcpListener, Vec<Route>)>, crate::error::Error> {
    let by_addr = group(wanted)?;
    let mut out = Vec::new();
    for (addr, routes) in by_addr {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| crate::error::Error::StartUp(format!("cannot listen on {addr}: {e}")))?;
        out.push((listener, routes));
    }
    Ok(out)
}

/// The routes of each address; an error when a secure route shares one.
fn group(
    wanted: &[(SocketAddr, Route)],
) -> Result<BTreeMap<SocketAddr, Vec<Route>>, crate::error::Error> {
    let mut by_addr: BTreeMap<SocketAddr, Vec<Route>> = BTreeMap::new();
    for (addr, route) in wanted {
        by_addr.entry(*addr).or_default().push(*route);
    }
    for (addr, routes) in &by_addr {
        if routes.contains(&Route::SecureMetrics) && routes.len() > 1 {
            return Err(crate::error::Error::Config(format!(
                "--metrics-secure serves /metrics over HTTPS, and the probes stay plain \
                 HTTP: --metrics-addr and --health-addr must differ (both are {addr})"
            )));
        }
    }
    Ok(by_addr)
}

/// How long a client has for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `routes` on `listener` until the task is aborted; over TLS, with `/metrics`
/// for authorized callers only, when `guard` is given.
pub async fn serve(
    listener: TcpListener,
    routes: Vec<Route>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    guard: Option<Arc<Guard>>,
) {
    let routes: Arc<[Route]> = routes.into();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let served = Served {
            routes: routes.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            guard: guard.clone(),
        };
        tokio::spawn(async move {
            match served.guard.as_ref().map(|g| g.tls.clone()) {
                None => connection(stream, served).await,
                Some(tls) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, served).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// What one connection answers with.
#[derive(Clone)]
struct Served {
    routes: Arc<[Route]>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    guard: Option<Arc<Guard>>,
}

async fn connection<IO>(io: IO, served: Served)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let served = served.clone();
        async move { Ok::<_, Infallible>(served.answer(&req).await) }
    });
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

impl Served {
    async fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if path == "/metrics" && self.routes.contains(&Route::SecureMetrics) {
            return self.secure_metrics(req).await;
        }
        answer(path, &self.routes, &self.metrics, &self.health)
    }

    async fn secure_metrics<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let plain = "text/plain; charset=utf-8";
        let Some(guard) = &self.guard else {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                plain,
                "not configured\n".into(),
            );
        };
        let authorization = req.headers().get(hyper::header::AUTHORIZATION);
        match guard.authorizer.authorize(authorization).await {
            Ok(Verdict::Allowed) => text(StatusCode::OK, CONTENT_TYPE, self.metrics.encode()),
            Ok(Verdict::Unauthenticated) => {
                let mut resp = text(StatusCode::UNAUTHORIZED, plain, "Unauthorized\n".into());
                resp.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Bearer"),
                );
                resp
            }
            Ok(Verdict::Forbidden) => text(StatusCode::FORBIDDEN, plain, "Forbidden\n".into()),
            Err(e) => {
                // Already free of the token (see `Authorizer::authorize`).
                tracing::warn!(error = %e, "reviewing a metrics request failed");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    plain,
                    "authorization failed\n".into(),
                )
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn equal_addresses_share_a_listener_unless_metrics_are_secure() {
        let plain = group(&[
            (addr("127.0.0.1:8080"), Route::Metrics),
            (addr("127.0.0.1:8080"), Route::Probes),
        ])
        .expect("plain routes merge");
        assert_eq!(plain.len(), 1);
        let apart = group(&[
            (addr("127.0.0.1:8080"), Route::SecureMetrics),
            (addr("127.0.0.1:8081"), Route::Probes),
        ])
        .expect("secure metrics alone");
        assert_eq!(apart.len(), 2);
        let err = group(&[
            (addr("127.0.0.1:8080"), Route::SecureMetrics),
            (addr("127.0.0.1:8080"), Route::Probes),
        ])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("--metrics-addr and --health-addr must differ"),
            "{err}"
        );
    }

    #[test]
    fn plain_answers_never_serve_secure_metrics() {
        let (m, h) = (Metrics::new(), Health::default());
        let resp = answer("/metrics", &[Route::SecureMetrics], &m, &h);
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let resp = answer("/metrics", &[Route::Metrics], &m, &h);
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
