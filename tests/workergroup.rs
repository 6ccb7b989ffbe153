//! WorkerGroup sync end to end: the operator (in-process) against a real kube-apiserver
//! and the project's fake Vast server.

mod common;

use std::time::Duration;

use common::{Harness, cond, eventually, kubectl, ready_is, worker_states};
use fake_vast::{Fault, FaultBody, Shape, worker_json};
use serde_json::json;
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-workergroup-0123456789";

fn spec(id: i64) -> serde_json::Value {
    json!({"workergroupId": id, "apiKeySecretRef": {"name": "vast"}, "pollInterval": "5s"})
}

/// `kubectl annotate workergroup/g vast.ai/resync-requested-at=<value>`, as a script would.
async fn annotate_resync(h: &Harness, value: &str) {
    let annotation = format!("vast.ai/resync-requested-at={value}");
    let out = kubectl_off_runtime(&[
        "annotate",
        "-n",
        &h.ns.name,
        "--overwrite",
        "workergroup/g",
        &annotation,
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// kubectl on a blocking thread: the operator under test runs on this test's runtime
/// and must keep running while kubectl waits.
async fn kubectl_off_runtime(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl(&args)
    })
    .await
    .expect("join kubectl")
}

fn url(n: i64) -> String {
    format!("http://198.51.100.{n}:{}", 40000 + n)
}

#[tokio::test]
async fn create_sync_columns_and_wait() {
    let h = Harness::start("create").await;
    h.vast.state.put_group(
        11,
        KEY,
        Shape::Array,
        vec![
            worker_json(2, "idle", Some(&url(2))),
            worker_json(1, "loading", None),
        ],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("gpu", spec(11)).await;
    let wg = h
        .wait_for("gpu", "Ready=True", |wg| ready_is(wg, "True", "Synced"))
        .await;
    let st = wg.status.clone().expect("status");
    assert_eq!(
        worker_states(&wg),
        [(1, "loading".into()), (2, "idle".into())]
    );
    assert_eq!((st.worker_count, st.ready_workers), (2, 1));
    assert_eq!(st.ready_summary.as_deref(), Some("1/2"));
    assert_eq!(st.status_counts.get("idle"), Some(&1));
    assert!(!st.workers_truncated);
    assert_eq!(st.workers[1].url.as_deref(), Some(url(2).as_str()));
    assert!(st.workers[0].url.is_none());
    // Float epochs became RFC 3339 times.
    assert_eq!(
        st.workers[0].created_at.map(|t| t.to_string()).as_deref(),
        Some("2025-11-24T16:00:01Z")
    );
    assert_eq!(st.workers[1].perf, Some(97.5));
    assert!(st.last_sync_time.is_some() && st.last_change_time.is_some());
    assert_eq!(
        cond(&wg, "Reconciling"),
        Some(("False".into(), "Synced".into()))
    );
    assert_eq!(
        cond(&wg, "Stalled"),
        Some(("False".into(), "Synced".into()))
    );

    // kubectl wait and the printer columns.
    let out = kubectl(&[
        "wait",
        "-n",
        &h.ns.name,
        "--for=condition=Ready",
        "workergroup/gpu",
        "--timeout=30s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(&["get", "vwg", "-n", &h.ns.name, "-o", "wide"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "WORKERGROUP",
            "ENDPOINT",
            "READY",
            "MAX",
            "STATUS",
            "LAST",
            "CHANGE",
            "AGE",
            "ENDPOINT",
            "ID",
            "INTERVAL",
            "SUSPENDED"
        ]
    );
    // Without settings (this operator reads none) ENDPOINT, MAX and ENDPOINT ID are
    // empty cells, which split_whitespace skips.
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(&row[..4], ["gpu", "11", "1/2", "Synced"]);
    assert_eq!(&row[row.len() - 2..], ["5s", "false"]);
    let out = kubectl(&["get", "vast", "-n", &h.ns.name, "-o", "name"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "workergroup.vast.ai/gpu"
    );
    h.stop().await;
}

#[tokio::test]
async fn changes_give_status_and_exactly_one_event_each() {
    let h = Harness::start("changes").await;
    h.vast.state.put_group(
        12,
        KEY,
        Shape::Object,
        vec![worker_json(1, "loading", None)],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(12)).await;
    h.wait_for("g", "first sync", |wg| ready_is(wg, "True", "Synced"))
        .await;

    // A state change.
    h.vast
        .state
        .upsert_worker(12, 1, json!({"status": "idle", "url": url(1)}));
    h.wait_for("g", "1 idle", |wg| {
        worker_states(wg) == [(1, "idle".to_string())]
    })
    .await;
    // An addition and a removal in one poll.
    h.vast
        .state
        .set_workers(12, vec![worker_json(2, "creating", None)]);
    let wg = h
        .wait_for("g", "1 gone, 2 added", |wg| {
            worker_states(wg) == [(2, "creating".to_string())]
        })
        .await;
    assert_eq!(wg.status.as_ref().map(|s| s.ready_workers), Some(0));

    let events = eventually(
        "three WorkersChanged events",
        Duration::from_secs(10),
        || async {
            let ev = h.events("g").await;
            let changed: Vec<_> = ev.into_iter().filter(|e| e.1 == "WorkersChanged").collect();
            (changed.len() >= 3).then_some(changed)
        },
    )
    .await;
    let notes: Vec<(&str, i32)> = events.iter().map(|e| (e.2.as_str(), e.3)).collect();
    assert_eq!(
        notes,
        [
            ("+1 (ids 1)", 1),
            ("~1 (1: loading->idle)", 1),
            ("+1 (ids 2) -1 (ids 1)", 1)
        ],
        "every change gets its own event with a true note"
    );
    assert!(events.iter().all(|e| e.0 == "Normal"));
    h.stop().await;
}

#[tokio::test]
async fn every_response_shape_and_odd_fields() {
    let h = Harness::start("shapes").await;
    h.secret("vast", "api-key", KEY).await;
    let odd = json!({"id": 5.0, "status": "model_loading", "created_at": "2024-05-01T10:00:00",
                     "cur_load": "1.5", "reqs_working": 2.0, "brand_new_field": [1, 2]});
    h.vast
        .state
        .put_group(13, KEY, Shape::Array, vec![odd.clone()]);
    h.apply_group("arr", spec(13)).await;
    let wg = h
        .wait_for("arr", "array shape", |wg| ready_is(wg, "True", "Synced"))
        .await;
    let w = &wg.status.as_ref().expect("status").workers[0];
    assert_eq!(
        (w.id, w.status.as_str(), w.ready),
        (5, "model_loading", false)
    );
    assert_eq!(
        w.created_at.map(|t| t.to_string()).as_deref(),
        Some("2024-05-01T10:00:00Z")
    );
    assert_eq!((w.cur_load, w.reqs_working), (Some(1.5), Some(2)));

    h.vast.state.put_group(
        14,
        KEY,
        Shape::Object,
        vec![json!({"id": 6, "status": "running"})],
    );
    h.apply_group("obj", spec(14)).await;
    let wg = h
        .wait_for("obj", "object shape", |wg| ready_is(wg, "True", "Synced"))
        .await;
    assert_eq!(wg.status.as_ref().map(|s| s.ready_workers), Some(1));

    // error_msg with 200 that is neither auth nor not-found: transient.
    h.vast.state.put_group(15, KEY, Shape::Array, vec![]);
    h.vast.state.set_fault(
        15,
        Some(Fault {
            body: FaultBody::ErrorMsg("internal scheduler hiccup".into()),
            ..Default::default()
        }),
    );
    h.apply_group("errmsg", spec(15)).await;
    let wg = h
        .wait_for("errmsg", "PollFailed", |wg| {
            ready_is(wg, "False", "PollFailed")
        })
        .await;
    assert_eq!(cond(&wg, "Stalled").map(|c| c.0), Some("False".into()));
    assert_eq!(cond(&wg, "Reconciling").map(|c| c.0), Some("True".into()));

    // A bare-string error about the key: terminal. This one echoes the key past the
    // point where error texts are cut, which must not leave a piece of it behind.
    h.vast.state.put_group(16, KEY, Shape::Array, vec![]);
    h.vast.state.set_fault(
        16,
        Some(Fault {
            // The key starts 5 bytes before the cut (509 bytes and an ellipsis): a cut
            // before the redaction would leave those 5, too few for a piece to match.
            body: FaultBody::StringError(format!(
                "{} invalid api_key {KEY} for workergroup 16",
                "x".repeat(509 - 5 - " invalid api_key ".len())
            )),
            ..Default::default()
        }),
    );
    h.apply_group("strerr", spec(16)).await;
    let wg = h
        .wait_for("strerr", "AuthenticationFailed", |wg| {
            ready_is(wg, "False", "AuthenticationFailed")
        })
        .await;
    assert_eq!(
        cond(&wg, "Stalled"),
        Some(("True".into(), "AuthenticationFailed".into()))
    );
    let msg = serde_json::to_string(&wg.status).expect("json");
    assert!(
        msg.contains("invalid api_key <reda…"),
        "redacted, then cut: {msg}"
    );
    for piece in KEY.as_bytes().windows(8) {
        let piece = std::str::from_utf8(piece).expect("ascii");
        assert!(!msg.contains(piece), "{piece} of the key in status: {msg}");
    }
    assert!(
        !msg.contains(&format!("api_key {}", &KEY[..4])),
        "the start of the key survived the cut: {msg}"
    );
    let events = h
        .wait_events("strerr", "the AuthenticationFailed event", |ev| {
            ev.iter().any(|e| e.1 == "AuthenticationFailed")
        })
        .await;
    for e in &events {
        assert!(!e.2.contains(&KEY[..8]), "key leaked into an event: {e:?}");
    }
    h.stop().await;
}

#[tokio::test]
async fn transient_errors_keep_workers_and_recover() {
    let h = Harness::start("transient").await;
    h.vast.state.put_group(
        21,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some(&url(1)))],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(21)).await;
    h.wait_for("g", "first sync", |wg| ready_is(wg, "True", "Synced"))
        .await;

    for (fault, expect) in [
        (
            Fault {
                status: Some(503),
                ..Default::default()
            },
            "HTTP 503",
        ),
        (
            Fault {
                status: Some(429),
                ..Default::default()
            },
            "429",
        ),
        (
            Fault {
                body: FaultBody::Malformed,
                ..Default::default()
            },
            "not JSON",
        ),
        (
            Fault {
                body: FaultBody::Huge,
                ..Default::default()
            },
            "larger than 16 MiB",
        ),
        (
            Fault {
                delay_ms: 4000,
                ..Default::default()
            },
            "no answer within",
        ),
    ] {
        h.vast.state.set_fault(21, Some(fault));
        let wg = h
            .wait_for("g", &format!("PollFailed with {expect}"), |wg| {
                ready_is(wg, "False", "PollFailed")
                    && wg
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                        .is_some_and(|c| c.message.contains(expect))
            })
            .await;
        // Last-known workers are kept; not stalled; not reconciling (synced before).
        assert_eq!(worker_states(&wg), [(1, "idle".to_string())]);
        assert_eq!(cond(&wg, "Stalled").map(|c| c.0), Some("False".into()));
        assert_eq!(cond(&wg, "Reconciling").map(|c| c.0), Some("False".into()));
        h.vast.state.set_fault(21, None);
        h.wait_for("g", "recovered", |wg| ready_is(wg, "True", "Synced"))
            .await;
    }
    let events = h
        .wait_events("g", "five SyncRecovered", |ev| {
            ev.iter().filter(|e| e.1 == "SyncRecovered").count() >= 5
        })
        .await;
    let reasons: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "SyncFailed").count(),
        5,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| **r == "SyncRecovered").count(),
        5,
        "{reasons:?}"
    );
    assert!(
        events
            .iter()
            .filter(|e| e.1 == "SyncFailed")
            .all(|e| e.0 == "Warning")
    );
    h.stop().await;
}

