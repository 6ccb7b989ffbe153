//! Vast's console API, read for settings: `GET /api/v0/workergroups/` and
//! `GET /api/v0/endptjobs/` list every workergroup and endpoint of the key's account in
//! the envelope `{"success": true, "results": [...]}`.
//!
//! The rows carry the account's API key (`api_key`) besides the settings: fields are
//! copied by an allow-list into [`GroupRow`] and [`EndpointRow`], never the row, and the
//! raw body is dropped as soon as it is parsed. Values are read tolerantly (a number may
//! come as an integer, a float or a numeric string); a value of another type is left out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::VastError;
use super::http::{outcome, read_body, transport_error, wait_turn};
use crate::runtime::fair::FairRate;
use crate::runtime::metrics::Metrics;

/// Longest text kept of a name or a template hash (the rest is cut).
pub const MAX_SETTING_TEXT: usize = 253;

/// Longest endpoint state kept (`active`, `suspended`, `stopped`; it is shown in
/// `readySummary` and a printer column).
pub const MAX_STATE_TEXT: usize = 32;

/// One of the console's listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listing {
    /// `GET /api/v0/workergroups/`.
    Workergroups,
    /// `GET /api/v0/endptjobs/`.
    Endptjobs,
}

impl Listing {
    /// Both, in the order they are read.
    pub const ALL: [Listing; 2] = [Listing::Workergroups, Listing::Endptjobs];

    /// The path under the console's base URL.
    pub const fn path(self) -> &'static str {
        match self {
            Listing::Workergroups => "/api/v0/workergroups/",
            Listing::Endptjobs => "/api/v0/endptjobs/",
        }
    }

    /// The `listing` label of `vast_operator_settings_requests_total`.
    pub const fn label(self) -> &'static str {
        match self {
            Listing::Workergroups => "workergroups",
            Listing::Endptjobs => "endptjobs",
        }
    }

    /// The least time between two calls per identity that Vast documents
    /// (`threshold=2.0` and `3.0`).
    pub const fn threshold(self) -> Duration {
        match self {
            Listing::Workergroups => Duration::from_secs(2),
            Listing::Endptjobs => Duration::from_secs(3),
        }
    }
}

/// The settings of one workergroup, as listed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupRow {
    /// The workergroup id.
    pub id: i64,
    /// Its endpoint.
    pub endpoint_id: Option<i64>,
    /// Its endpoint's name.
    pub endpoint_name: Option<String>,
    /// `min_load`.
    pub min_load: Option<f64>,
    /// `target_util`.
    pub target_util: Option<f64>,
    /// `cold_mult`.
    pub cold_mult: Option<f64>,
    /// `test_workers`.
    pub test_workers: Option<i64>,
    /// `gpu_ram`.
    pub gpu_ram: Option<f64>,
    /// `template_hash`.
    pub template_hash: Option<String>,
    /// `template_id`.
    pub template_id: Option<i64>,
}

/// The settings of one endpoint, as listed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointRow {
    /// The endpoint id.
    pub id: i64,
    /// `endpoint_name`.
    pub endpoint_name: Option<String>,
    /// `endpoint_state`: `active`, `suspended` or `stopped`.
    pub endpoint_state: Option<String>,
    /// `min_load`.
    pub min_load: Option<f64>,
    /// `target_util`.
    pub target_util: Option<f64>,
    /// `cold_mult`.
    pub cold_mult: Option<f64>,
    /// `cold_workers`.
    pub cold_workers: Option<i64>,
    /// `max_workers`.
    pub max_workers: Option<i64>,
}

/// Both listings of one key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Account {
    /// The workergroups, as listed.
    pub groups: Vec<GroupRow>,
    /// The endpoints, as listed.
    pub endpoints: Vec<EndpointRow>,
}

