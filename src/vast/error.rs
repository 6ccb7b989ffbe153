//! Why a Vast call failed, classified for the conditions, with the key redacted.

use crate::text::cut;

/// Longest text of Vast's kept in an error message.
pub const MAX_ERROR_TEXT: usize = 512;

/// Why a poll failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VastError {
    /// The request did not complete (connection refused, reset, timeout).
    #[error("request to Vast failed: {0}")]
    Transport(String),
    /// HTTP 429.
    #[error("rate limited by Vast (HTTP 429): {0}")]
    RateLimited(String),
    /// HTTP 401 or 403, or an error text about the API key: retrying will not help.
    #[error("Vast refused the API key: {0}")]
    Authentication(String),
    /// Vast says the workergroup does not exist (HTTP 404 or an error text).
    #[error("Vast does not know this workergroup: {0}")]
    NotFound(String),
    /// Any other non-200 status.
    #[error("Vast answered HTTP {status}: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// An `error_msg` or error string that is neither about authentication nor "not found".
    #[error("Vast reported an error: {0}")]
    Remote(String),
    /// The body was not one of the known shapes.
    #[error("unreadable response from Vast: {0}")]
    Malformed(String),
}

impl VastError {
    /// Errors that retrying cannot fix (until the key, the id or Vast's side changes).
    pub fn is_terminal(&self) -> bool {
        matches!(self, VastError::Authentication(_) | VastError::NotFound(_))
    }

    /// The condition and event reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            VastError::Authentication(_) => "AuthenticationFailed",
            VastError::NotFound(_) => "WorkergroupNotFound",
            _ => "PollFailed",
        }
    }

    /// The `outcome` label of `vast_operator_vast_requests_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            VastError::Transport(_) => "transport_error",
            VastError::RateLimited(_) => "rate_limited",
            VastError::Authentication(_) => "auth_failed",
            VastError::NotFound(_) => "not_found",
            VastError::Http { .. } => "http_error",
            VastError::Remote(_) => "remote_error",
            VastError::Malformed(_) => "malformed",
        }
    }

    /// Replaces the key everywhere in the message, then cuts it to [`MAX_ERROR_TEXT`]
    /// bytes: in this order, so that no piece of the key survives a cut.
    pub fn redact(self, secret: &str) -> Self {
        let r = |s: String| {
            let s = if secret.is_empty() {
                s
            } else {
                s.replace(secret, "<redacted>")
            };
            cut(s, MAX_ERROR_TEXT)
        };
        match self {
            VastError::Transport(s) => VastError::Transport(r(s)),
            VastError::RateLimited(s) => VastError::RateLimited(r(s)),
            VastError::Authentication(s) => VastError::Authentication(r(s)),
            VastError::NotFound(s) => VastError::NotFound(r(s)),
            VastError::Http { status, body } => VastError::Http {
                status,
                body: r(body),
            },
            VastError::Remote(s) => VastError::Remote(r(s)),
            VastError::Malformed(s) => VastError::Malformed(r(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vast::{error_from_text, parse_workers};

    #[test]
    fn redacts_the_key() {
        let e = VastError::Authentication("bad api_key s3cr3t-key".into()).redact("s3cr3t-key");
        assert!(!e.to_string().contains("s3cr3t"));
    }

    #[test]
    fn long_errors_are_cut_on_char_boundaries() {
        let text = "é".repeat(600);
        let VastError::Remote(t) = error_from_text(text).redact("") else {
            panic!("expected Remote");
        };
        assert!(t.len() <= MAX_ERROR_TEXT + '…'.len_utf8());
    }

    #[test]
    fn redaction_comes_before_the_cut() {
        let key = "0123456789abcdef0123456789abcdef";
        let text = format!("{} invalid api_key {key}", "x".repeat(MAX_ERROR_TEXT - 20));
        let e = error_from_text(text).redact(key).to_string();
        assert!(!e.contains("0123456789"), "{e}");
        // A one-letter key must not corrupt worker data: bodies are never rewritten.
        let w = parse_workers(br#"[{"id":1,"url":"http://worker.example.com"}]"#).expect("parse");
        assert_eq!(w[0].url.as_deref(), Some("http://worker.example.com"));
    }
}
