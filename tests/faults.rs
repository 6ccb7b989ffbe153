//! The fault suite: one test per row of the matrix in `docs/reliability.md`. Every Vast
//! fault must leave the operator running, keep the last-known workers in status, explain
//! itself with a condition and a single Warning event, and be repaired within one poll
//! interval of clearing. Answers that are odd but usable must show as they are.
//!
//! Each test prints a `fault-row` line (recovery time, calls during the fault) that
//! `docs/reliability.md` quotes.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, eventually, ready_is, worker_states};
use fake_vast::{Fault, FaultBody, Shape, worker_json};
use serde_json::json;
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-faults-5f1e2d3c4b";
/// The poll interval of every row.
const INTERVAL: Duration = Duration::from_secs(5);

fn url(n: i64) -> String {
    format!("http://198.51.100.{n}:4000")
}

/// How a fault is made.
enum Inject {
    /// The fake answers with this fault.
    Answer(Fault),
    /// Nothing listens on Vast's port.
    Refused,
    /// Vast's port accepts no connection: its accept queue is full.
    ConnectTimeout,
}

/// A group with two ready workers, synced.
async fn synced_group(test: &str, id: i64) -> Harness {
    let h = Harness::start(test).await;
    let workers = vec![
        worker_json(1, "idle", Some(&url(1))),
        worker_json(2, "running", Some(&url(2))),
    ];
    h.synced_group("g", id, KEY, workers, "5s").await;
    h.wait_for("g", "two ready workers", |wg| {
        wg.status.as_ref().is_some_and(|s| s.ready_workers == 2)
    })
    .await;
    h
}

/// A socket on `port` whose accept queue is full, and the connections that fill it:
/// further connections hang in SYN until the client's connect timeout.
fn black_hole(port: u16) -> (tokio::net::TcpListener, Vec<std::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .expect("bind black hole");
    let listener = socket.listen(0).expect("listen");
    let mut fill = Vec::new();
    for _ in 0..8 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fill.push(s),
            Err(_) => break,
        }
    }
    (listener, fill)
}

/// One failing row: inject, check what shows, clear, check the repair.
async fn failing_row(test: &str, id: i64, inject: Inject, detail: &str) {
    let mut h = synced_group(test, id).await;
    let before = h.vast.state.calls(id);
    let started = Instant::now();
    let mut hole = None;
    match &inject {
        Inject::Answer(f) => h.vast.state.set_fault(id, Some(f.clone())),
        Inject::Refused => h.vast.stop().await,
        Inject::ConnectTimeout => {
            h.vast.stop().await;
            hole = Some(black_hole(h.vast.addr.port()));
        }
    }
    let wg = h
        .wait_for("g", "PollFailed", |wg| ready_is(wg, "False", "PollFailed"))
        .await;
    let status = wg.status.as_ref().expect("status");
    // The last-known workers stay.
    assert_eq!(
        worker_states(&wg),
        [(1, "idle".to_string()), (2, "running".to_string())]
    );
    assert_eq!(status.ready_workers, 2);
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.to_lowercase().contains(detail),
        "the condition does not say {detail:?}: {message}"
    );
    assert!(!message.contains(KEY));
    // Two more failed polls: the first has been handled in full (its events emitted)
    // once the second reaches the fake. Still a single Warning, and the operator runs on.
    let seen = h.vast.state.calls(id);
    if matches!(inject, Inject::Answer(_)) {
        eventually("two more failed polls", Duration::from_secs(30), || async {
            (h.vast.state.calls(id) > seen + 1).then_some(())
        })
        .await;
    }
    let events = h
        .wait_events("g", "a Warning", |ev| ev.iter().any(|e| e.0 == "Warning"))
        .await;
    let warnings: Vec<_> = events.iter().filter(|e| e.0 == "Warning").collect();
    assert_eq!(warnings.len(), 1, "{events:?}");
    assert_eq!(warnings[0].1, "SyncFailed");
    assert_eq!(warnings[0].3, 1, "the Warning was repeated: {events:?}");
    assert!(h.running(), "the operator stopped");

    // The fault clears, and Vast has changed meanwhile: right within one interval.
    match inject {
        Inject::Answer(_) => h.vast.state.set_fault(id, None),
        Inject::Refused => h.vast.resume().await.expect("resume"),
        Inject::ConnectTimeout => {
            drop(hole.take());
            h.vast.resume().await.expect("resume");
        }
    }
    h.vast
        .state
        .upsert_worker(id, 3, worker_json(3, "idle", Some(&url(3))));
    let cleared = Instant::now();
    let api = h.ns.api::<WorkerGroup>();
    eventually(
        "right within one interval of the fault clearing",
        INTERVAL + Duration::from_secs(4),
        || async {
            let wg = api.get("g").await.ok()?;
            (ready_is(&wg, "True", "Synced") && worker_states(&wg).len() == 3).then_some(())
        },
    )
    .await;
    // The operator's part, on the fake's own clock: its next call came within the
    // interval of the clearing (plus the jitter of a requeue, and a call in flight at the
    // clearing that ends in its 3 s timeout).
    let next = h
        .vast
        .state
        .call_times(id)
        .into_iter()
        .find(|t| *t >= cleared)
        .expect("a call after the clearing");
    assert!(
        next - cleared <= INTERVAL + Duration::from_secs(3),
        "the first call after the fault cleared came {:?} later",
        next - cleared
    );
    let calls = h.vast.state.calls(id) - before;
    eprintln!(
        "fault-row {test}: failing for {:.1}s, {calls} calls, right again {:.1}s after clearing; said: {message}",
        cleared.duration_since(started).as_secs_f64(),
        cleared.elapsed().as_secs_f64()
    );
    assert!(h.running());
    h.stop().await;
}

