//! vast-operator: mirrors Vast.ai serverless workergroups into `WorkerGroup` resources.
//!
//! Data flows one way: [`vast`] (HTTP client, tolerant parsing) -> [`sync`] (pure: diff,
//! conditions, the write decision, events) -> [`controller`] (status patch, events) and
//! [`discovery`] (Service and EndpointSlices). [`runtime`] holds the process-level pieces
//! (metrics, health probes, leader election, logging) and [`app`] wires them together.
//!
//! Modules are layered; a module imports only modules of a lower layer (a test checks
//! it, see `docs/architecture.md`):
//!
//! | layer | modules |
//! |---|---|
//! | 0 | [`duration`], [`text`] |
//! | 1 | [`crd`], [`runtime`] |
//! | 2 | [`vast`] |
//! | 3 | [`sync`] (pure: no I/O) |
//! | 4 | [`discovery`] |
//! | 5 | [`controller`] |
//! | 6 | [`app`] |

pub mod app;
pub mod controller;
pub mod crd;
pub mod discovery;
pub mod duration;
pub mod runtime;
pub mod sync;
pub mod text;
pub mod vast;

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "vast-operator";

/// Every error the operator can meet outside the Vast call (whose errors are
/// [`vast::VastError`] and end up in status rather than here).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// Configuration given to the operator is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// A short PascalCase category, used as an event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeApiError",
            Error::Config(_) => "InvalidConfig",
        }
    }
}

/// Installs the ring rustls provider for the process, once. kube and reqwest are both
/// built without a provider of their own choosing, so this must run before either
/// makes a TLS connection; it is idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
