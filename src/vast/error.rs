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

    /// Replaces the key everywhere in the message (also URL-encoded, and any echoed
    /// piece of it of [`MIN_KEY_PIECE`] characters or more), then cuts it to
    /// [`MAX_ERROR_TEXT`] bytes: in this order, so that no piece of the key survives a
    /// cut.
    pub fn redact(self, secret: &str) -> Self {
        let r = |s: String| cut(redact_text(s, secret), MAX_ERROR_TEXT);
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

/// The shortest piece of a key that is redacted when echoed alone (a shorter key is
/// redacted whole).
pub const MIN_KEY_PIECE: usize = 8;

const REDACTED: &str = "<redacted>";

/// `text` with the key, its URL-encoded form and every echoed piece of it of at least
/// [`MIN_KEY_PIECE`] characters replaced.
fn redact_text(text: String, key: &str) -> String {
    if key.is_empty() {
        return text;
    }
    // Only the start can survive the final cut: look no further than that, plus room.
    let text = cut(text, MAX_ERROR_TEXT * 4);
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let text = text.replace(key, REDACTED).replace(&encoded, REDACTED);
    let min = MIN_KEY_PIECE.min(key.len());
    let (t, k) = (text.as_bytes(), key.as_bytes());
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        // The longest piece of the key that starts here.
        let longest = (0..k.len())
            .map(|j| {
                t[i..]
                    .iter()
                    .zip(&k[j..])
                    .take_while(|(a, b)| a == b)
                    .count()
            })
            .max()
            .unwrap_or(0);
        if longest >= min {
            out.extend_from_slice(REDACTED.as_bytes());
            i += longest;
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    // Pieces are cut on bytes of the key: a multi-byte character may have been split.
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vast::{error_from_text, parse_workers};

    #[test]
    fn redacts_encoded_and_partial_echoes() {
        let key = "sk_live/AbCdEf0123+456789=";
        for text in [
            format!("invalid api_key {key}"),
            "invalid api_key sk_live%2FAbCdEf0123%2B456789%3D".to_string(),
            "key starts with sk_live/AbCd... and is wrong".to_string(),
            "wrong key ending in 0123+456789=".to_string(),
        ] {
            let e = VastError::Authentication(text.clone())
                .redact(key)
                .to_string();
            assert!(e.contains(REDACTED), "{text} -> {e}");
            for piece in key.as_bytes().windows(MIN_KEY_PIECE) {
                let piece = std::str::from_utf8(piece).expect("ascii");
                assert!(!e.contains(piece), "{piece} survived in {e}");
            }
        }
        // Text that shares nothing long with the key is left alone.
        let e = VastError::Remote("HTTP 500 at sk_ node".into())
            .redact(key)
            .to_string();
        assert!(e.contains("HTTP 500 at sk_ node"), "{e}");
    }

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
