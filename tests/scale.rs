//! Politeness and restraint at scale, counted at the fake Vast server: coalescing of
//! identical polls, the global rate limit, the 429 spread and the failure threshold.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, eventually, ready_is};
use fake_vast::{Fault, Shape, worker_json};
use serde_json::json;
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-scale-24680";

fn spec(id: i64, interval: &str) -> serde_json::Value {
    json!({"workergroupId": id, "apiKeySecretRef": {"name": "vast"}, "pollInterval": interval})
}

async fn all_synced(h: &Harness, names: &[String]) {
    for name in names {
        h.wait_for(name, "synced", |wg| ready_is(wg, "True", "Synced"))
            .await;
    }
}

/// Calls the fake receives for `id` over `window`, from now: a window in which only
/// what the test allows may happen ([`common::quiet_for`]).
async fn calls_over(h: &Harness, id: i64, window: Duration) -> u64 {
    let before = h.vast.state.calls(id);
    common::quiet_for(window).await;
    h.vast.state.calls(id) - before
}

#[tokio::test]
async fn ten_workergroups_on_one_workergroup_and_key_share_one_call_per_interval() {
    let h = Harness::start("coalesce").await;
    h.vast.state.put_group(
        91,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some("http://198.51.100.1:40001"))],
    );
    h.secret("vast", "api-key", KEY).await;
    let names: Vec<String> = (0..10).map(|i| format!("g{i}")).collect();
    for name in &names {
        h.apply_group(name, spec(91, "5s")).await;
    }
    all_synced(&h, &names).await;
    // Four intervals: about four calls, not forty.
    let calls = calls_over(&h, 91, Duration::from_secs(20)).await;
    assert!(
        (2..=6).contains(&calls),
        "10 WorkerGroups sharing one workergroup and key made {calls} calls in 4 intervals"
    );
    // A change reaches every one of them.
    h.vast.state.upsert_worker(
        91,
        2,
        worker_json(2, "idle", Some("http://198.51.100.2:40002")),
    );
    for name in &names {
        h.wait_for(name, "the change", |wg| {
            wg.status.as_ref().is_some_and(|s| s.ready_workers == 2)
        })
        .await;
    }
    h.stop().await;
}

#[tokio::test]
async fn the_global_rate_limit_queues_calls_and_drops_none() {
    let h = Harness::start_full(
        "ratelimit",
        |c| c,
        |v| v.with_rate_limit(std::num::NonZeroU32::new(1).expect("1")),
    )
    .await;
    h.secret("vast", "api-key", KEY).await;
    let ids: Vec<i64> = (101..107).collect();
    for id in &ids {
        h.vast.state.put_group(*id, KEY, Shape::Array, vec![]);
    }
    let started = Instant::now();
    for id in &ids {
        h.apply_group(&format!("r{id}"), spec(*id, "1h")).await;
    }
    // None is dropped: every one is called.
    let mut times: Vec<Instant> = eventually("a call for each", Duration::from_secs(40), || {
        let times: Option<Vec<Instant>> = ids
            .iter()
            .map(|id| {
                h.vast
                    .state
                    .call_times(*id)
                    .into_iter()
                    .find(|t| *t >= started)
            })
            .collect();
        async move { times }
    })
    .await;
    // At 1 call per second (a burst of one, then one a second), the fake's own clock
    // shows the k-th call about k seconds after the first; at least k - 0.5 allows for
    // a first call that reached the fake late: a slow machine only spreads them more.
    times.sort();
    let offsets: Vec<Duration> = times.iter().map(|t| *t - times[0]).collect();
    for (k, at) in offsets.iter().enumerate().skip(1) {
        assert!(
            *at >= Duration::from_millis(1000 * (k as u64 - 1) + 500),
            "call {k} came {at:?} after the first at 1/s: {offsets:?}"
        );
    }
    // None is dropped: every one syncs.
    let names: Vec<String> = ids.iter().map(|id| format!("r{id}")).collect();
    all_synced(&h, &names).await;
    h.stop().await;
}

