//! When to look at a WorkerGroup again, as functions of explicit inputs: the poll
//! interval, the start-up spread after a restart, resync requests, and the requeue after
//! each outcome. Pure: the random spread is an input `r` in `[0, 1)`, which the caller
//! draws.

use std::time::Duration;

use jiff::Timestamp;
use kube::Resource;

use crate::crd::{POLL_INTERVAL_RANGE, RESYNC_ANNOTATION, WorkerGroup};
use crate::duration;
use crate::reasons::{ConditionStatus, Reason};

/// The interval used where a WorkerGroup's own cannot be read (the CRD's default).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// After a restart, WorkerGroups already overdue (last synced more than an interval
/// ago) are spread over this window, or their interval if shorter: long enough that a
/// fleet's first polls do not come in one burst (the Vast rate limit and the fair queues
/// shape the rest), short enough that data already late is not left up to a whole
/// interval longer (a day, for a 24 h interval).
pub const OVERDUE_SPREAD: Duration = Duration::from_secs(60);

/// `d` spread by +-`fraction`, `r` in `[0, 1)` choosing where.
pub fn jitter(d: Duration, fraction: f64, r: f64) -> Duration {
    d.mul_f64(1.0 - fraction + 2.0 * fraction * r.clamp(0.0, 1.0))
}

/// Delay before retry number `failures` (1-based) of a transient error: `base` doubling
/// up to `max`.
pub fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(20)));
    exp.min(max)
}

/// `spec.pollInterval` read, or why it cannot be used.
pub fn poll_interval(text: &str) -> Result<Duration, String> {
    let interval =
        duration::parse(text).map_err(|_| format!("pollInterval {text:?} is not a duration"))?;
    let (min, max) = POLL_INTERVAL_RANGE;
    if interval < min || interval > max {
        return Err(format!(
            "pollInterval {text:?} is outside {}..{}",
            crate::crd::POLL_INTERVAL_MIN_TEXT,
            crate::crd::POLL_INTERVAL_MAX_TEXT
        ));
    }
    Ok(interval)
}

/// When the WorkerGroup was last synced for its current spec, as its status records:
/// none when it never was, is failing, or is suspended (those go at once after a
/// restart).
pub fn synced_at(wg: &WorkerGroup) -> Option<Timestamp> {
    let status = wg.status.as_ref()?;
    let synced = status.observed_generation == wg.meta().generation
        && !wg.spec.suspend
        && status.conditions.iter().any(|c| {
            c.type_ == super::conditions::READY
                && c.status == ConditionStatus::True
                && c.reason == Reason::Synced
        });
    status.last_sync_time.filter(|_| synced)
}

/// How long the first reconcile of a term waits before polling, so that a restart does
/// not poll everything at once: an object synced within its interval waits until it is
/// due; one already overdue waits `r` of [`OVERDUE_SPREAD`] (or of its interval, if
/// shorter); one not synced for its spec (`synced_at` none) goes at once.
pub fn start_up_delay(
    synced_at: Option<Timestamp>,
    interval: Duration,
    now: Timestamp,
    r: f64,
) -> Option<Duration> {
    let last = synced_at?;
    let age = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
    match interval.checked_sub(age) {
        Some(left) if !left.is_zero() => Some(left),
        _ => Some(OVERDUE_SPREAD.min(interval).mul_f64(r.clamp(0.0, 1.0))),
    }
}

/// The resync annotation's value, when it asks for a poll not yet answered (the value
/// status records as handled).
pub fn resync_request(wg: &WorkerGroup) -> Option<String> {
    let asked = wg.meta().annotations.as_ref()?.get(RESYNC_ANNOTATION)?;
    let answered = wg
        .status
        .as_ref()
        .and_then(|s| s.last_handled_resync_at.as_ref());
    (answered != Some(asked)).then(|| asked.clone())
}

/// How long a resync must still wait, when the last poll was `since_last_poll` ago and
/// polls for resyncs are at least `min` apart.
pub fn resync_wait(since_last_poll: Option<Duration>, min: Duration) -> Option<Duration> {
    min.checked_sub(since_last_poll?).filter(|d| !d.is_zero())
}

