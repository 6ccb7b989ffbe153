//! Why a Vast call failed, classified for the conditions, with the key redacted.

use crate::reasons::Reason;
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
    #[error("Vast does not know this workergroup or endpoint: {0}")]
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
    pub fn reason(&self) -> Reason {
        match self {
            VastError::Authentication(_) => Reason::AuthenticationFailed,
            VastError::NotFound(_) => Reason::WorkergroupNotFound,
            _ => Reason::PollFailed,
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

/// The key as a URL encoder writes it (what a server echoing a query or form shows).
fn url_encoded(key: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(key.len());
    for &b in key {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b),
            _ => out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
    }
    out
}

/// A window of [`MIN_KEY_PIECE`] bytes as one number.
fn window(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |w, &b| (w << 8) | u64::from(b))
}

/// A 16-bit hash of a window, for the prefilter.
fn bucket(w: u64) -> usize {
    (w.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48) as usize
}

/// `text` percent-decoded, with the span of `text` each decoded byte came from.
fn percent_decoded(t: &[u8]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let hex = |b: u8| (b as char).to_digit(16);
    let (mut out, mut spans) = (Vec::with_capacity(t.len()), Vec::with_capacity(t.len()));
    let mut i = 0;
    while i < t.len() {
        if t[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                t.get(i + 1).copied().and_then(hex),
                t.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            spans.push((i, i + 3));
            i += 3;
        } else {
            out.push(t[i]);
            spans.push((i, i + 1));
            i += 1;
        }
    }
    (out, spans)
}