#[tokio::test]
async fn secret_late_wrong_key_and_recovery() {
    let h = Harness::start("secret").await;
    h.vast.state.put_group(
        31,
        KEY,
        Shape::Array,
        vec![worker_json(9, "idle", Some(&url(9)))],
    );
    h.apply_group("g", spec(31)).await;
    let wg = h
        .wait_for("g", "SecretNotFound", |wg| {
            ready_is(wg, "False", "SecretNotFound")
        })
        .await;
    assert_eq!(
        cond(&wg, "Stalled"),
        Some(("True".into(), "SecretNotFound".into()))
    );
    assert_eq!(h.vast.state.calls(31), 0, "no Vast call without a key");
    // No hot loop: over a window in which a loop would have read many times, the
    // operator reads the Secret at most once more (the terminal retry is 60 s).
    let secret_reads = || {
        h.requests
            .snapshot()
            .iter()
            .filter(|((verb, res), _)| verb == "GET" && res == "secrets")
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    let reads = secret_reads();
    common::quiet_for(Duration::from_secs(3)).await;
    assert!(
        secret_reads() <= reads + 1,
        "the missing Secret was read in a loop"
    );

    // Wrong key name in the Secret.
    h.secret("vast", "token", KEY).await;
    h.wait_for("g", "SecretKeyMissing", |wg| {
        ready_is(wg, "False", "SecretKeyMissing")
    })
    .await;
    // An empty key (only whitespace).
    h.secret("vast", "api-key", "  ").await;
    let wg = h
        .wait_for("g", "empty key", |wg| {
            wg.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.message.contains("is empty"))
            })
        })
        .await;
    assert!(ready_is(&wg, "False", "SecretKeyMissing"));
    assert_eq!(h.vast.state.calls(31), 0, "no Vast call with an empty key");
    // Wrong key value: Vast refuses it, terminal.
    h.secret("vast", "api-key", "vk1-wrong-55555").await;
    h.wait_for("g", "AuthenticationFailed", |wg| {
        ready_is(wg, "False", "AuthenticationFailed")
    })
    .await;
    let calls = h.vast.state.calls(31);
    // The right key: recovers at once through the Secret watch (terminal retry is 60s).
    h.secret("vast", "api-key", KEY).await;
    let wg = h
        .wait_for("g", "Synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    assert_eq!(cond(&wg, "Stalled").map(|c| c.0), Some("False".into()));
    assert!(h.vast.state.calls(31) > calls);
    let events = h
        .wait_events("g", "the SyncRecovered event", |ev| {
            ev.iter().any(|e| e.1 == "SyncRecovered")
        })
        .await;
    let warnings: Vec<&str> = events
        .iter()
        .filter(|e| e.0 == "Warning")
        .map(|e| e.1.as_str())
        .collect();
    assert_eq!(
        warnings,
        ["SecretNotFound", "SecretKeyMissing", "AuthenticationFailed"]
    );
    for e in &events {
        assert!(
            !e.2.contains(KEY) && !e.2.contains("vk1-wrong-55555"),
            "key leaked into event: {e:?}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn keys_that_cannot_be_keys_are_refused_without_a_call() {
    let h = Harness::start("badkey").await;
    h.vast.state.put_group(
        32,
        KEY,
        Shape::Array,
        vec![worker_json(9, "idle", Some(&url(9)))],
    );
    // A 1 MiB value (a Secret holds at most 1 MiB in all).
    h.secret("vast", "api-key", &format!("vk1-{}", "k".repeat(1_000_000)))
        .await;
    h.apply_group("g", spec(32)).await;
    let wg = h
        .wait_for("g", "SecretKeyInvalid", |wg| {
            ready_is(wg, "False", "SecretKeyInvalid")
        })
        .await;
    let message = cond_message(&wg, "Ready");
    assert!(message.contains("more than 1024"), "{message}");
    // Not visible ASCII.
    h.secret("vast", "api-key", "vk1-bad\u{7}key-0123").await;
    h.wait_for("g", "not ASCII", |wg| {
        ready_is(wg, "False", "SecretKeyInvalid") && cond_message(wg, "Ready").contains("ASCII")
    })
    .await;
    assert_eq!(
        h.vast.state.calls(32),
        0,
        "no Vast call with an unusable key"
    );
    h.secret("vast", "api-key", KEY).await;
    h.wait_for("g", "Synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    h.stop().await;
}

#[tokio::test]
async fn a_secret_the_operator_may_not_read_is_secret_forbidden() {
    let mut h = Harness::start("forbidden").await;
    h.pause().await;
    // An identity that may do everything the operator does here except read Secrets
    // (it may list and watch their metadata).
    let ns = h.ns.name.clone();
    let objects = json!([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "op"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "op"},
         "rules": [
            {"apiGroups": ["vast.ai"], "resources": ["workergroups"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["vast.ai"], "resources": ["workergroups/status"], "verbs": ["get", "patch", "update"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch", "create", "update", "delete"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch", "create", "update", "delete"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "op"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "op"},
         "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": ns}]}
    ]);
    for obj in objects.as_array().into_iter().flatten() {
        let obj: kube::api::DynamicObject = serde_json::from_value(obj.clone()).expect("object");
        let gvk =
            kube::api::GroupVersionKind::try_from(obj.types.clone().expect("types")).expect("gvk");
        let (ar, _) = kube::discovery::pinned_kind(&h.ns.client, &gvk)
            .await
            .expect("kind");
        kube::Api::<kube::api::DynamicObject>::namespaced_with(h.ns.client.clone(), &ns, &ar)
            .create(&kube::api::PostParams::default(), &obj)
            .await
            .expect("create");
    }
    h.vast.state.put_group(
        36,
        KEY,
        Shape::Array,
        vec![worker_json(9, "idle", Some(&url(9)))],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(36)).await;
    let (_, kubeconfig) = common::as_service_account(&h.ns.client, &ns, "op").await;
    let op = common::OperatorProcess::start_with(
        "op",
        &ns,
        &h.vast.url(),
        &["--leader-elect=false"],
        &kubeconfig,
    );
    let wg = h
        .wait_for("g", "SecretForbidden", |wg| {
            ready_is(wg, "False", "SecretForbidden")
        })
        .await;
    assert_eq!(
        cond(&wg, "Stalled"),
        Some(("True".into(), "SecretForbidden".into()))
    );
    assert!(cond_message(&wg, "Ready").contains(&format!("Secret {ns}/vast")));
    assert_eq!(h.vast.state.calls(36), 0, "no Vast call without a key");
    drop(op);
    h.stop().await;
}

#[tokio::test]
async fn a_refused_key_is_read_again_from_its_secret() {
    let h = Harness::start("keyagain").await;
    h.vast.state.put_group(
        35,
        KEY,
        Shape::Array,
        vec![worker_json(9, "idle", Some(&url(9)))],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(35)).await;
    h.wait_for("g", "Synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    let gets = || {
        h.requests
            .snapshot()
            .get(&("GET".to_string(), "secrets".to_string()))
            .copied()
            .unwrap_or(0)
    };
    // Vast stops taking the key; the Secret stays as it is (same resourceVersion).
    h.vast
        .state
        .set_api_key(35, "vk1-workergroup-rotated-98765");
    h.wait_for("g", "AuthenticationFailed", |wg| {
        ready_is(wg, "False", "AuthenticationFailed")
    })
    .await;
    let after_refusal = gets();
    // The next poll (a spec change) reads the Secret again instead of the cached key.
    let mut s = spec(35);
    s["pollInterval"] = json!("6s");
    h.apply_group("g", s).await;
    h.wait_for("g", "generation 2 polled", |wg| {
        wg.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    assert!(
        gets() > after_refusal,
        "the refused key was taken from the cache: {} GETs of Secrets before and after",
        after_refusal
    );
    h.stop().await;
}

#[tokio::test]
async fn a_one_mib_key_is_refused_while_the_process_stays_healthy() {
    let mut h = Harness::start("bigkey").await;
    h.pause().await;
    h.vast.state.put_group(
        34,
        KEY,
        Shape::Array,
        vec![worker_json(9, "idle", Some(&url(9)))],
    );
    h.secret("vast", "api-key", &format!("vk1-{}", "k".repeat(1_000_000)))
        .await;
    h.apply_group("g", spec(34)).await;
    // Retried every 5 s, so the key is read (and refused) again during the window.
    let op = common::OperatorProcess::start(
        "op",
        &h.ns.name,
        &h.vast.url(),
        &["--leader-elect=false", "--terminal-retry", "5s"],
    );
    h.wait_for("g", "SecretKeyInvalid", |wg| {
        ready_is(wg, "False", "SecretKeyInvalid")
    })
    .await;
    // Over two retries of the refused key, /healthz answers every time within 3 s (a
    // runtime stalled by the key would miss its heartbeat and fail it).
    let retries = |text: &str| text.matches("terminal error; retrying slowly").count();
    let before = retries(&op.log_text());
    let healthz = format!("{}/healthz", op.health);
    let start = std::time::Instant::now();
    let mut answered = 0;
    // A probe every 250 ms over 10 s (the pace of the probes, not a synchronisation).
    let mut every = tokio::time::interval(Duration::from_millis(250));
    while start.elapsed() < Duration::from_secs(10) {
        every.tick().await;
        let got = tokio::time::timeout(Duration::from_secs(3), common::http_get(&healthz)).await;
        assert_eq!(
            got.ok().flatten().map(|r| r.0),
            Some(200),
            "/healthz after {:?}",
            start.elapsed()
        );
        answered += 1;
    }
    assert!(answered >= 10);
    assert!(
        retries(&op.log_text()) > before,
        "the key was not read again during the window"
    );
    assert_eq!(h.vast.state.calls(34), 0, "no Vast call with that key");
    drop(op);
    h.stop().await;
}

#[tokio::test]
async fn a_secret_outside_the_selector_is_never_read() {
    let h = Harness::start_with("notselected", |mut c| {
        c.secret_selector = Some("vast.ai/api-key=true".into());
        c
    })
    .await;
    h.vast.state.put_group(
        33,
        KEY,
        Shape::Array,
        vec![worker_json(9, "idle", Some(&url(9)))],
    );
    // A Secret holding the right key, but not labelled for the operator.
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(33)).await;
    let wg = h
        .wait_for("g", "SecretNotSelected", |wg| {
            ready_is(wg, "False", "SecretNotSelected")
        })
        .await;
    assert_eq!(
        cond(&wg, "Stalled"),
        Some(("True".into(), "SecretNotSelected".into()))
    );
    let message = cond_message(&wg, "Ready");
    assert!(message.contains("vast.ai/api-key=true"), "{message}");
    // A Secret that does not exist reads the same: the reason tells nothing of it.
    let mut other = spec(33);
    other["apiKeySecretRef"]["name"] = json!("absent");
    h.apply_group("g2", other).await;
    let g2 = h
        .wait_for("g2", "SecretNotSelected too", |wg| {
            ready_is(wg, "False", "SecretNotSelected")
        })
        .await;
    assert_eq!(
        cond_message(&g2, "Ready").replace("absent", "vast"),
        message,
        "a missing Secret and an unselected one give the same message"
    );
    // Reads of Secrets by verb (a LIST is also the watch's own list).
    let secret_requests = |verb: &str| {
        h.requests
            .snapshot()
            .iter()
            .filter(|((v, res), _)| v == verb && res == "secrets")
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    let lists = secret_requests("LIST");
    // A spec change polls again: still no read.
    let mut s = spec(33);
    s["pollInterval"] = json!("7s");
    h.apply_group("g", s).await;
    h.wait_for("g", "generation 2 seen", |wg| {
        wg.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
            && ready_is(wg, "False", "SecretNotSelected")
    })
    .await;
    assert_eq!(secret_requests("GET"), 0, "no Secret was read");
    assert_eq!(
        secret_requests("LIST"),
        lists,
        "no Secret was listed for a poll"
    );
    assert_eq!(h.vast.state.calls(33), 0, "no Vast call");
    // Labelled, it is read (the watch wakes the WorkerGroup).
    let labelled: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "vast", "labels": {"vast.ai/api-key": "true"}}
    }))
    .expect("secret");
    h.ns.api::<k8s_openapi::api::core::v1::Secret>()
        .patch(
            "vast",
            &kube::api::PatchParams::apply("labels"),
            &kube::api::Patch::Apply(&labelled),
        )
        .await
        .expect("label");
    h.wait_for("g", "Synced once labelled", |wg| {
        ready_is(wg, "True", "Synced")
    })
    .await;
    h.stop().await;
}