#[tokio::test]
async fn a_429_is_not_retried_sooner_than_the_interval() {
    let h = Harness::start("ratelimited").await;
    h.vast.state.put_group(111, KEY, Shape::Array, vec![]);
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(111, "5s")).await;
    h.wait_for("g", "synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    h.vast.state.set_fault(
        111,
        Some(Fault {
            status: Some(429),
            ..Default::default()
        }),
    );
    h.wait_for("g", "rate limited", |wg| {
        ready_is(wg, "False", "PollFailed")
    })
    .await;
    // Backoff would retry after 0.2 s, 0.4 s, ... (test config); a 429 waits 5 to 5.5 s.
    // Measured on the fake's clock: the gaps between the 429 that made it PollFailed
    // and the two tries after it.
    let limited = Instant::now();
    let times = eventually("two tries after the 429", Duration::from_secs(30), || {
        let times: Vec<Instant> = h.vast.state.call_times(111);
        let last_before = times.iter().rposition(|t| *t < limited);
        let from = last_before.unwrap_or(0);
        let times = times[from..].to_vec();
        async move { (times.len() >= 3).then_some(times) }
    })
    .await;
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(4900)),
        "a try sooner than the 5 s interval after a 429: {gaps:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn failures_below_the_threshold_write_nothing() {
    let h = Harness::start_with("threshold", |c| vast_operator::controller::Config {
        failure_threshold: 3,
        ..c
    })
    .await;
    h.vast.state.put_group(
        121,
        KEY,
        Shape::Array,
        vec![worker_json(1, "idle", Some("http://198.51.100.1:40001"))],
    );
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("g", spec(121, "5s")).await;
    let synced = h
        .wait_for("g", "synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    let version = synced.metadata.resource_version.clone();
    // Two failures, then success: below the threshold of 3.
    let calls = h.vast.state.calls(121);
    h.vast.state.set_fault(
        121,
        Some(Fault {
            status: Some(503),
            times: Some(2),
            ..Default::default()
        }),
    );
    eventually(
        "two failures and a success",
        Duration::from_secs(30),
        || async { (h.vast.state.calls(121) >= calls + 3).then_some(()) },
    )
    .await;
    let wg = h
        .wait_for("g", "still synced", |wg| ready_is(wg, "True", "Synced"))
        .await;
    assert_eq!(wg.metadata.resource_version, version, "nothing was written");
    let events = h.events("g").await;
    assert!(
        events.iter().all(|e| e.1 != "SyncFailed"),
        "no SyncFailed below the threshold: {events:?}"
    );
    // A lasting error shows after the third failure.
    h.vast.state.set_fault(
        121,
        Some(Fault {
            status: Some(503),
            ..Default::default()
        }),
    );
    let before = h.vast.state.calls(121);
    h.wait_for("g", "PollFailed", |wg| ready_is(wg, "False", "PollFailed"))
        .await;
    assert!(
        h.vast.state.calls(121) >= before + 3,
        "shown only after 3 failures"
    );
    h.stop().await;
}

#[tokio::test]
async fn retries_after_a_shared_429_are_spread() {
    let h = Harness::start("spread").await;
    h.secret("vast", "api-key", KEY).await;
    let ids: Vec<i64> = (131..147).collect();
    for id in &ids {
        h.vast.state.put_group(*id, KEY, Shape::Array, vec![]);
        h.apply_group(&format!("s{id}"), spec(*id, "5s")).await;
    }
    let names: Vec<String> = ids.iter().map(|id| format!("s{id}")).collect();
    all_synced(&h, &names).await;
    for id in &ids {
        h.vast.state.set_fault(
            *id,
            Some(Fault {
                status: Some(429),
                ..Default::default()
            }),
        );
    }
    let limited = Instant::now();
    // For each workergroup: the gap between its first 429 and the retry after it.
    let gaps = eventually(
        "a retry after a 429 for every one",
        Duration::from_secs(40),
        || {
            let gaps: Option<Vec<Duration>> = ids
                .iter()
                .map(|id| {
                    let times: Vec<Instant> = h
                        .vast
                        .state
                        .call_times(*id)
                        .into_iter()
                        .filter(|t| *t >= limited)
                        .collect();
                    (times.len() >= 2).then(|| times[1] - times[0])
                })
                .collect();
            async move { gaps }
        },
    )
    .await;
    let min = gaps.iter().min().copied().unwrap_or_default();
    let max = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        min >= Duration::from_millis(4900),
        "a retry after {min:?}: sooner than the 5 s interval"
    );
    // Retries land anywhere in interval .. interval + 10 %: 16 of them are not bunched
    // (without the spread they would all come 5 s after their 429).
    assert!(
        max - min >= Duration::from_millis(200),
        "retries bunched within {:?}: {gaps:?}",
        max - min
    );
    assert!(max <= Duration::from_millis(6000), "a retry after {max:?}");
    h.stop().await;
}