/// What a reconcile's poll came to, as far as scheduling goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Vast answered.
    Synced,
    /// Vast is not called.
    Suspended,
    /// A failure retrying can fix; `rate_limited` when Vast answered 429.
    Transient {
        /// Vast answered 429.
        rate_limited: bool,
    },
    /// A failure retrying cannot fix (a bad key, a missing Secret, an unusable spec).
    Terminal,
}

/// What scheduling needs besides the outcome.
#[derive(Clone, Copy, Debug)]
pub struct Inputs {
    /// The WorkerGroup's interval ([`DEFAULT_INTERVAL`] if unusable).
    pub interval: Duration,
    /// The backoff of this failure (already spread), for a transient error.
    pub backoff: Duration,
    /// `--terminal-retry` (already spread), for a terminal error.
    pub terminal_retry: Duration,
    /// When the data on record goes stale, if it is still fresh.
    pub goes_stale: Option<Duration>,
    /// In `[0, 1)`: where in its band the next poll falls.
    pub r: f64,
}

/// When to look again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// After this long.
    After(Duration),
    /// Only when the object changes.
    OnChange,
}

/// When to look again: `pollInterval` +-10 % after success; the backoff after a transient
/// error, capped at the interval (so a failing WorkerGroup is right again within an
/// interval of the fault clearing); after a 429 the interval plus up to 10 % (Vast sends
/// no Retry-After; the spread keeps objects limited together from retrying together);
/// `--terminal-retry` after a terminal error; nothing while suspended. Data not yet
/// stale is looked at again when it goes stale (but never sooner than the interval after
/// a 429), so that its endpoints go not ready on time.
pub fn next(outcome: Outcome, i: &Inputs) -> Next {
    match outcome {
        Outcome::Synced => Next::After(jitter(i.interval, 0.1, i.r)),
        Outcome::Suspended => i.goes_stale.map_or(Next::OnChange, Next::After),
        Outcome::Transient { rate_limited: true } => {
            Next::After(i.interval + i.interval.mul_f64(i.r.clamp(0.0, 1.0) * 0.1))
        }
        Outcome::Transient {
            rate_limited: false,
        } => {
            let delay = i.backoff.min(i.interval);
            Next::After(i.goes_stale.map_or(delay, |s| delay.min(s)))
        }
        Outcome::Terminal => Next::After(
            i.goes_stale
                .map_or(i.terminal_retry, |s| i.terminal_retry.min(s)),
        ),
    }
}

