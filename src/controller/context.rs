//! What the reconcilers share: clients, the event recorder, the tunables, per-object
//! memory and the discovery watches.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use super::memory::Memory;
use crate::discovery;
use crate::vast::VastClient;

/// Tunables of the controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// Cap on `status.workers`.
    pub max_workers: usize,
    /// Refresh `lastSyncTime` at least this often (None: only on changes).
    pub status_heartbeat: Option<Duration>,
    /// How often an object with a terminal error is retried.
    pub terminal_retry: Duration,
    /// First delay after a transient error; doubles per failure.
    pub backoff_base: Duration,
    /// Longest delay after transient errors.
    pub backoff_max: Duration,
    /// Name of this instance for events (pod name).
    pub instance: Option<String>,
    /// Watch only this namespace (None: all namespaces).
    pub namespace: Option<String>,
    /// How often Services and EndpointSlices of deleted WorkerGroups are looked for.
    pub orphan_sweep: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_workers: 500,
            status_heartbeat: Some(Duration::from_secs(600)),
            terminal_retry: Duration::from_secs(300),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            instance: None,
            namespace: None,
            orphan_sweep: Duration::from_secs(60),
        }
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    pub(super) client: Client,
    pub(super) vast: VastClient,
    pub(super) recorder: Recorder,
    pub(super) config: Config,
    pub(super) memory: Memory,
    pub(super) stores: tokio::sync::OnceCell<discovery::Stores>,
}

impl Context {
    /// A context for [`super::run`].
    pub fn new(client: Client, vast: VastClient, config: Config) -> Arc<Self> {
        let reporter = Reporter {
            controller: crate::FIELD_MANAGER.into(),
            instance: config.instance.clone(),
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            vast,
            config,
            memory: Memory::default(),
            stores: tokio::sync::OnceCell::new(),
        })
    }
}
