//! Process-level pieces that know nothing of WorkerGroups: logging ([`telemetry`]),
//! Prometheus metrics ([`metrics`]), the metrics and probe endpoints ([`http`], with
//! [`metrics_auth`] for `--metrics-secure`) and
//! leader election ([`leader`]), and whether a watch has listed ([`listed`]).

pub mod http;
pub mod leader;
pub mod listed;
pub mod metrics;
pub mod metrics_auth;
pub mod telemetry;
