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
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams};

const KEY: &str = "vk1-gc-behind-31415";

fn owner_uids<K: kube::Resource>(obj: &K) -> Vec<String> {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .map(|o| o.uid.clone())
        .collect()
}

#[tokio::test]
async fn a_workergroup_created_again_replaces_what_its_earlier_self_left_while_the_collector_is_behind()
 {
    common::kubeconfig_without_garbage_collector();
    let h = Harness::start("gc-behind").await;
    let worker = |id: i64, ip: &str, port: u16| {
        worker_json(id, "idle", Some(&format!("http://{ip}:{port}")))
    };
    let first = h
        .synced_group("g", 7, KEY, vec![worker(1, "198.51.100.7", 40001)], "5s")
        .await;
    let published = |wg: &vast_operator::crd::WorkerGroup| {
        cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
    };
    h.wait_for("g", "published", published).await;
    let old_uid = first.uid().expect("a uid");
    let services = h.ns.api::<Service>();
    let slices = h.ns.api::<EndpointSlice>();
    let of_g = ListParams::default().labels("kubernetes.io/service-name=g");
    let earlier = slices.list(&of_g).await.expect("slices").items;
    assert!(
        !earlier.is_empty() && earlier.iter().all(|s| owner_uids(s) == [old_uid.clone()]),
        "the first WorkerGroup's slices"
    );

    let wgs = h.ns.api::<vast_operator::crd::WorkerGroup>();
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

    // Made again in a later second than what its earlier self left: creation times have
    // seconds only, and within one second the operator cannot tell which is earlier, so
    // it leaves the objects to the collector (as it leaves the new one's alone when its
    // own view is stale).
    let made = left_service
        .metadata
        .creation_timestamp
        .clone()
        .expect("a creation time")
        .0;
    eventually(
        "a second after the Service was made",
        Duration::from_secs(5),
        || async {
            (jiff::Timestamp::now() >= made + jiff::SignedDuration::from_secs(1)).then_some(())
        },
    )
    .await;
    // Created again on another workergroup, whose one worker is on IPv6: the earlier
    // (IPv4) slice's name is not wanted, so only the sweep of the earlier self's slices
    // takes it away.
    h.vast.state.put_group(
        8,
        KEY,
        Shape::Array,
        vec![worker(2, "[2001:db8::8]", 40002)],
    );
    h.apply_group("g", group_spec(8, "5s")).await;
    let again = h
        .wait_for("g", "the new WorkerGroup published", |wg| {
            wg.uid().is_some_and(|u| u != old_uid) && published(wg)
        })
        .await;
    let new_uid = again.uid().expect("a uid");
    let svc = services.get("g").await.expect("the Service");
    assert_eq!(
        owner_uids(&svc),
        std::slice::from_ref(&new_uid),
        "the Service is the new one's"
    );
    let now = slices.list(&of_g).await.expect("slices").items;
    assert!(
        !now.is_empty() && now.iter().all(|s| owner_uids(s) == [new_uid.clone()]),
        "only the new WorkerGroup's slices route the Service: {:?}",
        now.iter()
            .map(|s| (s.name_any(), owner_uids(s)))
            .collect::<Vec<_>>()
    );
}
