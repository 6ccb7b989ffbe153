//! Settings from Vast's console (`status.settings`, the `SettingsSynced` condition, the
//! `SettingsChanged` and `EndpointNotActive` events, the ENDPOINT and MAX columns), read
//! from the fake's listings, which carry the account's API key in every row as the real
//! service does.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, cond, eventually, group_spec, kubectl, ready_is};
use fake_vast::{Fault, Listing, Shape, worker_json};
use serde_json::json;
use vast_operator::crd::WorkerGroup;

const KEY: &str = "vk1-settings-3f2e1d0c";

/// Workergroup `id` of endpoint `endpoint` (named `name`, at most `max` workers) with two
/// ready workers under [`KEY`], at the fake.
fn put_endpoint_group(h: &Harness, id: i64, endpoint: i64, name: &str, max: i64) {
    h.vast.state.put_group(
        id,
        KEY,
        Shape::Array,
        vec![
            worker_json(1, "idle", Some("http://198.51.100.61:4001")),
            worker_json(2, "idle", Some("http://198.51.100.62:4001")),
        ],
    );
    h.vast.state.set_group_settings(
        id,
        json!({
            "endpoint_id": endpoint, "min_load": 5.0, "target_util": 0.9, "cold_mult": 2.5,
            "test_workers": 3, "gpu_ram": 24.0, "template_hash": "3f5c9e",
            "template_id": 77, "launch_args": "--hf-token hf_launch_secret_3c2b"
        }),
    );
    h.vast.state.put_endpoint(
        endpoint,
        KEY,
        json!({
            "endpoint_name": name, "endpoint_state": "active", "max_workers": max,
            "cold_workers": 1, "min_load": 10.0, "target_util": 0.8, "cold_mult": 2.0
        }),
    );
}

fn settings(wg: &WorkerGroup) -> Option<&vast_operator::crd::SettingsStatus> {
    wg.status.as_ref()?.settings.as_ref()
}

