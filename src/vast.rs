//! The Vast.ai client: one call, `POST /get_workergroup_workers/`, parsed tolerantly.
//!
//! The real service answers in four shapes (a bare array, `{"workers": [...]}`,
//! `{"error_msg": "..."}` and a bare JSON string), all with HTTP 200, and its worker
//! objects carry more, fewer or differently typed fields than documented. Everything here
//! accepts what the service really sends; see `docs/architecture.md`.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

/// Longest text of Vast's kept in an error message.
pub const MAX_ERROR_TEXT: usize = 512;

/// How much of a body is quoted into an error before redaction and the final cut.
const QUOTE_WINDOW: usize = 4096;

/// Largest response body read before giving up.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// One worker as Vast reports it, after tolerant parsing.
#[derive(Clone, Debug, PartialEq)]
pub struct Worker {
    /// Vast instance id.
    pub id: i64,
    /// State string, verbatim (`unknown` when Vast sent none).
    pub status: String,
    /// The PyWorker's address, when present.
    pub url: Option<String>,
    /// Creation time, from an ISO string or a float epoch.
    pub created_at: Option<Timestamp>,
    /// Current load.
    pub cur_load: Option<f64>,
    /// Requests in flight.
    pub reqs_working: Option<i64>,
    /// Measured performance times reliability.
    pub perf: Option<f64>,
}

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

    /// Replaces the key everywhere in the message, then cuts it to [`MAX_ERROR_TEXT`]
    /// bytes: in this order, so that no piece of the key survives a cut.
    pub fn redact(self, secret: &str) -> Self {
        let r = |s: String| {
            let s = if secret.is_empty() {
                s
            } else {
                s.replace(secret, "<redacted>")
            };
            truncate(s, MAX_ERROR_TEXT)
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

/// HTTP client for the Vast serverless API.
#[derive(Clone)]
pub struct VastClient {
    http: reqwest::Client,
    endpoint: String,
    timeout: Duration,
}

impl VastClient {
    /// A client for `base_url` (such as `https://run.vast.ai`).
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, crate::Error> {
        crate::install_crypto_provider();
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(crate::Error::Config(format!(
                "Vast URL {base_url:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("vast-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            endpoint: format!("{base}/get_workergroup_workers/"),
            timeout,
        })
    }

    /// Fetches the workers of one workergroup.
    pub async fn workergroup_workers(
        &self,
        workergroup_id: i64,
        api_key: &str,
    ) -> Result<Vec<Worker>, VastError> {
        self.call(workergroup_id, api_key)
            .await
            .map_err(|e| e.redact(api_key))
    }

    async fn call(&self, workergroup_id: i64, api_key: &str) -> Result<Vec<Worker>, VastError> {
        let mut resp = self
            .http
            .post(&self.endpoint)
            .bearer_auth(api_key)
            .json(&serde_json::json!({ "id": workergroup_id }))
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(VastError::Malformed(format!(
                            "response body larger than {} MiB",
                            MAX_BODY_BYTES / (1024 * 1024)
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport_error(&e)),
            }
        }
        classify_response(status, &body)
    }

    fn transport_error(&self, e: &reqwest::Error) -> VastError {
        if e.is_timeout() {
            return VastError::Transport(format!(
                "no answer within {}s",
                self.timeout.as_secs_f64()
            ));
        }
        if e.is_connect() {
            return VastError::Transport(format!("cannot connect to {}", self.endpoint));
        }
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            msg = format!("{msg}: {s}");
            source = s.source();
        }
        VastError::Transport(msg)
    }
}

/// Turns an HTTP status and body into workers or an error.
pub fn classify_response(status: u16, body: &[u8]) -> Result<Vec<Worker>, VastError> {
    match status {
        200..=299 => parse_workers(body),
        401 | 403 => Err(VastError::Authentication(snippet(body))),
        404 => Err(VastError::NotFound(snippet(body))),
        429 => Err(VastError::RateLimited(snippet(body))),
        _ => Err(VastError::Http {
            status,
            body: snippet(body),
        }),
    }
}

/// Parses a 200 body in any of the four known shapes.
pub fn parse_workers(body: &[u8]) -> Result<Vec<Worker>, VastError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        VastError::Malformed(format!(
            "body is not JSON ({e}); it starts with {:?}",
            snippet(body)
        ))
    })?;
    match value {
        Value::Array(items) => Ok(parse_worker_list(&items)),
        Value::Object(map) => {
            if let Some(Value::Array(items)) = map.get("workers") {
                return Ok(parse_worker_list(items));
            }
            if let Some(msg) = map.get("error_msg").or_else(|| map.get("error")) {
                let text = match msg {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                return Err(error_from_text(text));
            }
            let mut keys: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
            keys.sort_unstable();
            Err(VastError::Malformed(format!(
                "object without workers or error_msg (keys: {})",
                keys.join(", ")
            )))
        }
        Value::String(text) => Err(error_from_text(text)),
        other => Err(VastError::Malformed(format!(
            "expected a list of workers, got {}",
            kind_of(&other)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Classifies an error text Vast sent with HTTP 200.
pub fn error_from_text(text: String) -> VastError {
    let lower = text.to_ascii_lowercase();
    if lower.contains("api_key")
        || lower.contains("api key")
        || lower.contains("apikey")
        || lower.contains("authenticat")
        || lower.contains("unauthorized")
        || lower.contains("permission denied")
    {
        VastError::Authentication(text)
    } else if lower.contains("not found") || lower.contains("does not exist") {
        VastError::NotFound(text)
    } else {
        VastError::Remote(text)
    }
}

fn parse_worker_list(items: &[Value]) -> Vec<Worker> {
    let mut workers: Vec<Worker> = items.iter().filter_map(parse_worker).collect();
    let before = items.len();
    if workers.len() != before {
        tracing::warn!(
            skipped = before - workers.len(),
            "Vast sent workers without a usable id; they were left out"
        );
    }
    workers.sort_by_key(|w| w.id);
    workers.dedup_by_key(|w| w.id);
    workers
}

/// Parses one worker object; `None` when it has no usable id.
pub fn parse_worker(v: &Value) -> Option<Worker> {
    let obj = v.as_object()?;
    let id = obj.get("id").and_then(as_i64)?;
    let status = obj
        .get("status")
        .and_then(|s| match s {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::Null => None,
            Value::String(_) => None,
            other => Some(other.to_string()),
        })
        .unwrap_or_else(|| "unknown".to_string());
    let url = obj
        .get("url")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Some(Worker {
        id,
        status,
        url,
        created_at: obj.get("created_at").and_then(parse_time),
        cur_load: obj.get("cur_load").and_then(as_f64),
        reqs_working: obj.get("reqs_working").and_then(as_i64),
        perf: obj.get("perf").and_then(as_f64),
    })
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    if let Value::Number(n) = v
        && let Some(i) = n.as_i64()
    {
        return Some(i);
    }
    let f = as_f64(v)?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// Reads a timestamp from an ISO-8601 string (with or without offset, taken as UTC
/// when absent) or a unix epoch in seconds (integer or float).
pub fn parse_time(v: &Value) -> Option<Timestamp> {
    let ts = match v {
        Value::Number(_) => epoch(as_f64(v)?),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(ts) = s.parse::<Timestamp>() {
                Some(ts)
            } else if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
                dt.to_zoned(jiff::tz::TimeZone::UTC)
                    .ok()
                    .map(|z| z.timestamp())
            } else {
                s.parse::<f64>().ok().and_then(epoch)
            }
        }
        _ => None,
    }?;
    // Whole seconds: what Kubernetes stores, so that status round-trips unchanged.
    ts.round(jiff::Unit::Second).ok()
}

fn epoch(secs: f64) -> Option<Timestamp> {
    if !secs.is_finite() || secs <= 0.0 {
        return None;
    }
    // Some Vast timestamps are in milliseconds.
    let secs = if secs > 1.0e11 { secs / 1000.0 } else { secs };
    Timestamp::from_second(secs.round() as i64).ok()
}

/// The start of a body, for an error message; cut to its final length only after
/// redaction (see [`VastError::redact`]).
fn snippet(body: &[u8]) -> String {
    let window = &body[..body.len().min(QUOTE_WINDOW)];
    String::from_utf8_lossy(window).trim().to_string()
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(r: Result<Vec<Worker>, VastError>) -> Vec<i64> {
        r.expect("workers").iter().map(|w| w.id).collect()
    }

    #[test]
    fn four_shapes() {
        assert_eq!(
            ids(parse_workers(br#"[{"id":2,"status":"idle"},{"id":1}]"#)),
            [1, 2]
        );
        assert_eq!(
            ids(parse_workers(
                br#"{"workers":[{"id":7,"status":"loading"}],"extra":1}"#
            )),
            [7]
        );
        assert!(matches!(
            parse_workers(br#"{"error_msg":"internal failure"}"#),
            Err(VastError::Remote(_))
        ));
        let auth = parse_workers(
            br#""authenticate_workergroup_apikey: invalid api_key or workergroup 12345 not found""#,
        );
        assert!(
            matches!(auth, Err(VastError::Authentication(_))),
            "{auth:?}"
        );
        assert!(matches!(
            parse_workers(br#"{"error_msg":"workergroup 5 not found"}"#),
            Err(VastError::NotFound(_))
        ));
    }

    #[test]
    fn odd_fields() {
        let w = parse_workers(
            br#"[{"id": 3.0, "status": "model_loading", "url": "", "created_at": 1700000000.75,
                 "cur_load": 2, "reqs_working": 1.0, "perf": "12.5", "gpu_name": "RTX 4090",
                 "unknown": {"nested": true}},
                {"id": 4, "created_at": "2024-05-01T10:00:00"},
                {"id": 5, "status": null, "created_at": "2024-05-01T10:00:00.4+02:00"},
                {"status": "idle"}, {"id": "x"}, 17, null]"#,
        )
        .expect("parses");
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].id, 3);
        assert_eq!(w[0].status, "model_loading");
        assert_eq!(w[0].url, None);
        assert_eq!(
            w[0].created_at,
            Some(Timestamp::from_second(1_700_000_001).expect("ts"))
        );
        assert_eq!(w[0].cur_load, Some(2.0));
        assert_eq!(w[0].reqs_working, Some(1));
        assert_eq!(w[0].perf, Some(12.5));
        assert_eq!(w[1].status, "unknown");
        assert_eq!(
            w[1].created_at.map(|t| t.to_string()),
            Some("2024-05-01T10:00:00Z".into())
        );
        assert_eq!(
            w[2].created_at.map(|t| t.to_string()),
            Some("2024-05-01T08:00:00Z".into())
        );
    }

    #[test]
    fn millisecond_epochs_and_bad_times() {
        let t = parse_time(&serde_json::json!(1_700_000_000_000.0_f64));
        assert_eq!(t, Some(Timestamp::from_second(1_700_000_000).expect("ts")));
        assert_eq!(parse_time(&serde_json::json!("yesterday")), None);
        assert_eq!(parse_time(&serde_json::json!(-5)), None);
        assert_eq!(parse_time(&serde_json::json!(true)), None);
    }

    #[test]
    fn duplicates_keep_one() {
        assert_eq!(
            ids(parse_workers(br#"[{"id":1},{"id":1},{"id":2}]"#)),
            [1, 2]
        );
    }

    #[test]
    fn malformed_bodies() {
        for body in [
            &b"<html>502 Bad Gateway</html>"[..],
            b"",
            b"null",
            b"42",
            br#"{"ok":true}"#,
            b"[{\"id\":1",
        ] {
            let r = parse_workers(body);
            assert!(matches!(r, Err(VastError::Malformed(_))), "{r:?}");
            assert!(!r.expect_err("error").is_terminal());
        }
    }

    #[test]
    fn http_statuses() {
        assert!(
            matches!(classify_response(429, b"API requests too frequent endpoint threshold=2.0"), Err(VastError::RateLimited(m)) if m.contains("too frequent"))
        );
        assert!(classify_response(401, b"").expect_err("401").is_terminal());
        assert!(classify_response(403, b"").expect_err("403").is_terminal());
        assert!(classify_response(404, b"").expect_err("404").is_terminal());
        assert!(
            !classify_response(500, b"oops")
                .expect_err("500")
                .is_terminal()
        );
        assert!(!classify_response(503, b"").expect_err("503").is_terminal());
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
