//! Watches of the Services and EndpointSlices the operator manages, so that publishing
//! reads what exists without a request per poll.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::desired::owned_by;
use super::{APP_MANAGER, LABEL_MANAGED_BY_APP, MANAGED_BY, SLICE_MANAGED_BY_LABEL};
use crate::crd::WorkerGroup;

/// Watches of the Services and EndpointSlices the operator manages.
#[derive(Clone)]
pub struct Stores {
    pub(super) services: Store<Service>,
    pub(super) slices: Store<EndpointSlice>,
    ready: tokio::sync::watch::Receiver<bool>,
}

impl Stores {
    /// Starts watches of our Services and slices (in `namespace`, or everywhere). Returns
    /// at once; [`Stores::wait_ready`] tells when both have listed. The handles end the
    /// watches when aborted.
    pub fn start(
        client: Client,
        namespace: Option<&str>,
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (services, svc_writer) = reflector::store::<Service>();
        let (slices, slice_writer) = reflector::store::<EndpointSlice>();
        let (svc_api, slice_api) = match namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client, ns),
            ),
            None => (Api::all(client.clone()), Api::all(client)),
        };
        let svc_cfg =
            watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY_APP}={APP_MANAGER}"));
        let slice_cfg =
            watcher::Config::default().labels(&format!("{SLICE_MANAGED_BY_LABEL}={MANAGED_BY}"));
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let handles = vec![
            tokio::spawn(
                watcher(svc_api, svc_cfg)
                    .default_backoff()
                    .reflect(svc_writer)
                    .for_each(log_watch_errors("Services")),
            ),
            tokio::spawn(
                watcher(slice_api, slice_cfg)
                    .default_backoff()
                    .reflect(slice_writer)
                    .for_each(log_watch_errors("EndpointSlices")),
            ),
            tokio::spawn({
                let (services, slices) = (services.clone(), slices.clone());
                async move {
                    if services.wait_until_ready().await.is_ok()
                        && slices.wait_until_ready().await.is_ok()
                    {
                        let _ = ready_tx.send(true);
                    }
                }
            }),
        ];
        (
            Self {
                services,
                slices,
                ready,
            },
            handles,
        )
    }

    /// Waits up to `timeout` until both watches have listed, so the stores can be trusted
    /// to hold our objects; false when they have not.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready.clone();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await,
            Ok(Ok(_))
        )
    }

    pub(super) fn ours_services(&self, wg: &WorkerGroup) -> Vec<Arc<Service>> {
        let ns = wg.namespace();
        self.services
            .state()
            .into_iter()
            .filter(|s| s.namespace() == ns && owned_by(&**s, wg))
            .collect()
    }

    pub(super) fn ours_slices(&self, wg: &WorkerGroup) -> Vec<Arc<EndpointSlice>> {
        let ns = wg.namespace();
        self.slices
            .state()
            .into_iter()
            .filter(|s| s.namespace() == ns && owned_by(&**s, wg))
            .collect()
    }
}

fn log_watch_errors<T>(
    what: &'static str,
) -> impl FnMut(Result<T, watcher::Error>) -> futures::future::Ready<()> {
    move |ev| {
        if let Err(e) = ev {
            tracing::warn!(error = %e, "watch of our {what} failed (may the operator list and watch them?); retrying");
        }
        futures::future::ready(())
    }
}
