//! The pure core: from the previous status and the outcome of one poll, compute the next
//! status, whether it must be written, and which events to emit. No I/O here (a test
//! checks that this module names no I/O crate).
//!
//! Where things are: what a poll found (`outcome.rs`: [`PollOutcome`]); [`plan`], what it
//! takes ([`Input`]) and gives ([`Plan`]) (`plan.rs`, with its unit tests in
//! `plan_tests.rs` and its properties in `plan_properties.rs`); the
//! pieces it uses, one file each: the diff, the conditions, the events, freshness, the
//! workers, the endpoint address policy, the console settings; and when to look again
//! (`schedule.rs`).
//!
//! [`plan`] reads as its steps: take the baseline from the previous status, compare what
//! a successful poll found, judge the outcome into the kstatus conditions, add the
//! discovery and settings conditions, record the workers, and decide whether anything
//! changed.

pub mod conditions;
pub mod diff;
pub mod endpoints;
pub mod events;
pub mod freshness;
mod outcome;
mod plan;
pub mod schedule;
pub mod settings;
pub mod workers;

pub use conditions::{DISCOVERY_READY, READY, RECONCILING, SETTINGS_SYNCED, STALLED, Verdict};
pub use diff::{ChangeSet, MAX_NOTE, diff};
pub use endpoints::EndpointPolicy;
pub use events::EventSpec;
pub use freshness::{Freshness, Stale, stale_after};
pub use outcome::PollOutcome;
pub use plan::{Discovery, DiscoveryUpdate, Input, Plan, plan, same_content};
pub use settings::{SettingsUpdate, settings_for};
pub use workers::{is_ready_state, to_status_workers};