fn cond_message(wg: &WorkerGroup, type_: &str) -> String {
    wg.status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn suspend_stops_calls_and_keeps_data() {
    let h = Harness::start("suspend").await;
    h.vast.state.put_group(
        41,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some(&url(1)))],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(41)).await;
    h.wait_for("g", "synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    let mut s = spec(41);
    s["suspend"] = json!(true);
    h.apply_group("g", s).await;
    let wg = h
        .wait_for("g", "Suspended", |wg| ready_is(wg, "True", "Suspended"))
        .await;
    assert_eq!(worker_states(&wg), [(1, "idle".to_string())]);
    let calls = h.vast.state.calls(41);
    h.vast.state.set_workers(41, vec![]);
    // Observe over more than one poll interval that nothing is called.
    common::quiet_for(Duration::from_secs(7)).await;
    assert_eq!(
        h.vast.state.calls(41),
        calls,
        "no Vast calls while suspended"
    );
    h.apply_group("g", spec(41)).await;
    let wg = h
        .wait_for("g", "resumed", |wg| ready_is(wg, "True", "Synced"))
        .await;
    assert!(worker_states(&wg).is_empty());
    h.stop().await;
}

#[tokio::test]
async fn unchanged_polls_write_nothing_and_generation_is_observed() {
    let h = Harness::start("quiet").await;
    h.vast.state.put_group(
        51,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some(&url(1)))],
    );
    h.secret("vast", "api-key", KEY).await;
    let created = h.apply_group("g", spec(51)).await;
    let wg = h
        .wait_for("g", "synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    assert_eq!(
        wg.status.as_ref().and_then(|s| s.observed_generation),
        created.metadata.generation
    );
    let rv = wg.metadata.resource_version.clone();
    let calls = h.vast.state.calls(51);
    // The load moves, nothing else: two more polls, no write.
    h.vast
        .state
        .upsert_worker(51, 1, json!({"cur_load": 3.25, "reqs_working": 4}));
    eventually("two more polls", Duration::from_secs(20), || async {
        (h.vast.state.calls(51) >= calls + 2).then_some(())
    })
    .await;
    let again = h.ns.api::<WorkerGroup>().get("g").await.expect("get");
    assert_eq!(
        again.metadata.resource_version, rv,
        "unchanged polls wrote nothing"
    );

    // Now a long interval: the next poll is an hour away.
    let mut s = spec(51);
    s["pollInterval"] = json!("1h");
    let changed = h.apply_group("g", s).await;
    h.wait_for("g", "1h observed", |wg| {
        wg.status.as_ref().and_then(|s| s.observed_generation) == changed.metadata.generation
    })
    .await;
    // A spec change is observed at once: within seconds, where the normal requeue would
    // take an hour. Without the immediate trigger this times out.
    let mut s = spec(51);
    s["pollInterval"] = json!("2h");
    let changed = h.apply_group("g", s).await;
    let api = h.ns.api::<WorkerGroup>();
    let wg = eventually(
        "the new generation observed at once",
        // Far below the hour the requeue would take, and room for a busy machine.
        Duration::from_secs(30),
        || async {
            let wg = api.get("g").await.ok()?;
            let seen = wg.status.as_ref().and_then(|s| s.observed_generation);
            (seen == changed.metadata.generation).then_some(wg)
        },
    )
    .await;
    assert!(ready_is(&wg, "True", "Synced"));
    assert!(
        wg.status
            .as_ref()
            .expect("status")
            .conditions
            .iter()
            .all(|c| c.observed_generation == changed.metadata.generation)
    );
    h.stop().await;
}