/// The operator with one `--concurrency` slot (of each kind), its writes held by `hold`.
async fn one_slot_holding(test: &str, hold: &common::Hold) -> Harness {
    Harness::start_holding(
        test,
        |mut c, _| {
            c.concurrency = 1;
            c
        },
        |v| v,
        hold.clone(),
    )
    .await
}

/// With one `--concurrency` slot and the apiserver holding back the answer to one
/// WorkerGroup's status write, another WorkerGroup's polls go on: a reconcile gives its
/// slot back once its poll has answered, and waits for a write slot of its own only when
/// it has something to write. (When the poll and the writes shared one slot, nothing
/// else was polled until the apiserver answered.)
#[tokio::test]
async fn polls_go_on_while_a_write_waits_for_the_apiserver() {
    let hold = common::Hold::default();
    let h = one_slot_holding("slots-apart", &hold).await;
    let worker = |state: &str| worker_json(1, state, Some("http://203.0.113.61:4000"));
    h.synced_group("writer", 610, KEY, vec![worker("idle")], "5s")
        .await;
    h.synced_group("quiet", 611, KEY, vec![worker("idle")], "5s")
        .await;

    // The writer's next status write is held on its way to the apiserver.
    hold.set_before("/workergroups/writer/status");
    h.vast.state.set_workers(610, vec![worker("loading")]);
    eventually(
        "the writer's status write is held",
        Duration::from_secs(30),
        || async { (hold.held() == 1).then_some(()) },
    )
    .await;

    // Meanwhile the quiet one is polled again and again (every 5 s).
    let before = h.vast.state.calls(611);
    eventually(
        "the quiet WorkerGroup is polled while the write waits",
        Duration::from_secs(30),
        || async { (h.vast.state.calls(611) >= before + 2).then_some(()) },
    )
    .await;
    assert_eq!(hold.held(), 1, "the write is still held");
    let writer =
        h.ns.api::<WorkerGroup>()
            .get("writer")
            .await
            .expect("writer");
    assert!(
        writer
            .status
            .as_ref()
            .is_some_and(|s| s.workers.first().is_some_and(|w| w.status == "idle")),
        "the held write landed before it was let through"
    );

    // Once the apiserver answers, the writer's status has the change.
    hold.release();
    h.wait_for("writer", "the writer's change in its status", |wg| {
        wg.status
            .as_ref()
            .is_some_and(|s| s.workers.first().is_some_and(|w| w.status == "loading"))
    })
    .await;
    let text = h.metrics.encode();
    assert!(
        vast_testkit::metrics::sum(
            &text,
            "vast_operator_queue_wait_seconds_count{queue=\"write\""
        ) >= 1.0,
        "the write slot's wait is measured"
    );
    h.stop().await;
}

/// Discovery writes wait for a write slot too: with one `--concurrency` slot and the
/// apiserver's EndpointSlice writes held back, two WorkerGroups whose workers moved do
/// not both write at once; the second publishes once the first is let through. (Had
/// the pass that finds out whether a plan writes been let write, both would have.)
#[tokio::test]
async fn discovery_writes_wait_for_a_write_slot() {
    let hold = common::Hold::default();
    let h = one_slot_holding("slice-slots", &hold).await;
    let worker = |n: u8| worker_json(1, "idle", Some(&format!("http://203.0.113.{n}:4000")));
    h.synced_group("a", 612, KEY, vec![worker(62)], "5s").await;
    h.synced_group("b", 613, KEY, vec![worker(63)], "5s").await;

    hold.set_before("/endpointslices");
    let (a, b) = (h.vast.state.calls(612), h.vast.state.calls(613));
    h.vast.state.set_workers(612, vec![worker(64)]);
    h.vast.state.set_workers(613, vec![worker(65)]);
    eventually(
        "both polled since the move, one slice write held",
        Duration::from_secs(30),
        || async {
            (h.vast.state.calls(612) > a && h.vast.state.calls(613) > b && hold.held() >= 1)
                .then_some(())
        },
    )
    .await;
    // The other has planned its write by now (a poll is answered in milliseconds): it
    // waits for the slot the held one has.
    common::quiet_for(Duration::from_secs(3)).await;
    assert_eq!(hold.held(), 1, "two reconciles wrote at once");

    hold.release();
    for (name, n) in [("a", 64), ("b", 65)] {
        let url = format!("http://203.0.113.{n}:4000");
        h.wait_for(name, "the moved worker in its status", |wg| {
            wg.status.as_ref().is_some_and(|s| {
                s.workers.first().and_then(|w| w.url.as_deref()) == Some(url.as_str())
            })
        })
        .await;
    }
    h.stop().await;
}