fn answer(f: Fault) -> Inject {
    Inject::Answer(f)
}

fn status(code: u16) -> Inject {
    answer(Fault {
        status: Some(code),
        ..Default::default()
    })
}

fn body(b: FaultBody) -> Inject {
    answer(Fault {
        body: b,
        ..Default::default()
    })
}

#[tokio::test]
async fn vast_500() {
    failing_row("f-500", 201, status(500), "500").await;
}

#[tokio::test]
async fn vast_502() {
    failing_row("f-502", 202, status(502), "502").await;
}

#[tokio::test]
async fn vast_429_without_retry_after() {
    failing_row("f-429", 203, status(429), "too frequent").await;
}

#[tokio::test]
async fn connect_refused() {
    failing_row("f-refused", 204, Inject::Refused, "cannot connect").await;
}

#[tokio::test]
async fn connect_timeout() {
    failing_row("f-connto", 205, Inject::ConnectTimeout, "cannot connect").await;
}

#[tokio::test]
async fn read_timeout() {
    let slow = answer(Fault {
        delay_ms: 10_000,
        ..Default::default()
    });
    failing_row("f-readto", 206, slow, "no answer within").await;
}

#[tokio::test]
async fn reset_mid_body() {
    failing_row("f-reset", 207, body(FaultBody::ResetMidBody), "body").await;
}

#[tokio::test]
async fn body_trickled_slower_than_the_timeout() {
    let trickle = body(FaultBody::Trickle { ms: 100 });
    failing_row("f-trickle", 208, trickle, "no answer within").await;
}

#[tokio::test]
async fn malformed_json() {
    failing_row("f-malformed", 209, body(FaultBody::Malformed), "not json").await;
}

#[tokio::test]
async fn a_20_mib_body_is_refused() {
    failing_row("f-huge", 210, body(FaultBody::Huge), "larger than 16 mib").await;
}

