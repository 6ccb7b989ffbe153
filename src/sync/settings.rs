//! The settings of a scope from the console's listings ([`settings_for`]), what changed
//! between two reads ([`changes`]), and how the plan records them ([`SettingsUpdate`]):
//! `status.settings`, the `SettingsSynced` condition and the `SettingsChanged` and
//! `EndpointNotActive` events.

use crate::crd::{Scope, SettingsStatus};
use crate::reasons::Reason;
use crate::vast::{Account, VastError};

/// The endpoint state in which nothing is said.
pub const ACTIVE: &str = "active";

/// What the settings read gave in this reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum SettingsUpdate {
    /// Settings are not read (`--settings-interval 0`): no `status.settings`, no
    /// condition.
    #[default]
    Disabled,
    /// Not read this time (suspended, no key): status keeps what it says.
    Unchanged,
    /// Read: the settings of the scope (boxed: the other variants are small).
    Read(Box<SettingsStatus>),
    /// Could not be read. The last settings stay; the condition turns False only when
    /// `report` (the failure threshold is reached, or retrying cannot help).
    Failed {
        /// `SettingsUnavailable` or `SettingsNotListed`.
        reason: Reason,
        /// Why.
        message: String,
        /// Whether the condition says so now.
        report: bool,
        /// The settings of the last good listing, for a status that has none yet.
        fallback: Option<Box<SettingsStatus>>,
    },
}

/// The settings of `scope` in `account`, or why it is not listed there.
pub fn settings_for(scope: Scope, account: &Account) -> Result<SettingsStatus, String> {
    let endpoint =
        |id: Option<i64>| id.and_then(|id| account.endpoints.iter().find(|e| e.id == id));
    match scope {
        Scope::Workergroup(id) => {
            let g = account.groups.iter().find(|g| g.id == id).ok_or_else(|| {
                format!("workergroup {id} is not among the workergroups the console lists for this API key")
            })?;
            let e = endpoint(g.endpoint_id);
            Ok(SettingsStatus {
                endpoint_id: g.endpoint_id,
                endpoint_name: g
                    .endpoint_name
                    .clone()
                    .or_else(|| e.and_then(|e| e.endpoint_name.clone())),
                endpoint_state: e.and_then(|e| e.endpoint_state.clone()),
                max_workers: e.and_then(|e| e.max_workers),
                cold_workers: e.and_then(|e| e.cold_workers),
                min_load: g.min_load,
                target_util: g.target_util,
                cold_mult: g.cold_mult,
                test_workers: g.test_workers,
                gpu_ram: g.gpu_ram,
                template_hash: g.template_hash.clone(),
                template_id: g.template_id,
                workergroup_ids: Vec::new(),
            })
        }
        Scope::Endpoint(id) => {
            let e = endpoint(Some(id)).ok_or_else(|| {
                format!(
                    "endpoint {id} is not among the endpoints the console lists for this API key"
                )
            })?;
            let groups: Vec<_> = account
                .groups
                .iter()
                .filter(|g| g.endpoint_id == Some(id))
                .collect();
            // A workergroup setting is shown for the endpoint when all its groups agree.
            fn agreed<T: Clone + PartialEq>(values: impl Iterator<Item = Option<T>>) -> Option<T> {
                let mut first: Option<Option<T>> = None;
                for v in values {
                    match &first {
                        None => first = Some(v),
                        Some(f) if *f != v => return None,
                        Some(_) => {}
                    }
                }
                first.flatten()
            }
            let mut ids: Vec<i64> = groups.iter().map(|g| g.id).collect();
            ids.sort_unstable();
            ids.dedup();
            Ok(SettingsStatus {
                endpoint_id: Some(id),
                endpoint_name: e.endpoint_name.clone(),
                endpoint_state: e.endpoint_state.clone(),
                max_workers: e.max_workers,
                cold_workers: e.cold_workers,
                min_load: e.min_load,
                target_util: e.target_util,
                cold_mult: e.cold_mult,
                test_workers: agreed(groups.iter().map(|g| g.test_workers)),
                gpu_ram: agreed(groups.iter().map(|g| g.gpu_ram)),
                template_hash: agreed(groups.iter().map(|g| g.template_hash.clone())),
                template_id: agreed(groups.iter().map(|g| g.template_id)),
                workergroup_ids: ids,
            })
        }
    }
}

