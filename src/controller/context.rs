//! What the reconcilers share: clients, the event recorder, the tunables, per-object
//! memory and the discovery watches.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource};

use super::memory::Memory;
use crate::discovery;
use crate::runtime::metrics::Metrics;
use crate::vast::{Coalescer, ShareKey, VastClient};

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
    /// How often the memory and metric series of deleted WorkerGroups are pruned.
    pub prune_interval: Duration,
    /// Fewest time between two polls of one object asked for by the resync annotation.
    pub resync_min_interval: Duration,
    /// Most polls at once, and apart from them most reconciles writing at once.
    pub concurrency: u16,
    /// Consecutive transient failures before Ready turns False (below it nothing is
    /// written); 1 reports the first failure.
    pub failure_threshold: u32,
    /// Label selector narrowing the Secret watch (None: every Secret in scope).
    pub secret_selector: Option<String>,
    /// How long after the last successful poll endpoints stay ready (None: three poll
    /// intervals, at least two minutes).
    pub stale_after: Option<Duration>,
    /// Which worker addresses may become endpoints, and how many per WorkerGroup.
    pub endpoints: crate::sync::EndpointPolicy,
    /// Where and how often settings are read from Vast's console (None: not at all).
    pub settings: Option<super::settings::SettingsConfig>,
}

/// `--status-heartbeat`'s default, as the flag writes it (`Config::default()` reads it).
pub const DEFAULT_STATUS_HEARTBEAT: &str = "10m";
/// `--terminal-retry`'s default, likewise.
pub const DEFAULT_TERMINAL_RETRY: &str = "5m";

/// A default duration of this file: constants of ours, so a failed parse is a bug (the
/// unit test below parses each one).
fn default_duration(text: &str) -> Duration {
    crate::duration::parse(text).expect("a default duration of context.rs")
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_workers: 500,
            status_heartbeat: Some(default_duration(DEFAULT_STATUS_HEARTBEAT)),
            terminal_retry: default_duration(DEFAULT_TERMINAL_RETRY),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            instance: None,
            namespace: None,
            prune_interval: Duration::from_secs(60),
            resync_min_interval: Duration::from_secs(5),
            concurrency: 16,
            failure_threshold: 3,
            secret_selector: None,
            stale_after: None,
            endpoints: crate::sync::EndpointPolicy::default(),
            settings: None,
        }
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    pub(super) client: Client,
    pub(super) vast: Coalescer,
    /// Events that may repeat on an unchanged object (no resourceVersion in their
    /// reference): its cache folds a repeat into the first one's series.
    pub(super) recorder: Recorder,
    /// Who reports the events (for a recorder made per event: see `emit_events`).
    pub(super) reporter: Reporter,
    pub(super) config: Config,
    pub(super) memory: Memory,
    pub(super) stores: tokio::sync::OnceCell<discovery::Stores>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) secrets: tokio::sync::OnceCell<super::key_cache::SecretIndex>,
    /// The WorkerGroup store (a reconcile re-reads its object from it once it holds a
    /// slot: the copy it was handed may be older by the wait).
    pub(super) groups:
        tokio::sync::OnceCell<kube::runtime::reflector::Store<crate::crd::WorkerGroup>>,
    /// Set when the Secret watch has listed (the index holds every selected Secret).
    pub(super) secrets_listed: crate::runtime::listed::Listed,
    pub(super) keys: super::key_cache::KeyCache,
    /// `--concurrency` reconcile slots, held while a reconcile reads and polls, shared
    /// out fairly by namespace (made on first use, inside the runtime).
    slots: std::sync::OnceLock<crate::runtime::fair::FairSlots>,
    /// `--concurrency` write slots, held by a reconcile that writes to the apiserver
    /// (see `reconcile`): polls that find nothing to write never wait behind writes to a
    /// busy apiserver.
    write_slots: std::sync::OnceLock<crate::runtime::fair::FairSlots>,
    /// Set when the current term is shutting down: reconciles still waiting for a slot
    /// give up instead of polling (a new one per term).
    pub(super) stopping: parking_lot::Mutex<crate::runtime::listed::Listed>,
    pub(super) triggers: super::triggers::Triggers,
    /// The console settings of each key (None: `--settings-interval 0`).
    pub(super) settings: Option<super::settings::Settings>,
}

impl Context {
    /// A context for [`super::run`], with metrics of its own.
    pub fn new(client: Client, vast: VastClient, config: Config) -> Arc<Self> {
        Self::with_metrics(client, vast, config, Arc::new(Metrics::new()))
    }

