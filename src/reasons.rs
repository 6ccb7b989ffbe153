//! Every condition and event reason the operator writes, as one closed set with its
//! string form in one place (layer 0: Vast's errors, the key reads, discovery and the
//! pure core all name them). The README's reason tables are checked against it by a
//! test, and code that acts on a reason matches the variant, never its text.

use std::fmt;

/// Where a reason is written: as a condition's reason, as an event's, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only in conditions.
    Condition,
    /// Only in events.
    Event,
    /// In both.
    Both,
}

/// The one list of reasons: each variant with its kind, so that `ALL`, `as_str` and
/// `kind` cannot leave one out.
macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $name:ident: $kind:ident,)*) => {
        /// A condition or event reason.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[doc = $doc])* $name,)*
        }

        impl Reason {
            /// Every reason.
            pub const ALL: &[Reason] = &[$(Reason::$name,)*];

            /// The reason as written in conditions and events.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }

            /// Where it is written.
            pub const fn kind(self) -> Kind {
                match self {
                    $(Reason::$name => Kind::$kind,)*
                }
            }
        }
    };
}

reasons! {
    /// Ready: the status reflects a successful recent poll.
    Synced: Condition,
    /// Ready: a transient error; the last-known workers stay.
    PollFailed: Condition,
    /// Ready and an event: the referenced Secret does not exist.
    SecretNotFound: Both,
    /// Ready and an event: the Secret has no such key.
    SecretKeyMissing: Both,
    /// Ready and an event: the operator may not read the Secret.
    SecretForbidden: Both,
    /// Ready and an event: the key cannot be a key (too long, not visible ASCII).
    SecretKeyInvalid: Both,
    /// Ready and an event: the Secret is outside `--secret-selector`.
    SecretNotSelected: Both,
    /// Ready and an event: Vast refused the key.
    AuthenticationFailed: Both,
    /// Ready and an event: Vast does not know the workergroup.
    WorkergroupNotFound: Both,
    /// Ready and an event: the spec cannot be used.
    InvalidSpec: Both,
    /// Ready (unchanged) and an event: `spec.suspend` is true.
    Suspended: Both,
    /// Reconciling and Stalled, False: a transient error, which retrying may fix.
    Retrying: Condition,
    /// Reconciling: the current spec has not been synced yet.
    Progressing: Condition,
    /// DiscoveryReady: the Service and EndpointSlices match the workers.
    Published: Condition,
    /// DiscoveryReady and an event: an object of that name is not ours.
    DiscoveryConflict: Both,
    /// DiscoveryReady and an event: the apiserver refused a write.
    DiscoveryFailed: Both,
    /// DiscoveryReady and an event: endpoints published not ready, the data being stale.
    Stale: Both,
    /// DiscoveryReady and an event: the Service name is not a DNS-1035 label.
    InvalidServiceName: Both,
    /// SettingsSynced: the settings are what the console listed at the last read.
    SettingsRead: Condition,
    /// SettingsSynced and an event: the console could not be read (after the failure
    /// threshold; a 429 too); the last settings stay.
    SettingsUnavailable: Both,
    /// SettingsSynced and an event: the console does not list the workergroup or
    /// endpoint for this key.
    SettingsNotListed: Both,
    /// Event: the worker set or a state changed.
    WorkersChanged: Event,
    /// Event: a setting changed (each named, `maxWorkers 20 -> 40`).
    SettingsChanged: Event,
    /// Event: the endpoint's state turned to something other than `active`.
    EndpointNotActive: Event,
    /// Event: polling started failing transiently.
    SyncFailed: Event,
    /// Event: polling works again after an error.
    SyncRecovered: Event,
    /// Event: workers newly refused by the address policy.
    EndpointRefused: Event,
    /// Event: the publishable workers went over `--max-endpoints`.
    TooManyEndpoints: Event,
    /// Event: the apiserver refused the status write.
    StatusUpdateFailed: Event,
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
    use std::collections::BTreeSet;

    use super::*;

    /// The reasons a README table names in its reason column (the table under
    /// `header`).
    fn readme_table(header: &str, column: usize) -> BTreeSet<String> {
        let readme = include_str!("../README.md");
        let start = readme
            .find(header)
            .unwrap_or_else(|| panic!("no table {header:?} in the README"));
        let mut out = BTreeSet::new();
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
        assert!(out.len() > 5, "the table {header:?} was not read: {out:?}");
        out
    }

    fn of_kind(kinds: &[Kind]) -> BTreeSet<String> {
        Reason::ALL
            .iter()
            .filter(|r| kinds.contains(&r.kind()))
            .map(|r| r.as_str().to_string())
            .collect()
    }

    #[test]
    fn the_readme_tables_name_every_reason_and_no_other() {
        let conditions = readme_table("| condition | status | reason | when |", 3);
        let events = readme_table("| type | reason | when |", 2);
        assert_eq!(
            conditions,
            of_kind(&[Kind::Condition, Kind::Both]),
            "the README's condition table and the condition reasons differ"
        );
        assert_eq!(
            events,
            of_kind(&[Kind::Event, Kind::Both]),
            "the README's event table and the event reasons differ"
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
