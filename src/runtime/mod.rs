//! Process-level pieces that know nothing of WorkerGroups: logging ([`telemetry`]),
//! Prometheus metrics ([`metrics`]), the metrics and probe endpoints ([`http`], with
//! [`metrics_auth`] for `--metrics-secure`), leader election ([`leader`]), whether a
//! watch has listed ([`listed`]), and fair sharing of slots and rates between
//! namespaces ([`fair`]).

pub mod failpoints;
pub mod fair;
pub mod http;
pub mod leader;
pub mod listed;
pub mod metrics;
pub mod metrics_auth;
pub mod telemetry;
pub mod watch;
