//! `/readyz` waits for the WorkerGroup watch to list; `/healthz` answers at once. In a
//! binary of its own: the CRD is installed only midway.

mod common;

use std::time::Duration;

use common::{OperatorProcess, TestNs, eventually, http_get};

#[tokio::test]
async fn readyz_is_503_until_the_workergroups_are_listed_and_healthz_is_200() {
    let ns = TestNs::new("probes").await;
    // No CRD: `make cluster` installs it, so it is deleted first (this binary has a
    // control plane of its own). Then the WorkerGroup watch cannot list.
    common::delete_workergroup_crd(&ns.client).await;
    let p = OperatorProcess::start(
        "op",
        &ns.name,
        "http://127.0.0.1:9",
        &["--leader-elect=false"],
    );
    let wait = Duration::from_secs(30);
    eventually("/healthz 200", wait, || async {
        (http_get(&format!("{}/healthz", p.health)).await?.0 == 200).then_some(())
    })
    .await;
    let (code, body) = http_get(&format!("{}/readyz", p.health))
        .await
        .expect("readyz answers");
    assert_eq!(code, 503, "{body}");
    // Still not ready a little later: it waits for the list, not for time.
    eventually("the watch has tried and failed", wait, || async {
        p.log_text()
            .contains("watch of WorkerGroups failed")
            .then_some(())
    })
    .await;
    assert_eq!(
        http_get(&format!("{}/readyz", p.health)).await.map(|r| r.0),
        Some(503)
    );
    common::install_workergroup_crd(&ns.client).await;
    eventually(
        "/readyz 200 after the list",
        Duration::from_secs(60),
        || async { (http_get(&format!("{}/readyz", p.health)).await?.0 == 200).then_some(()) },
    )
    .await;
    assert_eq!(
        http_get(&format!("{}/nothing", p.health))
            .await
            .map(|r| r.0),
        Some(404)
    );
    ns.cleanup().await;
}
