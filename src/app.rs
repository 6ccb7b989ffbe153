//! The `run` command: wires the runtime pieces (metrics and probe endpoints, leader
//! election) and the controller together, and shuts them down in bounded time.
//!
//! The watches run from the start on every replica (so `/readyz` passes on a standby and
//! a takeover starts warm); the controller runs only while this process leads. Losing
//! the Lease stops the controller at once; SIGTERM or Ctrl-C lets in-flight reconciles
//! finish until `--shutdown-timeout` (less a moment to release the Lease), then cancels
//! them, releases the Lease and returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::controller::{self, Config, Context, Watches};
use crate::runtime::http::{self, Health, Route};
use crate::runtime::leader;
use crate::runtime::metrics::Metrics;
use crate::runtime::metrics_auth::{self, Guard};
use crate::vast::VastClient;

/// What `vast-operator run` was asked to do.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL of the Vast API.
    pub vast_url: String,
    /// Timeout of one Vast call.
    pub vast_timeout: Duration,
    /// Which Vast URLs are accepted and which CAs trusted.
    pub vast_transport: crate::vast::Transport,
    /// The controller's tunables.
    pub controller: Config,
    /// Leader election, or None to lead alone.
    pub leader: Option<leader::Settings>,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    /// Serve `/metrics` over HTTPS to authorized callers only.
    pub metrics_secure: bool,
    /// `tls.crt` and `tls.key` for `/metrics` (else a self-signed certificate).
    pub metrics_cert_dir: Option<std::path::PathBuf>,
    /// Where `/healthz` and `/readyz` are served.
    pub health_addr: SocketAddr,
    /// Longest time from SIGTERM to exit.
    pub shutdown_timeout: Duration,
    /// Most calls per second to Vast.
    pub vast_max_rps: std::num::NonZeroU32,
    /// Base URL of Vast's console API, and how often settings are read from it (None:
    /// not at all).
    pub console: Option<(String, Duration)>,
}