/// An integer: a JSON integer, a float with no fraction, or a numeric string.
fn int(row: &Map<String, Value>, field: &str) -> Option<i64> {
    match row.get(field)? {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A finite number: a JSON number or a numeric string.
fn num(row: &Map<String, Value>, field: &str) -> Option<f64> {
    let f = match row.get(field)? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    f.is_finite().then_some(f)
}

/// A text without control characters, cut to [`MAX_SETTING_TEXT`]; an empty one is
/// left out.
fn text(row: &Map<String, Value>, field: &str) -> Option<String> {
    let s: String = row
        .get(field)?
        .as_str()?
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let s = crate::text::cut(s.trim().to_string(), MAX_SETTING_TEXT);
    (!s.is_empty()).then_some(s)
}

/// An endpoint state as shown: lowercase letters, digits and `-` only (anything else
/// becomes `_`), at most [`MAX_STATE_TEXT`] of them.
fn state(s: &str) -> String {
    s.chars()
        .take(MAX_STATE_TEXT)
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The allow-listed fields of a workergroup row (None: no usable id).
pub fn group_row(row: &Map<String, Value>) -> Option<GroupRow> {
    Some(GroupRow {
        id: int(row, "id").filter(|id| *id >= 1)?,
        endpoint_id: int(row, "endpoint_id"),
        endpoint_name: text(row, "endpoint_name"),
        min_load: num(row, "min_load"),
        target_util: num(row, "target_util"),
        cold_mult: num(row, "cold_mult"),
        test_workers: int(row, "test_workers"),
        gpu_ram: num(row, "gpu_ram"),
        template_hash: text(row, "template_hash"),
        template_id: int(row, "template_id"),
    })
}

/// The allow-listed fields of an endpoint row (None: no usable id).
pub fn endpoint_row(row: &Map<String, Value>) -> Option<EndpointRow> {
    Some(EndpointRow {
        id: int(row, "id").filter(|id| *id >= 1)?,
        endpoint_name: text(row, "endpoint_name"),
        endpoint_state: text(row, "endpoint_state").map(|s| state(&s)),
        min_load: num(row, "min_load"),
        target_util: num(row, "target_util"),
        cold_mult: num(row, "cold_mult"),
        cold_workers: int(row, "cold_workers"),
        max_workers: int(row, "max_workers"),
    })
}

/// The rows of a listing's answer (HTTP `status`, `body`), or why there are none. Error
/// texts are Vast's `detail`, `msg` or `error` fields, never a row.
pub fn parse_listing(status: u16, body: &[u8]) -> Result<Vec<Map<String, Value>>, VastError> {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    // Only an error field is quoted, never the body: a listing's rows hold keys (the
    // account's, and each endpoint's own), which redacting the caller's key would miss.
    let detail = || {
        value
            .as_ref()
            .and_then(Value::as_object)
            .and_then(|o| {
                ["detail", "msg", "error", "error_msg"]
                    .iter()
                    .find_map(|k| o.get(*k))
            })
            .and_then(Value::as_str)
            // Not cut here: the caller redacts the key first, then cuts (a cut before
            // would leave a piece of a key that straddles it).
            .map(str::to_string)
            .unwrap_or_else(|| format!("{} bytes, not quoted", body.len()))
    };
    match status {
        200..=299 => {}
        401 | 403 => return Err(VastError::Authentication(detail())),
        // A listing that is not there: a wrong --vast-console-url, not an unknown
        // workergroup (retried after the backoff: it may be a proxy's hiccup).
        404 => {
            return Err(VastError::Http {
                status,
                body: format!(
                    "no console listing here (check --vast-console-url): {}",
                    detail()
                ),
            });
        }
        429 => return Err(VastError::RateLimited(detail())),
        _ => {
            return Err(VastError::Http {
                status,
                body: detail(),
            });
        }
    }
    let Some(Value::Object(envelope)) = value else {
        return Err(VastError::Malformed(
            "the console listing is not a JSON object".into(),
        ));
    };
    if envelope.get("success").and_then(Value::as_bool) == Some(false) {
        let why = ["msg", "error", "detail", "error_msg"]
            .iter()
            .find_map(|k| envelope.get(*k).and_then(Value::as_str))
            .unwrap_or("success is false")
            .to_string();
        return Err(super::error_from_text(why));
    }
    match envelope.get("results") {
        Some(Value::Array(rows)) => {
            Ok(rows.iter().filter_map(|r| r.as_object().cloned()).collect())
        }
        _ => Err(VastError::Malformed(
            "the console listing has no results array".into(),
        )),
    }
}

/// A client of the console API: the HTTP client, rate limit and metrics of the
/// [`super::VastClient`] it comes from, its own base URL.
#[derive(Clone)]
pub struct ConsoleClient {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) timeout: Duration,
    pub(super) metrics: Option<Arc<Metrics>>,
    pub(super) limiter: Option<Arc<FairRate>>,
}

impl std::fmt::Debug for ConsoleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ConsoleClient {
    /// The base URL (such as `https://console.vast.ai`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Counts every call in `metrics` (`vast_operator_settings_requests_total`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Reads one listing with `api_key`, in the turn of `tenant` under the rate limit.
    pub async fn list(
        &self,
        listing: Listing,
        api_key: &str,
        tenant: &str,
    ) -> Result<Vec<Map<String, Value>>, VastError> {
        wait_turn(self.limiter.as_deref(), self.metrics.as_deref(), tenant).await;
        let started = Instant::now();
        let result = self
            .call(listing, api_key)
            .await
            .map_err(|e| e.redact(api_key));
        if let Some(m) = &self.metrics {
            m.settings_request(listing.label(), outcome(&result));
        }
        tracing::debug!(
            listing = listing.label(),
            seconds = started.elapsed().as_secs_f64(),
            ok = result.is_ok(),
            "console listing read"
        );
        result
    }

    async fn call(
        &self,
        listing: Listing,
        api_key: &str,
    ) -> Result<Vec<Map<String, Value>>, VastError> {
        let url = format!("{}{}", self.base, listing.path());
        let resp = self
            .http
            .get(&url)
            .bearer_auth(api_key)
            .send()
            .await
            .map_err(|e| transport_error(&e, &url, self.timeout))?;
        let status = resp.status().as_u16();
        let body = read_body(resp, &url, self.timeout).await?;
        parse_listing(status, &body)
    }

    /// Both listings of `api_key`, workergroups first, each row reduced to its
    /// allow-listed fields (each listing has a threshold of its own, so the second call
    /// need not wait for the first's).
    pub async fn account(&self, api_key: &str, tenant: &str) -> Result<Account, VastError> {
        let groups = self
            .list(Listing::Workergroups, api_key, tenant)
            .await?
            .iter()
            .filter_map(group_row)
            .collect();
        let endpoints = self
            .list(Listing::Endptjobs, api_key, tenant)
            .await?
            .iter()
            .filter_map(endpoint_row)
            .collect();
        Ok(Account { groups, endpoints })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn rows_keep_the_allow_list_only() {
        let row = obj(json!({
            "id": 7, "endpoint_id": 3, "endpoint_name": "llama\u{7}-70b",
            "min_load": "10", "target_util": 0.9, "cold_mult": 2, "test_workers": 3.0,
            "gpu_ram": 24, "template_hash": "abc", "template_id": "77",
            "launch_args": "--secret", "api_key": "vk1-console-row-key-1234", "user_id": 9
        }));
        let g = group_row(&row).expect("row");
        assert_eq!(
            g,
            GroupRow {
                id: 7,
                endpoint_id: Some(3),
                endpoint_name: Some("llama-70b".into()),
                min_load: Some(10.0),
                target_util: Some(0.9),
                cold_mult: Some(2.0),
                test_workers: Some(3),
                gpu_ram: Some(24.0),
                template_hash: Some("abc".into()),
                template_id: Some(77),
            }
        );
        assert!(!format!("{g:?}").contains("vk1-console-row-key"));
        let e = endpoint_row(&obj(json!({
            "id": 3, "endpoint_state": "SUSPENDED", "max_workers": 20, "cold_workers": null,
            "min_load": "x", "api_key": "vk1-console-row-key-1234"
        })))
        .expect("row");
        assert_eq!(e.endpoint_state.as_deref(), Some("suspended"));
        let odd = endpoint_row(&obj(
            json!({"id": 4, "endpoint_state": "Paused <b>".repeat(9)}),
        ))
        .expect("row");
        let shown = odd.endpoint_state.expect("state");
        assert!(
            shown.len() <= MAX_STATE_TEXT && shown.starts_with("paused__b_"),
            "{shown}"
        );
        assert_eq!(
            (e.max_workers, e.cold_workers, e.min_load),
            (Some(20), None, None)
        );
        assert!(group_row(&obj(json!({"id": "x"}))).is_none());
        assert!(endpoint_row(&obj(json!({"id": 0}))).is_none());
        let long = "n".repeat(1000);
        let e = endpoint_row(&obj(json!({"id": 1, "endpoint_name": long}))).expect("row");
        assert!(e.endpoint_name.expect("name").len() <= MAX_SETTING_TEXT);
    }

    #[test]
    fn the_envelope_and_its_errors() {
        let ok =
            parse_listing(200, br#"{"success": true, "results": [{"id": 1}, 5]}"#).expect("rows");
        assert_eq!(ok.len(), 1);
        let e = |status, body: &str| parse_listing(status, body.as_bytes()).expect_err(body);
        assert!(matches!(
            e(429, r#"{"detail": "API requests too frequent endpoint threshold=2.0"}"#),
            VastError::RateLimited(d) if d.contains("threshold=2.0")
        ));
        assert!(matches!(
            e(401, r#"{"detail": "Invalid token."}"#),
            VastError::Authentication(_)
        ));
        assert!(matches!(
            e(503, "<html>"),
            VastError::Http { status: 503, .. }
        ));
        // A body is never quoted (rows hold keys), only an error field.
        let quoted = e(500, r#"[{"api_key": "vk1-console-body-key-9f8e"}]"#).to_string();
        assert!(!quoted.contains("vk1-console-body"), "{quoted}");
        assert!(matches!(
            e(404, "<html>not found</html>"),
            VastError::Http { status: 404, ref body } if body.contains("--vast-console-url")
        ));
        assert!(matches!(e(200, "<html>"), VastError::Malformed(_)));
        assert!(matches!(
            e(200, r#"{"success": true}"#),
            VastError::Malformed(_)
        ));
        assert!(matches!(
            e(200, r#"{"success": false, "msg": "invalid api key"}"#),
            VastError::Authentication(_)
        ));
    }
}
