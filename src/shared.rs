//! What every layer shares (layer 0): the field manager of the operator's writes and the
//! process's TLS crypto provider.

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "vast-operator";

/// Installs the ring rustls provider for the process, once. kube and reqwest are both
/// built without a provider of their own choosing, so this must run before either
/// makes a TLS connection; it is idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
