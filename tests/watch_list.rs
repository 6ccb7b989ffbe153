//! An apiserver that does not stream lists (`--feature-gates=WatchList=false`, the default
//! of Kubernetes 1.33): the watches of our Services and EndpointSlices, which ask for a
//! streamed initial list first, are refused and fall back to paged lists, and discovery
//! works as it does on 1.34: published, nothing written while nothing changes, a change
//! written as one replace (which needs the cache to hold the slice).

mod common;

use std::time::Duration;

use common::{Harness, cond, eventually, ready_is};
use fake_vast::{Shape, worker_json};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

const KEY: &str = "vk1-watchlist-27182";

#[tokio::test]
async fn discovery_falls_back_to_paged_lists_where_streaming_lists_are_refused() {
    common::kubeconfig_with_apiserver_flags("--feature-gates=WatchList=false");
    let h = Harness::start("watchlist-off").await;
    let worker = |ip: &str| worker_json(1, "idle", Some(&format!("http://{ip}:40001")));
    h.vast
        .state
        .put_group(7, KEY, Shape::Array, vec![worker("198.51.100.7")]);
    h.secret("vast", "api-key", KEY).await;
    h.apply_group(
        "g",
        json!({"workergroupId": 7, "apiKeySecretRef": {"name": "vast"}, "pollInterval": "5s"}),
    )
    .await;
    h.wait_for("g", "synced and published", |wg| {
        ready_is(wg, "True", "Synced")
            && cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
    })
    .await;
    let count = |verb: &str, resource: &str| {
        h.requests
            .snapshot()
            .get(&(verb.into(), resource.into()))
            .copied()
            .unwrap_or(0)
    };
    for resource in ["services", "endpointslices"] {
        assert!(
            count("WATCHLIST", resource) >= 1,
            "{resource}: a streamed list was asked for"
        );
        assert!(
            count("LIST", resource) >= 1,
            "{resource}: refused, then listed in pages"
        );
    }

    // Three polls without a change: no slice is written.
    let writes = || count("POST", "endpointslices") + count("PUT", "endpointslices");
    let (w0, calls0) = (writes(), h.vast.state.calls(7));
    eventually("three more polls", Duration::from_secs(40), || async {
        (h.vast.state.calls(7) >= calls0 + 3).then_some(())
    })
    .await;
    assert_eq!(writes(), w0, "an unchanged poll wrote a slice");

    // The worker moves: its slice is replaced once, in place.
    let (posts, puts) = (
        count("POST", "endpointslices"),
        count("PUT", "endpointslices"),
    );
    h.vast
        .state
        .put_group(7, KEY, Shape::Array, vec![worker("198.51.100.8")]);
    let api = h.ns.api::<EndpointSlice>();
    eventually(
        "the new address published",
        Duration::from_secs(30),
        || async {
            let s = api.get("g-v4-40001-0").await.ok()?;
            (s.endpoints.first()?.addresses == ["198.51.100.8"]).then_some(())
        },
    )
    .await;
    assert_eq!(count("POST", "endpointslices"), posts, "no create");
    assert_eq!(count("PUT", "endpointslices"), puts + 1, "one replace");
    h.stop().await;
}
