//! The operator's one error type (layer 0: every layer may return it).
//!
//! What went wrong is told apart by when it happened, so that a user knows what to do:
//! a setting to fix ([`Error::Config`]), something the process could not get at start-up
//! ([`Error::StartUp`]: a port taken, no Kubernetes configuration, the Lease out of
//! reach), or a running process that had to stop ([`Error::Stopped`]). Vast's errors are
//! [`crate::vast::VastError`] and end up in status rather than here.

/// Every error the operator can meet outside the Vast call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// A setting given to the operator (a flag, a file it names) is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Something the process needs could not be had at start-up.
    #[error("cannot start: {0}")]
    StartUp(String),
    /// The running process had to stop.
    #[error("stopped: {0}")]
    Stopped(String),
}

impl Error {
    /// A short PascalCase category, used as an event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeApiError",
            Error::Config(_) => "InvalidConfig",
            Error::StartUp(_) => "StartUpFailed",
            Error::Stopped(_) => "Stopped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_says_what_failed() {
        let cases = [
            (
                Error::Config("--lease-duration must be at least 15s".into()),
                "invalid configuration: ",
                "InvalidConfig",
            ),
            (
                Error::StartUp("cannot listen on 127.0.0.1:8080: address in use".into()),
                "cannot start: ",
                "StartUpFailed",
            ),
            (
                Error::Stopped("leader election ended unexpectedly".into()),
                "stopped: ",
                "Stopped",
            ),
        ];
        for (e, prefix, category) in cases {
            assert!(e.to_string().starts_with(prefix), "{e}");
            assert_eq!(e.category(), category);
        }
    }
}