#[tokio::test]
async fn not_found_and_http_401_stall() {
    let h = Harness::start("terminal").await;
    h.secret("vast", "api-key", KEY).await;
    h.vast.state.put_group(71, KEY, Shape::Array, vec![]);
    h.vast.state.set_fault(
        71,
        Some(Fault {
            body: FaultBody::ErrorMsg("workergroup 71 not found".into()),
            ..Default::default()
        }),
    );
    h.apply_group("gone", spec(71)).await;
    let wg = h
        .wait_for("gone", "WorkergroupNotFound", |wg| {
            ready_is(wg, "False", "WorkergroupNotFound")
        })
        .await;
    assert_eq!(
        cond(&wg, "Stalled"),
        Some(("True".into(), "WorkergroupNotFound".into()))
    );
    assert_eq!(cond(&wg, "Reconciling").map(|c| c.0), Some("False".into()));

    h.vast.state.put_group(72, KEY, Shape::Array, vec![]);
    h.vast.state.set_fault(
        72,
        Some(Fault {
            status: Some(401),
            ..Default::default()
        }),
    );
    h.apply_group("denied", spec(72)).await;
    h.wait_for("denied", "AuthenticationFailed", |wg| {
        ready_is(wg, "False", "AuthenticationFailed")
    })
    .await;
    // A terminal error is retried slowly (60s in tests), not with the 200ms backoff:
    // watch a window in which a hot loop would have called several times.
    let calls = h.vast.state.calls(72);
    common::quiet_for(Duration::from_secs(3)).await;
    assert_eq!(
        h.vast.state.calls(72),
        calls,
        "no retry loop on a terminal error"
    );
    h.stop().await;
}