/// Time kept from `--shutdown-timeout` for releasing the Lease.
const RELEASE_BUDGET: Duration = Duration::from_secs(3);

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(settings: Settings) -> Result<(), crate::error::Error> {
    crate::runtime::failpoints::follow_file();
    // Installed before anything else, so that a SIGTERM during start-up (the Lease may
    // take a while to read) is a clean shutdown, not the default kill.
    let mut signals = Signals::install()?;
    let metrics = Arc::new(Metrics::new());
    // A Vast URL or CA file that cannot be used is an error before anything starts.
    let vast = VastClient::with_transport(
        &settings.vast_url,
        settings.vast_timeout,
        &settings.vast_transport,
    )?
    .with_metrics(metrics.clone())
    .with_rate_limit(settings.vast_max_rps);
    // The console shares the client, its CAs and the rate limit.
    let mut controller = settings.controller.clone();
    if let Some((url, interval)) = &settings.console {
        controller.settings = Some(crate::controller::settings::SettingsConfig {
            console: vast.console(url, settings.vast_transport.allow_insecure)?,
            interval: *interval,
        });
    }
    let health = Arc::new(Health::default());
    // Bind first: a port in use is a clear error before anything else starts.
    let metrics_route = if settings.metrics_secure {
        Route::SecureMetrics
    } else {
        Route::Metrics
    };
    let listeners = http::bind(&[
        (settings.metrics_addr, metrics_route),
        (settings.health_addr, Route::Probes),
    ])
    .await?;
    // The certificate (made, or read from --metrics-cert-dir) before anything is served.
    let tls = if settings.metrics_secure {
        Some(metrics_auth::server_config(
            settings.metrics_cert_dir.as_deref(),
        )?)
    } else {
        None
    };
    let mut background = vec![tokio::spawn(health.clone().beat())];
    let serve = |listener: tokio::net::TcpListener, routes: Vec<Route>, guard| {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, ?routes, "serving");
        }
        tokio::spawn(http::serve(
            listener,
            routes,
            metrics.clone(),
            health.clone(),
            guard,
        ))
    };
    // The probes (and plain metrics) are served at once; secure metrics need the client.
    let (secure, plain): (Vec<_>, Vec<_>) = listeners
        .into_iter()
        .partition(|(_, routes)| routes.contains(&Route::SecureMetrics));
    for (listener, routes) in plain {
        background.push(serve(listener, routes, None));
    }
    let client = kube::Client::try_default().await.map_err(|e| {
        crate::error::Error::StartUp(format!(
            "cannot load the Kubernetes client configuration (KUBECONFIG, ~/.kube/config or in-cluster): {e}"
        ))
    })?;
    if let Some(tls) = tls {
        let guard = Arc::new(Guard::new(tls, client.clone()));
        for (listener, routes) in secure {
            background.push(serve(listener, routes, Some(guard.clone())));
        }
    }

    info!(vast_url = %settings.vast_url, "starting vast-operator");
    let ctx = Context::with_metrics(client.clone(), vast, controller, metrics.clone());
    let watches = Watches::start(&ctx, {
        let health = health.clone();
        move || health.set_ready()
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let (mut leading, election) = match settings.leader {
        Some(l) => {
            let joined = tokio::select! {
                joined = leader::start(client, l, stop_rx) => joined?,
                _ = signals.recv() => {
                    info!("stopped during start-up");
                    return Ok(());
                }
            };
            (joined.0, Some(joined.1))
        }
        None => {
            let (tx, rx) = watch::channel(true);
            // The sender lives as long as the process: always leading.
            background.push(tokio::spawn(async move {
                tx.closed().await;
            }));
            (rx, None)
        }
    };

    let signal = signals.recv();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            res = leading.wait_for(|l| *l) => if res.is_err() {
                return Err(crate::error::Error::Stopped("leader election ended unexpectedly".into()));
            },
        }
        metrics.set_leader(true);
        info!("leading: reconciling WorkerGroups");
        let (term_stop_tx, term_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let term = controller::run_term(ctx.clone(), &watches, async {
            let _ = term_stop_rx.await;
        });
        tokio::pin!(term);
        let mut draining = leading.clone();
        let lost = tokio::select! {
            _ = &mut term => false,
            _ = &mut signal => {
                info!(timeout = ?settings.shutdown_timeout, "shutting down: letting running reconciles finish");
                let _ = term_stop_tx.send(());
                let budget = settings.shutdown_timeout.saturating_sub(RELEASE_BUDGET);
                tokio::select! {
                    done = tokio::time::timeout(budget, &mut term) => if done.is_err() {
                        warn!("reconciles still running at the shutdown timeout: cancelled");
                    },
                    // Losing the Lease while draining stops the writes at once too.
                    _ = draining.wait_for(|l| !*l) => warn!("lost the leader Lease while shutting down: reconciles cancelled"),
                }
                metrics.set_leader(false);
                break;
            }
            res = leading.wait_for(|l| !*l) => res.is_ok(),
        };
        // Dropping the term cancels its reconciles at once: no write after the Lease.
        metrics.set_leader(false);
        if lost {
            warn!("lost the leader Lease: stopped reconciling");
        }
    }
    drop(watches);
    let _ = stop_tx.send(true);
    let release = RELEASE_BUDGET.min(settings.shutdown_timeout);
    if let Some(task) = election
        && tokio::time::timeout(release, task).await.is_err()
    {
        warn!("leader election did not end in time");
    }
    for t in background {
        t.abort();
    }
    info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT (Ctrl-C), registered when installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, crate::error::Error> {
        use tokio::signal::unix::{SignalKind, signal};
        let err =
            |e: std::io::Error| crate::error::Error::StartUp(format!("cannot handle signals: {e}"));
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(err)?,
            int: signal(SignalKind::interrupt()).map_err(err)?,
        })
    }

    /// Resolves on the next SIGTERM or SIGINT.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}
