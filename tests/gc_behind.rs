//! The garbage collector behind (left out of this control plane, as it was for minutes
//! after an apiserver restart in `make chaos`, seed 2): a WorkerGroup deleted and created
//! again under its name finds the Service and slices of its earlier self still there. The
//! operator replaces them instead of reporting a conflict until the collector catches
//! up; objects of anyone else under our names stay a conflict (tests/discovery.rs).

mod common;

use std::time::Duration;

use common::{Harness, cond, eventually, group_spec};
use fake_vast::{Shape, worker_json};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-gc-behind-31415";
const HOLD: &str = "vast-operator-tests/hold";

fn owner_uids<K: kube::Resource>(obj: &K) -> Vec<String> {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .map(|o| o.uid.clone())
        .collect()
}

fn worker(id: i64, ip: &str, port: u16) -> serde_json::Value {
    worker_json(id, "idle", Some(&format!("http://{ip}:{port}")))
}

fn published(wg: &WorkerGroup) -> bool {
    cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
}

/// What the first WorkerGroup `g` left when it was deleted with nobody to collect it.
struct Left {
    old_uid: String,
    services: Api<Service>,
    slices: Api<EndpointSlice>,
}

const OF_G: &str = "kubernetes.io/service-name=g";

/// WorkerGroup `g` published on workergroup 7 (one IPv4 worker), then deleted: its
/// Service and slices stay (no collector). Returns once a whole second has passed since
/// the last of them was made: creation times have seconds only, and within one second
/// the operator cannot tell which is earlier, so it leaves such objects to the collector
/// (as it leaves the new one's alone when its own view is stale).
async fn first_life(h: &Harness) -> Left {
    let first = h
        .synced_group("g", 7, KEY, vec![worker(1, "198.51.100.7", 40001)], "5s")
        .await;
    h.wait_for("g", "published", published).await;
    let old_uid = first.uid().expect("a uid");
    let services = h.ns.api::<Service>();
    let slices = h.ns.api::<EndpointSlice>();
    let of_g = ListParams::default().labels(OF_G);
    let earlier = slices.list(&of_g).await.expect("slices").items;
    assert!(
        !earlier.is_empty() && earlier.iter().all(|s| owner_uids(s) == [old_uid.clone()]),
        "the first WorkerGroup's slices"
    );

    let wgs = h.ns.api::<WorkerGroup>();
    wgs.delete("g", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the WorkerGroup gone", Duration::from_secs(30), || async {
        matches!(wgs.get_opt("g").await, Ok(None)).then_some(())
    })
    .await;
    // The premise: nothing collects what it owned.
    let left_service = services.get("g").await.expect("the Service left behind");
    assert_eq!(owner_uids(&left_service), std::slice::from_ref(&old_uid));
    let left = slices.list(&of_g).await.expect("slices").items;
    assert_eq!(
        left.iter().map(|s| s.name_any()).collect::<Vec<_>>(),
        earlier.iter().map(|s| s.name_any()).collect::<Vec<_>>(),
        "the slices left behind"
    );
    let last_made = std::iter::once(left_service.metadata.creation_timestamp.clone())
        .chain(left.iter().map(|s| s.metadata.creation_timestamp.clone()))
        .map(|t| t.expect("a creation time").0)
        .max()
        .expect("objects");
    eventually(
        "a second after the last of them was made",
        Duration::from_secs(5),
        || async {
            (jiff::Timestamp::now() >= last_made + jiff::SignedDuration::from_secs(1)).then_some(())
        },
    )
    .await;
    Left {
        old_uid,
        services,
        slices,
    }
}

/// `g` created again on workergroup 8, whose one worker is on IPv6: the earlier (IPv4)
/// slice's name is not wanted, so only the sweep of the earlier self's slices takes it.
async fn created_again(h: &Harness) {
    h.vast.state.put_group(
        8,
        KEY,
        Shape::Array,
        vec![worker(2, "[2001:db8::8]", 40002)],
    );
    h.apply_group("g", group_spec(8, "5s")).await;
}

/// Waits until the Service and every slice of `g` are the new WorkerGroup's, and it says
/// Published.
async fn all_the_new_ones(h: &Harness, left: &Left) {
    let old_uid = left.old_uid.clone();
    let again = h
        .wait_for("g", "the new WorkerGroup published", |wg| {
            wg.uid().is_some_and(|u| u != old_uid) && published(wg)
        })
        .await;
    let new_uid = again.uid().expect("a uid");
    let svc = left.services.get("g").await.expect("the Service");
    assert_eq!(
        owner_uids(&svc),
        std::slice::from_ref(&new_uid),
        "the Service is the new one's"
    );
    let of_g = ListParams::default().labels(OF_G);
    let slices = &left.slices;
    eventually(
        "only the new WorkerGroup's slices route the Service",
        Duration::from_secs(15),
        || async {
            let now = slices.list(&of_g).await.ok()?.items;
            (!now.is_empty() && now.iter().all(|s| owner_uids(s) == [new_uid.clone()]))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_workergroup_created_again_replaces_what_its_earlier_self_left_while_the_collector_is_behind()
 {
    common::kubeconfig_without_garbage_collector();
    let h = Harness::start("gc-behind").await;
    let left = first_life(&h).await;
    created_again(&h).await;
    all_the_new_ones(&h, &left).await;
}

#[tokio::test]
async fn slices_its_earlier_self_left_go_though_the_collector_took_its_service() {
    common::kubeconfig_without_garbage_collector();
    let h = Harness::start("gc-behind-svc").await;
    let left = first_life(&h).await;
    // The collector took the Service but not yet the slices: the new Service is created
    // without a conflict, so only the slice cache tells of what is left.
    left.services
        .delete("g", &DeleteParams::default())
        .await
        .expect("delete the Service");
    created_again(&h).await;
    all_the_new_ones(&h, &left).await;
}

#[tokio::test]
async fn a_leftover_held_by_a_finalizer_is_reported_until_it_is_gone() {
    common::kubeconfig_without_garbage_collector();
    let h = Harness::start("gc-behind-held").await;
    let left = first_life(&h).await;
    let pp = PatchParams::default();
    let hold = |on: bool| {
        let finalizers: Vec<&str> = if on { vec![HOLD] } else { vec![] };
        Patch::Merge(serde_json::json!({"metadata": {"finalizers": finalizers}}))
    };
    left.services
        .patch("g", &pp, &hold(true))
        .await
        .expect("a finalizer on the Service left behind");
    created_again(&h).await;
    let old_uid = left.old_uid.clone();
    // The first status of the new WorkerGroup to speak of discovery: the leftover is
    // deleted but not gone, so nothing is published yet.
    let first = h
        .wait_for("g", "the new WorkerGroup's discovery condition", |wg| {
            wg.uid().is_some_and(|u| u != old_uid) && cond(wg, "DiscoveryReady").is_some()
        })
        .await;
    let message = first
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "DiscoveryReady"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert_eq!(
        cond(&first, "DiscoveryReady"),
        Some(("False".into(), "DiscoveryFailed".into())),
        "{message}"
    );
    assert!(message.contains("Service g"), "{message}");
    let held = left.services.get("g").await.expect("the held Service");
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "deleted, held by the finalizer"
    );
    left.services
        .patch("g", &pp, &hold(false))
        .await
        .expect("the finalizer off");
    all_the_new_ones(&h, &left).await;
}