    /// A context recording into `metrics`.
    pub fn with_metrics(
        client: Client,
        vast: VastClient,
        config: Config,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: crate::shared::FIELD_MANAGER.into(),
            instance: config.instance.clone(),
        };
        let settings = config.settings.clone().map(|mut c| {
            // Its calls are counted with the rest of this context's.
            c.console = c.console.with_metrics(metrics.clone());
            super::settings::Settings::new(c, config.backoff_base)
        });
        Arc::new(Self {
            settings,
            recorder: Recorder::new(client.clone(), reporter.clone()),
            reporter,
            client,
            vast: Coalescer::new(vast).with_metrics(metrics.clone()),
            config,
            memory: Memory::default(),
            stores: tokio::sync::OnceCell::new(),
            metrics,
            secrets: tokio::sync::OnceCell::new(),
            groups: tokio::sync::OnceCell::new(),
            secrets_listed: Default::default(),
            keys: super::key_cache::KeyCache::default(),
            slots: std::sync::OnceLock::new(),
            write_slots: std::sync::OnceLock::new(),
            stopping: Default::default(),
            triggers: Default::default(),
        })
    }
}

impl Context {
    /// Waits (up to 10 s each) for the watches a reconcile reads to have listed, before
    /// it takes a slot: a wait inside would hold one of `--concurrency` slots idle.
    pub(super) async fn watches_listed(&self) {
        const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
        if self.config.secret_selector.is_some() && !self.secrets_listed.is_set() {
            let _ = tokio::time::timeout(WAIT, self.secrets_listed.wait()).await;
        }
        if let Some(stores) = self.stores.get() {
            stores.wait_ready(WAIT).await;
        }
    }

    /// Waits for a reconcile slot in the turn of `namespace`; the slot is held until the
    /// permit drops. `Err` when the term is shutting down first.
    pub(super) async fn slot(
        &self,
        namespace: &str,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ()> {
        let slots = self.slots.get_or_init(|| {
            crate::runtime::fair::FairSlots::new(usize::from(self.config.concurrency.max(1)))
        });
        let stopping = self.stopping.lock().clone();
        let got = tokio::select! {
            // Shutting down wins over a slot that is free at the same time.
            biased;
            _ = stopping.wait() => return Err(()),
            got = slots.acquire(namespace) => got,
        };
        let Some((permit, waited)) = got else {
            return Ok(None);
        };
        self.metrics
            .queue_waited("reconcile", namespace, waited.as_secs_f64());
        Ok(Some(permit))
    }

    /// Waits for a write slot in the turn of `key`'s namespace, for the object of `uid`;
    /// `Err` when the term is shutting down first, or when the store no longer holds
    /// that object once the slot is free (deleted or replaced while waiting: nothing is
    /// written for it). `Ok(None)`: no slots (their dispatcher is gone).
    pub(super) async fn write_slot(
        &self,
        key: &kube::runtime::reflector::ObjectRef<crate::crd::WorkerGroup>,
        uid: Option<&str>,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ()> {
        let slots = self.write_slots.get_or_init(|| {
            crate::runtime::fair::FairSlots::new(usize::from(self.config.concurrency.max(1)))
        });
        let namespace = key.namespace.as_deref().unwrap_or_default();
        let stopping = self.stopping.lock().clone();
        let got = tokio::select! {
            biased;
            _ = stopping.wait() => return Err(()),
            got = slots.acquire(namespace) => got,
        };
        if let Some((_, waited)) = &got {
            self.metrics
                .queue_waited("write", namespace, waited.as_secs_f64());
        }
        if let Some(store) = self.groups.get()
            && store
                .get(key)
                .is_none_or(|now| now.meta().uid.as_deref() != uid)
        {
            return Err(());
        }
        Ok(got.map(|(permit, _)| permit))
    }

    /// Forgets memory and metric series of every WorkerGroup not in `groups` (which has
    /// listed); returns the keys of those that are.
    pub(super) fn keep_only(
        &self,
        groups: &kube::runtime::reflector::Store<crate::crd::WorkerGroup>,
    ) -> std::collections::HashSet<kube::runtime::reflector::ObjectRef<crate::crd::WorkerGroup>>
    {
        let live: std::collections::HashSet<_> = groups
            .state()
            .iter()
            .map(|wg| kube::runtime::reflector::ObjectRef::from_obj(&**wg))
            .collect();
        self.memory.retain(&live);
        self.keys.retain(groups);
        if let Some(settings) = &self.settings {
            // A key no WorkerGroup has asked about for a day (the longest pollInterval).
            settings.retain(std::time::Duration::from_secs(24 * 3600));
        }
        self.metrics.retain_groups(
            &live
                .iter()
                .map(|k| (k.namespace.clone().unwrap_or_default(), k.name.clone()))
                .collect(),
        );
        live
    }

    /// Wakes the other WorkerGroups that share `share` (they then find the fresh
    /// answer and keep in step with this one).
    pub(super) fn wake_sharers(
        &self,
        share: ShareKey,
        except: &kube::runtime::reflector::ObjectRef<crate::crd::WorkerGroup>,
    ) {
        for key in self.memory.sharers(share) {
            if &key != except {
                self.triggers.send(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_durations_parse_to_what_they_say() {
        let c = Config::default();
        assert_eq!(c.status_heartbeat, Some(Duration::from_secs(600)));
        assert_eq!(c.terminal_retry, Duration::from_secs(300));
    }
}
