//! Deletes the Services and slices of WorkerGroups that no longer exist.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};

use super::Stores;
use crate::crd::WorkerGroup;

/// Deletes Services and slices whose WorkerGroup no longer exists (there may be no
/// garbage collector, and users should not wait for one). Runs every `every`. The
/// WorkerGroup store only nominates candidates; each is confirmed with a GET, so a cache
/// that lags never causes a deletion.
pub async fn sweep_orphans(
    client: Client,
    stores: Stores,
    groups: Store<WorkerGroup>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let live: BTreeSet<String> = groups
            .state()
            .iter()
            .filter_map(|g| g.meta().uid.clone())
            .collect();
        let services = stores.services.state();
        let slices = stores.slices.state();
        let metas = services
            .iter()
            .map(|s| ("Service", &s.metadata))
            .chain(slices.iter().map(|s| ("EndpointSlice", &s.metadata)));
        for (kind, meta) in metas {
            let Some(owner) = meta.owner_references.iter().flatten().find(|r| {
                r.kind == "WorkerGroup"
                    && r.api_version.starts_with("vast.ai/")
                    && !live.contains(&r.uid)
            }) else {
                continue;
            };
            let ns = meta.namespace.clone().unwrap_or_default();
            let name = meta.name.clone().unwrap_or_default();
            let groups_api: Api<WorkerGroup> = Api::namespaced(client.clone(), &ns);
            match groups_api.get_opt(&owner.name).await {
                Ok(Some(wg)) if wg.meta().uid.as_deref() == Some(owner.uid.as_str()) => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "cannot confirm an orphan; skipped");
                    continue;
                }
            }
            tracing::info!(kind, namespace = %ns, name = %name, workergroup = %owner.name, "deleting the object of a deleted WorkerGroup");
            // Only the object seen, not one recreated under the same name since.
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: meta.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let res = if kind == "Service" {
                Api::<Service>::namespaced(client.clone(), &ns)
                    .delete(&name, &dp)
                    .await
                    .map(|_| ())
            } else {
                Api::<EndpointSlice>::namespaced(client.clone(), &ns)
                    .delete(&name, &dp)
                    .await
                    .map(|_| ())
            };
            if let Err(e) = res {
                tracing::debug!(error = %e, kind, name = %name, "orphan delete failed");
            }
        }
    }
}