/// Judges a settings read for `scope`: the last good `account` listing, the `error` of
/// the last try and the count of consecutive `failures`. A failure is reported once
/// `threshold` are reached (at once when retrying cannot help); below it the last good
/// listing still serves.
pub fn judge(
    scope: Scope,
    account: Option<&Account>,
    error: Option<&VastError>,
    failures: u32,
    threshold: u32,
) -> SettingsUpdate {
    let listed = account.map(|a| settings_for(scope, a));
    if let Some(e) = error
        && (failures >= threshold || e.is_terminal() || account.is_none())
    {
        return SettingsUpdate::Failed {
            reason: Reason::SettingsUnavailable,
            message: format!("the console listing could not be read: {e}"),
            report: failures >= threshold || e.is_terminal(),
            fallback: listed.and_then(Result::ok).map(Box::new),
        };
    }
    match listed {
        Some(Ok(read)) => SettingsUpdate::Read(Box::new(read)),
        Some(Err(message)) => SettingsUpdate::Failed {
            reason: Reason::SettingsNotListed,
            message,
            report: true,
            fallback: None,
        },
        None => SettingsUpdate::Unchanged,
    }
}

/// What changed from `old` to `new`, one `field old -> new` per field, in the order of
/// the status (`-` for a value that is not listed).
pub fn changes(old: &SettingsStatus, new: &SettingsStatus) -> Vec<String> {
    fn show<T: std::fmt::Display>(v: &Option<T>) -> String {
        v.as_ref().map_or_else(|| "-".to_string(), T::to_string)
    }
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name} {a} -> {b}"));
        }
    };
    field("endpointId", show(&old.endpoint_id), show(&new.endpoint_id));
    field(
        "endpointName",
        show(&old.endpoint_name),
        show(&new.endpoint_name),
    );
    field(
        "endpointState",
        show(&old.endpoint_state),
        show(&new.endpoint_state),
    );
    field("maxWorkers", show(&old.max_workers), show(&new.max_workers));
    field(
        "coldWorkers",
        show(&old.cold_workers),
        show(&new.cold_workers),
    );
    field("minLoad", show(&old.min_load), show(&new.min_load));
    field("targetUtil", show(&old.target_util), show(&new.target_util));
    field("coldMult", show(&old.cold_mult), show(&new.cold_mult));
    field(
        "testWorkers",
        show(&old.test_workers),
        show(&new.test_workers),
    );
    field("gpuRam", show(&old.gpu_ram), show(&new.gpu_ram));
    field(
        "templateHash",
        show(&old.template_hash),
        show(&new.template_hash),
    );
    field("templateId", show(&old.template_id), show(&new.template_id));
    let ids = |v: &[i64]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        }
    };
    field(
        "workergroupIds",
        ids(&old.workergroup_ids),
        ids(&new.workergroup_ids),
    );
    out
}

/// The endpoint's state when it is known and not `active`.
pub fn not_active(settings: Option<&SettingsStatus>) -> Option<&str> {
    settings
        .and_then(|s| s.endpoint_state.as_deref())
        .filter(|s| *s != ACTIVE)
}