/// A failure the first look finds is written from that look: the write pass does not ask
/// Vast again (a second call at once would find what the first did, or, as here, an
/// answer that hides the failure the plan was made for).
#[tokio::test]
async fn a_failure_is_written_from_the_poll_that_found_it() {
    let h = Harness::start("carried").await;
    let worker = worker_json(1, "idle", Some("http://203.0.113.66:4000"));
    h.synced_group("g", 614, KEY, vec![worker], "5s").await;
    let before = h.vast.state.calls(614);
    // One 503, then answers as before; the failure threshold is 1, so it is shown.
    h.vast.state.set_fault(
        614,
        Some(Fault {
            status: Some(503),
            times: Some(1),
            ..Default::default()
        }),
    );
    h.wait_events("g", "the failure told", |ev| {
        ev.iter().any(|e| e.0 == "Warning" && e.1 == "SyncFailed")
    })
    .await;
    // Then the next poll, on its backoff, finds the workers again.
    h.wait_for("g", "synced again", |wg| ready_is(wg, "True", "Synced"))
        .await;
    assert!(h.vast.state.calls(614) >= before + 2);
    h.stop().await;
}

/// A synced WorkerGroup's workers are held once: once its status lists them, the
/// operator's memory keeps no copy of its own, also across polls that change nothing
/// (`vast_operator_cache_objects{kind="WorkerList"}` counts the copies). A status cut at
/// `--max-workers` does not list them all, so that copy stays.
#[tokio::test]
async fn a_synced_workergroup_s_workers_are_held_once() {
    let workers = || {
        (1..=3)
            .map(|n| {
                worker_json(
                    n,
                    "idle",
                    Some(&format!("http://203.0.113.{}:4000", 70 + n)),
                )
            })
            .collect::<Vec<_>>()
    };
    for (max, held) in [(50, 0.0), (2, 1.0)] {
        let h = Harness::start_with("held-once", |mut c| {
            c.max_workers = max;
            c
        })
        .await;
        h.vast.state.put_group(620, KEY, Shape::Array, workers());
        h.secret("vast", "api-key", KEY).await;
        h.apply_group("g", spec(620, "5s")).await;
        h.wait_for("g", "synced", |wg| {
            ready_is(wg, "True", "Synced")
                && wg
                    .status
                    .as_ref()
                    .is_some_and(|s| s.workers.len() == max.min(3) && s.worker_count == 3)
        })
        .await;
        // Two polls that change nothing: neither brings the copy back, nor takes a
        // write slot (a poll with nothing to write does not wait behind writes).
        let writes = || {
            vast_testkit::metrics::sum(
                &h.metrics.encode(),
                "vast_operator_queue_wait_seconds_count{queue=\"write\"",
            )
        };
        // Counted from the first poll after the sync (a wake-up racing the first write
        // may still take a slot before it).
        let synced = h.vast.state.calls(620);
        eventually("a poll after the sync", Duration::from_secs(30), || async {
            (h.vast.state.calls(620) > synced).then_some(())
        })
        .await;
        let slots = writes();
        assert!(slots >= 1.0, "the first sync took a write slot");
        let before = h.vast.state.calls(620);
        eventually("two more polls", Duration::from_secs(30), || async {
            (h.vast.state.calls(620) >= before + 2).then_some(())
        })
        .await;
        // A poll has answered; what it remembers is in place once it is done.
        eventually(
            "the copies of worker lists counted",
            Duration::from_secs(10),
            || async {
                let text = h.metrics.encode();
                let n = common::metric(&text, r#"vast_operator_cache_objects{kind="WorkerList"}"#);
                (n == Some(held)).then_some(())
            },
        )
        .await;
        assert_eq!(
            writes(),
            slots,
            "a poll with nothing to write took a write slot"
        );
        h.stop().await;
    }
}
