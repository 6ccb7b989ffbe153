//! kstatus-style conditions: `Ready`, `Reconciling`, `Stalled`, `DiscoveryReady` and
//! `SettingsSynced`, each
//! keeping its `lastTransitionTime` unless its status flips.

use jiff::Timestamp;

use crate::crd::Condition;
use crate::reasons::{ConditionStatus, Reason};
use crate::text::cut;

/// Condition type: the status reflects a successful recent poll.
pub const READY: &str = "Ready";
/// Condition type: the current spec has not been synced yet.
pub const RECONCILING: &str = "Reconciling";
/// Condition type: an error that retrying cannot fix.
pub const STALLED: &str = "Stalled";
/// Condition type: the Service and EndpointSlices are published.
pub const DISCOVERY_READY: &str = "DiscoveryReady";
/// Condition type: `status.settings` is what Vast's console listed at the last read.
pub const SETTINGS_SYNCED: &str = "SettingsSynced";

/// Longest condition message the CRD accepts.
const MAX_MESSAGE: usize = 32768;

/// One condition as a plan decides it: status, reason, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// True or False.
    pub status: bool,
    /// The reason.
    pub reason: Reason,
    /// Human-readable details.
    pub message: String,
}

impl Verdict {
    /// A verdict.
    pub fn new(status: bool, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Builds condition `type_` from `verdict`, keeping the previous `lastTransitionTime`
/// when the previous condition of that type had the same status.
pub fn condition(
    type_: &str,
    verdict: Verdict,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Condition {
    let status = ConditionStatus::from_bool(verdict.status).as_str();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time)
        .unwrap_or(now);
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: verdict.reason.as_str().to_string(),
        message: cut(verdict.message, MAX_MESSAGE),
        last_transition_time,
        observed_generation: generation,
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// Whether condition `type_` is present with status True.
pub fn is_true(conds: &[Condition], type_: &str) -> bool {
    find(conds, type_).is_some_and(|c| c.status == ConditionStatus::True)
}

/// Whether condition `type_` is present with status False.
pub fn is_false(conds: &[Condition], type_: &str) -> bool {
    find(conds, type_).is_some_and(|c| c.status == ConditionStatus::False)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_and_false_need_the_condition_with_that_status() {
        let now = Timestamp::from_second(1_800_000_000).expect("ts");
        let conds = [
            condition(
                READY,
                Verdict::new(true, Reason::Synced, ""),
                None,
                &[],
                now,
            ),
            condition(
                STALLED,
                Verdict::new(false, Reason::Synced, ""),
                None,
                &[],
                now,
            ),
        ];
        assert!(is_true(&conds, READY));
        assert!(!is_false(&conds, READY));
        assert!(is_false(&conds, STALLED));
        assert!(!is_true(&conds, STALLED));
        // Absent is neither.
        assert!(!is_true(&conds, RECONCILING));
        assert!(!is_false(&conds, RECONCILING));
    }
}
