//! Process-level pieces that know nothing of WorkerGroups: logging ([`telemetry`]).
//! Metrics, health probes and leader election belong here as well.

pub mod telemetry;