#[tokio::test]
async fn resync_annotation_polls_at_once_and_is_recorded() {
    // Long backoff: only the annotation can cut it short.
    let h = Harness::start_with("resync", |c| vast_operator::controller::Config {
        backoff_base: Duration::from_secs(60),
        backoff_max: Duration::from_secs(120),
        ..c
    })
    .await;
    h.vast.state.put_group(
        81,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some(&url(1)))],
    );
    h.secret("vast", "api-key", KEY).await;
    let mut s = spec(81);
    s["pollInterval"] = json!("1h");
    h.apply_group("g", s).await;
    h.wait_for("g", "synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    let calls = h.vast.state.calls(81);
    h.vast
        .state
        .upsert_worker(81, 2, worker_json(2, "idle", Some(&url(2))));
    // What a script does: annotate, then wait for the value in status.
    annotate_resync(&h, "v1").await;
    let out = kubectl_off_runtime(&[
        "wait",
        "-n",
        &h.ns.name,
        "workergroup/g",
        "--timeout=20s",
        "--for=jsonpath={.status.lastHandledResyncAt}=v1",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wg = h.ns.api::<WorkerGroup>().get("g").await.expect("get");
    assert_eq!(
        h.vast.state.calls(81),
        calls + 1,
        "one poll for the request"
    );
    assert_eq!(
        worker_states(&wg).len(),
        2,
        "the poll's result is in status"
    );

    // A second request right away is answered, but not sooner than 5 s after the poll.
    annotate_resync(&h, "v2").await;
    h.wait_for("g", "v2 handled", |wg| {
        wg.status
            .as_ref()
            .and_then(|s| s.last_handled_resync_at.as_deref())
            == Some("v2")
    })
    .await;
    assert_eq!(h.vast.state.calls(81), calls + 2);
    // The spacing the operator keeps, on the fake's own clock: the two resync polls.
    let times = h.vast.state.call_times(81);
    let gap = times[times.len() - 1] - times[times.len() - 2];
    assert!(
        gap >= Duration::from_millis(4900),
        "the second resync polled {gap:?} after the first: at most one resync poll per 5 s"
    );

    // While backing off after an error, a request polls at once too.
    h.vast.state.set_fault(
        81,
        Some(Fault {
            status: Some(503),
            ..Default::default()
        }),
    );
    annotate_resync(&h, "v3").await;
    h.wait_for("g", "PollFailed", |wg| ready_is(wg, "False", "PollFailed"))
        .await;
    h.vast.state.set_fault(81, None);
    let asked = std::time::Instant::now();
    annotate_resync(&h, "v4").await;
    h.wait_for("g", "v4 handled and synced", |wg| {
        ready_is(wg, "True", "Synced")
            && wg
                .status
                .as_ref()
                .and_then(|s| s.last_handled_resync_at.as_deref())
                == Some("v4")
    })
    .await;
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "the request waited for the 60 s backoff: {:?}",
        asked.elapsed()
    );
    h.stop().await;
}

#[tokio::test]
async fn a_status_write_for_a_deleted_object_never_lands_on_its_successor() {
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    let ns = common::TestNs::new("status-uid").await;
    common::install_workergroup_crd(&ns.client).await;
    let api: Api<WorkerGroup> = ns.api();
    let obj: WorkerGroup = serde_json::from_value(json!({
        "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
        "metadata": {"name": "g"}, "spec": spec(1)
    }))
    .expect("object");
    // The reconcile holds the object as it was read...
    let old = api
        .create(&PostParams::default(), &obj)
        .await
        .expect("create");
    // ...while the WorkerGroup is deleted and created again under the same name.
    api.delete("g", &DeleteParams::default())
        .await
        .expect("delete");
    let new = eventually("recreated", Duration::from_secs(20), || async {
        api.create(&PostParams::default(), &obj).await.ok()
    })
    .await;
    assert_ne!(old.metadata.uid, new.metadata.uid);
    let status = vast_operator::crd::WorkerGroupStatus {
        ready_workers: 7,
        ..Default::default()
    };
    let pp = PatchParams::apply(vast_operator::FIELD_MANAGER).force();
    let body = vast_operator::controller::reconcile::status_body(&old, &status);
    let refused = api.patch_status("g", &pp, &Patch::Apply(&body)).await;
    match refused {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("the stale write was accepted: {other:?}"),
    }
    let now = api.get("g").await.expect("get");
    assert_eq!(
        now.status.map(|s| s.ready_workers).unwrap_or_default(),
        0,
        "nothing landed on the new object"
    );
    // The same write for the object that is there lands.
    let body = vast_operator::controller::reconcile::status_body(&new, &status);
    let written = api
        .patch_status("g", &pp, &Patch::Apply(&body))
        .await
        .expect("write");
    assert_eq!(written.status.map(|s| s.ready_workers), Some(7));
    ns.cleanup().await;
}

#[tokio::test]
async fn a_restart_takes_its_baseline_from_status_even_when_truncated() {
    let small = |c: vast_operator::controller::Config| vast_operator::controller::Config {
        max_workers: 2,
        ..c
    };
    let mut h = Harness::start_with("restart", small).await;
    let five: Vec<serde_json::Value> = (1..=5)
        .map(|n| worker_json(n, "idle", Some(&url(n))))
        .collect();
    h.vast.state.put_group(61, KEY, Shape::Array, five);
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(61)).await;
    let wg = h
        .wait_for("g", "synced, truncated", |wg| {
            ready_is(wg, "True", "Synced")
                && wg
                    .status
                    .as_ref()
                    .is_some_and(|s| s.workers_truncated && s.worker_count == 5)
        })
        .await;
    let rv = wg.metadata.resource_version.clone();
    // The first sync's event follows its status write: counted once it is there.
    let events_before = h
        .wait_events("g", "the first sync's WorkersChanged", |ev| {
            ev.iter().any(|e| e.1 == "WorkersChanged")
        })
        .await
        .len();

    // A restart with nothing changed at Vast: the first poll finds what status says and
    // writes nothing, announces nothing (ids beyond the truncated list are not "new").
    h.restart(small).await;
    let calls = h.vast.state.calls(61);
    eventually("the new process polls", Duration::from_secs(20), || async {
        (h.vast.state.calls(61) > calls).then_some(())
    })
    .await;
    // One more poll, so the first one's outcome has surely been handled.
    let calls = h.vast.state.calls(61);
    eventually("and once more", Duration::from_secs(20), || async {
        (h.vast.state.calls(61) > calls).then_some(())
    })
    .await;
    let again = h.ns.api::<WorkerGroup>().get("g").await.expect("get");
    assert_eq!(
        again.metadata.resource_version, rv,
        "a restart wrote status"
    );
    assert_eq!(
        h.events("g").await.len(),
        events_before,
        "a restart told something"
    );

    // A change while stopped: worker 2 (listed in status) fails. After the restart it is
    // announced as a change, and the untruncated ids are not announced as added.
    h.restart(small).await;
    h.vast
        .state
        .upsert_worker(61, 2, worker_json(2, "error", Some(&url(2))));
    let wg = h
        .wait_for("g", "the change seen", |wg| {
            wg.status.as_ref().is_some_and(|s| s.ready_workers == 4)
        })
        .await;
    assert_eq!(wg.status.as_ref().map(|s| s.worker_count), Some(5));
    let events = h
        .wait_events("g", "the WorkersChanged of the change", |ev| {
            ev.iter()
                .any(|e| e.1 == "WorkersChanged" && e.2 == "~1 (2: idle->error)")
        })
        .await;
    let changed: Vec<_> = events
        .iter()
        .filter(|e| e.1 == "WorkersChanged")
        .map(|e| e.2.clone())
        .collect();
    let last = changed.last().expect("a WorkersChanged event");
    assert_eq!(
        last, "~1 (2: idle->error)",
        "ids beyond the list announced as added?"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_workergroup_id_change_switches_everything_to_the_new_group() {
    let h = Harness::start("idchange").await;
    h.vast.state.put_group(
        62,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some("http://198.51.100.61:4000"))],
    );
    h.vast.state.put_group(
        63,
        KEY,
        Shape::Array,
        vec![
            worker_json(7, "idle", Some("http://198.51.100.67:4000")),
            worker_json(8, "running", Some("http://198.51.100.68:4000")),
        ],
    );
    h.secret("vast", "api-key", KEY).await;
    let mut s = spec(62);
    s["pollInterval"] = json!("1h");
    h.apply_group("g", s).await;
    h.wait_for("g", "group 62", |wg| {
        worker_states(wg) == [(1, "idle".into())]
    })
    .await;
    let mut s = spec(63);
    s["pollInterval"] = json!("1h");
    h.apply_group("g", s).await;
    // At once (the interval is an hour): the other group's workers, its id, its URLs.
    let api = h.ns.api::<WorkerGroup>();
    // 30 s: far below the hour, with room for a busy machine.
    let wg = eventually("group 63 at once", Duration::from_secs(30), || async {
        let wg = api.get("g").await.ok()?;
        (worker_states(&wg) == [(7, "idle".into()), (8, "running".into())]).then_some(wg)
    })
    .await;
    let st = wg.status.as_ref().expect("status");
    assert_eq!(st.workergroup_id, Some(63));
    assert_eq!(st.ready_workers, 2);
    assert!(
        st.ready_urls.iter().all(|u| u.contains("198.51.100.6")),
        "{:?}",
        st.ready_urls
    );
    // The endpoints follow: only the new group's addresses.
    let slices: kube::Api<k8s_openapi::api::discovery::v1::EndpointSlice> = h.ns.api();
    let addrs = eventually("slices follow", Duration::from_secs(10), || async {
        let mut a: Vec<String> = slices
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .flat_map(|s| s.endpoints.into_iter().flat_map(|e| e.addresses))
            .collect();
        a.sort();
        (a == ["198.51.100.67", "198.51.100.68"]).then_some(a)
    })
    .await;
    assert_eq!(addrs.len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn the_heartbeat_refreshes_last_sync_time_without_changes() {
    // A heartbeat well above the 5 s poll interval: polls in between write nothing.
    let heartbeat = Duration::from_secs(12);
    let h = Harness::start_with("heartbeat", |c| vast_operator::controller::Config {
        status_heartbeat: Some(heartbeat),
        ..c
    })
    .await;
    h.vast.state.put_group(
        64,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some(&url(1)))],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(64)).await;
    let first = h
        .wait_for("g", "synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    let t0 = first
        .status
        .as_ref()
        .and_then(|s| s.last_sync_time)
        .expect("lastSyncTime");
    let status_applies = || {
        h.requests
            .snapshot()
            .get(&("APPLY".to_string(), "workergroups/status".to_string()))
            .copied()
            .unwrap_or(0)
    };
    // Events of the first sync may still be on their way; the status write is done.
    let (applies0, calls0) = (status_applies(), h.vast.state.calls(64));
    // Nothing changes at Vast: lastSyncTime moves once the heartbeat is due, and nothing
    // else does.
    let later = h
        .wait_for("g", "a heartbeat", |wg| {
            wg.status
                .as_ref()
                .and_then(|s| s.last_sync_time)
                .is_some_and(|t| t > t0)
        })
        .await;
    let t1 = later
        .status
        .as_ref()
        .and_then(|s| s.last_sync_time)
        .expect("lastSyncTime");
    let gap = t1.duration_since(t0).as_secs_f64();
    assert!(
        gap >= heartbeat.as_secs_f64() - 1.0,
        "refreshed after {gap}s, sooner than the heartbeat"
    );
    let (applies, calls) = (status_applies() - applies0, h.vast.state.calls(64) - calls0);
    assert!(calls >= 2, "polls before the heartbeat: {calls}");
    assert_eq!(
        applies, 1,
        "{calls} polls wrote {applies} times: only the heartbeat may"
    );
    assert_eq!(
        first.status.as_ref().map(|s| s.last_change_time),
        later.status.as_ref().map(|s| s.last_change_time),
        "a heartbeat is not a change"
    );
    let events = h
        .wait_events("g", "the first sync's WorkersChanged", |ev| {
            ev.iter().any(|e| e.1 == "WorkersChanged")
        })
        .await;
    assert_eq!(
        events.iter().filter(|e| e.1 == "WorkersChanged").count(),
        1,
        "{events:?}"
    );
    h.stop().await;
}

/// Whether each endpoint published under Service `svc` is ready (empty: none published).
async fn endpoints_ready(h: &Harness, svc: &str) -> Vec<bool> {
    let api: kube::Api<k8s_openapi::api::discovery::v1::EndpointSlice> = h.ns.api();
    let lp = kube::api::ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
    api.list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .collect()
}

#[tokio::test]
async fn after_a_restart_the_first_polls_are_spread_over_the_interval() {
    // Many WorkerGroups synced in one burst (the first start), then the operator is
    // down for longer than their interval: all of them are due when it comes back.
    const N: i64 = 40;
    let interval = Duration::from_secs(10);
    let mut h = Harness::start("startup-spread").await;
    h.secret("vast", "api-key", KEY).await;
    for id in 1..=N {
        h.vast.state.put_group(
            id,
            KEY,
            Shape::Array,
            vec![worker_json(1, "idle", Some(&url(id)))],
        );
        let mut s = spec(id);
        s["pollInterval"] = json!("10s");
        h.apply_group(&format!("g{id}"), s).await;
    }
    let api = h.ns.api::<WorkerGroup>();
    let synced = eventually("all synced", Duration::from_secs(60), || async {
        let list = api.list(&Default::default()).await.ok()?.items;
        let all = list.len() == N as usize && list.iter().all(|wg| ready_is(wg, "True", "Synced"));
        all.then_some(list)
    })
    .await;
    let last_sync = synced
        .iter()
        .filter_map(|wg| wg.status.as_ref()?.last_sync_time)
        .max()
        .expect("lastSyncTime");
    h.pause().await;
    // Down until every lastSyncTime is older than the interval (no heartbeat in the
    // tests' config: unchanged polls did not move it).
    let due =
        last_sync + jiff::SignedDuration::try_from(interval + Duration::from_secs(1)).expect("d");
    let left = jiff::Timestamp::now().duration_until(due);
    common::quiet_for(Duration::try_from(left).unwrap_or(Duration::ZERO)).await;

    let t0 = std::time::Instant::now();
    h.restart(|c| c).await;
    // The first call of the new term for each WorkerGroup, as the fake saw it.
    let firsts: Vec<Duration> = eventually(
        "every WorkerGroup polled after the restart",
        interval * 2 + Duration::from_secs(10),
        || async {
            (1..=N)
                .map(|id| {
                    let t = h.vast.state.call_times(id).into_iter().find(|t| *t >= t0)?;
                    Some(t - t0)
                })
                .collect::<Option<Vec<_>>>()
        },
    )
    .await;
    // Tenths of the interval (a late call, on a slow machine, counts in the last).
    let mut tenths = [0usize; 10];
    for d in &firsts {
        let i = (d.as_secs_f64() / interval.as_secs_f64() * 10.0) as usize;
        tenths[i.min(9)] += 1;
    }
    // Evenly spread, 40 calls give 4 a tenth; a burst puts them all in one or two.
    let most = *tenths.iter().max().expect("tenths");
    let used = tenths.iter().filter(|n| **n > 0).count();
    assert!(
        most <= N as usize * 2 / 5,
        "{most} of {N} first polls in one tenth of the interval, a burst: {tenths:?} ({firsts:?})"
    );
    assert!(
        used >= 6,
        "first polls in only {used} tenths of the interval: {tenths:?} ({firsts:?})"
    );
    h.stop().await;
}

#[tokio::test]
async fn after_a_restart_staleness_is_judged_from_last_sync_time_and_the_heartbeat() {
    // A window well beyond the time the test waits after the restart: judged from the
    // new process's start, nothing could go stale within it.
    let window = Duration::from_secs(30);
    let heartbeat = Duration::from_secs(60);
    let config = move |c: vast_operator::controller::Config| vast_operator::controller::Config {
        stale_after: Some(window),
        status_heartbeat: Some(heartbeat),
        ..c
    };
    let mut h = Harness::start_with("restart-stale", config).await;
    h.secret("vast", "api-key", KEY).await;
    for (id, name) in [(1, "old"), (2, "recent")] {
        h.vast.state.put_group(
            id,
            KEY,
            Shape::Array,
            vec![worker_json(1, "idle", Some(&url(10 + id)))],
        );
        h.apply_group(name, spec(id)).await;
    }
    for name in ["old", "recent"] {
        h.wait_for(name, "synced and published", |wg| {
            ready_is(wg, "True", "Synced")
                && cond(wg, "DiscoveryReady") == Some(("True".into(), "Published".into()))
        })
        .await;
        eventually("endpoints ready", Duration::from_secs(20), || async {
            (endpoints_ready(&h, name).await == [true]).then_some(())
        })
        .await;
    }
    // The operator is down; meanwhile Vast stops answering. What the cluster holds: one
    // group last synced ten minutes ago, the other 40 s ago, which is beyond the window
    // but within the window plus the heartbeat (lastSyncTime lags the last successful
    // poll by up to the heartbeat).
    h.pause().await;
    for id in [1, 2] {
        h.vast.state.set_fault(
            id,
            Some(Fault {
                status: Some(503),
                ..Default::default()
            }),
        );
    }
    let now = jiff::Timestamp::now().as_second();
    let api = h.ns.api::<WorkerGroup>();
    for (name, ago) in [("old", 600), ("recent", 40)] {
        let at = jiff::Timestamp::from_second(now - ago).expect("timestamp");
        api.patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"lastSyncTime": at.to_string()}})),
        )
        .await
        .expect("patch lastSyncTime");
    }
    let old_sync = jiff::Timestamp::from_second(now - 600).expect("timestamp");

    h.restart(config).await;
    // The first poll of each comes within its 5 s interval (the start-up spread) and
    // fails. The one synced ten minutes ago is stale at once.
    // (Within half the window: judged from the new process's start, it is not.)
    let wg = eventually(
        "old stale after its first failed poll, well within the window",
        window / 2,
        || async {
            api.get("old").await.ok().filter(|wg| {
                ready_is(wg, "False", "PollFailed")
                    && cond(wg, "DiscoveryReady") == Some(("False".into(), "Stale".into()))
            })
        },
    )
    .await;
    let message = wg
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "DiscoveryReady"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("the last successful poll was at {old_sync}")),
        "{message}"
    );
    eventually(
        "old's endpoints not ready",
        Duration::from_secs(10),
        || async { (endpoints_ready(&h, "old").await == [false]).then_some(()) },
    )
    .await;
    // The one synced 40 s ago has failed too, and its endpoints stay ready.
    let wg = h
        .wait_for("recent", "its first failed poll recorded", |wg| {
            ready_is(wg, "False", "PollFailed")
        })
        .await;
    assert_eq!(
        cond(&wg, "DiscoveryReady"),
        Some(("True".into(), "Published".into())),
        "judged stale although within the window plus the heartbeat"
    );
    assert_eq!(endpoints_ready(&h, "recent").await, [true]);
    h.stop().await;
}
