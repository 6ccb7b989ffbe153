//! vast-operator: mirrors Vast.ai serverless workergroups into `WorkerGroup` resources.
//!
//! Data flows one way: [`vast`] (HTTP, tolerant parsing) -> [`sync`] (pure: diff,
//! conditions, events) -> [`controller`] (status patch, events).

pub mod controller;
pub mod crd;
pub mod discovery;
pub mod duration;
pub mod fake_vast;
pub mod sync;
pub mod vast;

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
    /// A value could not be serialized.
    #[error("serialization error: {0}")]
    Serialization(#[from] serde_json::Error),
}

impl Error {
    /// A short PascalCase category, used as an event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeApiError",
            Error::Config(_) => "InvalidConfig",
            Error::Serialization(_) => "SerializationError",
        }
    }
}

/// Installs the ring rustls provider for the process, once. kube and reqwest are both
/// built without a provider of their own choosing, so this must run before either
/// makes a TLS connection; it is idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
