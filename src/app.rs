//! The `run` command: wires the runtime pieces and the controller together and runs them
//! until a shutdown signal.

use std::time::Duration;

use crate::controller::{self, Config, Context};
use crate::vast::VastClient;

/// What `vast-operator run` was asked to do.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL of the Vast API.
    pub vast_url: String,
    /// Timeout of one Vast call.
    pub vast_timeout: Duration,
    /// The controller's tunables.
    pub controller: Config,
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(settings: Settings) -> Result<(), crate::Error> {
    let client = kube::Client::try_default().await?;
    let vast = VastClient::new(&settings.vast_url, settings.vast_timeout)?;
    tracing::info!(vast_url = %settings.vast_url, "starting vast-operator");
    controller::run(
        Context::new(client, vast, settings.controller),
        shutdown_signal(),
    )
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on the first SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
