//! Whether the workers on record are fresh enough to route traffic to. Vast reassigns
//! machines and ports, so endpoints stay ready only while a recent poll vouches for them:
//! Vast refusing the key or not knowing the workergroup makes them stale at once; a
//! failure streak, a suspend, a Kubernetes-side problem (a Secret deleted and recreated)
//! or a restart after a long pause make them stale once the last successful poll is
//! older than the stale-after window.

use std::time::Duration;

use jiff::Timestamp;

use super::outcome::PollOutcome;
use crate::reasons::Reason;

/// The default stale-after window is this many poll intervals...
pub const STALE_INTERVALS: u32 = 3;
/// ...and never shorter than this.
pub const STALE_FLOOR: Duration = Duration::from_secs(120);

/// The stale-after window of a WorkerGroup: `configured` if given, else three poll
/// intervals and at least two minutes.
pub fn stale_after(configured: Option<Duration>, interval: Duration) -> Duration {
    configured.unwrap_or_else(|| interval.saturating_mul(STALE_INTERVALS).max(STALE_FLOOR))
}

/// The workers on record are stale: endpoints are published not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// When Vast last answered successfully (None: never, as far as anyone recorded).
    pub last_success: Option<Timestamp>,
    /// The reason of the terminal error that made the data stale at once, if that is why.
    pub terminal: Option<Reason>,
}

impl Stale {
    /// The `DiscoveryReady` message. It names only things that stay the same from poll
    /// to poll, so a lasting stale state writes nothing more.
    pub fn message(&self) -> String {
        let since = match self.last_success {
            Some(t) => format!("the last successful poll was at {t}"),
            None => "no poll has succeeded".to_string(),
        };
        match self.terminal {
            Some(reason) => {
                format!("endpoints are published not ready: polling fails with {reason}; {since}")
            }
            None => format!("endpoints are published not ready: {since}"),
        }
    }
}

/// Terminal reasons that mean Vast itself no longer vouches for the workers: stale at
/// once. Other terminal errors (a missing Secret, an unusable spec) say nothing about the
/// workers, which stay ready for the window like after any failure.
pub const STALE_AT_ONCE: [Reason; 2] = [Reason::AuthenticationFailed, Reason::WorkergroupNotFound];

/// How fresh the data of one reconcile is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Vast vouched for the workers in this poll.
    Fresh,
    /// Not confirmed by this poll, but recent enough; stale after this long.
    Until(Duration),
    /// Stale: endpoints go not ready.
    Stale(Stale),
}

impl Freshness {
    /// Judges `outcome` with the last success on record, which may lag the truth by up
    /// to `lag` (status.lastSyncTime is refreshed only every heartbeat when nothing
    /// changes): the window is counted from `last_success + lag`.
    pub fn judge(
        outcome: &PollOutcome,
        last_success: Option<Timestamp>,
        lag: Duration,
        now: Timestamp,
        window: Duration,
    ) -> Self {
        // Never synced: no workers on record, nothing that could take traffic.
        let Some(last) = last_success else {
            return Freshness::Fresh;
        };
        let terminal = match outcome {
            PollOutcome::Synced(_) => return Freshness::Fresh,
            PollOutcome::Terminal { reason, .. } if STALE_AT_ONCE.contains(reason) => Some(*reason),
            PollOutcome::Terminal { .. } | PollOutcome::Suspended | PollOutcome::Transient(_) => {
                None
            }
        };
        let stale = Stale {
            last_success,
            terminal,
        };
        if terminal.is_some() {
            return Freshness::Stale(stale);
        }
        let age = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
        match window.saturating_add(lag).checked_sub(age) {
            Some(left) if !left.is_zero() => Freshness::Until(left),
            _ => Freshness::Stale(stale),
        }
    }

    /// The stale state, if stale.
    pub fn stale(&self) -> Option<&Stale> {
        match self {
            Freshness::Stale(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("timestamp")
    }
    const W: Duration = Duration::from_secs(120);

    #[test]
    fn default_window_is_three_intervals_at_least_two_minutes() {
        assert_eq!(stale_after(None, Duration::from_secs(5)), STALE_FLOOR);
        assert_eq!(
            stale_after(None, Duration::from_secs(60)),
            Duration::from_secs(180)
        );
        assert_eq!(
            stale_after(Some(Duration::from_secs(7)), Duration::from_secs(60)),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn a_successful_poll_is_fresh() {
        let synced = PollOutcome::Synced(vec![]);
        assert_eq!(
            Freshness::judge(&synced, None, Duration::ZERO, t(0), W),
            Freshness::Fresh
        );
    }

    #[test]
    fn failures_and_suspend_go_stale_after_the_window() {
        for outcome in [PollOutcome::Transient("x".into()), PollOutcome::Suspended] {
            assert_eq!(
                Freshness::judge(&outcome, Some(t(0)), Duration::ZERO, t(100), W),
                Freshness::Until(Duration::from_secs(20))
            );
            let stale = Freshness::judge(&outcome, Some(t(0)), Duration::ZERO, t(120), W);
            assert_eq!(
                stale.stale(),
                Some(&Stale {
                    last_success: Some(t(0)),
                    terminal: None
                })
            );
            // Never synced: nothing on record to take traffic, nothing to mark.
            assert_eq!(
                Freshness::judge(&outcome, None, Duration::ZERO, t(0), W),
                Freshness::Fresh
            );
            // A last success known only from status lags by up to the heartbeat.
            assert_eq!(
                Freshness::judge(&outcome, Some(t(0)), Duration::from_secs(600), t(700), W),
                Freshness::Until(Duration::from_secs(20))
            );
        }
    }

    #[test]
    fn a_terminal_error_is_stale_at_once() {
        let outcome = PollOutcome::Terminal {
            reason: Reason::AuthenticationFailed,
            message: "no".into(),
        };
        let f = Freshness::judge(&outcome, Some(t(0)), Duration::ZERO, t(1), W);
        let stale = f.stale().expect("stale");
        assert_eq!(stale.terminal, Some(Reason::AuthenticationFailed));
        assert!(stale.message().contains("AuthenticationFailed"));
        assert!(stale.message().contains(&t(0).to_string()));
        // A Kubernetes-side terminal error says nothing about the workers.
        let secret = PollOutcome::Terminal {
            reason: Reason::SecretNotFound,
            message: "gone".into(),
        };
        assert_eq!(
            Freshness::judge(&secret, Some(t(0)), Duration::ZERO, t(1), W),
            Freshness::Until(Duration::from_secs(119))
        );
    }

    #[test]
    fn the_message_does_not_change_while_stale() {
        let outcome = PollOutcome::Transient("a".into());
        let a = Freshness::judge(&outcome, Some(t(0)), Duration::ZERO, t(500), W);
        let b = Freshness::judge(
            &PollOutcome::Transient("b".into()),
            Some(t(0)),
            Duration::ZERO,
            t(900),
            W,
        );
        assert_eq!(a.stale().map(Stale::message), b.stale().map(Stale::message));
    }
}
