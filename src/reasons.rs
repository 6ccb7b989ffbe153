//! Every condition and event reason the operator writes, as one closed set with its
//! string form in one place (layer 0: Vast's errors, the key reads, discovery and the
//! pure core all name them). The README's reason tables are checked against it by a
//! test, and code that acts on a reason matches the variant, never its text.

use std::fmt;

/// A condition or event reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Ready: the status reflects a successful recent poll.
    Synced,
    /// Ready: a transient error; the last-known workers stay.
    PollFailed,
    /// Ready: the referenced Secret does not exist.
    SecretNotFound,
    /// Ready: the Secret has no such key.
    SecretKeyMissing,
    /// Ready: the operator may not read the Secret.
    SecretForbidden,
    /// Ready: the key cannot be a key (too long, not visible ASCII).
    SecretKeyInvalid,
    /// Ready: the Secret is outside `--secret-selector`.
    SecretNotSelected,
    /// Ready: Vast refused the key.
    AuthenticationFailed,
    /// Ready: Vast does not know the workergroup.
    WorkergroupNotFound,
    /// Ready: the spec cannot be used.
    InvalidSpec,
    /// Ready (unchanged) and an event: `spec.suspend` is true.
    Suspended,
    /// Reconciling and Stalled, False: a transient error, which retrying may fix.
    Retrying,
    /// Reconciling: the current spec has not been synced yet.
    Progressing,
    /// DiscoveryReady: the Service and EndpointSlices match the workers.
    Published,
    /// DiscoveryReady: an object of that name is not ours.
    DiscoveryConflict,
    /// DiscoveryReady: the apiserver refused a write.
    DiscoveryFailed,
    /// DiscoveryReady: endpoints published not ready, the data being stale.
    Stale,
    /// DiscoveryReady: the Service name is not a DNS-1035 label.
    InvalidServiceName,
    /// Event: the worker set or a state changed.
    WorkersChanged,
    /// Event: polling started failing transiently.
    SyncFailed,
    /// Event: polling works again after an error.
    SyncRecovered,
    /// Event: workers newly refused by the address policy.
    EndpointRefused,
    /// Event: the publishable workers went over `--max-endpoints`.
    TooManyEndpoints,
    /// Event: the apiserver refused the status write.
    StatusUpdateFailed,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 24] = [
        Reason::Synced,
        Reason::PollFailed,
        Reason::SecretNotFound,
        Reason::SecretKeyMissing,
        Reason::SecretForbidden,
        Reason::SecretKeyInvalid,
        Reason::SecretNotSelected,
        Reason::AuthenticationFailed,
        Reason::WorkergroupNotFound,
        Reason::InvalidSpec,
        Reason::Suspended,
        Reason::Retrying,
        Reason::Progressing,
        Reason::Published,
        Reason::DiscoveryConflict,
        Reason::DiscoveryFailed,
        Reason::Stale,
        Reason::InvalidServiceName,
        Reason::WorkersChanged,
        Reason::SyncFailed,
        Reason::SyncRecovered,
        Reason::EndpointRefused,
        Reason::TooManyEndpoints,
        Reason::StatusUpdateFailed,
    ];

    /// The reason as written in conditions and events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Synced => "Synced",
            Reason::PollFailed => "PollFailed",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::SecretKeyMissing => "SecretKeyMissing",
            Reason::SecretForbidden => "SecretForbidden",
            Reason::SecretKeyInvalid => "SecretKeyInvalid",
            Reason::SecretNotSelected => "SecretNotSelected",
            Reason::AuthenticationFailed => "AuthenticationFailed",
            Reason::WorkergroupNotFound => "WorkergroupNotFound",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::Suspended => "Suspended",
            Reason::Retrying => "Retrying",
            Reason::Progressing => "Progressing",
            Reason::Published => "Published",
            Reason::DiscoveryConflict => "DiscoveryConflict",
            Reason::DiscoveryFailed => "DiscoveryFailed",
            Reason::Stale => "Stale",
            Reason::InvalidServiceName => "InvalidServiceName",
            Reason::WorkersChanged => "WorkersChanged",
            Reason::SyncFailed => "SyncFailed",
            Reason::SyncRecovered => "SyncRecovered",
            Reason::EndpointRefused => "EndpointRefused",
            Reason::TooManyEndpoints => "TooManyEndpoints",
            Reason::StatusUpdateFailed => "StatusUpdateFailed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<Reason> for str {
    fn eq(&self, other: &Reason) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Reason> for &str {
    fn eq(&self, other: &Reason) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Reason> for String {
    fn eq(&self, other: &Reason) -> bool {
        self == other.as_str()
    }
}

/// The status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown`.
    Unknown,
}

impl ConditionStatus {
    /// `True` or `False`.
    pub const fn from_bool(b: bool) -> Self {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }

    /// As written in a condition.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl PartialEq<ConditionStatus> for String {
    fn eq(&self, other: &ConditionStatus) -> bool {
        self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reasons the README's two tables (conditions, events) name.
    fn readme_reasons() -> std::collections::BTreeSet<String> {
        let readme = include_str!("../README.md");
        let mut out = std::collections::BTreeSet::new();
        for header in [
            "| condition | status | reason | when |",
            "| type | reason | when |",
        ] {
            let start = readme.find(header).expect("a reason table in the README");
            let column = if header.starts_with("| condition") {
                3
            } else {
                2
            };
            for row in readme[start..]
                .lines()
                .skip(2)
                .take_while(|l| l.starts_with('|'))
            {
                let cell = row.split('|').nth(column).unwrap_or_default();
                for (i, part) in cell.split('`').enumerate() {
                    if i % 2 == 1 {
                        out.insert(part.to_string());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_readme_tables_name_every_reason_and_no_other() {
        let ours: std::collections::BTreeSet<String> =
            Reason::ALL.iter().map(|r| r.as_str().to_string()).collect();
        assert_eq!(ours.len(), Reason::ALL.len(), "a reason twice in ALL");
        let readme = readme_reasons();
        let missing: Vec<_> = ours.difference(&readme).collect();
        let unknown: Vec<_> = readme.difference(&ours).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "README reason tables: missing {missing:?}, not a reason {unknown:?}"
        );
    }

    #[test]
    fn a_reason_is_its_name() {
        for r in Reason::ALL {
            assert_eq!(format!("{r:?}"), r.as_str());
            assert_eq!(r.to_string(), r.as_str());
        }
        let condition_reason: String = serde_json::from_str("\"Stale\"").expect("json");
        assert!(*"Synced" == Reason::Synced && condition_reason == Reason::Stale);
        assert!(Reason::Synced == "Synced" && Reason::Synced != "Stale");
        assert_eq!(ConditionStatus::from_bool(true).as_str(), "True");
        assert_eq!(ConditionStatus::from_bool(false).as_str(), "False");
    }
}