/// `readySummary`: `ready/all`, and the endpoint's state when it is not active.
pub fn ready_summary(ready: i64, all: i64, settings: Option<&SettingsStatus>) -> String {
    match not_active(settings) {
        Some(state) => format!("{ready}/{all} ({state})"),
        None => format!("{ready}/{all}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vast::console::{EndpointRow, GroupRow};

    fn account() -> Account {
        Account {
            groups: vec![
                GroupRow {
                    id: 7,
                    endpoint_id: Some(3),
                    min_load: Some(5.0),
                    gpu_ram: Some(24.0),
                    template_hash: Some("abc".into()),
                    ..Default::default()
                },
                GroupRow {
                    id: 8,
                    endpoint_id: Some(3),
                    gpu_ram: Some(48.0),
                    template_hash: Some("abc".into()),
                    ..Default::default()
                },
                GroupRow {
                    id: 9,
                    endpoint_id: Some(4),
                    ..Default::default()
                },
            ],
            endpoints: vec![EndpointRow {
                id: 3,
                endpoint_name: Some("llama".into()),
                endpoint_state: Some("active".into()),
                max_workers: Some(20),
                min_load: Some(10.0),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_workergroup_takes_its_own_settings_and_its_endpoints() {
        let s = settings_for(Scope::Workergroup(7), &account()).expect("listed");
        assert_eq!(s.endpoint_name.as_deref(), Some("llama"));
        assert_eq!((s.max_workers, s.min_load), (Some(20), Some(5.0)));
        assert!(s.workergroup_ids.is_empty());
        // Its endpoint not listed: the group's own settings only.
        let s = settings_for(Scope::Workergroup(9), &account()).expect("listed");
        assert_eq!((s.endpoint_id, s.max_workers), (Some(4), None));
        let err = settings_for(Scope::Workergroup(70), &account()).expect_err("not listed");
        assert!(err.contains("workergroup 70"), "{err}");
    }

    #[test]
    fn an_endpoint_lists_its_groups_and_what_they_agree_on() {
        let s = settings_for(Scope::Endpoint(3), &account()).expect("listed");
        assert_eq!(s.workergroup_ids, [7, 8]);
        assert_eq!(s.min_load, Some(10.0), "the endpoint's own");
        assert_eq!(s.template_hash.as_deref(), Some("abc"), "agreed");
        assert_eq!(s.gpu_ram, None, "24 and 48 disagree");
        assert!(settings_for(Scope::Endpoint(4), &account()).is_err());
    }

    #[test]
    fn failures_are_reported_at_the_threshold_or_at_once_when_terminal() {
        let a = account();
        let scope = Scope::Workergroup(7);
        let limited = VastError::RateLimited("threshold=2.0".into());
        assert!(matches!(
            judge(scope, Some(&a), None, 0, 3),
            SettingsUpdate::Read(_)
        ));
        // Below the threshold the last listing serves.
        assert!(matches!(
            judge(scope, Some(&a), Some(&limited), 2, 3),
            SettingsUpdate::Read(_)
        ));
        assert!(matches!(
            judge(scope, None, Some(&limited), 1, 3),
            SettingsUpdate::Failed { report: false, .. }
        ));
        match judge(scope, Some(&a), Some(&limited), 3, 3) {
            SettingsUpdate::Failed {
                reason,
                message,
                report: true,
                fallback,
            } => {
                assert_eq!(reason, Reason::SettingsUnavailable);
                assert!(message.contains("429"), "{message}");
                let last = fallback.expect("the last good listing");
                assert_eq!(last.endpoint_name.as_deref(), Some("llama"));
            }
            other => panic!("{other:?}"),
        }
        let refused = VastError::Authentication("Invalid token.".into());
        assert!(matches!(
            judge(scope, Some(&a), Some(&refused), 1, 3),
            SettingsUpdate::Failed { report: true, .. }
        ));
        assert!(matches!(
            judge(Scope::Workergroup(70), Some(&a), None, 0, 3),
            SettingsUpdate::Failed {
                reason: Reason::SettingsNotListed,
                report: true,
                ..
            }
        ));
        assert_eq!(judge(scope, None, None, 0, 3), SettingsUpdate::Unchanged);
    }

    #[test]
    fn changes_name_each_field() {
        let old = settings_for(Scope::Endpoint(3), &account()).expect("listed");
        let mut new = old.clone();
        new.max_workers = Some(40);
        new.endpoint_state = Some("suspended".into());
        new.workergroup_ids = vec![7];
        assert_eq!(
            changes(&old, &new),
            [
                "endpointState active -> suspended",
                "maxWorkers 20 -> 40",
                "workergroupIds 7,8 -> 7"
            ]
        );
        assert!(changes(&old, &old).is_empty());
        assert_eq!(ready_summary(3, 3, Some(&new)), "3/3 (suspended)");
        assert_eq!(ready_summary(3, 3, Some(&old)), "3/3");
        assert_eq!(ready_summary(0, 1, None), "0/1");
    }
}