/// The time `age` before `now`, in whole seconds (what Kubernetes stores).
pub fn as_of(age: Duration, now: Timestamp) -> Timestamp {
    let t = jiff::SignedDuration::try_from(age)
        .ok()
        .and_then(|a| now.checked_sub(a).ok())
        .unwrap_or(now);
    t.round(jiff::Unit::Second).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("time")
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_doubles_and_caps() {
        let (b, m) = (S(5), S(300));
        assert_eq!(backoff(1, b, m), S(5));
        assert_eq!(backoff(2, b, m), S(10));
        assert_eq!(backoff(4, b, m), S(40));
        assert_eq!(backoff(7, b, m), S(300));
        assert_eq!(backoff(u32::MAX, b, m), S(300));
    }

    #[test]
    fn jitter_spans_its_band() {
        assert_eq!(jitter(S(100), 0.1, 0.0), S(90));
        assert_eq!(jitter(S(100), 0.1, 0.5), S(100));
        assert!(jitter(S(100), 0.1, 0.999) > S(109));
        assert_eq!(jitter(S(100), 0.1, 7.0), S(110), "r is clamped");
    }

    #[test]
    fn intervals_are_read_within_their_range() {
        assert_eq!(poll_interval("30s"), Ok(S(30)));
        assert_eq!(poll_interval("5s"), Ok(S(5)));
        assert_eq!(poll_interval("24h"), Ok(S(86_400)));
        assert!(poll_interval("4s").is_err_and(|e| e.contains("outside 5s..24h")));
        assert!(poll_interval("25h").is_err_and(|e| e.contains("outside 5s..24h")));
        assert!(poll_interval("soon").is_err_and(|e| e.contains("not a duration")));
    }

    #[test]
    fn at_start_up_an_object_waits_until_it_is_due() {
        let every = S(600);
        assert_eq!(start_up_delay(Some(t(0)), every, t(100), 0.5), Some(S(500)));
        assert_eq!(
            start_up_delay(None, every, t(100), 0.5),
            None,
            "never synced: at once"
        );
        // A last sync in the future (a clock ahead) waits at most the interval.
        assert_eq!(start_up_delay(Some(t(100)), every, t(0), 0.5), Some(every));
    }

    #[test]
    fn an_overdue_object_is_spread_over_a_bounded_window_not_a_day() {
        let day = S(86_400);
        // Last synced two days ago: at most a minute, not up to another day.
        let d = start_up_delay(Some(t(0)), day, t(2 * 86_400), 0.999).expect("delay");
        assert!(d <= OVERDUE_SPREAD && d > S(59), "{d:?}");
        // An interval shorter than the window bounds it.
        let d = start_up_delay(Some(t(0)), S(10), t(100), 0.999).expect("delay");
        assert!(d <= S(10) && d > S(9), "{d:?}");
    }

    #[test]
    fn a_fleet_of_overdue_objects_is_spread_evenly_over_the_window() {
        // 1,000 objects overdue at a restart, with their spread drawn evenly: no tenth of
        // the window holds more than an eighth of them.
        let mut tenths = [0u32; 10];
        for i in 0..1000 {
            let r = f64::from(i) / 1000.0;
            let d = start_up_delay(Some(t(0)), S(3600), t(7200), r).expect("delay");
            let k = (d.as_secs_f64() / OVERDUE_SPREAD.as_secs_f64() * 10.0) as usize;
            tenths[k.min(9)] += 1;
        }
        assert!(tenths.iter().all(|n| *n <= 125), "{tenths:?}");
    }

    #[test]
    fn each_outcome_has_its_next_look() {
        let i = Inputs {
            interval: S(60),
            backoff: S(5),
            terminal_retry: S(300),
            goes_stale: None,
            r: 0.5,
        };
        assert_eq!(next(Outcome::Synced, &i), Next::After(S(60)));
        assert_eq!(next(Outcome::Suspended, &i), Next::OnChange);
        assert_eq!(
            next(
                Outcome::Suspended,
                &Inputs {
                    goes_stale: Some(S(7)),
                    ..i
                }
            ),
            Next::After(S(7))
        );
        assert_eq!(
            next(
                Outcome::Transient {
                    rate_limited: false
                },
                &i
            ),
            Next::After(S(5))
        );
        assert_eq!(
            next(Outcome::Transient { rate_limited: true }, &i),
            Next::After(S(63))
        );
        assert_eq!(next(Outcome::Terminal, &i), Next::After(S(300)));
        assert_eq!(
            next(
                Outcome::Terminal,
                &Inputs {
                    goes_stale: Some(S(20)),
                    ..i
                }
            ),
            Next::After(S(20))
        );
    }

    #[test]
    fn a_resync_waits_only_for_the_minimum_spacing() {
        assert_eq!(resync_wait(None, S(5)), None);
        assert_eq!(resync_wait(Some(S(2)), S(5)), Some(S(3)));
        assert_eq!(resync_wait(Some(S(5)), S(5)), None);
        assert_eq!(resync_wait(Some(S(9)), S(5)), None);
    }

    fn group(asked: Option<&str>, answered: Option<&str>) -> WorkerGroup {
        let mut wg: WorkerGroup = serde_json::from_value(serde_json::json!({
            "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
            "metadata": {"name": "g"},
            "spec": {"workergroupId": 1, "apiKeySecretRef": {"name": "s"}}
        }))
        .expect("workergroup");
        if let Some(a) = asked {
            wg.meta_mut().annotations =
                Some([(RESYNC_ANNOTATION.to_string(), a.to_string())].into());
        }
        if let Some(a) = answered {
            wg.status = Some(
                serde_json::from_value(serde_json::json!({"lastHandledResyncAt": a}))
                    .expect("status"),
            );
        }
        wg
    }

    /// A WorkerGroup of generation 2 whose status has `conditions`, `observedGeneration`
    /// `observed` and `lastSyncTime` t(0), suspended or not.
    fn synced_group(conditions: serde_json::Value, observed: i64, suspend: bool) -> WorkerGroup {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "vast.ai/v1alpha1", "kind": "WorkerGroup",
            "metadata": {"name": "g", "generation": 2},
            "spec": {"workergroupId": 1, "apiKeySecretRef": {"name": "s"}, "suspend": suspend},
            "status": {"observedGeneration": observed, "lastSyncTime": t(0).to_string(),
                       "conditions": conditions}
        }))
        .expect("workergroup")
    }

    fn cond(type_: &str, status: &str, reason: &str) -> serde_json::Value {
        serde_json::json!([{"type": type_, "status": status, "reason": reason, "message": "",
                            "lastTransitionTime": t(0).to_string()}])
    }

    #[test]
    fn only_a_synced_current_unsuspended_group_counts_as_synced_at_start_up() {
        let ready = cond("Ready", "True", "Synced");
        assert_eq!(
            synced_at(&synced_group(ready.clone(), 2, false)),
            Some(t(0))
        );
        // An older generation, a suspended group, another status, reason or type: not.
        assert_eq!(synced_at(&synced_group(ready.clone(), 1, false)), None);
        assert_eq!(synced_at(&synced_group(ready, 2, true)), None);
        assert_eq!(
            synced_at(&synced_group(cond("Ready", "False", "Synced"), 2, false)),
            None
        );
        assert_eq!(
            synced_at(&synced_group(cond("Ready", "True", "Suspended"), 2, false)),
            None
        );
        assert_eq!(
            synced_at(&synced_group(cond("Stalled", "True", "Synced"), 2, false)),
            None
        );
        let mut no_time = synced_group(cond("Ready", "True", "Synced"), 2, false);
        if let Some(s) = no_time.status.as_mut() {
            s.last_sync_time = None;
        }
        assert_eq!(synced_at(&no_time), None);
    }

    #[test]
    fn due_exactly_now_is_overdue_and_spread() {
        // Synced exactly one interval ago: nothing is left of the interval, so the object
        // is spread like an overdue one, not polled at once with all the others.
        assert_eq!(start_up_delay(Some(t(0)), S(10), t(10), 0.5), Some(S(5)));
    }

    #[test]
    fn as_of_is_whole_seconds_back() {
        let now = Timestamp::from_millisecond(1_800_000_000_400).expect("now");
        assert_eq!(as_of(S(10), now), t(-10));
    }

    proptest! {
        #[test]
        fn a_resync_is_honoured_once(asked in "[a-z0-9]{1,8}", other in "[a-z0-9]{1,8}") {
            prop_assert_eq!(resync_request(&group(Some(&asked), None)), Some(asked.clone()));
            prop_assert_eq!(resync_request(&group(Some(&asked), Some(&asked))), None);
            if other != asked {
                prop_assert_eq!(resync_request(&group(Some(&asked), Some(&other))), Some(asked.clone()));
            }
            prop_assert_eq!(resync_request(&group(None, Some(&other))), None);
        }

        #[test]
        fn never_later_than_the_interval_after_a_transient_error_outside_a_429(
            interval in 5u64..86_400, backoff_s in 0u64..200_000, stale in proptest::option::of(0u64..200_000), r in 0.0f64..1.0,
        ) {
            let i = Inputs { interval: S(interval), backoff: S(backoff_s), terminal_retry: S(300), goes_stale: stale.map(S), r };
            let Next::After(d) = next(Outcome::Transient { rate_limited: false }, &i) else {
                return Err(TestCaseError::fail("no requeue"));
            };
            prop_assert!(d <= S(interval));
            // After a 429: never sooner than the interval, at most 10 % later.
            let Next::After(d) = next(Outcome::Transient { rate_limited: true }, &i) else {
                return Err(TestCaseError::fail("no requeue"));
            };
            prop_assert!(d >= S(interval) && d <= S(interval).mul_f64(1.1));
        }

        #[test]
        fn a_start_up_delay_is_never_beyond_the_interval(
            interval in 5u64..86_400, age in -1000i64..400_000, r in 0.0f64..1.0,
        ) {
            let d = start_up_delay(Some(t(0)), S(interval), t(age), r).expect("synced");
            prop_assert!(d <= S(interval));
            if age >= interval as i64 {
                prop_assert!(d <= OVERDUE_SPREAD);
            }
        }
    }
}