#[tokio::test]
async fn workers_as_an_object() {
    let raw = body(FaultBody::Raw(r#"{"workers": {"1": {"id": 1}}}"#.into()));
    failing_row("f-wobj", 211, raw, "workers is an object").await;
}

#[tokio::test]
async fn a_bare_string_error() {
    let e = body(FaultBody::StringError("internal error, try later".into()));
    failing_row("f-string", 212, e, "internal error").await;
}

#[tokio::test]
async fn an_error_msg_object() {
    let e = body(FaultBody::ErrorMsg("backend unavailable".into()));
    failing_row("f-errmsg", 213, e, "backend unavailable").await;
}

#[tokio::test]
async fn an_error_object() {
    let e = body(FaultBody::Error("backend overloaded".into()));
    failing_row("f-error", 214, e, "backend overloaded").await;
}

#[tokio::test]
async fn a_proxy_html_502_page() {
    let page = answer(Fault {
        status: Some(502),
        body: FaultBody::HtmlPage,
        ..Default::default()
    });
    failing_row("f-html502", 215, page, "502 bad gateway").await;
}

/// The fake checks the key first, as Vast does: a wrong key is refused even while the
/// workergroup's answers fail.
#[tokio::test]
async fn a_wrong_key_is_refused_before_any_fault() {
    let h = Harness::start("f-keyfirst").await;
    h.vast
        .state
        .put_group(216, "vk1-faults-the-real-key", Shape::Array, Vec::new());
    h.vast.state.set_fault(
        216,
        Some(Fault {
            status: Some(503),
            ..Default::default()
        }),
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group(
        "g",
        json!({"workergroupId": 216, "apiKeySecretRef": {"name": "vast"}, "pollInterval": "5s"}),
    )
    .await;
    h.wait_for("g", "AuthenticationFailed, not PollFailed", |wg| {
        ready_is(wg, "False", "AuthenticationFailed")
    })
    .await;
    h.stop().await;
}

/// A usable answer that looks odd: the status shows it as it is, with no Warning.
async fn data_row(test: &str, id: i64, workers: Vec<serde_json::Value>, check: fn(&WorkerGroup)) {
    let h = synced_group(test, id).await;
    h.vast.state.set_workers(id, workers);
    let wg = h
        .wait_for("g", "the new answer shown", |wg| {
            wg.status.as_ref().is_some_and(|s| s.ready_workers != 2)
        })
        .await;
    assert!(ready_is(&wg, "True", "Synced"), "{:?}", wg.status);
    check(&wg);
    // That reconcile is over (its events emitted) once the next poll reaches the fake.
    let seen = h.vast.state.calls(id);
    eventually("the next poll", Duration::from_secs(30), || async {
        (h.vast.state.calls(id) > seen).then_some(())
    })
    .await;
    let events = h.events("g").await;
    assert!(events.iter().all(|e| e.0 != "Warning"), "{events:?}");
    assert!(h.running());
    h.stop().await;
}

#[tokio::test]
async fn an_empty_list() {
    data_row("f-empty", 221, vec![], |wg| {
        assert_eq!(wg.status.as_ref().map(|s| s.worker_count), Some(0));
    })
    .await;
}

#[tokio::test]
async fn unknown_states() {
    let ws = vec![
        worker_json(1, "idle", Some(&url(1))),
        worker_json(2, "hibernating_v2", Some(&url(2))),
    ];
    data_row("f-unknown", 222, ws, |wg| {
        assert_eq!(
            worker_states(wg),
            [(1, "idle".into()), (2, "hibernating_v2".into())]
        );
        assert_eq!(wg.status.as_ref().map(|s| s.ready_workers), Some(1));
    })
    .await;
}

#[tokio::test]
async fn a_missing_url() {
    let ws = vec![
        worker_json(1, "idle", Some(&url(1))),
        worker_json(2, "idle", None),
        worker_json(3, "idle", Some(&url(3))),
    ];
    data_row("f-nourl", 223, ws, |wg| {
        let s = wg.status.as_ref().expect("status");
        assert_eq!(s.ready_workers, 3);
        let d = s.discovery.as_ref().expect("discovery");
        assert_eq!((d.endpoints, d.skipped), (2, 1));
        assert!(d.reason.contains("without URL"), "{}", d.reason);
    })
    .await;
}

#[tokio::test]
async fn ids_as_strings_and_unusable_ids() {
    let ws = vec![
        json!({"id": "1001", "status": "idle", "url": url(1)}),
        json!({"id": "not-a-number", "status": "idle"}),
        json!({"id": 7.0, "status": "loading"}),
    ];
    data_row("f-types", 224, ws, |wg| {
        assert_eq!(
            worker_states(wg),
            [(7, "loading".into()), (1001, "idle".into())]
        );
    })
    .await;
}

#[tokio::test]
async fn a_200_mib_body_is_refused_while_streaming_not_buffered() {
    let ns = common::TestNs::new("f-rss").await;
    common::install_workergroup_crd(&ns.client).await;
    let vast = fake_vast::FakeVast::start(0).await.expect("fake");
    vast.state.put_group(
        231,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some(&url(1)))],
    );
    ns.secret("vast", "api-key", KEY).await;
    let mut op = common::OperatorProcess::start(
        "op",
        &ns.name,
        &vast.url(),
        &["--leader-elect=false", "--failure-threshold", "1"],
    );
    let api = ns.api::<WorkerGroup>();
    ns.apply_group("g", common::group_spec(231, "5s")).await;
    let ready = |reason: &'static str| {
        let api = api.clone();
        move || {
            let api = api.clone();
            async move {
                let wg = api.get("g").await.ok()?;
                ready_is(
                    &wg,
                    if reason == "Synced" { "True" } else { "False" },
                    reason,
                )
                .then_some(())
            }
        }
    };
    eventually("synced", Duration::from_secs(40), ready("Synced")).await;
    let before = vast_testkit::operator::peak_rss_kib(op.child.id());
    vast.state.set_fault(
        231,
        Some(Fault {
            body: FaultBody::HugeMib(200),
            ..Default::default()
        }),
    );
    eventually("refused", Duration::from_secs(40), ready("PollFailed")).await;
    // Two more refused answers, to see the peak does not grow with each.
    let calls = vast.state.calls(231);
    eventually("two more", Duration::from_secs(30), || async {
        (vast.state.calls(231) >= calls + 2).then_some(())
    })
    .await;
    let after = vast_testkit::operator::peak_rss_kib(op.child.id());
    assert!(
        op.child.try_wait().ok().flatten().is_none(),
        "the operator exited"
    );
    eprintln!(
        "fault-row f-rss: peak RSS {} MiB before, {} MiB after three 200 MiB answers",
        before / 1024,
        after / 1024
    );
    assert!(before > 0, "no VmHWM");
    // Buffering one answer would add 200 MiB; the cap is 16 MiB.
    assert!(
        after < before + 64 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    let _ = op.child.kill();
    ns.cleanup().await;
}

/// A failing WorkerGroup is retried at least once per interval however high the backoff
/// maximum: measured from the fake's own call times.
#[tokio::test]
async fn retries_never_wait_longer_than_the_interval() {
    let h = Harness::start_with("f-retrycap", |mut c| {
        c.backoff_base = Duration::from_secs(2);
        c.backoff_max = Duration::from_secs(300);
        c
    })
    .await;
    h.vast.state.put_group(217, KEY, Shape::Array, Vec::new());
    h.vast.state.set_fault(
        217,
        Some(Fault {
            status: Some(500),
            ..Default::default()
        }),
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group(
        "g",
        json!({"workergroupId": 217, "apiKeySecretRef": {"name": "vast"}, "pollInterval": "5s"}),
    )
    .await;
    // Unbounded, the backoff would reach 2, 4, 8, 16 and 32 s by the sixth try.
    eventually("seven tries", Duration::from_secs(60), || async {
        (h.vast.state.calls(217) >= 7).then_some(())
    })
    .await;
    let times = h.vast.state.call_times(217);
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let worst = gaps.iter().max().copied().unwrap_or_default();
    // At most the interval (the cap applies after the jitter), and slack for a busy machine.
    assert!(
        worst <= Duration::from_millis(7500),
        "a retry waited {worst:?} with a 5 s interval: {gaps:?}"
    );
    h.stop().await;
}