/// Settings appear with their condition and columns, a change is an event naming it,
/// a suspended endpoint shows in readySummary and an event without touching Ready, and
/// neither the key nor an unlisted field (`launch_args`) reaches status, events or
/// metrics.
#[tokio::test]
async fn settings_are_shown_changes_are_told_and_the_key_never_leaves() {
    let h = Harness::start_settings("settings", Duration::from_secs(4), |c| c).await;
    put_endpoint_group(&h, 901, 91, "llama-70b", 20);
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("llm", group_spec(901, "5s")).await;
    let wg = h
        .wait_for("llm", "settings shown", |wg| {
            ready_is(wg, "True", "Synced")
                && settings(wg).is_some_and(|s| s.max_workers == Some(20))
                && cond(wg, "SettingsSynced") == Some(("True".into(), "SettingsRead".into()))
        })
        .await;
    let s = settings(&wg).expect("settings");
    assert_eq!(s.endpoint_name.as_deref(), Some("llama-70b"));
    assert_eq!(s.endpoint_id, Some(91));
    assert_eq!(s.endpoint_state.as_deref(), Some("active"));
    assert_eq!((s.min_load, s.cold_workers), (Some(5.0), Some(1)));
    assert_eq!(s.template_hash.as_deref(), Some("3f5c9e"));
    assert!(
        s.workergroup_ids.is_empty(),
        "a workergroup scope lists none"
    );

    // The columns, as kubectl prints them.
    let out = kubectl(&["get", "workergroups", "-n", &h.ns.name]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert!(
        header.contains(&"ENDPOINT") && header.contains(&"MAX"),
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let at = |col: &str| {
        header
            .iter()
            .position(|c| *c == col)
            .and_then(|i| row.get(i).copied())
    };
    assert_eq!(
        (at("ENDPOINT"), at("MAX")),
        (Some("llama-70b"), Some("20")),
        "{table}"
    );

    // A change at Vast: one event naming it, within an interval or so.
    h.vast
        .state
        .set_endpoint_fields(91, json!({"max_workers": 40}));
    h.wait_events("llm", "SettingsChanged", |evs| {
        evs.iter()
            .any(|(_, r, note, _)| r == "SettingsChanged" && note.contains("maxWorkers 20 -> 40"))
    })
    .await;
    h.wait_for("llm", "maxWorkers 40", |wg| {
        settings(wg).is_some_and(|s| s.max_workers == Some(40))
    })
    .await;
    let metrics = h.metrics.encode();
    let series = format!(
        r#"vast_operator_workergroup_max_workers{{namespace="{}",name="llm"}} 40"#,
        h.ns.name
    );
    assert!(metrics.contains(&series), "{metrics}");

    // Suspended: told, and shown beside the ready count; Ready does not change.
    let ready_since = cond_time(&wg, "Ready");
    h.vast
        .state
        .set_endpoint_fields(91, json!({"endpoint_state": "suspended"}));
    let wg = h
        .wait_for("llm", "suspended shown", |wg| {
            wg.status.as_ref().and_then(|s| s.ready_summary.as_deref()) == Some("2/2 (suspended)")
        })
        .await;
    assert!(ready_is(&wg, "True", "Synced"));
    assert_eq!(
        cond_time(&wg, "Ready"),
        ready_since,
        "Ready did not transition"
    );
    let events = h
        .wait_events("llm", "EndpointNotActive", |evs| {
            evs.iter().any(|(t, r, note, _)| {
                t == "Warning" && r == "EndpointNotActive" && note.contains("suspended")
            })
        })
        .await;

    // Neither the key nor an unlisted field anywhere.
    let status = serde_json::to_string(&wg.status).expect("json");
    let notes: String = events
        .iter()
        .map(|e| format!("{} {}\n", e.1, e.2))
        .collect();
    for (place, text) in [
        ("status", &status),
        ("events", &notes),
        ("metrics", &h.metrics.encode()),
    ] {
        for secret in [KEY, "hf_launch_secret_3c2b", "launch_args", "api_key"] {
            assert!(!text.contains(secret), "{secret} in the {place}: {text}");
        }
    }
    h.stop().await;
}

fn cond_time(wg: &WorkerGroup, type_: &str) -> Option<jiff::Timestamp> {
    wg.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.last_transition_time)
}

/// Ten WorkerGroups of one key make one read of each listing per interval, within
/// Vast's thresholds (no 429 from the fake, which enforces them).
#[tokio::test]
async fn ten_workergroups_of_one_key_share_one_read_per_interval() {
    let interval = Duration::from_secs(5);
    let h = Harness::start_settings("settings-ten", interval, |c| c).await;
    for i in 0..10 {
        put_endpoint_group(&h, 910 + i, 92, "shared", 8);
    }
    h.secret("vast", "api-key", KEY).await;
    let started = Instant::now();
    for i in 0..10 {
        h.apply_group(&format!("wg-{i}"), group_spec(910 + i, "5s"))
            .await;
    }
    for i in 0..10 {
        h.wait_for(&format!("wg-{i}"), "settings shown", |wg| {
            settings(wg).is_some_and(|s| s.max_workers == Some(8))
        })
        .await;
    }
    let reads = |l| h.vast.state.console_calls_for_key(l, KEY);
    let allowed =
        |since: Instant| 1 + (since.elapsed().as_secs_f64() / interval.as_secs_f64()) as u64;
    for l in [Listing::Workergroups, Listing::Endptjobs] {
        assert!(
            (1..=allowed(started)).contains(&reads(l)),
            "{l:?}: {} reads in {:?}",
            reads(l),
            started.elapsed()
        );
    }
    // Three more intervals: still one read per interval for all ten.
    let (before, window) = (reads(Listing::Workergroups), Instant::now());
    common::quiet_for(interval * 3).await;
    let during = reads(Listing::Workergroups) - before;
    assert!(
        during <= allowed(window),
        "{during} reads in {:?} for ten WorkerGroups of one key",
        window.elapsed()
    );
    let metrics = h.metrics.encode();
    assert!(
        !metrics.contains(r#"outcome="rate_limited""#),
        "a threshold was crossed: {metrics}"
    );
    h.stop().await;
}

/// A 429 from the console never touches Ready; after the failure threshold it turns
/// SettingsSynced False with the last settings kept, and a read that works again turns
/// it back. An outage of the other listing does the same.
#[tokio::test]
async fn console_failures_leave_ready_and_the_last_settings_alone() {
    let h = Harness::start_settings("settings-fail", Duration::from_secs(4), |c| {
        vast_operator::controller::Config {
            failure_threshold: 2,
            ..c
        }
    })
    .await;
    put_endpoint_group(&h, 921, 93, "fails", 12);
    h.secret("vast", "api-key", KEY).await;
    h.apply_group("llm", group_spec(921, "5s")).await;
    let wg = h
        .wait_for("llm", "settings shown", |wg| {
            settings(wg).is_some_and(|s| s.max_workers == Some(12))
        })
        .await;
    let ready_since = cond_time(&wg, "Ready");

    // A 429 waits the whole interval (4 s) before the next read, so the poll that plans
    // with one failure can be told apart; a 503 is retried after the backoff (at least
    // 3 s).
    for (listing, status, says, check_first) in [
        (Listing::Workergroups, 429, "429", true),
        (Listing::Endptjobs, 503, "503", false),
    ] {
        let calls = h.vast.state.console_calls(listing);
        h.vast.state.set_console_fault(
            listing,
            Some(Fault {
                status: Some(status),
                ..Default::default()
            }),
        );
        if check_first {
            // The poll after the first failure plans with one failure on record (below
            // the threshold of 2): it starts the second read (due after the 4 s
            // interval) and changes nothing.
            eventually("a second failed read", Duration::from_secs(20), || async {
                (h.vast.state.console_calls(listing) >= calls + 2).then_some(())
            })
            .await;
            common::quiet_for(Duration::from_secs(1)).await;
            let wg = h.ns.api::<WorkerGroup>().get("llm").await.expect("get");
            assert_eq!(
                cond(&wg, "SettingsSynced"),
                Some(("True".into(), "SettingsRead".into())),
                "after one {status}"
            );
        }
        let wg = h
            .wait_for("llm", "SettingsSynced False", |wg| {
                cond(wg, "SettingsSynced") == Some(("False".into(), "SettingsUnavailable".into()))
            })
            .await;
        let message = wg
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "SettingsSynced"))
            .map(|c| c.message.clone())
            .unwrap_or_default();
        assert!(message.contains(says), "{message}");
        assert_eq!(settings(&wg).and_then(|s| s.max_workers), Some(12), "kept");
        assert!(ready_is(&wg, "True", "Synced"), "{:?}", wg.status);
        assert_eq!(cond_time(&wg, "Ready"), ready_since);
        h.vast.state.set_console_fault(listing, None);
        h.wait_for("llm", "SettingsSynced True again", |wg| {
            cond(wg, "SettingsSynced") == Some(("True".into(), "SettingsRead".into()))
        })
        .await;
    }
    let events = h.events("llm").await;
    let warned = events
        .iter()
        .filter(|(t, r, _, _)| t == "Warning" && r == "SettingsUnavailable")
        .count();
    assert_eq!(warned, 2, "one warning per outage: {events:?}");
    h.stop().await;
}
