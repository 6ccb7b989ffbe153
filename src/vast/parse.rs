//! Tolerant parsing of Vast's answers: four response shapes, unknown and missing fields,
//! numbers as strings, ISO and epoch timestamps. Pure: no I/O.

use jiff::Timestamp;
use serde_json::Value;

use super::VastError;

/// How much of a body is quoted into an error before redaction and the final cut.
const QUOTE_WINDOW: usize = 4096;

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

/// Workers parsed from a body, and how many entries had no usable id (left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The workers, sorted by id without duplicates.
    pub workers: Vec<Worker>,
    /// Entries left out for want of a usable id.
    pub unusable: usize,
}

/// Turns an HTTP status and body into workers or an error.
pub fn classify_response(status: u16, body: &[u8]) -> Result<Vec<Worker>, VastError> {
    classify_response_counted(status, body).map(|p| p.workers)
}

/// [`classify_response`], also counting the entries left out.
pub fn classify_response_counted(status: u16, body: &[u8]) -> Result<Parsed, VastError> {
    match status {
        200..=299 => parse_workers_counted(body),
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
    parse_workers_counted(body).map(|p| p.workers)
}

/// [`parse_workers`], also counting the entries left out.
pub fn parse_workers_counted(body: &[u8]) -> Result<Parsed, VastError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        VastError::Malformed(format!(
            "body is not JSON ({e}); it starts with {:?}",
            snippet(body)
        ))
    })?;
    match value {
        Value::Array(items) => Ok(parse_worker_list(&items)),
        Value::Object(map) => {
            match map.get("workers") {
                Some(Value::Array(items)) => return Ok(parse_worker_list(items)),
                Some(other) if !other.is_null() => {
                    return Err(VastError::Malformed(format!(
                        "workers is {}, expected a list",
                        kind_of(other)
                    )));
                }
                _ => {}
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

fn parse_worker_list(items: &[Value]) -> Parsed {
    let mut workers: Vec<Worker> = items.iter().filter_map(parse_worker).collect();
    let unusable = items.len() - workers.len();
    workers.sort_by_key(|w| w.id);
    workers.dedup_by_key(|w| w.id);
    Parsed { workers, unusable }
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
    fn a_null_worker_list_falls_through_to_the_error_and_another_kind_is_named() {
        let e = |body: &str| parse_workers(body.as_bytes()).expect_err("an error");
        assert_eq!(
            e(r#"{"workers": null, "error_msg": "workergroup not found"}"#),
            VastError::NotFound("workergroup not found".into())
        );
        assert_eq!(
            e(r#"{"workers": 5}"#),
            VastError::Malformed("workers is a number, expected a list".into())
        );
        assert_eq!(
            e(r#"{"workers": {"id": 1}}"#),
            VastError::Malformed("workers is an object, expected a list".into())
        );
        assert_eq!(
            e("true"),
            VastError::Malformed("expected a list of workers, got a boolean".into())
        );
        assert_eq!(
            e("null"),
            VastError::Malformed("expected a list of workers, got null".into())
        );
    }

    #[test]
    fn every_phrase_about_the_key_alone_means_authentication() {
        for text in [
            "invalid api_key",
            "bad API key",
            "apikey missing",
            "could not authenticate",
            "Unauthorized",
            "permission denied",
        ] {
            assert_eq!(
                error_from_text(text.into()),
                VastError::Authentication(text.into()),
                "{text}"
            );
        }
        assert_eq!(
            error_from_text("endpoint does not exist".into()),
            VastError::NotFound("endpoint does not exist".into())
        );
        assert_eq!(
            error_from_text("internal error".into()),
            VastError::Remote("internal error".into())
        );
    }

    #[test]
    fn a_blank_status_is_unknown_and_ids_must_be_exact_integers() {
        let one = |v: serde_json::Value| parse_worker(&v);
        let w = one(serde_json::json!({"id": 1, "status": "   "})).expect("worker");
        assert_eq!(w.status, "unknown");
        let w = one(serde_json::json!({"id": 1, "status": " idle "})).expect("worker");
        assert_eq!(w.status, "idle");
        // A float id is taken only when whole and below 9e15 (exact in an f64).
        assert_eq!(one(serde_json::json!({"id": 7.0})).map(|w| w.id), Some(7));
        assert!(one(serde_json::json!({"id": 7.5})).is_none());
        assert_eq!(
            one(serde_json::json!({"id": 8.0e15})).map(|w| w.id),
            Some(8_000_000_000_000_000)
        );
        assert!(one(serde_json::json!({"id": 9.0e15})).is_none());
    }

    #[test]
    fn epochs_up_to_1e11_are_seconds_beyond_milliseconds() {
        let at = |secs: f64| parse_time(&serde_json::json!(secs));
        assert_eq!(at(1.0e11), Timestamp::from_second(100_000_000_000).ok());
        assert_eq!(at(1.7e12), Timestamp::from_second(1_700_000_000).ok());
        assert_eq!(at(1.7e9), Timestamp::from_second(1_700_000_000).ok());
    }
}

#[cfg(test)]
mod properties {
    //! The parser takes anything without panicking, and what it returns is sorted,
    //! without duplicate ids.

    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z0-9_:. -]{0,12}".prop_map(Value::from),
            prop::sample::select(vec!["id", "status", "url", "idle", "1001", "1.5e3"])
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "id",
                        "status",
                        "url",
                        "workers",
                        "error_msg",
                        "error",
                        "cur_load",
                        "reqs_working",
                        "perf",
                        "created_at",
                        "x",
                    ]),
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    fn sorted_unique(ws: &[Worker]) -> bool {
        ws.windows(2).all(|p| p[0].id < p[1].id)
    }

    proptest! {
        #[test]
        fn any_bytes_any_status(
            // Every code with a rule of its own, often, and any other.
            status in prop_oneof![
                prop::sample::select(vec![200u16, 201, 302, 401, 403, 404, 429, 500, 503]),
                100u16..600,
            ],
            body in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            match classify_response(status, &body) {
                Ok(ws) => {
                    prop_assert!((200..300).contains(&status), "{status} gave workers");
                    prop_assert!(sorted_unique(&ws));
                }
                // Every status outside 2xx is classified by its code alone.
                Err(e) => match status {
                    200..=299 => prop_assert!(
                        matches!(e, VastError::Malformed(_) | VastError::Remote(_) | VastError::Authentication(_) | VastError::NotFound(_)),
                        "{status}: {e:?}"
                    ),
                    401 | 403 => prop_assert!(matches!(e, VastError::Authentication(_)), "{e:?}"),
                    404 => prop_assert!(matches!(e, VastError::NotFound(_)), "{e:?}"),
                    429 => prop_assert!(matches!(e, VastError::RateLimited(_)), "{e:?}"),
                    _ => prop_assert!(
                        matches!(e, VastError::Http { status: s, .. } if s == status),
                        "{status}: {e:?}"
                    ),
                },
            }
        }

        #[test]
        fn any_json(v in json()) {
            let body = serde_json::to_vec(&v).expect("json");
            match parse_workers_counted(&body) {
                Ok(p) => {
                    prop_assert!(sorted_unique(&p.workers));
                    if let Value::Array(items) = &v {
                        prop_assert!(p.workers.len() + p.unusable <= items.len());
                    }
                }
                // A valid JSON body that is not a worker list: an object (an error text,
                // or a `workers` that is not a list), or a scalar; its text is bounded.
                Err(e) => {
                    prop_assert!(!matches!(v, Value::Array(_)), "a list is always workers: {e:?}");
                    prop_assert!(
                        matches!(e, VastError::Malformed(_) | VastError::Remote(_) | VastError::Authentication(_) | VastError::NotFound(_)),
                        "{e:?}"
                    );
                    prop_assert!(e.to_string().len() <= 4 * crate::vast::error::MAX_ERROR_TEXT, "{}", e.to_string().len());
                }
            }
        }
    }
}