/// `text` with the key, its URL-encoded form and every echoed piece of either of at
/// least [`MIN_KEY_PIECE`] bytes replaced. Linear in the text and the key: every window
/// of [`MIN_KEY_PIECE`] bytes of the text, and of the text percent-decoded, is indexed;
/// the key is scanned once, each of its windows looked up (a bitmap filters nearly all
/// of them before the exact search), and each distinct text window is marked at most
/// once. Where two matching windows overlap they are redacted as one run, even when
/// they come from different places in the key.
fn redact_text(text: String, key: &str) -> String {
    if key.is_empty() {
        return text;
    }
    // Only the start can survive the final cut: look no further than that, plus room.
    let mut text = cut(text, MAX_ERROR_TEXT * 4);
    if key.len() <= text.len() {
        let encoded = url_encoded(key.as_bytes());
        for whole in [key.as_bytes(), &encoded] {
            if let Ok(whole) = std::str::from_utf8(whole) {
                text = text.replace(whole, REDACTED);
            }
        }
    }
    let t = text.as_bytes();
    if key.len() < MIN_KEY_PIECE || t.len() < MIN_KEY_PIECE {
        // A shorter key is redacted whole, above; a shorter text holds no piece.
        return text;
    }
    let (decoded, spans) = percent_decoded(t);
    // The windows of both forms of the text, grouped by value: (window, form, start).
    let mut windows: Vec<(u64, bool, usize)> = Vec::with_capacity(t.len() + decoded.len());
    for (form, bytes) in [(false, t), (true, decoded.as_slice())] {
        if form && decoded.len() == t.len() {
            break; // nothing was encoded
        }
        for (i, w) in bytes.windows(MIN_KEY_PIECE).enumerate() {
            windows.push((window(w), form, i));
        }
    }
    windows.sort_unstable();
    let mut filter = vec![0u64; 1 << 10];
    for (w, _, _) in &windows {
        let b = bucket(*w);
        filter[b >> 6] |= 1 << (b & 63);
    }
    let mut covered = vec![false; t.len()];
    let mut marked = vec![false; windows.len()];
    let k = key.as_bytes();
    let mut w = window(&k[..MIN_KEY_PIECE - 1]);
    let mut n = MIN_KEY_PIECE - 1;
    while n < k.len() {
        w = (w << 8) | u64::from(k[n]);
        n += 1;
        let b = bucket(w);
        if filter[b >> 6] & (1 << (b & 63)) == 0 {
            continue;
        }
        let first = windows.partition_point(|(x, _, _)| *x < w);
        if first == windows.len() || windows[first].0 != w || marked[first] {
            continue;
        }
        marked[first] = true;
        for &(_, form, start) in windows[first..].iter().take_while(|(x, _, _)| *x == w) {
            let (from, to) = if form {
                (spans[start].0, spans[start + MIN_KEY_PIECE - 1].1)
            } else {
                (start, start + MIN_KEY_PIECE)
            };
            covered[from..to].fill(true);
        }
    }
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        if covered[i] {
            out.extend_from_slice(REDACTED.as_bytes());
            while i < t.len() && covered[i] {
                i += 1;
            }
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
    fn a_two_kib_text_with_a_one_mib_key_is_redacted_at_once() {
        // A key of a MiB (a Secret may hold that much) of visible ASCII, no piece of it
        // repeating: the text echoes 300 bytes from its middle, and straddles the cut.
        let key: String = (0u32..1 << 20)
            .map(|i| {
                let x = i.wrapping_mul(2_654_435_761) ^ (i >> 7);
                char::from(b'!' + (x % 94) as u8)
            })
            .collect();
        let piece = &key[500_000..500_300];
        let text = format!(
            "{}{piece}{}",
            "e".repeat(MAX_ERROR_TEXT - 100),
            " trailing".repeat(150)
        );
        assert!(text.len() >= 2048);
        let start = std::time::Instant::now();
        let e = VastError::Authentication(text).redact(&key).to_string();
        let took = start.elapsed();
        for w in piece.as_bytes().windows(MIN_KEY_PIECE) {
            let w = std::str::from_utf8(w).expect("ascii");
            assert!(!e.contains(w), "{w} survived");
        }
        assert!(e.contains(REDACTED), "{e}");
        // The quadratic scan this replaced took seconds here; the bound is loose for a
        // debug build on a busy machine.
        assert!(took < std::time::Duration::from_millis(50), "{took:?}");
    }

    #[test]
    fn pathological_repetition_stays_linear_and_redacts() {
        let key = "a".repeat(4096);
        let text = "a".repeat(2048);
        let e = VastError::Remote(text).redact(&key).to_string();
        assert_eq!(e, format!("Vast reported an error: {REDACTED}"));
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
        // The key straddles the cut (at 509 bytes, before the ellipsis): a cut first
        // would keep its first 5 bytes, fewer than a piece redaction catches.
        let text = format!("{}{key} and more", "x".repeat(MAX_ERROR_TEXT - 8));
        let VastError::Remote(kept) = error_from_text(text).redact(key) else {
            panic!("expected Remote");
        };
        for n in 4..=key.len() {
            assert!(
                !kept.contains(&key[..n]),
                "{} bytes of the key survived: {kept}",
                n
            );
        }
        // A one-letter key must not corrupt worker data: bodies are never rewritten.
        let w = parse_workers(br#"[{"id":1,"url":"http://worker.example.com"}]"#).expect("parse");
        assert_eq!(w[0].url.as_deref(), Some("http://worker.example.com"));
    }

    #[test]
    fn each_error_has_its_reason_and_metric_label() {
        let s = || "x".to_string();
        let all = [
            (VastError::Transport(s()), "PollFailed", "transport_error"),
            (VastError::RateLimited(s()), "PollFailed", "rate_limited"),
            (
                VastError::Authentication(s()),
                "AuthenticationFailed",
                "auth_failed",
            ),
            (VastError::NotFound(s()), "WorkergroupNotFound", "not_found"),
            (
                VastError::Http {
                    status: 502,
                    body: s(),
                },
                "PollFailed",
                "http_error",
            ),
            (VastError::Remote(s()), "PollFailed", "remote_error"),
            (VastError::Malformed(s()), "PollFailed", "malformed"),
        ];
        for (e, reason, label) in all {
            assert_eq!(
                (e.reason().as_str(), e.metric_label()),
                (reason, label),
                "{e:?}"
            );
        }
    }

    #[test]
    fn a_key_shorter_than_a_piece_is_redacted_whole_also_url_encoded() {
        // Six bytes: only the whole key, as it is or as an encoder writes it, is replaced;
        // the text is longer than a piece.
        let key = "vk1-/+";
        let redact = |text: &str| VastError::Remote(text.into()).redact(key).to_string();
        assert_eq!(
            redact("api_key=vk1-%2F%2B&x=1"),
            "Vast reported an error: api_key=<redacted>&x=1"
        );
        assert_eq!(
            redact("api_key=vk1-/+ rest"),
            "Vast reported an error: api_key=<redacted> rest"
        );
    }

    #[test]
    fn a_key_of_one_piece_is_found_in_any_encoding_and_a_text_of_one_piece_is_searched() {
        // Eight bytes, echoed with lowercase escapes (not what `url_encoded` writes).
        let key = "vk1-a/b+";
        let e = VastError::Remote("key vk1-a%2fb%2b refused".into()).redact(key);
        assert_eq!(
            e.to_string(),
            "Vast reported an error: key <redacted> refused"
        );
        // A text that is exactly one piece of a longer key.
        let key = "vk1-redaction/test+piece=0123456789";
        let e = VastError::Remote("tion/tes".into()).redact(key);
        assert_eq!(e.to_string(), "Vast reported an error: <redacted>");
    }

    #[test]
    fn an_encoded_piece_is_redacted_exactly_where_it_was() {
        let key = "vk1-redaction/test+piece=0123456789";
        let redact = |text: &str| VastError::Remote(text.into()).redact(key).to_string();
        // The first 17 bytes of the key, `/` encoded, between unrelated text with a stray
        // `%` and an incomplete escape around it.
        assert_eq!(
            redact("100% sure: vk1-redaction%2Ftes... ends %2"),
            "Vast reported an error: 100% sure: <redacted>... ends %2"
        );
        // Lowercase hex decodes too, and an escaped unreserved byte.
        assert_eq!(
            redact("key=%76k1-redaction%2ftes;rest"),
            "Vast reported an error: key=<redacted>;rest"
        );
        // Encoded text that is not the key is left alone, byte for byte.
        assert_eq!(
            redact("path=%2Fvar%2Flib%2Fvast ok"),
            "Vast reported an error: path=%2Fvar%2Flib%2Fvast ok"
        );
    }

    #[test]
    fn a_key_repeating_one_window_is_searched_once_per_distinct_window() {
        // A MiB of one letter: a million key windows, all equal, each matching all 2041
        // windows of the text. Each distinct window is marked once; marking it again for
        // every repeat would cover the text a million times over (seconds, not millis).
        let key = "a".repeat(1 << 20);
        let text = "a".repeat(2048);
        let start = std::time::Instant::now();
        let e = VastError::Remote(text).redact(&key).to_string();
        let took = start.elapsed();
        assert_eq!(e, format!("Vast reported an error: {REDACTED}"));
        // The real search takes about 0.1 s in a debug build; the mutant marking every
        // repeat takes longer than the 20 s test timeout. 5 s leaves room for a loaded machine.
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    }
}
